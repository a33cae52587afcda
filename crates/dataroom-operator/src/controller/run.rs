//! Wires the controller together: budget, cache priming, poller, retries of refused objects and
//! of objects backing off when EC2 answers again, and the kube-runtime `Controller`s.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::Notify;

use super::poller::Poller;
use super::{Context, budget, dataroom, ec2instance, error_policy};
use crate::crd::{DataRoom, Ec2Instance};
use crate::seams::Seams;
use crate::ssh::SshSettings;

/// Operator settings that reconciles need (validated by the CLI).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub region: String,
    pub default_image_id: Option<String>,
    pub default_subnet_id: Option<String>,
    pub default_security_group_ids: Vec<String>,
    /// The operator's own security group per VPC, for instances that name none (its
    /// `subnet_id` is filled per launch); `None` leaves those to the VPC's default group.
    pub managed_security_group: Option<crate::cloud::network::ManagedGroup>,
    pub poll_interval: Duration,
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// How to reach instances over SSH (DataRoom configuration pushes and the admin API).
    pub ssh: SshSettings,
    /// How long a managed instance without its Ec2Instance lives before it is terminated; `None`
    /// turns the orphan collector off.
    pub orphan_grace: Option<Duration>,
    /// Test-only redirections (empty in production).
    pub seams: Seams,
    /// How long a failed reconcile waits before it is retried.
    pub backoff: Backoff,
    /// Reconciles of one kind that run at once; `None` is `DEFAULT_CONCURRENT_RECONCILES`.
    pub concurrent_reconciles: Option<u16>,
    /// The operator's own namespace (the chart's release namespace), when it is named: objects
    /// there are never reconciled, as it holds the operator's keys and credentials.
    pub own_namespace: Option<String>,
    /// A Ready room gets a selector-less Service and an EndpointSlice to its instance
    /// (`<name>.<namespace>.svc` in the cluster).
    pub room_services: bool,
}

impl Settings {
    /// Why objects in `namespace` are not reconciled, if they are not.
    pub fn refuses_namespace(&self, namespace: &str) -> Option<String> {
        (self.own_namespace.as_deref() == Some(namespace)).then(|| {
            format!(
                "namespace {namespace} is the operator's own (it holds its keys and credentials) and is never reconciled; create this object in another namespace"
            )
        })
    }
}

/// Retry delays after failed reconciles: `base`, doubling with each consecutive failure up to
/// `max`, each with ±20 % jitter so that objects that failed together do not retry together.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_secs(5), max: Duration::from_secs(300) }
    }
}

