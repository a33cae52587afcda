//! Side effects of a plan step, through the budget gate, the cloud port and the audit log.

use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::modify;
use super::network::{self, Groups};
use super::observe::{Observed, observe};
use super::plan::{Step, client_token, key_pair_name};
use super::status::{self, Report};
use crate::audit::{Entry, Outcome};
use crate::budget::{Purpose, Refusal, Reservation};
use crate::cloud::{Instance, InstanceState, LaunchRequest, keys};
use crate::controller::{ACTOR, Context, Error, Result};
use crate::crd::{Ec2Instance, audit_target};

const STEADY_REQUEUE: Duration = Duration::from_secs(300);
pub(super) const WAIT_REQUEUE: Duration = Duration::from_secs(5);
pub(super) const BLOCKED_REQUEUE: Duration = Duration::from_secs(60);

/// Brings EC2 one step closer to the spec, then writes status once.
pub async fn converge(obj: &Ec2Instance, ctx: &Context) -> Result<Action> {
    let uid = obj.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let mut report = Report { instance: ctx.cache.get(&uid), ..Default::default() };
    let result = match observe(obj, ctx, &uid, report.instance.clone()).await {
        Ok(observed) => step(obj, ctx, &uid, observed, &mut report).await,
        Err(e) => Err(e),
    };
    settle_budget(ctx, &uid, report.instance.as_ref());
    if let Err(e) = &result {
        report.error = Some((e.label(), e.to_string()));
    }
    status::write(obj, ctx, &report).await?;
    result
}

/// Releases the budget slot of an instance that no longer bills, and counts one that does.
fn settle_budget(ctx: &Context, uid: &str, instance: Option<&Instance>) {
    match instance {
        Some(i) if i.state.is_billed() => ctx.gate.adopt(uid, i),
        _ => ctx.gate.release(uid),
    }
}

/// observe → plan → one step.
async fn step(
    obj: &Ec2Instance,
    ctx: &Context,
    uid: &str,
    observed: Observed,
    report: &mut Report,
) -> Result<Action> {
    if let Some(why) = ctx.settings.refuses_namespace(&obj.namespace().unwrap_or_default()) {
        report.invalid = Some(("InvalidSpec", why));
        return Ok(Action::await_change());
    }
    if !observed.found.is_empty() {
        adopt(obj, ctx, observed.found, report).await?;
        // The adopted instance is in the view now: the next reconcile plans from it at once.
        return Ok(Action::requeue(Duration::ZERO));
    }
    match observed.plan(obj) {
        Step::Steady => Ok(Action::requeue(STEADY_REQUEUE)),
        Step::Wait(why) => {
            report.message = Some(why.to_string());
            Ok(Action::requeue(WAIT_REQUEUE))
        }
        Step::Invalid(why) => {
            report.invalid = Some(("InvalidSpec", why));
            Ok(Action::await_change())
        }
        Step::Launch { replaces } => {
            let image = observed.image.as_deref().expect("plan launches only with an image");
            launch(obj, ctx, uid, image, replaces.as_deref(), report).await
        }
        Step::Start => start(obj, ctx, uid, report).await,
        Step::Stop => stop(obj, ctx, report).await,
        Step::Update(differences) => modify::update(obj, ctx, uid, differences, report).await,
        Step::StopToUpdate { instance_type } => {
            modify::stop_to_update(obj, ctx, uid, instance_type.as_deref(), report).await
        }
    }
}

