//! Side effects of a room's plan: the Ec2Instance (create, power, delete), the SFTP push, the
//! health check and the idle stop, each audited and evented.

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::content::Content;
use super::observe::{Observed, observe};
use super::plan::{Phase, Step, plan, serving};
use super::status::{self, Report};
use super::{Boot, ChildWrite, Memory, WAIT_REQUEUE, configure, health, key};
use crate::audit::{Entry, Outcome};
use crate::controller::{ACTOR, Context, Error, Result};
use crate::crd::{DataRoom, Ec2Instance, PowerState, audit_target};

/// Converges the room by one step and writes its status once; the phase it ended in comes back
/// with the action.
pub async fn converge(room: &DataRoom, ctx: &Context, deleting: bool) -> Result<(Action, Phase)> {
    let uid = room.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let mut memory = ctx.room_memory.lock().unwrap().get(&uid).cloned().unwrap_or_default();
    let mut report = Report::new(room);
    let result = reconcile_once(room, ctx, deleting, &uid, &mut memory, &mut report).await;
    if let Err(e) = &result {
        report.set(Phase::Failed, e.to_string());
    }
    super::dns::settle(room, ctx, deleting, &mut memory, &mut report).await?;
    super::service::settle(room, ctx, deleting, &mut memory, &report).await?;
    let recorded = transition(room, ctx, &report, &memory).await;
    // Kept even if the status write fails: what was pushed and recorded stays pushed and recorded.
    memory.written = Some((report.phase.to_string(), report.reason.clone())).filter(|_| recorded.is_ok());
    ctx.room_memory.lock().unwrap().insert(uid, memory);
    recorded?;
    status::write(room, ctx, &report).await?;
    result.map(|action| (action, report.phase))
}

/// observe → plan → one step.
async fn reconcile_once(
    room: &DataRoom,
    ctx: &Context,
    deleting: bool,
    uid: &str,
    memory: &mut Memory,
    report: &mut Report,
) -> Result<Action> {
    let observed = observe(room, ctx, deleting, uid, memory);
    if let Some(why) = &observed.invalid {
        report.set(Phase::Failed, why.clone());
        return Ok(Action::await_change());
    }
    report.saw(&observed, room.spec.health_check.port);
    let observed = observed.with_content(ctx, room, uid, memory).await?;
    if let Some(member) = observed.reported().filter(|m| m.child.configured) {
        report.config_hash = member.hash.clone();
        report.configured = (true, pushed_message(observed.content.as_ref(), report.instance_id.as_deref()));
    }
    let facts = observed.facts(room);
    let step = plan(&facts);
    let serving = serving(&facts.children).map(|c| c.name.clone());
    let target = step.target().map(str::to_string);
    let action = apply(room, ctx, &observed, step, memory, report).await?;
    // While one instance serves the room and another is worked on, the room stays Ready.
    if let Some(serving) = serving.filter(|s| target.as_ref().is_some_and(|t| t != s)) {
        let reason = format!("{}; {serving} serves the room meanwhile", report.reason);
        report.set(Phase::Ready, reason);
    }
    Ok(action)
}

