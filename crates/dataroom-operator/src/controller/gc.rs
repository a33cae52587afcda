//! The orphan collector. A managed instance whose Ec2Instance no longer exists is terminated
//! once it has stayed orphaned for a grace period, and the termination is audited as
//! `gc.terminate`. Such an instance can come from a crash between launch and the status write
//! of an object deleted meanwhile, or from a finalizer removed by hand. Only instances in the
//! operator's namespace scope are considered, and only once the object cache is complete.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use serde_json::json;

use super::{ACTOR, Context, Error};
use crate::cloud::{InstanceState, TAG_NAME, TAG_NAMESPACE};
use crate::crd::{Ec2Instance, audit_name};

/// Orphans seen so far: instance ID → when first seen orphaned.
#[derive(Default)]
pub struct Orphans(HashMap<String, Timestamp>);

/// Collects every `every` once the object cache is complete; runs until aborted.
pub async fn run(ctx: Arc<Context>, grace: SignedDuration, every: Duration) {
    if ctx.instances.wait_until_ready().await.is_err() {
        return;
    }
    let mut orphans = Orphans::default();
    loop {
        collect(&ctx, &mut orphans, grace).await;
        tokio::time::sleep(every).await;
    }
}

/// One pass over the EC2 view; returns the instances terminated.
pub async fn collect(ctx: &Context, orphans: &mut Orphans, grace: SignedDuration) -> Vec<String> {
    let now = (ctx.clock)();
    let owners: std::collections::HashSet<String> =
        ctx.instances.state().iter().filter_map(|o| o.uid()).collect();
    let scope = ctx.settings.namespace.as_deref();
    let orphaned: Vec<_> = ctx
        .cache
        .all()
        .into_iter()
        .filter(|i| !matches!(i.state, InstanceState::Terminated | InstanceState::ShuttingDown))
        // Handed over by deletionPolicy Retain: its owner is gone on purpose.
        .filter(|i| !i.is_retained())
        .filter(|i| scope.is_none_or(|ns| i.tag(TAG_NAMESPACE) == Some(ns)))
        .filter(|i| i.owner_uid().is_none_or(|uid| !owners.contains(uid)))
        .collect();
    orphans.0.retain(|id, _| orphaned.iter().any(|i| &i.id == id));
    let mut terminated = Vec::new();
    for instance in orphaned {
        let since = *orphans.0.entry(instance.id.clone()).or_insert(now);
        if now.duration_since(since) < grace {
            continue;
        }
        let target = audit_name::<Ec2Instance>(
            instance.tag(TAG_NAMESPACE).unwrap_or_default(),
            instance.tag(TAG_NAME).unwrap_or_default(),
        );
        let params = json!({ "instance_id": instance.id, "owner_uid": instance.owner_uid(),
                             "orphaned_since": since.to_string() });
        let op = ctx.operation(ACTOR, "gc.terminate", &target, params);
        let terminate = async { Ok::<_, Error>(ctx.cloud.terminate_instance(&instance.id).await?) };
        match op.run(terminate).await {
            Ok(()) => {
                orphans.0.remove(&instance.id);
                terminated.push(instance.id);
            }
            Err(e) => {
                tracing::warn!(error = %e, instance = %instance.id, "gc: not terminated; retried next pass")
            }
        }
    }
    terminated
}