/// Keeps the oldest instance found under the object's owner tag and terminates the others, so
/// that a crash between RunInstances and the status write never leads to a second instance.
async fn adopt(obj: &Ec2Instance, ctx: &Context, found: Vec<Instance>, report: &mut Report) -> Result<()> {
    let mut found = found.into_iter();
    let keep = found.next().expect("adopt is called with an instance");
    for extra in found {
        let params = json!({ "instance_id": extra.id, "kept": keep.id });
        let intent = Entry::new(ACTOR, "terminate-duplicate", &audit_target(obj), Outcome::Started);
        ctx.append(intent.params(params.clone())).await?;
        ctx.cloud.terminate_instance(&extra.id).await?;
        let entry = Entry::new(ACTOR, "terminate-duplicate", &audit_target(obj), Outcome::Success)
            .params(params)
            .detail(format!("terminated {} because {} already serves this object", extra.id, keep.id));
        ctx.record(obj, entry, Some((EventType::Warning, "DuplicateTerminated"))).await?;
    }
    ctx.cache.put(keep.clone());
    report.instance = Some(keep.clone());
    let entry = Entry::new(ACTOR, "adopt", &audit_target(obj), Outcome::Success)
        .params(json!({ "instance_id": keep.id, "state": keep.state.as_str() }))
        .detail(format!("found existing instance {} by its owner tag", keep.id));
    ctx.record(obj, entry, Some((EventType::Normal, "Adopted"))).await?;
    Ok(())
}

async fn launch(
    obj: &Ec2Instance,
    ctx: &Context,
    uid: &str,
    image: &str,
    replaces: Option<&str>,
    report: &mut Report,
) -> Result<Action> {
    let security_group_ids = match network::for_launch(obj, ctx).await? {
        Groups::Use(ids) => ids,
        Groups::Refused(why) => return network::refused(obj, ctx, "launch", why, report).await,
    };
    let instance_type = &obj.spec.instance_type;
    let purpose = ctx.gate.launch(obj.spec.root_volume_gib);
    let reservation = match ctx.gate.reserve(uid, instance_type, purpose, obj.room_key().as_deref()) {
        Ok(reservation) => reservation,
        Err(refusal) => return refused(obj, ctx, "launch", refusal, report).await,
    };
    let launched = async {
        let key_name = key_pair_name(uid);
        if !ctx.key_pairs.lock().unwrap().contains(&key_name) {
            keys::ensure_key_pair(ctx.cloud.as_ref(), &key_name).await?;
            ctx.key_pairs.lock().unwrap().insert(key_name.clone());
        }
        let request = LaunchRequest {
            owner_uid: uid.to_string(),
            client_token: client_token(uid, replaces),
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            data_room: obj.spec.data_room.clone(),
            instance_type: instance_type.clone(),
            image_id: image.to_string(),
            subnet_id: obj.spec.subnet_id.clone().or_else(|| ctx.settings.default_subnet_id.clone()),
            security_group_ids,
            user_data: obj.spec.user_data.clone(),
            root_volume_gib: obj.spec.root_volume_gib,
            key_name,
            extra_tags: obj.spec.tags.clone(),
        };
        ctx.cloud.run_instance(&request, &reservation).await
    };
    let params = json!({ "instance_type": instance_type, "image_id": image, "replaces": replaces });
    // Recorded before EC2 is asked: a crash after the launch took effect and before its answer
    // still leaves the launch in the log (a restart repeats the call with the same client token).
    let intent = Entry::new(ACTOR, "launch", &audit_target(obj), Outcome::Started).params(params.clone());
    if let Err(e) = ctx.append(intent).await {
        ctx.gate.release(uid);
        return Err(e.into());
    }
    match launched.await {
        Ok(instance) => {
            ctx.cache.put(instance.clone());
            let entry = Entry::new(ACTOR, "launch", &audit_target(obj), Outcome::Success)
                .params(with_instance(params, &instance.id))
                .detail(format!("launched {} ({instance_type})", instance.id));
            report.instance = Some(instance);
            ctx.record(obj, entry, Some((EventType::Normal, "Launched"))).await?;
            Ok(Action::requeue(WAIT_REQUEUE))
        }
        Err(e) => {
            ctx.gate.release(uid);
            if e.code.starts_with("InvalidKeyPair") {
                // Removed behind our back: the next attempt makes it again.
                ctx.key_pairs.lock().unwrap().remove(&key_pair_name(uid));
            }
            let entry = Entry::new(ACTOR, "launch", &audit_target(obj), Outcome::Failure)
                .params(params)
                .detail(e.to_string());
            ctx.record(obj, entry, Some((EventType::Warning, "LaunchFailed"))).await?;
            Err(e.into())
        }
    }
}

