//! Side effects of the update steps: each change recorded before EC2 is asked and after it
//! answered, as `update`, or as `drift.corrected` when EC2 was changed outside the operator
//! after it matched the spec. A larger root volume and a new type pass the budget first, and
//! security groups the launch check would refuse are refused here too.

use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::apply::{self, WAIT_REQUEUE};
use super::network::{self, Groups};
use super::status::{self, Report};
use super::update::{Difference, Fix, fixed};
use crate::audit::{Entry, Outcome};
use crate::cloud::Modification;
use crate::controller::{ACTOR, Context, Result};
use crate::crd::{Ec2Instance, audit_target};

/// The audit action and event reason of a change: a correction of drift, or a spec update.
fn naming(obj: &Ec2Instance) -> (&'static str, &'static str) {
    match status::drifted(obj) {
        true => ("drift.corrected", "DriftCorrected"),
        false => ("update", "Updated"),
    }
}

/// Makes each change in turn; the first refusal or failure ends the step.
pub async fn update(
    obj: &Ec2Instance,
    ctx: &Context,
    uid: &str,
    differences: Vec<Difference>,
    report: &mut Report,
) -> Result<Action> {
    let Some(mut instance) = report.instance.clone() else {
        return Ok(Action::requeue(WAIT_REQUEUE));
    };
    let (action, reason) = naming(obj);
    for difference in differences {
        let params = json!({
            "instance_id": instance.id, "field": difference.field,
            "from": difference.have, "to": difference.want,
        });
        let call = match &difference.fix {
            Fix::GrowVolume(gib) => match ctx.gate.grow_volume(uid, *gib) {
                Ok(growth) => Call::Volume(growth),
                Err(refusal) => return apply::refused(obj, ctx, action, refusal, report).await,
            },
            Fix::Modify(Modification::SecurityGroups { ids }) => {
                match network::vet(ctx, ids.clone()).await? {
                    Groups::Use(_) => Call::Modify,
                    Groups::Refused(why) => return network::refused(obj, ctx, action, why, report).await,
                }
            }
            Fix::Modify(_) => Call::Modify,
            Fix::Immutable => continue,
        };
        let target = audit_target(obj);
        ctx.append(Entry::new(ACTOR, action, &target, Outcome::Started).params(params.clone())).await?;
        let made = match (&call, &difference.fix) {
            (Call::Volume(growth), _) => ctx.cloud.grow_root_volume(&instance.id, growth).await,
            (Call::Modify, Fix::Modify(change)) => ctx.cloud.modify_instance(&instance.id, change).await,
            _ => Ok(()),
        };
        let said = format!("{}: {} → {}", difference.field, difference.have, difference.want);
        if let Err(e) = made {
            let entry =
                Entry::new(ACTOR, action, &target, Outcome::Failure).params(params).detail(e.to_string());
            ctx.record(obj, entry, Some((EventType::Warning, "UpdateFailed"))).await?;
            return Err(e.into());
        }
        instance = fixed(&instance, &difference.fix);
        ctx.cache.put(instance.clone());
        report.instance = Some(instance.clone());
        let entry = Entry::new(ACTOR, action, &target, Outcome::Success).params(params).detail(said);
        ctx.record(obj, entry, Some((EventType::Normal, reason))).await?;
    }
    // The next step (a start, say) at once.
    Ok(Action::requeue(Duration::ZERO))
}

/// What a change is made with: the budget's grant for a larger volume, or nothing more.
enum Call {
    Volume(crate::budget::VolumeGrowth),
    Modify,
}

/// Stops a running instance for changes EC2 takes only when it is stopped; a new type is judged
/// by the budget first, so that a type it refuses stops nothing.
pub async fn stop_to_update(
    obj: &Ec2Instance,
    ctx: &Context,
    uid: &str,
    instance_type: Option<&str>,
    report: &mut Report,
) -> Result<Action> {
    let (action, _) = naming(obj);
    if let Some(instance_type) = instance_type
        && let Err(refusal) = ctx.gate.check_retype(uid, instance_type, obj.room_key().as_deref())
    {
        return apply::refused(obj, ctx, action, refusal, report).await;
    }
    apply::stop(obj, ctx, report).await
}
