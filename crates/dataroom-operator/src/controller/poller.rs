//! The batched drift poller: one paginated DescribeInstances per interval covers every managed
//! instance; objects whose instance changed are fed back into the controller. Nothing on the
//! steady path describes a single instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use jiff::SignedDuration;
use kube::runtime::reflector::ObjectRef;

use super::InstanceCache;
use crate::budget::Gate;
use crate::clock::Clock;
use crate::cloud::{Cloud, CloudError, Instance, TAG_NAME, TAG_NAMESPACE};
use crate::crd::Ec2Instance;
use crate::metrics::Metrics;

/// A reservation younger than this is never released by a sweep: its launch may still be in flight.
const RESERVATION_GRACE: SignedDuration = SignedDuration::from_secs(60);

pub struct Poller {
    pub cloud: Arc<dyn Cloud>,
    pub cache: Arc<InstanceCache>,
    pub gate: Arc<Gate>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub trigger: UnboundedSender<ObjectRef<Ec2Instance>>,
    /// The steady interval.
    pub interval: Duration,
    /// The interval while some instance is between states, so transitions show promptly.
    pub busy_interval: Duration,
}

impl Poller {
    /// One full sweep: refresh the cache, true up the budget, trigger changed objects.
    /// Returns how many instances changed.
    pub async fn sweep(&self) -> Result<usize, CloudError> {
        let started = Instant::now();
        let swept_at = (self.clock)();
        let epoch = self.cache.epoch();
        let instances = self.cloud.describe_managed().await?;
        self.metrics.poll_duration.observe(started.elapsed().as_secs_f64());
        self.metrics.managed_instances.set(instances.len() as i64);
        self.gate.sync(&instances, swept_at - RESERVATION_GRACE);
        let changed = self.cache.replace(instances, epoch);
        for instance in &changed {
            if let Some(object) = owner_ref(instance) {
                // The receiver lives as long as the controller; a closed channel means shutdown.
                let _ = self.trigger.unbounded_send(object);
            }
        }
        Ok(changed.len())
    }

    /// Sweeps forever; a failed sweep keeps the previous view and is retried next interval.
    /// `recovered` is called on the first good sweep after failed ones.
    pub async fn run(self, recovered: impl Fn()) {
        let mut failing = false;
        loop {
            match self.sweep().await {
                Ok(_) if failing => {
                    tracing::info!("EC2 answers again");
                    failing = false;
                    recovered();
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "EC2 sweep failed; keeping the previous view");
                    failing = true;
                }
            }
            if self.cache.any(|i| !i.state.is_settled()) {
                tokio::time::sleep(self.busy_interval).await;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(self.interval) => {}
                    // Soon, but not at once: the instance has only just been asked to change.
                    _ = self.cache.transition.notified() => tokio::time::sleep(self.busy_interval / 4).await,
                }
            }
        }
    }
}

/// The Ec2Instance an instance belongs to, from its tags.
pub fn owner_ref(instance: &Instance) -> Option<ObjectRef<Ec2Instance>> {
    let namespace = instance.tag(TAG_NAMESPACE)?;
    let name = instance.tag(TAG_NAME)?;
    Some(ObjectRef::new(name).within(namespace))
}