async fn start(obj: &Ec2Instance, ctx: &Context, uid: &str, report: &mut Report) -> Result<Action> {
    let Some(instance) = report.instance.clone() else {
        return Ok(Action::requeue(WAIT_REQUEUE));
    };
    let room = obj.room_key();
    let reservation = match ctx.gate.reserve(uid, &instance.instance_type, Purpose::Start, room.as_deref()) {
        Ok(reservation) => reservation,
        Err(refusal) => return refused(obj, ctx, "start", refusal, report).await,
    };
    if let Err(e) = power(obj, ctx, Power::Start(&reservation), &instance, report).await {
        ctx.gate.release(uid);
        return Err(e);
    }
    Ok(Action::requeue(WAIT_REQUEUE))
}

pub(super) async fn stop(obj: &Ec2Instance, ctx: &Context, report: &mut Report) -> Result<Action> {
    let Some(instance) = report.instance.clone() else {
        return Ok(Action::requeue(WAIT_REQUEUE));
    };
    power(obj, ctx, Power::Stop, &instance, report).await?;
    Ok(Action::requeue(WAIT_REQUEUE))
}

/// A power change; a start holds the budget's reservation.
enum Power<'a> {
    Start(&'a Reservation),
    Stop,
}

/// Starts or stops the instance, records it, and updates the cached view to the new state.
async fn power(
    obj: &Ec2Instance,
    ctx: &Context,
    change: Power<'_>,
    instance: &Instance,
    report: &mut Report,
) -> Result<()> {
    let id = &instance.id;
    let action = match change {
        Power::Start(_) => "start",
        Power::Stop => "stop",
    };
    let params = with_instance(json!({}), &instance.id);
    // On disk before EC2 is asked: a change that took effect is never missing from the log.
    ctx.append(Entry::new(ACTOR, action, &audit_target(obj), Outcome::Started).params(params.clone()))
        .await?;
    let (call, state, reason) = match change {
        Power::Start(reserved) => {
            (ctx.cloud.start_instance(id, reserved).await, InstanceState::Pending, "Started")
        }
        Power::Stop => (ctx.cloud.stop_instance(id).await, InstanceState::Stopping, "Stopped"),
    };
    if let Err(e) = call {
        let entry = Entry::new(ACTOR, action, &audit_target(obj), Outcome::Failure)
            .params(params)
            .detail(e.to_string());
        ctx.record(obj, entry, Some((EventType::Warning, "PowerChangeFailed"))).await?;
        return Err(e.into());
    }
    let mut updated = instance.clone();
    updated.state = state;
    ctx.cache.put(updated.clone());
    report.instance = Some(updated);
    let entry = Entry::new(ACTOR, action, &audit_target(obj), Outcome::Success)
        .params(params)
        .detail(format!("{action} requested for {}", instance.id));
    ctx.record(obj, entry, Some((EventType::Normal, reason))).await?;
    Ok(())
}

/// A budget refusal: explained in status, an Event and the audit log (once per distinct refusal),
/// and retried when usage changes.
pub(super) async fn refused(
    obj: &Ec2Instance,
    ctx: &Context,
    action: &str,
    refusal: Refusal,
    report: &mut Report,
) -> Result<Action> {
    ctx.metrics.budget_refusals.get_or_create(&vec![("limit", refusal.limit())]).inc();
    let message = refusal.to_string();
    if status::budget_message(obj).as_deref() != Some(message.as_str()) {
        let entry = Entry::new(ACTOR, action, &audit_target(obj), Outcome::Refused)
            .params(json!({ "limit": refusal.limit(), "instance_type": obj.spec.instance_type }))
            .detail(message.clone());
        ctx.record(obj, entry, Some((EventType::Warning, "BudgetExceeded"))).await?;
    }
    ctx.blocked.lock().unwrap().insert(ObjectRef::from_obj(obj));
    report.refusal = Some(refusal);
    Ok(Action::requeue(BLOCKED_REQUEUE))
}

fn with_instance(mut params: serde_json::Value, id: &str) -> serde_json::Value {
    params["instance_id"] = json!(id);
    params
}
