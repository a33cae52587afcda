//! The switch of a rolling upgrade: the room serves from its new instance from this reconcile on
//! (its status, DNS record and Service follow `plan::serving`), and the old instance is marked to
//! keep answering for `drainSeconds`, for clients that still hold its address, before it stops.

use jiff::SignedDuration;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::observe::Observed;
use super::plan::serving;
use super::{ChildWrite, Memory, RETIRE_ANNOTATION};
use crate::audit::{Entry, Outcome};
use crate::controller::{ACTOR, Context, Result};
use crate::crd::{DataRoom, Ec2Instance, audit_target};

/// Marks `old` to stop answering after the drain; returns when that is.
pub async fn retire(
    room: &DataRoom,
    ctx: &Context,
    observed: &Observed,
    old: &str,
    memory: &mut Memory,
) -> Result<jiff::Timestamp> {
    let after = observed.now + SignedDuration::from_secs(room.spec.drain_seconds.into());
    let api: Api<Ec2Instance> = Api::namespaced(ctx.client.clone(), &room.namespace().unwrap_or_default());
    let patch = json!({ "metadata": { "annotations": { RETIRE_ANNOTATION: after.to_string() } } });
    let written = api.patch(old, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    if let Some(uid) = written.uid() {
        memory.wrote(ChildWrite::Retired { uid, after });
    }
    let children: Vec<_> = observed.members.iter().map(|m| m.child.clone()).collect();
    let new = serving(&children).map(|c| observed.member(&c.name));
    let describe = |object: &Ec2Instance, id: Option<&str>| {
        json!({ "instance": object.name_any(), "instance_id": id, "instance_type": object.spec.instance_type,
                "image_id": object.spec.image_id })
    };
    let old_member = observed.member(old);
    let seconds =
        memory.upgrade_started.take().map(|t| (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
    let params = json!({
        "from": describe(&old_member.object, old_member.live.as_ref().map(|t| t.instance_id.as_str())),
        "to": new.map(|m| describe(&m.object, m.live.as_ref().map(|t| t.instance_id.as_str()))),
        "upgrade_seconds": seconds,
        "drain_seconds": room.spec.drain_seconds,
    });
    let to = new.map_or_else(String::new, |m| m.object.name_any());
    let detail =
        format!("the room now serves from {to}; {old} answers until {after}, then stops and is deleted");
    let entry = Entry::new(ACTOR, "upgrade.switch", &audit_target(room), Outcome::Success)
        .params(params)
        .detail(detail);
    ctx.record(room, entry, Some((EventType::Normal, "Upgraded"))).await?;
    Ok(after)
}
