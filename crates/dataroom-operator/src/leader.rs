//! Leader election over a `coordination.k8s.io` Lease (through kube-lease-manager), so that more
//! than one replica is safe: only the leader runs the controllers, writes the audit log and serves
//! the admin API; the others wait as standbys and take over when the lease runs out or is handed
//! over on shutdown.

use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Election {
    leader: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
}

/// Where the lease lives and how long a holder keeps it without renewing.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration_seconds: u64,
}

impl Election {
    /// Starts campaigning for the lease in the background.
    pub async fn start(client: kube::Client, lease: &LeaseSettings) -> anyhow::Result<Self> {
        // Renewed a third of the duration before it runs out.
        let grace = (lease.duration_seconds / 3).max(1);
        let params = LeaseParams::new(lease.identity.clone(), lease.duration_seconds, grace)
            .with_field_manager(format!("{}/{}", crate::crd::MANAGER, lease.identity));
        let manager = LeaseManagerBuilder::new(client, &lease.name)
            .with_namespace(&lease.namespace)
            .with_parameters(params)
            .build()
            .await?;
        let (leader, task) = manager.watch().await;
        Ok(Election { leader, task })
    }

    /// Resolves once this replica holds the lease.
    pub async fn acquired(&mut self) -> anyhow::Result<()> {
        self.leader.wait_for(|leader| *leader).await?;
        Ok(())
    }

    /// Resolves when this replica no longer holds the lease.
    pub async fn lost(&mut self) {
        // A closed channel means the campaign ended: the lease is not ours either.
        let _ = self.leader.wait_for(|leader| !*leader).await;
    }

    /// Gives the lease up, so that a standby takes over without waiting for it to run out.
    pub async fn resign(self) {
        drop(self.leader);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("leader lease released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "releasing the leader lease failed; it runs out by itself")
            }
            Err(e) => tracing::warn!(error = %e, "the lease task ended abnormally"),
        }
    }
}
