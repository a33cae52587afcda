//! Keeps the gate and the `Ec2Budget` object in step: limits flow in from the object (defaults
//! when it is absent), usage flows out to its status, which is also what survives a restart.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;

use crate::budget::Gate;
use crate::crd::{BUDGET_NAME, Ec2Budget, Ec2BudgetSpec, MANAGER};
use crate::metrics::Metrics;

/// Reads the budget once at start: its limits, and the usage persisted by the previous run.
pub async fn load(client: &Client, gate: &Gate) -> kube::Result<()> {
    let api: Api<Ec2Budget> = Api::all(client.clone());
    if let Some(budget) = api.get_opt(BUDGET_NAME).await? {
        gate.set_limits(budget.spec);
        if let Some(status) = &budget.status {
            gate.restore(status);
        }
    }
    Ok(())
}

/// Follows the `Ec2Budget` named `default`: new limits apply at once; deletion restores defaults.
pub async fn watch_limits(client: Client, gate: Arc<Gate>) {
    let api: Api<Ec2Budget> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={BUDGET_NAME}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(b) | watcher::Event::InitApply(b)) => gate.set_limits(b.spec),
            Ok(watcher::Event::Delete(_)) => gate.set_limits(Ec2BudgetSpec::default()),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "watching the Ec2Budget failed; retrying"),
        }
    }
}

/// Writes usage to the budget's status when it changes (at most every 2 s) and every minute
/// (spend moves with time). Creates the object with default limits if it is absent.
pub async fn persist(client: Client, gate: Arc<Gate>, metrics: Arc<Metrics>) {
    let api: Api<Ec2Budget> = Api::all(client);
    let mut changed = gate.subscribe();
    loop {
        let usage = gate.snapshot();
        metrics.budget(&gate.limits(), &usage);
        if let Err(e) = write_status(&api, &usage).await {
            tracing::warn!(error = %e, "could not write Ec2Budget status; retrying");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = tokio::time::timeout(Duration::from_secs(60), changed.changed()).await;
    }
}

async fn write_status(api: &Api<Ec2Budget>, usage: &crate::crd::Ec2BudgetStatus) -> kube::Result<()> {
    let patch = json!({ "apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Budget", "status": usage });
    let params = PatchParams::apply(MANAGER).force();
    match api.patch_status(BUDGET_NAME, &params, &Patch::Apply(&patch)).await {
        // Absent: create it with the default limits, then write the status.
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let budget = Ec2Budget::new(BUDGET_NAME, Ec2BudgetSpec::default());
            match api.create(&PostParams::default(), &budget).await {
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                other => drop(other?),
            }
            api.patch_status(BUDGET_NAME, &params, &Patch::Apply(&patch)).await.map(drop)
        }
        other => other.map(drop),
    }
}
