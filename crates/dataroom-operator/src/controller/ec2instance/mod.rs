//! The Ec2Instance reconciler: finalizer handling here, then observe (read-only) → plan (pure) → apply (one step) → status.

mod apply;
mod cleanup;
mod modify;
mod network;
mod observe;
pub mod plan;
mod status;
pub mod update;

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event};
use kube::{Api, ResourceExt};

use super::{Context, Error, Result};
use crate::crd::{EC2_FINALIZER, Ec2Instance};

pub async fn reconcile(obj: Arc<Ec2Instance>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started("Ec2Instance");
    let namespace = obj.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = obj.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let api: Api<Ec2Instance> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer::finalizer(&api, EC2_FINALIZER, obj, |event| async {
        match event {
            Event::Apply(obj) => apply::converge(&obj, &ctx).await,
            Event::Cleanup(obj) => cleanup::cleanup(&obj, &ctx).await,
        }
    })
    .await;
    match result {
        Ok(action) => {
            ctx.succeeded(&uid);
            Ok(action)
        }
        Err(finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e)) => Err(e),
        Err(other) => Err(Error::Finalizer(Box::new(other))),
    }
}
