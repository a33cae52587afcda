//! Publishes signed checkpoints of the audit log's head to a ConfigMap: every interval, whether or
//! not the log grew (a quiet interval is then provably quiet), each linked to the one before, and
//! once more on the way out. A new leader continues the chain the ConfigMap holds.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::Mutex;

use crate::audit::AuditLog;
use crate::audit::checkpoint::{CONFIGMAP_KEY, Checkpoint, Signer};

pub struct Publisher {
    api: Api<ConfigMap>,
    name: String,
    signer: Signer,
    audit: AuditLog,
    clock: crate::clock::Clock,
    /// The last checkpoint stored (`None` until the chain is resumed from the ConfigMap).
    last: Mutex<Option<Checkpoint>>,
}

impl Publisher {
    pub fn new(
        api: Api<ConfigMap>,
        name: String,
        signer: Signer,
        audit: AuditLog,
        clock: crate::clock::Clock,
    ) -> Self {
        Publisher { api, name, signer, audit, clock, last: Mutex::new(None) }
    }

    /// Signs the head as the next checkpoint of the chain and stores it.
    pub async fn publish(&self) -> Result<Checkpoint, kube::Error> {
        let mut last = self.last.lock().await;
        if last.is_none() {
            *last = self.stored().await?;
        }
        let (seq, hash) = self.audit.head();
        let checkpoint = self.signer.sign(last.as_ref(), seq, &hash, (self.clock)());
        let body = serde_json::to_string(&checkpoint).expect("a checkpoint serializes");
        let map = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": self.name, "labels": { "app.kubernetes.io/managed-by": crate::crd::MANAGER } },
            "data": { CONFIGMAP_KEY: body },
        });
        let params = PatchParams::apply(crate::crd::MANAGER).force();
        self.api.patch(&self.name, &params, &Patch::Apply(&map)).await?;
        *last = Some(checkpoint.clone());
        Ok(checkpoint)
    }

    /// The checkpoint the ConfigMap holds, if this key signed it: the chain goes on from there. One
    /// signed by another key (a rotation) or unreadable starts a new chain.
    async fn stored(&self) -> Result<Option<Checkpoint>, kube::Error> {
        let map = self.api.get_opt(&self.name).await?;
        let text = map.and_then(|m| m.data?.remove(CONFIGMAP_KEY));
        let stored = text.and_then(|t| serde_json::from_str::<Checkpoint>(&t).ok());
        let public_key = self.signer.public_key();
        Ok(stored.filter(|c| c.verify_signature(&public_key).is_ok()))
    }

    /// Runs until dropped; failures are logged and retried at the next tick.
    pub async fn run(&self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = self.publish().await {
                tracing::warn!(error = %e, configmap = %self.name, "audit checkpoint not stored; retrying")
            }
        }
    }
}
