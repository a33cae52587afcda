//! What a room's reconcile reads before it decides: its Ec2Instance as the plan needs it, where
//! the instance answers, the content to push and whether it is already there, and how long the
//! room has been idle. Read-only: no write to Kubernetes, EC2 or an instance happens here.

use std::sync::Arc;

use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::content::{self, Content};
use super::plan::{Child, Facts, serving};
use super::{ChildWrite, Memory, RETIRE_ANNOTATION, instance_names, key};
use crate::controller::reach;
use crate::controller::{Context, Result};
use crate::crd::{ACTIVITY_ANNOTATION, DEFAULT_INSTANCE_TYPE, DataRoom, DataRoomState, Ec2Instance};
use crate::ssh::Target;

/// One of the room's Ec2Instances, as the cache shows it.
pub struct Member {
    pub object: Arc<Ec2Instance>,
    pub child: Child,
    /// Where it answers and how to log in, once it runs.
    pub live: Option<Target>,
    /// The hash of the room's content for this instance.
    pub hash: Option<String>,
}

/// The snapshot one reconcile works from.
pub struct Observed {
    pub deleting: bool,
    /// The spec asks for the room to run and it is not being deleted.
    pub want_running: bool,
    /// Why the spec cannot run as written, if it cannot (the room fails without acting).
    pub invalid: Option<String>,
    /// The names of the room's two places for an Ec2Instance.
    pub slots: [String; 2],
    /// The Ec2Instances in those places, oldest first.
    pub members: Vec<Member>,
    /// What the room wants on its instance (only while it should run).
    pub content: Option<Content>,
    pub idle_timeout_minutes: Option<u32>,
    pub last_activity: Option<Timestamp>,
    pub idle_minutes: f64,
    pub now: Timestamp,
}

impl Observed {
    /// What the pure decision reads.
    pub fn facts<'a>(&'a self, room: &'a DataRoom) -> Facts<'a> {
        Facts {
            spec: &room.spec,
            deleting: self.deleting,
            slots: [&self.slots[0], &self.slots[1]],
            children: self.members.iter().map(|m| m.child.clone()).collect(),
            idle_minutes: self.idle_minutes,
            idle_timeout_minutes: self.idle_timeout_minutes,
            now: self.now,
        }
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members.iter().find(|m| m.child.name == name).expect("a step names an observed instance")
    }

    /// The instance status speaks of: the one serving, else the newest one not on its way out
    /// (being booted), else any.
    pub fn reported(&self) -> Option<&Member> {
        let children: Vec<Child> = self.members.iter().map(|m| m.child.clone()).collect();
        let serving = serving(&children).map(|c| c.name.clone());
        let by_name = |name: &String| self.members.iter().find(|m| m.child.name == *name);
        let booting = || self.members.iter().rev().find(|m| !m.child.retiring());
        serving.as_ref().and_then(by_name).or_else(booting).or(self.members.last())
    }
}

/// What the controller's caches say: the children, where they answer, the activity. Content
/// comes after (`with_content`), so that a missing ConfigMap still leaves the rest in status.
pub fn observe(room: &DataRoom, ctx: &Context, deleting: bool, uid: &str, memory: &Memory) -> Observed {
    let spec = &room.spec;
    let want_running = spec.state == DataRoomState::Running && !deleting;
    let namespace = room.namespace().unwrap_or_default();
    // A room being deleted is still torn down, wherever it is.
    let refused = if deleting { None } else { ctx.settings.refuses_namespace(&namespace) };
    let invalid =
        refused.or_else(|| want_running.then(|| content::check(&room.name_any(), spec).err()).flatten());
    let slots = instance_names(&room.name_any());
    let mut objects: Vec<Arc<Ec2Instance>> =
        slots.iter().filter_map(|name| ctx.instances.get(&ObjectRef::new(name).within(&namespace))).collect();
    objects.sort_by_key(|o| o.meta().creation_timestamp.as_ref().map(|t| t.0));
    let members: Vec<Member> = objects
        .into_iter()
        .map(|object| Member {
            child: child(ctx, &object, room, uid, memory),
            live: reach::target(ctx, &object).ok(),
            hash: None,
            object,
        })
        .collect();
    let idle_timeout_minutes =
        spec.idle_timeout_minutes.or(Some(ctx.gate.limits().default_idle_timeout_minutes));
    let now = (ctx.clock)();
    let last_activity = latest_activity(room, ctx, &members, memory, now);
    let idle_minutes = last_activity.map_or(0.0, |t| now.duration_since(t).as_secs_f64() / 60.0);
    Observed {
        deleting,
        want_running,
        invalid,
        slots,
        members,
        content: None,
        idle_timeout_minutes,
        last_activity,
        idle_minutes,
        now,
    }
}

