//! Side effects of a room's plan: the Ec2Instance (create, power, delete), the SFTP push, the
//! health check and the idle stop, each audited and evented.

use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::content::{self, Content};
use super::plan::{Child, Facts, Phase, Step, health_phase, plan};
use super::status::{self, Seen};
use super::{Boot, Memory, instance_name, key};
use crate::audit::{Entry, Outcome};
use crate::controller::reach::{self, ReachError};
use crate::controller::{ACTOR, Context, Error, Result};
use crate::crd::{
    ACTIVITY_ANNOTATION, DEFAULT_INSTANCE_TYPE, DataRoom, DataRoomState, Ec2Instance, PowerState,
    audit_target,
};
use crate::probe;
use crate::ssh::SshError;

/// How often a room in transition is looked at (changes of its instance also wake it).
const WAIT_REQUEUE: Duration = Duration::from_secs(2);

/// Converges the room and writes its status once; the phase it ended in comes back with the action.
pub async fn converge(room: &DataRoom, ctx: &Context, deleting: bool) -> Result<(Action, Phase)> {
    let uid = room.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let mut memory = ctx.room_memory.lock().unwrap().get(&uid).cloned().unwrap_or_default();
    let mut seen = Seen::new(room);
    let result = drive(room, ctx, deleting, &uid, &mut memory, &mut seen).await;
    if let Err(e) = &result {
        seen.set(Phase::Failed, e.to_string());
    }
    let recorded = transition(room, ctx, &seen, &memory).await;
    // Kept even if the status write fails: what was pushed and recorded stays pushed and recorded.
    memory.written = Some((seen.phase.to_string(), seen.reason.clone())).filter(|_| recorded.is_ok());
    ctx.room_memory.lock().unwrap().insert(uid, memory);
    recorded?;
    status::write(room, ctx, &seen).await?;
    result.map(|action| (action, seen.phase))
}

