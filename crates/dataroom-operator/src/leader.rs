//! Leader election over a `coordination.k8s.io` Lease (through kube-lease-manager), so that more
//! than one replica is safe: only the leader runs the controllers, writes the audit log and serves
//! the admin API; the others wait as standbys and take over when the lease runs out or is handed
//! over on shutdown.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
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

/// The proof a leader gives before each EC2 mutation that it still holds the lease: the Lease, read
/// from the API server then and there, names this replica, has changed hands no more often than when
/// this replica took it (so it was not lost and won back in between), and has time left. A leader
/// cut off from the API server cannot read it, so it does nothing: by the time a standby may take the
/// lease over, the deposed leader's mutations have stopped. (EC2 knows no fencing token, so a call
/// that passed the check a moment before the lease ran out can still land; the check keeps a margin
/// of a sixth of the lease for that call, half the time the renewal is made before the lease
/// would run out.)
pub struct Fence {
    api: kube::Api<Lease>,
    lease: LeaseSettings,
    transitions: i32,
    clock: crate::clock::Clock,
}

impl Fence {
    /// The fence of the term this replica has just won (call it once the lease is held).
    pub async fn acquired(
        client: kube::Client,
        lease: &LeaseSettings,
        clock: crate::clock::Clock,
    ) -> anyhow::Result<Self> {
        let api: kube::Api<Lease> = kube::Api::namespaced(client, &lease.namespace);
        let held = api.get(&lease.name).await?.spec.unwrap_or_default();
        let fence =
            Fence { api, lease: lease.clone(), transitions: held.lease_transitions.unwrap_or(0), clock };
        fence.holds(&held).map_err(|why| anyhow::anyhow!("{why}"))?;
        Ok(fence)
    }

    /// Ok while this replica provably holds the lease it won; otherwise why not.
    pub async fn check(&self) -> Result<(), String> {
        let lease = self
            .api
            .get(&self.lease.name)
            .await
            .map_err(|e| format!("the leader lease cannot be read: {e}"))?;
        self.holds(&lease.spec.unwrap_or_default())
    }

    fn holds(&self, spec: &LeaseSpec) -> Result<(), String> {
        proves_holding(spec, &self.lease, self.transitions, (self.clock)())
    }
}

/// Whether `spec` shows `lease.identity` holding the lease it took at `transitions`, with time left
/// at `now` beyond the fence's margin (a sixth of the lease).
fn proves_holding(
    spec: &LeaseSpec,
    lease: &LeaseSettings,
    transitions: i32,
    now: jiff::Timestamp,
) -> Result<(), String> {
    let holder = spec.holder_identity.as_deref().unwrap_or("nobody");
    if holder != lease.identity {
        return Err(format!(
            "the leader lease is held by {holder}, not by this replica ({})",
            lease.identity
        ));
    }
    if spec.lease_transitions.unwrap_or(0) != transitions {
        return Err("the leader lease changed hands since this replica took it".into());
    }
    let seconds = spec.lease_duration_seconds.map_or(lease.duration_seconds as f64, f64::from);
    let renewed = spec.renew_time.as_ref().map(|t| t.0).ok_or("the leader lease was never renewed")?;
    let until = renewed + jiff::SignedDuration::from_secs_f64(seconds * 5.0 / 6.0);
    match now < until {
        true => Ok(()),
        false => Err(format!("the leader lease, last renewed at {renewed}, has (nearly) run out")),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use super::*;

    #[test]
    fn holding_is_proved_by_identity_term_and_time_left() {
        let lease = LeaseSettings {
            namespace: "ops".into(),
            name: "dataroom-operator".into(),
            identity: "pod-a".into(),
            duration_seconds: 12,
        };
        let renewed: jiff::Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let spec = |holder: &str, transitions: i32| LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_transitions: Some(transitions),
            lease_duration_seconds: Some(12),
            renew_time: Some(MicroTime(renewed)),
            ..Default::default()
        };
        let at = |seconds: i64| renewed + jiff::SignedDuration::from_secs(seconds);
        let cases: [(&str, LeaseSpec, jiff::Timestamp, bool); 6] = [
            ("held, just renewed", spec("pod-a", 3), at(1), true),
            ("held, inside the margin", spec("pod-a", 3), at(9), true),
            ("held, in the last sixth", spec("pod-a", 3), at(10), false),
            ("another holder", spec("pod-b", 3), at(1), false),
            ("lost and won back", spec("pod-a", 5), at(1), false),
            ("never renewed", LeaseSpec { renew_time: None, ..spec("pod-a", 3) }, at(1), false),
        ];
        for (case, spec, now, held) in cases {
            assert_eq!(proves_holding(&spec, &lease, 3, now).is_ok(), held, "{case}");
        }
    }
}
