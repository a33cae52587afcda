//! What a room's reconcile reads before it decides: its Ec2Instance as the plan needs it, where
//! the instance answers, the content to push and whether it is already there, and how long the
//! room has been idle. Read-only: no write to Kubernetes, EC2 or an instance happens here.

use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::content::{self, Content};
use super::plan::{Child, Facts};
use super::{ChildWrite, Memory, instance_name, key};
use crate::controller::reach;
use crate::controller::{Context, Result};
use crate::crd::{ACTIVITY_ANNOTATION, DEFAULT_INSTANCE_TYPE, DataRoom, DataRoomState, Ec2Instance};
use crate::ssh::Target;

/// The snapshot one reconcile works from.
pub struct Observed {
    pub deleting: bool,
    /// The spec asks for the room to run and it is not being deleted.
    pub want_running: bool,
    /// Why the spec cannot run as written, if it cannot (the room fails without acting).
    pub invalid: Option<String>,
    /// The Ec2Instance the room owns, by name, whether or not it exists.
    pub child_name: String,
    pub object: Option<Arc<Ec2Instance>>,
    pub child: Option<Child>,
    /// Where the running instance answers and how to log in.
    pub live: Option<Target>,
    /// What the room wants on its instance (only while it should run).
    pub content: Option<Content>,
    /// The hash of `content` for the running instance.
    pub hash: Option<String>,
    /// What is on the instance matches `content` (pushed earlier, by this process or recorded).
    pub configured: bool,
    pub idle_timeout_minutes: Option<u32>,
    pub last_activity: Option<Timestamp>,
    pub idle_minutes: f64,
}

impl Observed {
    /// What the pure decision reads.
    pub fn facts<'a>(&self, room: &'a DataRoom) -> Facts<'a> {
        Facts {
            spec: &room.spec,
            deleting: self.deleting,
            child: self.child.clone(),
            configured: self.configured,
            idle_minutes: self.idle_minutes,
            idle_timeout_minutes: self.idle_timeout_minutes,
        }
    }
}

/// What the controller's caches say: the child, where it answers, the activity. Content comes
/// after (`with_content`), so that a missing ConfigMap still leaves the rest in status.
pub fn observe(room: &DataRoom, ctx: &Context, deleting: bool, uid: &str, memory: &Memory) -> Observed {
    let spec = &room.spec;
    let want_running = spec.state == DataRoomState::Running && !deleting;
    let namespace = room.namespace().unwrap_or_default();
    // A room being deleted is still torn down, wherever it is.
    let refused = if deleting { None } else { ctx.settings.refuses_namespace(&namespace) };
    let invalid =
        refused.or_else(|| want_running.then(|| content::check(&room.name_any(), spec).err()).flatten());
    let child_name = instance_name(&room.name_any());
    let object = ctx.instances.get(&ObjectRef::new(&child_name).within(&namespace));
    let child = object.as_deref().map(|o| child(ctx, o, room, uid, memory.child_write.as_ref()));
    let live = object.as_deref().and_then(|o| reach::target(ctx, o).ok());
    let idle_timeout_minutes =
        spec.idle_timeout_minutes.or(Some(ctx.gate.limits().default_idle_timeout_minutes));
    let now = (ctx.clock)();
    let last_activity = latest_activity(room, ctx, object.as_deref(), memory, now);
    let idle_minutes = last_activity.map_or(0.0, |t| now.duration_since(t).as_secs_f64() / 60.0);
    Observed {
        deleting,
        want_running,
        invalid,
        child_name,
        object,
        child,
        live,
        content: None,
        hash: None,
        configured: false,
        idle_timeout_minutes,
        last_activity,
        idle_minutes,
    }
}