async fn drive(
    room: &DataRoom,
    ctx: &Context,
    deleting: bool,
    uid: &str,
    memory: &mut Memory,
    seen: &mut Seen,
) -> Result<Action> {
    let namespace = room.namespace().unwrap_or_default();
    let spec = &room.spec;
    let want_running = spec.state == DataRoomState::Running && !deleting;
    if want_running && let Err(why) = content::check(&room.name_any(), spec) {
        seen.set(Phase::Failed, why);
        return Ok(Action::await_change());
    }
    let child_name = instance_name(&room.name_any());
    let object = ctx.instances.get(&ObjectRef::new(&child_name).within(&namespace));
    let child = object.as_deref().map(|o| observe(ctx, o, room, uid));
    let live = object.as_deref().and_then(|o| reach::target(ctx, o).ok());
    seen.instance_name = object.as_ref().map(|_| child_name.clone());
    seen.instance_id = child.as_ref().and(live.as_ref()).map(|t| t.instance_id.clone());
    seen.endpoint = live.as_ref().map(|t| format!("{}:{}", t.ip, spec.health_check.port));
    seen.child = child.clone();
    let content = match want_running {
        true => Some(content::resolve(ctx, &namespace, spec).await?),
        false => None,
    };
    let hash = content.as_ref().zip(live.as_ref()).map(|(c, t)| c.hash(uid, &t.instance_id));
    let recorded = room.status.as_ref().and_then(|s| s.config_hash.clone());
    let mut configured = hash.is_some() && (hash == recorded || hash == memory.pushed);
    if configured {
        seen.config_hash = hash.clone();
        seen.configured =
            (true, pushed_message(content.as_ref(), live.as_ref().map(|t| t.instance_id.as_str())));
    }
    let timeout = spec.idle_timeout_minutes.or(Some(ctx.gate.limits().default_idle_timeout_minutes));
    let latest = latest_activity(room, ctx, object.as_deref(), memory);
    seen.last_activity = latest;
    let now = (ctx.clock)();
    let idle_minutes = latest.map_or(0.0, |t| now.duration_since(t).as_secs_f64() / 60.0);
    loop {
        let facts = Facts {
            spec,
            deleting,
            child: child.clone(),
            configured,
            idle_minutes,
            idle_timeout_minutes: timeout,
        };
        match plan(&facts) {
            Step::Create => {
                create(room, ctx, &child_name).await?;
                booted(ctx, room, memory, seen);
                seen.set(Phase::Provisioning, "launching the instance");
                return Ok(Action::requeue(WAIT_REQUEUE));
            }
            Step::PowerOn => {
                power(room, ctx, &child_name, PowerState::Running).await?;
                booted(ctx, room, memory, seen);
                seen.set(Phase::Provisioning, "starting the instance again");
                return Ok(Action::requeue(WAIT_REQUEUE));
            }
            Step::Wait(phase, why) => {
                seen.set(phase, why);
                return Ok(match phase {
                    Phase::Failed | Phase::BudgetBlocked => Action::await_change(),
                    _ => Action::requeue(WAIT_REQUEUE),
                });
            }
            Step::Configure => {
                let (object, content) =
                    (object.as_deref().expect("a child"), content.as_ref().expect("content"));
                mark(memory, |b| &mut b.running);
                seen.set(Phase::Configuring, "pushing the configuration");
                let starting = ssh_may_be_starting(ctx, object, memory);
                if let Err(e) = push(room, ctx, object, content, starting).await {
                    // `Configured` says why the push did not happen, not what the room lacked before it.
                    let why = e.to_string();
                    seen.configured = (false, why.clone());
                    if matches!(e, Error::Step(SSH_STARTING, _)) {
                        seen.set(Phase::Configuring, why);
                        return Ok(Action::requeue(WAIT_REQUEUE));
                    }
                    return Err(e);
                }
                mark(memory, |b| &mut b.configured);
                configured = true;
                memory.pushed = hash.clone();
                seen.config_hash = hash.clone();
                seen.configured = (true, pushed_message(Some(content), seen.instance_id.as_deref()));
            }
            Step::CheckHealth => {
                let target = live.as_ref().expect("a running instance");
                check_health(room, ctx, &target.ip, &target.instance_id, memory, seen).await;
                return Ok(Action::requeue(Duration::from_secs(spec.health_check.period_seconds.into())));
            }
            Step::IdleStop => {
                let why = idle_stop(room, ctx, idle_minutes, timeout.unwrap_or_default()).await?;
                // The spec change wakes the room again, to stop it.
                seen.set(Phase::Stopping, why);
                return Ok(Action::await_change());
            }
            Step::PowerOff => {
                power(room, ctx, &child_name, PowerState::Stopped).await?;
                seen.set(Phase::Stopping, "stopping the instance before it is terminated");
                return Ok(Action::requeue(WAIT_REQUEUE));
            }
            Step::Delete => {
                terminate(room, ctx, &child_name).await?;
                seen.set(Phase::Stopping, "terminating the instance");
                return Ok(Action::requeue(WAIT_REQUEUE));
            }
            Step::Stopped => {
                // A stopped room starts afresh, except for what its status last said.
                *memory = Memory { written: memory.written.take(), ..Memory::default() };
                seen.set(Phase::Stopped, "the room is stopped; set spec.state to Running to start it");
                return Ok(Action::await_change());
            }
            Step::Conflict => {
                let why = format!(
                    "an Ec2Instance named {child_name} already exists and does not belong to this room; delete or rename it"
                );
                seen.set(Phase::Failed, why);
                return Ok(Action::await_change());
            }
        }
    }
}

/// A boot starts: its clock, and a fresh start for the idle timeout.
fn booted(ctx: &Context, room: &DataRoom, memory: &mut Memory, seen: &mut Seen) {
    memory.boot = Some(Boot::new());
    seen.boot_seconds = None;
    let now = (ctx.clock)();
    ctx.touch(&key(room));
    seen.last_activity = Some(now);
}

