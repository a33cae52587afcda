//! Publishes signed checkpoints of the audit log's head: every interval, whether or not the log
//! grew (a quiet interval is then provably quiet), each linked to the one before, and once more
//! on the way out. With an archive, the records a checkpoint covers and then the checkpoint are
//! copied there first; the ConfigMap gets only what the archive holds. A new leader continues the
//! chain from the newer of the ConfigMap's checkpoint and the archive's.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::Mutex;

use crate::audit::AuditLog;
use crate::audit::archive::{ArchiveError, Copier};
use crate::audit::checkpoint::{CONFIGMAP_KEY, Checkpoint, Signer};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("checkpoint ConfigMap: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

pub struct Publisher {
    api: Api<ConfigMap>,
    name: String,
    signer: Signer,
    audit: AuditLog,
    clock: crate::clock::Clock,
    chain: Mutex<ChainState>,
}

#[derive(Default)]
struct ChainState {
    /// Whether the chain has been resumed from where it was stored.
    resumed: bool,
    /// The last checkpoint stored everywhere.
    last: Option<Checkpoint>,
    /// A checkpoint signed but not yet stored everywhere: a retry stores this one again rather
    /// than signing another with the same number.
    pending: Option<Checkpoint>,
    copier: Option<Copier>,
}

impl Publisher {
    pub fn new(
        api: Api<ConfigMap>,
        name: String,
        signer: Signer,
        audit: AuditLog,
        clock: crate::clock::Clock,
        copier: Option<Copier>,
    ) -> Self {
        let chain = Mutex::new(ChainState { copier, ..ChainState::default() });
        Publisher { api, name, signer, audit, clock, chain }
    }

    /// Signs the head as the next checkpoint of the chain and stores it: in the archive (after the
    /// records it covers), then in the ConfigMap.
    pub async fn publish(&self) -> Result<Checkpoint, PublishError> {
        let mut chain = self.chain.lock().await;
        let chain = &mut *chain;
        let public_key = self.signer.public_key();
        if !chain.resumed {
            let stored = self.stored().await?;
            let archived = match &mut chain.copier {
                Some(copier) => copier.resume(&public_key).await?,
                None => None,
            };
            chain.last = [stored, archived].into_iter().flatten().max_by_key(|c| c.number);
            chain.resumed = true;
        }
        let checkpoint = chain
            .pending
            .get_or_insert_with(|| {
                let (seq, hash) = self.audit.head();
                self.signer.sign(chain.last.as_ref(), seq, &hash, (self.clock)())
            })
            .clone();
        if let Some(copier) = &mut chain.copier {
            copier.copy(&public_key, &checkpoint).await?;
        }
        self.store(&checkpoint).await?;
        self.audit.checkpointed(checkpoint.clone());
        chain.last = chain.pending.take();
        Ok(checkpoint)
    }

    async fn store(&self, checkpoint: &Checkpoint) -> Result<(), kube::Error> {
        let body = serde_json::to_string(checkpoint).expect("a checkpoint serializes");
        let map = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": self.name, "labels": { "app.kubernetes.io/managed-by": crate::crd::MANAGER } },
            "data": { CONFIGMAP_KEY: body },
        });
        let params = PatchParams::apply(crate::crd::MANAGER).force();
        self.api.patch(&self.name, &params, &Patch::Apply(&map)).await.map(drop)
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
