//! The DataRoom reconciler: while a room should run it owns one Ec2Instance (named `dr-NAME`, or
//! `dr-NAME.b`, with a controller ownerReference); it boots it, pushes the configuration and files
//! over SFTP, waits for the health endpoint, and stops and terminates it when the room is stopped,
//! idle or deleted. A new instance type or image is rolled out by booting a second instance in the
//! other name and moving the room to it once it is healthy (`plan::two`).
//! Shape: observe (read-only) → plan (pure) → apply (one step) → status.

mod apply;
mod configure;
pub mod content;
mod dns;
mod health;
mod observe;
pub mod plan;
mod service;
mod status;
mod upgrade;

use std::sync::Arc;
use std::time::Instant;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, Result};
use crate::crd::{DATAROOM_FINALIZER, DataRoom};
use apply::pushed_message;
pub use configure::ConfigureError;
use plan::Phase;

/// How often a room in transition is looked at (changes of its instance also wake it).
const WAIT_REQUEUE: std::time::Duration = std::time::Duration::from_secs(2);

/// The names of the two Ec2Instances a room may own, one of them only during an upgrade. A
/// room's name is a DNS label, so no room's first name is another's second.
pub fn instance_names(room: &str) -> [String; 2] {
    [format!("dr-{room}"), format!("dr-{room}.b")]
}

/// On an Ec2Instance an upgrade has moved its room off: when it stops answering for the room
/// (RFC 3339). Kept on the object, so that a restarted operator still lets it drain.
pub const RETIRE_ANNOTATION: &str = "dataroom.dev/retire-after";

/// How many pushes, answers and child writes a room remembers: two instances' worth, and
/// some to spare for objects already gone.
const MEMORY_PER_ROOM: usize = 4;

/// `namespace/name`: how budgets and activity name a room.
pub fn key(room: &DataRoom) -> String {
    crate::crd::qualified_name(room)
}

/// What the controller remembers of a room between reconciles (lost on restart, which costs
/// only precision: boot step times, and health failures counted afresh).
#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub boot: Option<Boot>,
    /// Health checks of the serving instance failed in a row.
    pub failures: u32,
    /// The instances seen healthy in this boot, by instance ID: they serve the room.
    pub answered: Vec<String>,
    /// The latest `lastActivity` the room's health endpoint reported.
    pub reported_activity: Option<jiff::Timestamp>,
    /// The hashes of the last pushes (one per instance), and the phase and reason last written:
    /// the room object a reconcile gets may predate this controller's own status write.
    pub pushed: Vec<String>,
    pub written: Option<(String, String)>,
    /// The last changes this controller made to the room's Ec2Instances (one per object). The
    /// instance cache may not show them yet, and a plan made from the older object would repeat
    /// (and record) the step.
    pub child_writes: Vec<ChildWrite>,
    /// When the running upgrade booted its new instance.
    pub upgrade_started: Option<Instant>,
    /// The room's generation after this controller's own change to its spec (the idle stop):
    /// a room object older than that is not acted on.
    pub own_generation: Option<i64>,
    /// What this process last made the zone hold for the room (`None` after a start).
    pub dns: Option<crate::dns::Record>,
    /// The address the room's Service last pointed at (`Some(None)`: removed), as this process
    /// made it; `None` after a start.
    pub service_published: Option<Option<std::net::Ipv4Addr>>,
}

/// A change this controller made to a room's Ec2Instance, by the instance object's UID.
#[derive(Clone, Debug, PartialEq)]
pub enum ChildWrite {
    /// `spec.powerState` set; `generation` is the object's after the write.
    Power { uid: String, generation: i64, power: crate::crd::PowerState },
    /// Deleted: that object is on its way out, whatever the cache says.
    Deleted { uid: String },
    /// Moved off by an upgrade: it answers until `after`.
    Retired { uid: String, after: jiff::Timestamp },
}

impl ChildWrite {
    pub fn uid(&self) -> &str {
        match self {
            Self::Power { uid, .. } | Self::Deleted { uid } | Self::Retired { uid, .. } => uid,
        }
    }
}

/// Seconds from the start of a boot to the end of each step.
#[derive(Clone, Debug)]
pub struct Boot {
    pub started: Instant,
    pub running: Option<f64>,
    pub configured: Option<f64>,
    pub ready: Option<f64>,
}