/// Performs one step of the plan.
async fn apply(
    room: &DataRoom,
    ctx: &Context,
    observed: &Observed,
    step: Step,
    memory: &mut Memory,
    report: &mut Report,
) -> Result<Action> {
    match step {
        Step::Create(name) => {
            let replacing = observed.members.iter().find(|m| !m.child.retiring());
            create(room, ctx, &name, replacing.map(|m| &*m.object)).await?;
            match replacing {
                Some(_) => memory.upgrade_started = Some(std::time::Instant::now()),
                None => booted(ctx, room, memory, report),
            }
            report.set(Phase::Provisioning, format!("launching the instance {name}"));
            Ok(Action::requeue(WAIT_REQUEUE))
        }
        Step::PowerOn(name) => {
            power(room, ctx, &name, PowerState::Running, memory).await?;
            booted(ctx, room, memory, report);
            report.set(Phase::Provisioning, "starting the instance again");
            Ok(Action::requeue(WAIT_REQUEUE))
        }
        Step::Wait(phase, why) => {
            report.set(phase, why);
            Ok(match phase {
                Phase::Failed | Phase::BudgetBlocked => Action::await_change(),
                _ => Action::requeue(WAIT_REQUEUE),
            })
        }
        Step::Configure(name) => {
            let candidate = serving(&observed.facts(room).children).is_some_and(|s| s.name != name);
            configure::configure(room, ctx, observed, observed.member(&name), candidate, memory, report).await
        }
        Step::CheckHealth(name) => {
            let target = observed.member(&name).live.as_ref().expect("a running instance");
            health::check(room, ctx, &target.ip, &target.instance_id, memory, report).await;
            Ok(Action::requeue(health::period(room).min(until_retired(observed))))
        }
        Step::CheckCandidate(name) => {
            let target = observed.member(&name).live.as_ref().expect("a running instance");
            let answered =
                health::check_candidate(room, ctx, &target.ip, &target.instance_id, memory, report).await;
            // Once it answers, the next reconcile moves the room to it.
            Ok(Action::requeue(if answered { std::time::Duration::ZERO } else { health::period(room) }))
        }
        Step::Retire(name) => {
            let after = super::upgrade::retire(room, ctx, observed, &name, memory).await?;
            report.set(Phase::Ready, format!("upgraded: {name} keeps answering until {after}, then stops"));
            Ok(Action::requeue(until_retired(observed).min(health::period(room))))
        }
        Step::IdleStop => {
            let timeout = observed.idle_timeout_minutes.unwrap_or_default();
            let why = idle_stop(room, ctx, observed.idle_minutes, timeout, memory).await?;
            // The spec change wakes the room again, to stop it.
            report.set(Phase::Stopping, why);
            Ok(Action::await_change())
        }
        Step::PowerOff(name) => {
            power(room, ctx, &name, PowerState::Stopped, memory).await?;
            report.set(replacing(observed), format!("stopping the instance {name} before it is terminated"));
            Ok(Action::requeue(WAIT_REQUEUE))
        }
        Step::Delete(name) => {
            let uid = observed.member(&name).object.uid();
            terminate(room, ctx, &name).await?;
            if let Some(uid) = uid {
                memory.wrote(ChildWrite::Deleted { uid });
            }
            report.set(replacing(observed), format!("terminating the instance {name}"));
            Ok(Action::requeue(WAIT_REQUEUE))
        }
        Step::Stopped => {
            // A stopped room starts afresh, except for what its status last said and its own
            // last spec change (a stale copy of the room must still not act).
            *memory = Memory {
                written: memory.written.take(),
                own_generation: memory.own_generation,
                ..Memory::default()
            };
            report.set(Phase::Stopped, "the room is stopped; set spec.state to Running to start it");
            Ok(Action::await_change())
        }
        Step::Conflict(name) => {
            let why = format!(
                "an Ec2Instance named {name} already exists and does not belong to this room; delete or rename it"
            );
            report.set(Phase::Failed, why);
            Ok(Action::await_change())
        }
    }
}

/// The phase while an instance is stopped or deleted: a room that should run is getting a new one.
fn replacing(observed: &Observed) -> Phase {
    if observed.want_running { Phase::Provisioning } else { Phase::Stopping }
}

/// How long until the next instance an upgrade moved off stops answering (a long time if none).
fn until_retired(observed: &Observed) -> std::time::Duration {
    let next =
        observed.members.iter().filter_map(|m| m.child.retire_after).filter(|t| *t > observed.now).min();
    let left = next.map(|t| t.duration_since(observed.now).unsigned_abs());
    left.unwrap_or(std::time::Duration::MAX)
}

/// A boot starts: its clock, and a fresh start for the idle timeout.
fn booted(ctx: &Context, room: &DataRoom, memory: &mut Memory, report: &mut Report) {
    memory.boot = Some(Boot::new());
    report.boot_seconds = None;
    let now = (ctx.clock)();
    ctx.touch(&key(room));
    report.last_activity = Some(now);
}

pub(super) fn pushed_message(content: Option<&Content>, instance_id: Option<&str>) -> String {
    let (files, bytes) = content.map_or((0, 0), |c| (c.payloads.len(), c.bytes()));
    format!("{files} file(s), {bytes} bytes, pushed to {}", instance_id.unwrap_or("the instance"))
}

