//! Publishes signed checkpoints of the audit log's head to a ConfigMap: every interval while the
//! head moves, and once more on the way out.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::audit::AuditLog;
use crate::audit::checkpoint::{CONFIGMAP_KEY, Signer};

pub struct Publisher {
    pub api: Api<ConfigMap>,
    pub name: String,
    pub signer: Signer,
    pub audit: AuditLog,
    pub clock: crate::clock::Clock,
}

impl Publisher {
    /// Signs and stores the head if it moved since `last`; returns the head now covered.
    pub async fn publish(&self, last: u64) -> Result<u64, kube::Error> {
        let (seq, hash) = self.audit.head();
        if seq == last {
            return Ok(last);
        }
        let checkpoint = self.signer.sign(seq, &hash, (self.clock)());
        let body = serde_json::to_string(&checkpoint).expect("a checkpoint serializes");
        let map = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": self.name, "labels": { "app.kubernetes.io/managed-by": crate::crd::MANAGER } },
            "data": { CONFIGMAP_KEY: body },
        });
        let params = PatchParams::apply(crate::crd::MANAGER).force();
        self.api.patch(&self.name, &params, &Patch::Apply(&map)).await?;
        Ok(seq)
    }

    /// Runs until dropped; failures are logged and retried at the next tick.
    pub async fn run(&self, every: Duration) {
        let mut last = 0;
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match self.publish(last).await {
                Ok(seq) => last = seq,
                Err(e) => {
                    tracing::warn!(error = %e, configmap = %self.name, "audit checkpoint not stored; retrying")
                }
            }
        }
    }
}