impl Boot {
    fn new() -> Self {
        Boot { started: Instant::now(), running: None, configured: None, ready: None }
    }
}

impl Memory {
    /// Remembers a change made to a child, in place of any earlier one to the same object (a
    /// retirement is kept: it is never undone).
    fn wrote(&mut self, write: ChildWrite) {
        let replaced = |w: &ChildWrite| w.uid() == write.uid() && !matches!(w, ChildWrite::Retired { .. });
        self.child_writes.retain(|w| !replaced(w));
        self.child_writes.push(write);
        let excess = self.child_writes.len().saturating_sub(MEMORY_PER_ROOM);
        self.child_writes.drain(..excess);
    }

    /// Remembers a push of content with this hash.
    fn pushed(&mut self, hash: String) {
        self.pushed.retain(|h| *h != hash);
        self.pushed.push(hash);
        let excess = self.pushed.len().saturating_sub(MEMORY_PER_ROOM);
        self.pushed.drain(..excess);
    }

    /// Remembers that an instance answered its health check.
    fn answered(&mut self, instance_id: &str) {
        if !self.answered.iter().any(|a| a == instance_id) {
            self.answered.push(instance_id.to_string());
        }
        let excess = self.answered.len().saturating_sub(MEMORY_PER_ROOM);
        self.answered.drain(..excess);
    }

    /// Notes the end of a boot step (the first time only).
    fn mark(&mut self, step: impl FnOnce(&mut Boot) -> &mut Option<f64>) {
        if let Some(boot) = self.boot.as_mut() {
            let elapsed = boot.started.elapsed().as_secs_f64();
            step(boot).get_or_insert(elapsed);
        }
    }
}

pub async fn reconcile(room: Arc<DataRoom>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started("DataRoom");
    let namespace = room.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = room.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let api: Api<DataRoom> = Api::namespaced(ctx.client.clone(), &namespace);
    let finalizers = room.finalizers();
    let held = finalizers.iter().position(|f| f == DATAROOM_FINALIZER);
    let deleting = room.meta().deletion_timestamp.is_some();
    match (held, deleting) {
        (None, true) => return Ok(Action::await_change()),
        (None, false) => {
            // Added before anything is created, so that no instance can outlive its room.
            let add = match finalizers.is_empty() {
                true => json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                               {"op": "add", "path": "/metadata/finalizers", "value": [DATAROOM_FINALIZER]}]),
                false => {
                    json!([{"op": "add", "path": "/metadata/finalizers/-", "value": DATAROOM_FINALIZER}])
                }
            };
            patch(&api, &room, add).await?;
            return Ok(Action::await_change());
        }
        (Some(_), _) => {}
    }
    if predates_own_write(&room, &ctx, &uid) {
        // Our own newer version of the room is on its way through the watch, which wakes it again.
        return Ok(Action::requeue(WAIT_REQUEUE));
    }
    let (action, phase) = apply::converge(&room, &ctx, deleting).await?;
    ctx.succeeded(&uid);
    if let (true, Phase::Stopped, Some(at)) = (deleting, phase, held) {
        let remove = json!([{"op": "test", "path": format!("/metadata/finalizers/{at}"), "value": DATAROOM_FINALIZER},
                            {"op": "remove", "path": format!("/metadata/finalizers/{at}")}]);
        patch(&api, &room, remove).await?;
        ctx.room_memory.lock().unwrap().remove(&uid);
    }
    Ok(action)
}

/// The room object is older than the one this controller's own spec change produced.
fn predates_own_write(room: &DataRoom, ctx: &Context, uid: &str) -> bool {
    let memory = ctx.room_memory.lock().unwrap();
    let own = memory.get(uid).and_then(|m| m.own_generation);
    own.is_some_and(|own| room.meta().generation.unwrap_or(0) < own)
}

async fn patch(api: &Api<DataRoom>, room: &DataRoom, ops: serde_json::Value) -> Result<()> {
    let ops: json_patch::Patch = serde_json::from_value(ops).expect("a valid JSON patch");
    api.patch(&room.name_any(), &PatchParams::default(), &Patch::<()>::Json(ops)).await?;
    Ok(())
}