/// Creates the Ec2Instance `name`; `replacing` is the instance it will take over from in an upgrade.
async fn create(room: &DataRoom, ctx: &Context, name: &str, replacing: Option<&Ec2Instance>) -> Result<()> {
    let namespace = room.namespace().unwrap_or_default();
    let owner = room.controller_owner_ref(&()).ok_or(Error::MissingField("metadata.uid"))?;
    let mut spec = json!({ "powerState": "Running", "dataRoom": room.name_any() });
    if let Some(t) = &room.spec.instance_type {
        spec["instanceType"] = json!(t);
    }
    if let Some(image) = &room.spec.image_id {
        spec["imageId"] = json!(image);
    }
    let object: Ec2Instance = serde_json::from_value(json!({
        "apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Instance",
        "metadata": { "name": name, "namespace": namespace, "ownerReferences": [owner],
                      "labels": { "dataroom.dev/data-room": room.name_any() } },
        "spec": spec,
    }))
    .expect("a valid Ec2Instance");
    let api: Api<Ec2Instance> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PostParams { field_manager: Some(crate::crd::MANAGER.into()), ..Default::default() };
    match api.create(&params, &object).await {
        Ok(_) => {}
        // Created by an earlier reconcile that the watch has not shown yet.
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let mut params = json!({ "instance": name, "instance_type": object.spec.instance_type, "image_id": object.spec.image_id });
    let (detail, event) = match replacing {
        None => (format!("created Ec2Instance {name}"), "Booting"),
        Some(old) => {
            params["replacing"] = json!({
                "instance": old.name_any(), "instance_type": old.spec.instance_type, "image_id": old.spec.image_id,
            });
            let detail = format!(
                "rolling upgrade: created Ec2Instance {name} to take over from {}, which serves the room until {name} is healthy",
                old.name_any()
            );
            (detail, "Upgrading")
        }
    };
    let entry =
        Entry::new(ACTOR, "boot", &audit_target(room), Outcome::Success).params(params).detail(detail);
    ctx.record(room, entry, Some((EventType::Normal, event))).await
}

/// Sets the Ec2Instance's power state, remembered (before it is recorded) so that the next
/// reconcile does not repeat it from an older cached object.
async fn power(
    room: &DataRoom,
    ctx: &Context,
    name: &str,
    power: PowerState,
    memory: &mut Memory,
) -> Result<()> {
    let api: Api<Ec2Instance> = Api::namespaced(ctx.client.clone(), &room.namespace().unwrap_or_default());
    let patch = json!({ "spec": { "powerState": power } });
    let written = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    if let (Some(uid), Some(generation)) = (written.uid(), written.meta().generation) {
        memory.wrote(ChildWrite::Power { uid, generation, power });
    }
    let (action, reason) = match power {
        PowerState::Running => ("start", "Starting"),
        PowerState::Stopped => ("stop", "Stopping"),
    };
    let entry = Entry::new(ACTOR, action, &audit_target(room), Outcome::Success)
        .params(json!({ "instance": name }))
        .detail(format!("set Ec2Instance {name} to {power:?}"));
    ctx.record(room, entry, Some((EventType::Normal, reason))).await
}

async fn terminate(room: &DataRoom, ctx: &Context, name: &str) -> Result<()> {
    let api: Api<Ec2Instance> = Api::namespaced(ctx.client.clone(), &room.namespace().unwrap_or_default());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let entry = Entry::new(ACTOR, "terminate", &audit_target(room), Outcome::Success)
        .params(json!({ "instance": name }))
        .detail(format!("deleted Ec2Instance {name}, which terminates its instance"));
    ctx.record(room, entry, Some((EventType::Normal, "Terminating"))).await
}

/// Sets the room's `spec.state` to Stopped; returns the reason its status gives from then on.
async fn idle_stop(
    room: &DataRoom,
    ctx: &Context,
    idle: f64,
    timeout: u32,
    memory: &mut Memory,
) -> Result<String> {
    let api: Api<DataRoom> = Api::namespaced(ctx.client.clone(), &room.namespace().unwrap_or_default());
    let patch = json!({ "spec": { "state": "Stopped" } });
    let written = api.patch(&room.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    memory.own_generation = written.meta().generation;
    let detail = format!("no activity for {idle:.0} minutes (timeout {timeout}); stopping the room");
    let entry = Entry::new(ACTOR, "idle-stop", &audit_target(room), Outcome::Success)
        .params(json!({ "idle_minutes": (idle * 10.0).round() / 10.0, "timeout_minutes": timeout }))
        .detail(detail.clone());
    ctx.record(room, entry, Some((EventType::Normal, "IdleTimeout"))).await?;
    Ok(format!(
        "Idle: {detail}. Start it again with POST /api/fleet/rooms/{}/start or spec.state: Running",
        key(room)
    ))
}

/// Audits and events a change of phase into Ready, Failed, BudgetBlocked or Stopped, once.
async fn transition(room: &DataRoom, ctx: &Context, report: &Report, memory: &Memory) -> Result<()> {
    // What this controller last wrote wins over the room object, which may predate that write.
    let status = room.status.as_ref();
    let (old_phase, old_reason) = match &memory.written {
        Some((phase, reason)) => (Some(phase.as_str()), Some(reason.as_str())),
        None => (status.and_then(|s| s.phase.as_deref()), status.and_then(|s| s.reason.as_deref())),
    };
    let phase = report.phase.to_string();
    let changed = old_phase != Some(phase.as_str());
    let (action, outcome, event) = match report.phase {
        Phase::Ready if changed => ("ready", Outcome::Success, (EventType::Normal, "Ready")),
        Phase::Stopped if changed => ("stopped", Outcome::Success, (EventType::Normal, "Stopped")),
        // A new reason is a new failure.
        Phase::Failed if changed || old_reason != Some(report.reason.as_str()) => {
            ("failed", Outcome::Failure, (EventType::Warning, "Failed"))
        }
        Phase::BudgetBlocked if changed => {
            ("budget-blocked", Outcome::Refused, (EventType::Warning, "BudgetBlocked"))
        }
        _ => return Ok(()),
    };
    let mut params = json!({ "from": old_phase, "instance": report.instance_id });
    if let (Phase::Ready, Some(boot)) = (report.phase, &memory.boot) {
        let step = |from: Option<f64>, to: Option<f64>| to.zip(from.or(Some(0.0))).map(|(t, f)| t - f);
        params["boot_seconds"] = json!(boot.ready);
        params["steps"] = json!({
            "provision_seconds": boot.running,
            "configure_seconds": step(boot.running, boot.configured),
            "health_seconds": step(boot.configured, boot.ready),
        });
    }
    let entry =
        Entry::new(ACTOR, action, &audit_target(room), outcome).params(params).detail(report.reason.clone());
    ctx.record(room, entry, Some(event)).await
}
