//! Deletion: terminate (or, for `Retain`, hand over) the instance, remove its key pair and secret,
//! and let the finalizer go. An instance that is already gone never blocks deletion.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::plan::key_pair_name;
use crate::audit::{Entry, Outcome};
use crate::cloud::{keys, ssh_secret_name};
use crate::controller::{ACTOR, Context, Error, Result};
use crate::crd::{DeletionPolicy, Ec2Instance, audit_target};

pub async fn cleanup(obj: &Ec2Instance, ctx: &Context) -> Result<Action> {
    let uid = obj.uid().ok_or(Error::MissingField("metadata.uid"))?;
    // Deletion is rare and must not miss an instance launched since the last sweep: ask EC2.
    let mut live = ctx.cloud.describe_by_owner(&uid).await?;
    live.retain(|i| !i.state.is_gone());
    let key_name = key_pair_name(&uid);
    let ids: Vec<&str> = live.iter().map(|i| i.id.as_str()).collect();
    match obj.spec.deletion_policy {
        DeletionPolicy::Delete => {
            for instance in &live {
                match ctx.cloud.terminate_instance(&instance.id).await {
                    Err(e) if !e.is_not_found() => return Err(e.into()),
                    _ => {}
                }
            }
            keys::delete_key_pair(ctx.cloud.as_ref(), &key_name).await?;
            let detail = match ids.is_empty() {
                true => "no instance was running; key pair and secret removed".to_string(),
                false => format!("terminated {}; key pair and secret removed", ids.join(", ")),
            };
            let entry = Entry::new(ACTOR, "terminate", &audit_target(obj), Outcome::Success)
                .params(json!({ "instance_ids": ids, "key_pair": key_name }))
                .detail(detail);
            ctx.record(obj, entry, Some((EventType::Normal, "Terminated"))).await?;
        }
        DeletionPolicy::Retain => {
            for instance in &live {
                ctx.cloud.unmanage_instance(&instance.id).await?;
            }
            let entry = Entry::new(ACTOR, "retain", &audit_target(obj), Outcome::Success)
                .params(json!({
                    "instance_ids": ids,
                    "key_pair": key_name,
                    "ssh_key_secret": ssh_secret_name(&key_name),
                }))
                .detail("deletionPolicy Retain: instance, key pair and secret kept; no longer managed");
            ctx.record(obj, entry, Some((EventType::Normal, "Retained"))).await?;
        }
    }
    ctx.gate.release(&uid);
    ctx.cache.remove(&uid);
    ctx.key_pairs.lock().unwrap().remove(&key_name);
    Ok(Action::await_change())
}
