//! The controllers: shared context, error type and policy, and `run`, which wires them together.

mod budget;
mod cache;
pub mod checkpoint;
pub mod dataroom;
pub mod ec2instance;
pub mod gc;
pub mod operation;
pub mod poller;
pub mod reach;
mod run;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use rand::Rng;
use thiserror::Error;

pub use cache::InstanceCache;
pub use run::{Backoff, Settings, run};

use crate::audit::{AuditError, AuditLog, Entry};
use crate::budget::Gate;
use crate::clock::Clock;
use crate::cloud::{Cloud, CloudError, ErrorKind, Imperative};
use crate::crd::{DataRoom, Ec2Instance};
use crate::metrics::Metrics;
use crate::ssh::{self, SshError, TransferError};

/// Who the controller is in audit records.
pub const ACTOR: &str = "controller";

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Cloud(#[from] CloudError),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Audit(#[from] AuditError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the object has no {0}")]
    MissingField(&'static str),
    #[error("{0}")]
    Ssh(#[from] SshError),
    #[error("{0}")]
    Transfer(#[from] TransferError),
    /// A DataRoom's configuration source is missing or unreadable; the message says what to do.
    #[error("{0}")]
    ConfigSource(String),
    /// A DataRoom's configuration push did not happen; the message says why.
    #[error(transparent)]
    Configure(#[from] dataroom::ConfigureError),
}

impl Error {
    /// Low-cardinality label for the failures metric and the `Synced` condition's reason.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Cloud(e) if e.kind == ErrorKind::Terminal => "CloudTerminal",
            Self::Cloud(_) => "CloudRetryable",
            Self::Kube(_) => "KubernetesApi",
            Self::Audit(_) => "AuditWrite",
            Self::Finalizer(_) => "Finalizer",
            Self::MissingField(_) => "InvalidObject",
            Self::Ssh(_) => "Ssh",
            Self::Transfer(_) => "Transfer",
            Self::ConfigSource(_) => "ConfigSource",
            Self::Configure(e) => e.label(),
        }
    }

    /// Retrying will not help until someone changes something.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Cloud(e) if e.kind == ErrorKind::Terminal)
            || matches!(self, Self::MissingField(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the controller shares with the admin API: the read-only views of objects and EC2, the
/// audit log, the SSH pool, the budget gate and the activity marks, with the cloud's imperative
/// port only. No lifecycle call can be named through it: the admin API holds this, never a
/// `Context`.
pub struct Shared {
    pub client: kube::Client,
    /// Images, key pairs, secrets, objects, console output: never launch, power or terminate.
    pub imperative: Arc<dyn Imperative>,
    pub gate: Arc<Gate>,
    pub audit: AuditLog,
    pub metrics: Arc<Metrics>,
    pub cache: Arc<InstanceCache>,
    pub clock: Clock,
    /// Every watched Ec2Instance, as the controller sees it (the admin API reads from here).
    pub instances: Store<Ec2Instance>,
    /// Counts the changes applied to `instances` (for those who keep what they made of it).
    pub instances_version: Arc<std::sync::atomic::AtomicU64>,
    /// Every watched DataRoom (the fleet routes read from here).
    pub rooms: Store<DataRoom>,
    /// Counts the changes applied to `instances` and `rooms`, for those who show them live (the
    /// console's event stream waits on it rather than asking the API server).
    pub changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Webhook notifications of chosen audit actions, when configured (set once, at start).
    pub webhooks: std::sync::OnceLock<crate::notify::Notifier>,
    /// SSH connections to instances, shared by the DataRoom controller and the admin API.
    pub ssh: Arc<ssh::Pool>,
    /// Latest admin API activity per DataRoom (`namespace/name`), for the idle policy.
    activity: Mutex<HashMap<String, jiff::Timestamp>>,
    /// Host keys trusted on first use, by instance ID, until the Ec2Instance's status writer (their
    /// one writer) has persisted them.
    host_keys: Mutex<HashMap<String, String>>,
    /// Asks the Ec2Instance controller to reconcile an object (and so to write its status).
    reconcile: mpsc::UnboundedSender<ObjectRef<Ec2Instance>>,
}

impl Shared {
    /// The host key trusted on first use for `instance_id`, if any.
    pub fn trusted_host_key(&self, instance_id: &str) -> Option<String> {
        self.host_keys.lock().unwrap().get(instance_id).cloned()
    }

    /// Trusts `host_key` for `object`'s instance and asks its status writer to persist the pin.
    pub fn trust_host_key(&self, object: &Ec2Instance, instance_id: &str, host_key: &str) {
        self.host_keys.lock().unwrap().insert(instance_id.to_string(), host_key.to_string());
        self.request_reconcile(object);
    }

    /// Asks the Ec2Instance controller to reconcile `object` soon.
    pub fn request_reconcile(&self, object: &Ec2Instance) {
        let _ = self.reconcile.unbounded_send(ObjectRef::from_obj(object));
    }

    /// Appends one audit record (on disk before this returns), counting a failure in the metrics.
    pub async fn append(&self, entry: Entry) -> Result<(), AuditError> {
        let (action, outcome) = (entry.action.clone(), entry.outcome);
        match self.audit.append(entry).await {
            Ok(record) => {
                self.metrics.audit_record(&action, outcome.as_str());
                if let Some(webhooks) = self.webhooks.get() {
                    webhooks.notify(&record);
                }
                Ok(())
            }
            Err(e) => {
                self.metrics.audit_write_failures.inc();
                Err(e)
            }
        }
    }

    /// Notes admin activity on the DataRoom `namespace/name` now (the idle policy reads it).
    pub fn touch(&self, room: &str) {
        self.activity.lock().unwrap().insert(room.to_string(), (self.clock)());
    }

    /// The latest admin activity noted on the DataRoom `namespace/name`.
    pub fn activity(&self, room: &str) -> Option<jiff::Timestamp> {
        self.activity.lock().unwrap().get(room).copied()
    }
}

/// Everything a reconcile needs: the shared parts (through `Deref`) and what only the controller
/// holds, the whole cloud with its lifecycle port first among them.
pub struct Context {
    shared: Arc<Shared>,
    pub cloud: Arc<dyn Cloud>,
    pub recorder: Recorder,
    pub settings: Settings,
    /// Objects refused by the budget, retried as soon as usage changes.
    pub blocked: Mutex<HashSet<ObjectRef<Ec2Instance>>>,
    /// Consecutive failures per object UID, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Fill `instances` and `rooms`; taken by `run`.
    writer: Mutex<Option<Writer<Ec2Instance>>>,
    /// Objects someone asked to reconcile (`Shared::request_reconcile`, the poller); taken by `run`.
    triggers: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<Ec2Instance>>>>,
    rooms_writer: Mutex<Option<Writer<DataRoom>>>,
    /// Per DataRoom UID: boot step times and health check history (see `dataroom::Memory`).
    pub room_memory: Mutex<HashMap<String, dataroom::Memory>>,
    /// Key pairs this process made or found whole (in EC2, with their secret): a launch retried
    /// after a capacity error or an outage does not look them up again.
    pub key_pairs: Mutex<HashSet<String>>,
    /// The operator's security group per subnet (`None`: the default VPC), as last ensured (its
    /// first ensure in this process is audited).
    pub managed_groups: Mutex<HashMap<Option<String>, String>>,
    /// The key of rooms' content hashes (`status.configHash`).
    pub content_key: dataroom::content::ContentKey,
    /// The zone rooms are published in, if the operator publishes them.
    pub dns: Option<Arc<dyn crate::dns::Publisher>>,
}

impl std::ops::Deref for Context {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Context {
    /// Only the assembly (`assembly::Assembly`) wires a context.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        client: kube::Client,
        cloud: Arc<dyn Cloud>,
        gate: Arc<Gate>,
        audit: AuditLog,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        settings: Settings,
        clock: Clock,
        content_key: dataroom::content::ContentKey,
    ) -> Self {
        let (instances, writer) = reflector::store();
        let (rooms, rooms_writer) = reflector::store();
        let imperative: Arc<dyn Imperative> = cloud.clone();
        let ssh = Arc::new(ssh::Pool::new(imperative.clone(), settings.ssh.clone(), &settings.seams));
        let (reconcile, triggers) = mpsc::unbounded();
        let shared = Shared {
            client,
            imperative,
            gate,
            audit,
            metrics,
            cache: Arc::default(),
            clock,
            instances,
            instances_version: Arc::default(),
            rooms,
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            webhooks: std::sync::OnceLock::new(),
            ssh,
            activity: Mutex::default(),
            host_keys: Mutex::default(),
            reconcile,
        };
        Self {
            shared: Arc::new(shared),
            cloud,
            recorder,
            settings,
            blocked: Mutex::default(),
            failures: Mutex::default(),
            writer: Mutex::new(Some(writer)),
            triggers: Mutex::new(Some(triggers)),
            rooms_writer: Mutex::new(Some(rooms_writer)),
            room_memory: Mutex::default(),
            key_pairs: Mutex::default(),
            managed_groups: Mutex::default(),
            content_key,
            dns: None,
        }
    }

    fn reconcile_sender(&self) -> mpsc::UnboundedSender<ObjectRef<Ec2Instance>> {
        self.shared.reconcile.clone()
    }

    /// The parts the admin API gets.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Writes the audit record (on disk before this returns) and mirrors it as an Event on `obj`.
    pub async fn record<K>(&self, obj: &K, entry: Entry, event: Option<(EventType, &str)>) -> Result<()>
    where
        K: Resource<DynamicType = ()>,
    {
        let note = entry.detail.clone();
        let action = entry.action.clone();
        self.append(entry).await?;
        if let Some((type_, reason)) = event {
            let event = Event { type_, reason: reason.to_string(), note, action, secondary: None };
            if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
                tracing::warn!(error = %e, reason, "could not publish event");
            }
        }
        Ok(())
    }

    fn succeeded(&self, uid: &str) {
        self.failures.lock().unwrap().remove(uid);
    }

    /// Exponential backoff with jitter per object (see `Backoff`); terminal errors wait twice the
    /// longest retry, since retrying will not help until someone changes something.
    fn backoff(&self, uid: &str, terminal: bool) -> Duration {
        let Backoff { base, max } = self.settings.backoff;
        if terminal {
            return max * 2;
        }
        let mut failures = self.failures.lock().unwrap();
        let n = failures.entry(uid.to_string()).or_default();
        *n = n.saturating_add(1);
        let delay = base.saturating_mul(1 << (*n - 1).min(20)).min(max);
        delay.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
    }
}

/// The error policy shared by the controllers: count, log, and back off.
pub fn error_policy<K>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let kind = K::kind(&()).into_owned();
    ctx.metrics.reconcile_failed(&kind, error.label());
    let name = obj.meta().name.clone().unwrap_or_default();
    tracing::warn!(%kind, %name, error = %error, kind_of_error = error.label(), "reconcile failed");
    let uid = obj.meta().uid.clone().unwrap_or_default();
    Action::requeue(ctx.backoff(&uid, error.is_terminal()))
}