/// The room's Ec2Instance as the plan sees it.
fn observe(ctx: &Context, object: &Ec2Instance, room: &DataRoom, room_uid: &str) -> Child {
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
/// endpoint reported.
fn latest_activity(
    room: &DataRoom,
    ctx: &Context,
    object: Option<&Ec2Instance>,
    memory: &Memory,
) -> Option<Timestamp> {
    let recorded = room.status.as_ref().and_then(|s| s.last_activity_time.as_deref()?.parse().ok());
    let annotated = room.annotations().get(ACTIVITY_ANNOTATION).and_then(|t| t.parse().ok());
    let created = object.and_then(|o| o.meta().creation_timestamp.as_ref()).map(|t| t.0);
    [recorded, annotated, created, ctx.activity(&key(room)), memory.reported_activity]
        .into_iter()
        .flatten()
        .max()
}

fn pushed_message(content: Option<&Content>, instance_id: Option<&str>) -> String {
    let (files, bytes) = content.map_or((0, 0), |c| (c.payloads.len(), c.bytes()));
    format!("{files} file(s), {bytes} bytes, pushed to {}", instance_id.unwrap_or("the instance"))
}

async fn create(room: &DataRoom, ctx: &Context, name: &str) -> Result<()> {
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
    let params = json!({ "instance": name, "instance_type": object.spec.instance_type, "image_id": object.spec.image_id });
    let entry = Entry::new(ACTOR, "boot", &audit_target(room), Outcome::Success)
        .params(params)
        .detail(format!("created Ec2Instance {name}"));
    ctx.record(room, entry, Some((EventType::Normal, "Booting"))).await
}

async fn power(room: &DataRoom, ctx: &Context, name: &str, power: PowerState) -> Result<()> {
    let api: Api<Ec2Instance> = Api::namespaced(ctx.client.clone(), &room.namespace().unwrap_or_default());
    let patch = json!({ "spec": { "powerState": power } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
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
async fn idle_stop(room: &DataRoom, ctx: &Context, idle: f64, timeout: u32) -> Result<String> {
    let api: Api<DataRoom> = Api::namespaced(ctx.client.clone(), &room.namespace().unwrap_or_default());
    let patch = json!({ "spec": { "state": "Stopped" } });
    api.patch(&room.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
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

/// The push found SSH not answering yet within `SshSettings::boot_grace` of the instance running.
const SSH_STARTING: &str = "SshStarting";

/// Whether sshd may still be starting: the instance has been up less than the boot grace.
fn ssh_may_be_starting(ctx: &Context, object: &Ec2Instance, memory: &Memory) -> bool {
    let launched = object.uid().and_then(|uid| ctx.cache.get(&uid)).and_then(|i| i.launch_time);
    let up = seconds_up(memory, launched, (ctx.clock)());
    up.is_some_and(|up| up < ctx.settings.ssh.boot_grace.as_secs_f64())
}

/// Seconds since the instance was seen running in this boot; after an operator restart, which
/// forgets boots, since EC2 last launched or started it.
fn seconds_up(memory: &Memory, launched: Option<Timestamp>, now: Timestamp) -> Option<f64> {
    let boot = memory.boot.as_ref();
    let running = boot.and_then(|b| Some(b.started.elapsed().as_secs_f64() - b.running?));
    running.or_else(|| launched.map(|t| now.duration_since(t).as_secs_f64()))
}

/// Writes every payload to the instance over SFTP (each one whole or not at all). While SSH may
/// still be starting, an unanswered connection is `Step(SSH_STARTING, …)` and not audited.
async fn push(
    room: &DataRoom,
    ctx: &Context,
    object: &Ec2Instance,
    content: &Content,
    ssh_starting: bool,
) -> Result<()> {
    let paths: Vec<&str> = content.payloads.iter().map(|p| p.path.as_str()).collect();
    let params = json!({ "instance": object.name_any(), "paths": paths, "bytes": content.bytes() });
    let result = async {
        let connection = reach::connect(ctx, &ctx.ssh, ACTOR, object).await.map_err(|e| match e {
            ReachError::Audit(e) => Error::Audit(e),
            ReachError::Ssh(e @ SshError::HostKeyChanged { .. }) => Error::Step(
                "Configure",
                format!("{e}; if the instance was rebuilt on purpose, remove status.sshHostKey from its Ec2Instance"),
            ),
            ReachError::Ssh(e @ SshError::Unreachable { .. }) if ssh_starting => {
                Error::Step(SSH_STARTING, format!("waiting for SSH to answer ({e})"))
            }
            ReachError::Ssh(e @ (SshError::Unreachable { .. } | SshError::AuthRejected)) => Error::Step(
                "Configure",
                format!("{e}; the operator must reach the instance's SSH port and log in with its key pair (check security groups and the image's SSH user)"),
            ),
            other => Error::Step("Configure", other.to_string()),
        })?;
        for p in &content.payloads {
            let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(p.bytes.clone()))]);
            if let Err(e) = connection.upload(&p.path, p.mode, body, u64::MAX).await {
                let why = format!(
                    "writing {} failed ({e}); the SSH user must be able to create it: make its directory writable in the image or user data, or change the path",
                    p.path
                );
                return Err(Error::Step("Configure", why));
            }
        }
        Ok(())
    }
    .await;
    // A room is configured once per boot: its connection is not kept for later (a failed one
    // must not be reused, and a fleet's worth of idle sessions would stay in memory).
    if let Some(id) = object.status.as_ref().and_then(|s| s.instance_id.as_deref()) {
        ctx.ssh.forget(id);
    }
    if matches!(&result, Err(Error::Step(SSH_STARTING, _))) {
        return result;
    }
    let (outcome, detail, event) = match &result {
        Ok(()) => {
            (Outcome::Success, format!("pushed {} file(s)", paths.len()), (EventType::Normal, "Configured"))
        }
        Err(e) => (Outcome::Failure, e.to_string(), (EventType::Warning, "ConfigureFailed")),
    };
    let entry = Entry::new(ACTOR, "configure", &audit_target(room), outcome).params(params).detail(detail);
    ctx.record(room, entry, Some(event)).await?;
    result
}

async fn check_health(
    room: &DataRoom,
    ctx: &Context,
    ip: &str,
    instance_id: &str,
    memory: &mut Memory,
    seen: &mut Seen,
) {
    let check = &room.spec.health_check;
    let host = ctx.settings.seams.health_host.as_deref().unwrap_or(ip);
    let address = format!("{host}:{}", check.port);
    let url = format!("{}://{address}{}", check.scheme, check.path);
    let timeout = Duration::from_secs(check.timeout_seconds.into());
    let answer = probe::get(&address, &check.path, check.scheme == "https", timeout).await;
    let detail = match &answer {
        Ok((code, body)) => {
            let reported = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("lastActivity")?.as_str()?.parse::<Timestamp>().ok());
            memory.reported_activity = memory.reported_activity.max(reported);
            format!("HTTP {code}")
        }
        Err(why) => why.clone(),
    };
    let ok = matches!(answer, Ok((200..=299, _)));
    memory.failures = if ok { 0 } else { memory.failures + 1 };
    if ok {
        memory.healthy_on = Some(instance_id.to_string());
    }
    let was_healthy = memory.healthy_on.as_deref() == Some(instance_id);
    let (failures, threshold) = (memory.failures, check.failure_threshold);
    let phase = health_phase(failures, threshold, was_healthy);
    // No counts in the reason: a status that changed with every check would wake the room at
    // once, and the checks would no longer wait for their period.
    let reason = match phase {
        Phase::Ready => format!("ready: {url} answers {detail}"),
        Phase::Configuring => format!("waiting for {url} to answer 2xx: {detail}"),
        _ => format!(
            "{url} failed {threshold} or more health checks in a row ({detail}); check the server on the instance (POST /api/ec2/instances/{instance_id}/exec); the room turns Ready when it answers"
        ),
    };
    seen.healthy = Some((ok, format!("{url}: {detail}")));
    if phase == Phase::Ready && memory.boot.is_some() {
        mark(memory, |b| &mut b.ready);
        seen.boot_seconds = memory.boot.as_ref().and_then(|b| b.ready).map(|s| (s * 1000.0).round() / 1000.0);
    }
    seen.set(phase, reason);
}

/// Notes the end of a boot step (the first time only).
fn mark(memory: &mut Memory, step: impl FnOnce(&mut Boot) -> &mut Option<f64>) {
    if let Some(boot) = memory.boot.as_mut() {
        let elapsed = boot.started.elapsed().as_secs_f64();
        step(boot).get_or_insert(elapsed);
    }
}

/// Audits and events a change of phase into Ready, Failed, BudgetBlocked or Stopped, once.
async fn transition(room: &DataRoom, ctx: &Context, seen: &Seen, memory: &Memory) -> Result<()> {
    // What this controller last wrote wins over the room object, which may predate that write.
    let status = room.status.as_ref();
    let (old_phase, old_reason) = match &memory.written {
        Some((phase, reason)) => (Some(phase.as_str()), Some(reason.as_str())),
        None => (status.and_then(|s| s.phase.as_deref()), status.and_then(|s| s.reason.as_deref())),
    };
    let phase = seen.phase.to_string();
    let changed = old_phase != Some(phase.as_str());
    let (action, outcome, event) = match seen.phase {
        Phase::Ready if changed => ("ready", Outcome::Success, (EventType::Normal, "Ready")),
        Phase::Stopped if changed => ("stopped", Outcome::Success, (EventType::Normal, "Stopped")),
        // A new reason is a new failure.
        Phase::Failed if changed || old_reason != Some(seen.reason.as_str()) => {
            ("failed", Outcome::Failure, (EventType::Warning, "Failed"))
        }
        Phase::BudgetBlocked if changed => {
            ("budget-blocked", Outcome::Refused, (EventType::Warning, "BudgetBlocked"))
        }
        _ => return Ok(()),
    };
    let mut params = json!({ "from": old_phase, "instance": seen.instance_id });
    if let (Phase::Ready, Some(boot)) = (seen.phase, &memory.boot) {
        let step = |from: Option<f64>, to: Option<f64>| to.zip(from.or(Some(0.0))).map(|(t, f)| t - f);
        params["boot_seconds"] = json!(boot.ready);
        params["steps"] = json!({
            "provision_seconds": boot.running,
            "configure_seconds": step(boot.running, boot.configured),
            "health_seconds": step(boot.configured, boot.ready),
        });
    }
    let entry =
        Entry::new(ACTOR, action, &audit_target(room), outcome).params(params).detail(seen.reason.clone());
    ctx.record(room, entry, Some(event)).await
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};

    use super::{Boot, Memory, seconds_up};

    #[test]
    fn time_up_comes_from_this_boot_or_after_a_restart_from_ec2s_launch_time() {
        let now = Timestamp::now();
        let launched = Some(now - SignedDuration::from_secs(90));
        let fresh = Memory::default();
        assert_eq!(seconds_up(&fresh, launched, now), Some(90.0), "a restarted operator asks EC2");
        assert_eq!(seconds_up(&fresh, None, now), None);
        let mut seen = Memory { boot: Some(Boot::new()), ..Memory::default() };
        seen.boot.as_mut().unwrap().running = Some(0.0);
        let up = seconds_up(&seen, launched, now).unwrap();
        assert!(up < 1.0, "this boot saw it running just now, whatever EC2's launch time says: {up}");
    }
}
