//! One server-side-apply patch of status per reconcile, skipped when nothing changed.

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::budget::Refusal;
use crate::cloud::{Instance, InstanceState, ssh_secret_name};
use crate::controller::{Context, Result};
use crate::crd::{Ec2Instance, Ec2InstanceStatus, HostKeyPin, MANAGER, PowerState, set_condition};

/// What this reconcile saw and decided, as status needs it.
#[derive(Debug, Default)]
pub struct Report {
    pub instance: Option<Instance>,
    pub refusal: Option<Refusal>,
    /// Why the controller is waiting, if it is.
    pub message: Option<String>,
    /// Why the spec cannot be satisfied, if it cannot: the condition's reason and message.
    pub invalid: Option<(&'static str, String)>,
    /// The error label and message, if the step failed.
    pub error: Option<(&'static str, String)>,
}

/// The current `BudgetAllowed=False` message, if any.
pub fn budget_message(obj: &Ec2Instance) -> Option<String> {
    let conditions = &obj.status.as_ref()?.conditions;
    let c = conditions.iter().find(|c| c.type_ == "BudgetAllowed" && c.status == "False")?;
    Some(c.message.clone())
}

pub fn build(obj: &Ec2Instance, ctx: &Context, report: &Report) -> Ec2InstanceStatus {
    let generation = obj.metadata.generation;
    let old = obj.status.clone().unwrap_or_default();
    let live = report.instance.as_ref().filter(|i| i.state != InstanceState::Terminated);
    let mut status = Ec2InstanceStatus {
        instance_id: live.map(|i| i.id.clone()),
        state: Some(live.map_or("none", |i| i.state.as_str()).to_string()),
        public_ip: live.and_then(|i| i.public_ip.clone()),
        private_ip: live.and_then(|i| i.private_ip.clone()),
        launch_time: live.and_then(|i| i.launch_time).map(|t| t.to_string()),
        hourly_price_usd: ctx.gate.hourly_price(&obj.spec.instance_type),
        key_pair_name: live.and_then(|i| i.key_name.clone()),
        ssh_key_secret: live.and_then(|i| i.key_name.as_deref()).map(ssh_secret_name),
        // The pin belongs to one instance: a replacement is trusted afresh.
        // This writer alone writes the pin: the persisted one, or one trusted since on first use.
        ssh_host_key: live.and_then(|i| {
            let persisted = old.ssh_host_key.filter(|pin| pin.instance_id == i.id);
            let trusted = || {
                ctx.trusted_host_key(&i.id)
                    .map(|key| HostKeyPin { instance_id: i.id.clone(), public_key: key })
            };
            persisted.or_else(trusted)
        }),
        observed_generation: generation,
        conditions: old.conditions,
        message: None,
    };
    let conditions = &mut status.conditions;
    let want_running = obj.spec.power_state == PowerState::Running;
    let state = live.map(|i| i.state);
    let ready = match want_running {
        true => state == Some(InstanceState::Running),
        false => matches!(state, None | Some(InstanceState::Stopped)),
    };
    let (ready_reason, ready_message) = match (ready, want_running) {
        (true, true) => ("Running", "the instance is running".to_string()),
        (true, false) => ("Stopped", "the instance is stopped".to_string()),
        (false, _) => ("Converging", report.message.clone().unwrap_or_else(|| "converging".into())),
    };
    set_condition(conditions, "Ready", ready, ready_reason, ready_message.clone(), generation);
    let budget = report.refusal.as_ref();
    let (reason, message) = match budget {
        None => ("WithinBudget", "the budget allows this instance".to_string()),
        Some(r) => (refusal_reason(r), r.to_string()),
    };
    set_condition(conditions, "BudgetAllowed", budget.is_none(), reason, message, generation);
    let (synced, reason, message) = match (&report.invalid, &report.error) {
        (Some((reason, why)), _) => (false, *reason, why.clone()),
        (None, Some((label, why))) => (false, *label, why.clone()),
        (None, None) => (true, "Reconciled", "EC2 matches the spec or is converging to it".into()),
    };
    set_condition(conditions, "Synced", synced, reason, message.clone(), generation);
    status.message = Some(match (budget, synced) {
        (Some(r), _) => format!("budget: {r}"),
        (None, false) => message,
        (None, true) => ready_message,
    });
    status
}

fn refusal_reason(refusal: &Refusal) -> &'static str {
    match refusal.limit() {
        "maxInstanceType" => "InstanceTypeNotAllowed",
        "maxInstances" => "MaxInstancesReached",
        "maxLaunchesPerDay" => "MaxLaunchesReached",
        _ => "DailySpendCapReached",
    }
}

pub async fn write(obj: &Ec2Instance, ctx: &Context, report: &Report) -> Result<()> {
    let status = build(obj, ctx, report);
    if obj.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<Ec2Instance> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "dataroom.dev/v1alpha1",
        "kind": "Ec2Instance",
        "status": status,
    });
    let params = PatchParams::apply(MANAGER).force();
    api.patch_status(&obj.name_any(), &params, &Patch::Apply(&patch)).await?;
    Ok(())
}
