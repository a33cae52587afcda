//! One assembly: the running operator made from validated settings. `run`, `sandbox`, the benches
//! and the test harnesses all build it here, so that the parts are wired one way: the whole cloud
//! (metered) to the controller, only the imperative port and the read-only views to the admin API.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kube::runtime::events::{Recorder, Reporter};

use crate::admin::auth::AdminKeys;
use crate::admin::{AdminState, HealthState};
use crate::audit::AuditLog;
use crate::budget::Gate;
use crate::budget::pricing::PriceTable;
use crate::clock::{self, Clock};
use crate::cloud::Cloud;
use crate::cloud::fenced::Fenced;
use crate::cloud::metered::Metered;
use crate::controller::dataroom::content::ContentKey;
use crate::controller::{self, Context, Settings};
use crate::crd;
use crate::leader::Fence;
use crate::metrics::Metrics;

/// The content key lives beside the audit log (same volume, same lifetime): `audit.content-key`.
pub const CONTENT_KEY_EXTENSION: &str = "content-key";

/// What the operator is made of; `build` opens the audit log and wires the rest.
pub struct Assembly {
    client: kube::Client,
    cloud: Arc<dyn Cloud>,
    settings: Settings,
    audit_log: PathBuf,
    prices: PriceTable,
    clock: Clock,
    metrics: Arc<Metrics>,
    instance: Option<String>,
    fence: Option<Arc<Fence>>,
    dns: Option<Arc<dyn crate::dns::Publisher>>,
}

impl Assembly {
    /// The operator on `client` and `cloud` with `settings`, writing its audit log to `audit_log`;
    /// the built-in prices and the system clock unless told otherwise.
    pub fn new(client: kube::Client, cloud: Arc<dyn Cloud>, settings: Settings, audit_log: PathBuf) -> Self {
        Self {
            client,
            cloud,
            settings,
            audit_log,
            prices: PriceTable::default(),
            clock: clock::system(),
            metrics: Arc::default(),
            instance: None,
            fence: None,
            dns: None,
        }
    }

    pub fn prices(self, prices: PriceTable) -> Self {
        Self { prices, ..self }
    }

    pub fn clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    /// Metrics to count into (the standby listener's, so that one registry serves both).
    pub fn metrics(self, metrics: Arc<Metrics>) -> Self {
        Self { metrics, ..self }
    }

    /// The name Events report this replica by (the pod's name in a cluster).
    pub fn instance_name(self, instance: Option<String>) -> Self {
        Self { instance, ..self }
    }

    /// The leader's fence: every EC2 mutation first proves that this replica still holds the lease.
    pub fn fence(self, fence: Fence) -> Self {
        Self { fence: Some(Arc::new(fence)), ..self }
    }

    /// The zone Ready rooms are published in.
    pub fn dns(self, zone: Arc<dyn crate::dns::Publisher>) -> Self {
        Self { dns: Some(zone), ..self }
    }

    /// Opens (and checks) the audit log, loads (or makes) the content key beside it, and wires the
    /// controller's context.
    pub fn build(self) -> anyhow::Result<Operator> {
        let audit = AuditLog::open(&self.audit_log)?;
        let key_path = self.audit_log.with_extension(CONTENT_KEY_EXTENSION);
        let content_key = ContentKey::load_or_create(&key_path)
            .map_err(|e| anyhow::anyhow!("the content key {}: {e}", key_path.display()))?;
        let cloud = match self.fence {
            Some(fence) => Arc::new(Fenced::new(self.cloud, fence)),
            None => self.cloud,
        };
        let cloud = Arc::new(Metered::new(cloud, self.metrics.clone()));
        let gate = Arc::new(Gate::new(self.prices, &self.settings.region, self.clock.clone()));
        let reporter = Reporter { controller: crd::MANAGER.into(), instance: self.instance };
        let recorder = Recorder::new(self.client.clone(), reporter);
        let metrics = self.metrics.clone();
        let mut ctx = Context::new(
            self.client,
            cloud,
            gate,
            audit,
            recorder,
            metrics,
            self.settings,
            self.clock,
            content_key,
        );
        ctx.dns = self.dns;
        Ok(Operator { ctx: Arc::new(ctx) })
    }
}

/// The assembled operator: the controller's context, and what the HTTP side is made from.
pub struct Operator {
    pub ctx: Arc<Context>,
}

impl Operator {
    /// The admin API over the controller's shared parts (never its context).
    pub fn admin(&self, keys: AdminKeys, namespace: &str) -> AdminState {
        AdminState::new(self.ctx.shared(), keys, namespace)
    }

    /// Health and metrics, ready once `ready` is set (by `run`, after the first EC2 sweep).
    pub fn health(&self, ready: Arc<AtomicBool>) -> HealthState {
        HealthState { ready, metrics: self.ctx.metrics.clone() }
    }

    /// Runs the controllers until Ctrl-C or SIGTERM; `ready` turns true once EC2 is primed.
    pub async fn run(&self, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
        controller::run(self.ctx.clone(), ready).await
    }
}