/// Runs until Ctrl-C / SIGTERM. `ready` turns true once the first EC2 sweep has primed the view.
pub async fn run(ctx: Arc<Context>, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
    budget::load(&ctx.client, &ctx.gate).await?;
    let triggers = ctx.triggers.lock().unwrap().take().expect("the controller runs once per context");
    let trigger = ctx.reconcile_sender();
    let poller = Poller {
        cloud: ctx.cloud.clone(),
        cache: ctx.cache.clone(),
        gate: ctx.gate.clone(),
        metrics: ctx.metrics.clone(),
        clock: ctx.clock.clone(),
        trigger: trigger.clone(),
        interval: ctx.settings.poll_interval,
        busy_interval: ctx.settings.poll_interval.min(Duration::from_secs(2)),
    };
    // Reconciles must start from a complete view of EC2: prime it before the controller runs.
    let mut delay = Duration::from_secs(1);
    while let Err(e) = poller.sweep().await {
        tracing::warn!(error = %e, "initial EC2 sweep failed; retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
    ready.store(true, Ordering::SeqCst);
    tracing::info!(instances = ctx.cache.len(), "EC2 view primed; starting the controller");

    let recovered = Arc::new(Notify::new());
    let (room_trigger, room_triggers) = mpsc::unbounded();
    let tasks = [
        tokio::spawn(poller.run({
            let recovered = recovered.clone();
            move || recovered.notify_one()
        })),
        tokio::spawn(retry_after_outage(ctx.clone(), recovered, trigger.clone(), room_trigger)),
        tokio::spawn(budget::watch_limits(ctx.client.clone(), ctx.gate.clone())),
        tokio::spawn(budget::persist(ctx.client.clone(), ctx.gate.clone(), ctx.metrics.clone())),
        tokio::spawn(retry_blocked(ctx.clone(), trigger)),
        tokio::spawn(orphans(ctx.clone())),
        tokio::spawn(close_idle_connections(ctx.clone())),
    ];
    let writer = ctx.writer.lock().unwrap().take().expect("the controller runs once per context");
    let version = ctx.instances_version.clone();
    let changes = ctx.changes.clone();
    let objects = watcher(api::<Ec2Instance>(&ctx), watcher::Config::default())
        .default_backoff()
        .modify(forget_managed_fields)
        .reflect(writer)
        // After the store has the change: a reader that saw the old count made what it kept
        // from a store no newer than that.
        .inspect(move |_| {
            version.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            changes.send_modify(|n| *n += 1);
        });
    let instances = Controller::for_stream(objects.applied_objects(), ctx.instances.clone())
        .with_config(limits(&ctx.settings))
        .reconcile_on(triggers)
        .shutdown_on_signal()
        .run(ec2instance::reconcile, error_policy, ctx.clone())
        .for_each(log_result);
    let writer = ctx.rooms_writer.lock().unwrap().take().expect("the controller runs once per context");
    let rooms = watcher(api::<DataRoom>(&ctx), watcher::Config::default())
        .default_backoff()
        .modify(forget_managed_fields)
        .reflect(writer)
        .inspect({
            let changes = ctx.changes.clone();
            move |_| changes.send_modify(|n| *n += 1)
        });
    // A room wakes when its instance changes (state, status, deletion).
    let rooms = Controller::for_stream(rooms.applied_objects(), ctx.rooms.clone())
        .with_config(limits(&ctx.settings))
        .owns(api::<Ec2Instance>(&ctx), watcher::Config::default())
        .reconcile_on(room_triggers)
        .shutdown_on_signal()
        .run(dataroom::reconcile, error_policy, ctx.clone())
        .for_each(log_result);
    futures::join!(instances, rooms);
    tasks.iter().for_each(|t| t.abort());
    Ok(())
}

/// At most this many reconciles of one kind run at once unless configured. A burst of 1,000 rooms
/// otherwise opens 1,000 SSH sessions and 1,000 EC2 calls together: the memory peak stays with the
/// process, and EC2 throttles such bursts anyway.
const DEFAULT_CONCURRENT_RECONCILES: u16 = 32;

fn limits(settings: &Settings) -> kube::runtime::controller::Config {
    let most = settings.concurrent_reconciles.unwrap_or(DEFAULT_CONCURRENT_RECONCILES);
    kube::runtime::controller::Config::default().concurrency(most)
}

/// Server-side apply's bookkeeping is most of an object's metadata and nothing here reads it:
/// the caches hold every watched object, so they go without.
fn forget_managed_fields<K: kube::Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
}

/// The watched kind in the operator's namespace, or in all of them.
fn api<K>(ctx: &Context) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    match &ctx.settings.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

async fn log_result<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "reconcile request ended in error");
    }
}

async fn close_idle_connections(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        ctx.ssh.evict_idle();
    }
}

async fn orphans(ctx: Arc<Context>) {
    if let Some(grace) = ctx.settings.orphan_grace {
        let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
        super::gc::run(ctx.clone(), grace, ctx.settings.poll_interval).await;
    }
}

/// When EC2 answers again after failed sweeps, retries every object that is backing off at once,
/// rather than when backoffs grown long during the outage run out.
async fn retry_after_outage(
    ctx: Arc<Context>,
    recovered: Arc<Notify>,
    instances: mpsc::UnboundedSender<ObjectRef<Ec2Instance>>,
    rooms: mpsc::UnboundedSender<ObjectRef<DataRoom>>,
) {
    loop {
        recovered.notified().await;
        let failing: HashSet<String> = ctx.failures.lock().unwrap().keys().cloned().collect();
        let backing_off = |uid: Option<String>| uid.is_some_and(|uid| failing.contains(&uid));
        for object in ctx.instances.state().iter().filter(|o| backing_off(o.uid())) {
            let _ = instances.unbounded_send(ObjectRef::from_obj(object.as_ref()));
        }
        for room in ctx.rooms.state().iter().filter(|r| backing_off(r.uid())) {
            let _ = rooms.unbounded_send(ObjectRef::from_obj(room.as_ref()));
        }
    }
}

/// Re-queues every object the budget refused as soon as usage or limits change.
async fn retry_blocked(ctx: Arc<Context>, trigger: mpsc::UnboundedSender<ObjectRef<Ec2Instance>>) {
    let mut changed = ctx.gate.subscribe();
    while changed.changed().await.is_ok() {
        let blocked: Vec<_> = ctx.blocked.lock().unwrap().drain().collect();
        for object in blocked {
            let _ = trigger.unbounded_send(object);
        }
    }
}
