//! Deletion: terminate (or, for `Retain`, hand over) the instance, remove its key pair and secret,
//! and let the finalizer go. An instance that is already gone never blocks deletion. A retained
//! instance stays in the budget while it runs (its tag says `retained`, and the sweep counts it).

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::plan::key_pair_name;
use crate::audit::{Entry, Outcome};
use crate::cloud::{Instance, keys, ssh_secret_name};
use crate::controller::{ACTOR, Context, Error, Result};
use crate::crd::{DeletionPolicy, Ec2Instance, audit_target};

pub async fn cleanup(obj: &Ec2Instance, ctx: &Context) -> Result<Action> {
    let uid = obj.uid().ok_or(Error::MissingField("metadata.uid"))?;
    // Deletion is rare and must not miss an instance launched since the last sweep: ask EC2.
    let mut live = ctx.cloud.describe_by_owner(&uid).await?;
    live.retain(|i| !i.state.is_gone());
    let key_name = key_pair_name(&uid);
    let ids: Vec<&str> = live.iter().map(|i| i.id.as_str()).collect();
    let action = match obj.spec.deletion_policy {
        DeletionPolicy::Delete => "terminate",
        DeletionPolicy::Retain => "retain",
    };
    // On disk before EC2 is asked: a termination or hand-over that took effect is never missing
    // from the log (a retry after a crash finds the instances gone and records that). A failure is
    // recorded too, so that every intent has its outcome.
    let params = json!({ "instance_ids": ids, "key_pair": key_name });
    ctx.append(Entry::new(ACTOR, action, &audit_target(obj), Outcome::Started).params(params.clone()))
        .await?;
    if let Err(e) = hand_back(obj.spec.deletion_policy, ctx, &live, &key_name).await {
        let failed = Entry::new(ACTOR, action, &audit_target(obj), Outcome::Failure).params(params);
        ctx.append(failed.detail(e.to_string())).await?;
        return Err(e);
    }
    match obj.spec.deletion_policy {
        DeletionPolicy::Delete => {
            let detail = match ids.is_empty() {
                true => "no instance was running; key pair and secret removed".to_string(),
                false => format!("terminated {}; key pair and secret removed", ids.join(", ")),
            };
            let entry = Entry::new(ACTOR, action, &audit_target(obj), Outcome::Success)
                .params(json!({ "instance_ids": ids, "key_pair": key_name }))
                .detail(detail);
            ctx.record(obj, entry, Some((EventType::Normal, "Terminated"))).await?;
        }
        DeletionPolicy::Retain => {
            let entry = Entry::new(ACTOR, action, &audit_target(obj), Outcome::Success)
                .params(json!({
                    "instance_ids": ids,
                    "key_pair": key_name,
                    "ssh_key_secret": ssh_secret_name(&key_name),
                }))
                .detail(
                    "deletionPolicy Retain: instance, key pair and secret kept; no longer managed, \
                     and counted by the budget until it is stopped or terminated",
                );
            ctx.record(obj, entry, Some((EventType::Normal, "Retained"))).await?;
        }
    }
    // A retained instance that runs keeps its slot (the sweep releases it once the instance is
    // seen stopped or gone): deleting its object must not make room for another.
    let retained_running =
        obj.spec.deletion_policy == DeletionPolicy::Retain && live.iter().any(|i| i.state.is_billed());
    if !retained_running {
        ctx.gate.release(&uid);
    }
    ctx.cache.remove(&uid);
    ctx.key_pairs.lock().unwrap().remove(&key_name);
    ctx.ssh.forget_key(&ssh_secret_name(&key_name));
    Ok(Action::await_change())
}

/// The EC2 side of a deletion: terminate the instances and remove the key pair, or hand the
/// instances over. An instance already gone is no failure.
async fn hand_back(policy: DeletionPolicy, ctx: &Context, live: &[Instance], key_name: &str) -> Result<()> {
    match policy {
        DeletionPolicy::Delete => {
            for instance in live {
                match ctx.cloud.terminate_instance(&instance.id).await {
                    Err(e) if !e.is_not_found() => return Err(e.into()),
                    _ => {}
                }
            }
            keys::delete_key_pair(ctx.cloud.as_ref(), key_name).await?;
        }
        DeletionPolicy::Retain => {
            for instance in live {
                ctx.cloud.retain_instance(&instance.id).await?;
            }
        }
    }
    Ok(())
}