impl Observed {
    /// Reads the content a running room wants (ConfigMaps, Secrets) and whether the running
    /// instance already has it.
    pub async fn with_content(
        mut self,
        ctx: &Context,
        room: &DataRoom,
        uid: &str,
        memory: &Memory,
    ) -> Result<Self> {
        if !self.want_running {
            return Ok(self);
        }
        let content = content::resolve(ctx, &room.namespace().unwrap_or_default(), &room.spec).await?;
        self.hash = self.live.as_ref().map(|t| content.hash(&ctx.content_key, uid, &t.instance_id));
        let recorded = room.status.as_ref().and_then(|s| s.config_hash.clone());
        self.configured = self.hash.is_some() && (self.hash == recorded || self.hash == memory.pushed);
        self.content = Some(content);
        Ok(self)
    }
}

/// The room's Ec2Instance as the plan sees it: the cached object, with this controller's own
/// last change to it where the cache does not show that change yet.
fn child(
    ctx: &Context,
    object: &Ec2Instance,
    room: &DataRoom,
    room_uid: &str,
    own_write: Option<&ChildWrite>,
) -> Child {
    let mut child = cached_child(ctx, object, room, room_uid);
    let this = object.uid();
    match own_write {
        Some(ChildWrite::Deleted { uid }) if this.as_ref() == Some(uid) => child.deleting = true,
        Some(ChildWrite::Power { uid, generation, power })
            if this.as_ref() == Some(uid) && object.meta().generation.unwrap_or(0) < *generation =>
        {
            child.power = *power;
        }
        _ => {}
    }
    child
}

fn cached_child(ctx: &Context, object: &Ec2Instance, room: &DataRoom, room_uid: &str) -> Child {
    let status = object.status.clone().unwrap_or_default();
    let live = object.uid().and_then(|uid| ctx.cache.get(&uid));
    let state = live.map(|i| i.state.as_str().to_string()).or(status.state).filter(|s| s != "none");
    let failing = |type_: &str, reasons: &[&str]| {
        let c = status.conditions.iter().find(|c| c.type_ == type_ && c.status == "False")?;
        (reasons.is_empty() || reasons.contains(&c.reason.as_str())).then(|| c.message.clone())
    };
    Child {
        ours: object.owner_references().iter().any(|r| r.uid == room_uid && r.controller == Some(true)),
        deleting: object.meta().deletion_timestamp.is_some(),
        power: object.spec.power_state,
        state,
        blocked: failing("BudgetAllowed", &[]),
        broken: failing("Synced", &["InvalidSpec", "CloudTerminal"]).map(|why| {
            format!("the instance cannot be launched: {why}; fix spec.imageId or spec.instanceType")
        }),
        stale: room.spec.image_id != object.spec.image_id
            || room.spec.instance_type.as_deref().unwrap_or(DEFAULT_INSTANCE_TYPE)
                != object.spec.instance_type,
    }
}

/// The latest of: the instance's creation (a boot is activity), the recorded activity, the
/// activity annotation, admin API calls on the room or its instance, and what the health
/// endpoint reported (each no later than when it was reported). A written time further in the
/// future than clocks drift apart is not believed: an annotation of the year 2100 would
/// otherwise put off the idle stop forever.
fn latest_activity(
    room: &DataRoom,
    ctx: &Context,
    object: Option<&Ec2Instance>,
    memory: &Memory,
    now: Timestamp,
) -> Option<Timestamp> {
    let believable = |t: &Timestamp| *t <= now + CLOCK_SKEW;
    let recorded = room.status.as_ref().and_then(|s| s.last_activity_time.as_deref()?.parse().ok());
    let annotated = room.annotations().get(ACTIVITY_ANNOTATION).and_then(|t| t.parse().ok());
    let created = object.and_then(|o| o.meta().creation_timestamp.as_ref()).map(|t| t.0);
    let written = [recorded, annotated, created].into_iter().flatten().filter(believable);
    written
        .chain(ctx.activity(&key(room)))
        .chain(memory.reported_activity)
        .max()
        .map(|latest| latest.min(now))
}

/// How far ahead of the operator's clock a written activity time may be and still count (as now).
const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(300);