impl Observed {
    /// Reads the content a running room wants (ConfigMaps, Secrets) and which of its running
    /// instances already have it.
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
        let recorded = room.status.as_ref().and_then(|s| s.config_hash.clone());
        for member in &mut self.members {
            member.hash = member.live.as_ref().map(|t| content.hash(&ctx.content_key, uid, &t.instance_id));
            member.child.configured = member
                .hash
                .as_ref()
                .is_some_and(|h| Some(h) == recorded.as_ref() || memory.pushed.contains(h));
        }
        self.content = Some(content);
        Ok(self)
    }
}

/// An Ec2Instance as the plan sees it: the cached object, with this controller's own last
/// changes to it where the cache does not show them yet.
fn child(ctx: &Context, object: &Ec2Instance, room: &DataRoom, room_uid: &str, memory: &Memory) -> Child {
    let mut child = cached_child(ctx, object, room, room_uid, memory);
    let Some(this) = object.uid() else { return child };
    for write in memory.child_writes.iter().filter(|w| w.uid() == this) {
        match write {
            ChildWrite::Deleted { .. } => child.deleting = true,
            ChildWrite::Power { generation, power, .. }
                if object.meta().generation.unwrap_or(0) < *generation =>
            {
                child.power = *power;
            }
            ChildWrite::Retired { after, .. } => child.retire_after = child.retire_after.or(Some(*after)),
            ChildWrite::Power { .. } => {}
        }
    }
    child
}

fn cached_child(
    ctx: &Context,
    object: &Ec2Instance,
    room: &DataRoom,
    room_uid: &str,
    memory: &Memory,
) -> Child {
    let status = object.status.clone().unwrap_or_default();
    let live = object.uid().and_then(|uid| ctx.cache.get(&uid));
    let state = live.as_ref().map(|i| i.state.as_str().to_string()).or(status.state).filter(|s| s != "none");
    let instance_id = live.map(|i| i.id).or(status.instance_id);
    let failing = |type_: &str, reasons: &[&str]| {
        let c = status.conditions.iter().find(|c| c.type_ == type_ && c.status == "False")?;
        (reasons.is_empty() || reasons.contains(&c.reason.as_str())).then(|| c.message.clone())
    };
    let recorded = room.status.as_ref().filter(|s| s.phase.as_deref() == Some("Ready"));
    let answered = instance_id.as_ref().is_some_and(|id| {
        memory.answered.contains(id) || recorded.and_then(|s| s.instance_id.as_ref()) == Some(id)
    });
    let retire_after = object.annotations().get(RETIRE_ANNOTATION).and_then(|t| t.parse().ok());
    Child {
        name: object.name_any(),
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
        configured: false,
        answered,
        retire_after,
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
    members: &[Member],
    memory: &Memory,
    now: Timestamp,
) -> Option<Timestamp> {
    let believable = |t: &Timestamp| *t <= now + CLOCK_SKEW;
    let recorded = room.status.as_ref().and_then(|s| s.last_activity_time.as_deref()?.parse().ok());
    let annotated = room.annotations().get(ACTIVITY_ANNOTATION).and_then(|t| t.parse().ok());
    let created = members.iter().filter_map(|m| m.object.meta().creation_timestamp.as_ref()).map(|t| t.0);
    let written = [recorded, annotated].into_iter().flatten().chain(created).filter(believable);
    written
        .chain(ctx.activity(&key(room)))
        .chain(memory.reported_activity)
        .max()
        .map(|latest| latest.min(now))
}

/// How far ahead of the operator's clock a written activity time may be and still count (as now).
const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(300);
