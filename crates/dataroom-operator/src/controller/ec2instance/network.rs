//! The security groups a launch gets: those the Ec2Instance (or `--default-security-group-ids`)
//! names, unless one of them opens SSH to the internet, in which case the launch is refused with a
//! condition and an event naming the rule; or, when it names none and the operator manages a group
//! per VPC, that group (SSH and the health port from the operator's range only).

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::apply::BLOCKED_REQUEUE;
use super::status::Report;
use crate::audit::{Entry, Outcome};
use crate::cloud::network::{ManagedGroup, ssh_open_to_world};
use crate::controller::{ACTOR, Context, Result};
use crate::crd::{Ec2Instance, audit_target};

/// The condition reason of a refused group.
const OPEN_TO_WORLD: &str = "SecurityGroupOpenToWorld";

pub enum Groups {
    Use(Vec<String>),
    /// Why the named groups are refused.
    Refused(String),
}

/// The groups the spec (or `--default-security-group-ids`) names, if any.
fn named(obj: &Ec2Instance, ctx: &Context) -> Vec<String> {
    let named = obj.spec.security_group_ids.clone();
    named.unwrap_or_else(|| ctx.settings.default_security_group_ids.clone())
}

/// The groups a live instance should have, when known without asking EC2: those named, or the
/// operator's group in its VPC once this process has ensured it. `None`: not compared.
pub fn wanted(obj: &Ec2Instance, ctx: &Context) -> Option<Vec<String>> {
    let named = named(obj, ctx);
    if !named.is_empty() {
        return Some(named);
    }
    ctx.settings.managed_security_group.as_ref()?;
    let subnet = obj.spec.subnet_id.clone().or_else(|| ctx.settings.default_subnet_id.clone());
    ctx.managed_groups.lock().unwrap().get(&subnet).map(|id| vec![id.clone()])
}

/// `ids` as they are to be used, or why not: a group that opens SSH to the internet is refused.
pub async fn vet(ctx: &Context, ids: Vec<String>) -> Result<Groups> {
    let groups = ctx.cloud.describe_security_groups(&ids).await?;
    Ok(match ssh_open_to_world(&groups) {
        Some(why) => Groups::Refused(why),
        None => Groups::Use(ids),
    })
}

pub async fn for_launch(obj: &Ec2Instance, ctx: &Context) -> Result<Groups> {
    let named = named(obj, ctx);
    if !named.is_empty() {
        return vet(ctx, named).await;
    }
    let Some(template) = &ctx.settings.managed_security_group else { return Ok(Groups::Use(vec![])) };
    // Ensured at every launch (two reads when nothing changed), so that a rule added by hand is
    // gone before the next instance gets the group; audited the first time in this process.
    let subnet = obj.spec.subnet_id.clone().or_else(|| ctx.settings.default_subnet_id.clone());
    let group = ManagedGroup { subnet_id: subnet.clone(), ..template.clone() };
    let id = ctx.cloud.ensure_security_group(&group).await?;
    if ctx.managed_groups.lock().unwrap().get(&subnet) == Some(&id) {
        return Ok(Groups::Use(vec![id]));
    }
    let params =
        json!({ "group_id": id, "subnet_id": subnet, "ports": group.ports, "sources": group.sources });
    let entry =
        Entry::new(ACTOR, "security-group.ensure", &format!("security-group//{id}"), Outcome::Success)
            .params(params)
            .detail(
                "the operator's security group: only SSH and the health port, only from the operator's range",
            );
    ctx.append(entry).await?;
    ctx.managed_groups.lock().unwrap().insert(subnet, id.clone());
    Ok(Groups::Use(vec![id]))
}

/// Records the refusal once (audit and event, while the condition says something else) and looks
/// again later: the group may be fixed outside the operator.
pub async fn refused(
    obj: &Ec2Instance,
    ctx: &Context,
    action: &str,
    why: String,
    report: &mut Report,
) -> Result<Action> {
    let conditions = obj.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let said =
        conditions.iter().any(|c| c.type_ == "Synced" && c.reason == OPEN_TO_WORLD && c.message == why);
    if !said {
        let entry = Entry::new(ACTOR, action, &audit_target(obj), Outcome::Refused)
            .params(json!({ "security_group_ids": obj.spec.security_group_ids }))
            .detail(why.clone());
        ctx.record(obj, entry, Some((EventType::Warning, OPEN_TO_WORLD))).await?;
    }
    report.invalid = Some((OPEN_TO_WORLD, why));
    Ok(Action::requeue(BLOCKED_REQUEUE))
}
