//! One server-side-apply patch of status per reconcile, skipped when nothing changed.

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::network;
use super::update::{Difference, Fix, differences};
use crate::budget::Refusal;
use crate::cloud::{Instance, InstanceState, ssh_secret_name};
use crate::controller::{Context, Result};
use crate::crd::{
    Ec2Instance, Ec2InstanceStatus, HostKeyPin, MANAGER, PowerState, UpdatePolicy, set_condition,
};

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

/// Whether EC2 was changed outside the operator: the spec has not changed since `UpToDate` was
/// last True (or since that drift was first seen) and yet EC2 differs.
pub fn drifted(obj: &Ec2Instance) -> bool {
    let Some(status) = &obj.status else { return false };
    let Some(c) = status.conditions.iter().find(|c| c.type_ == "UpToDate") else { return false };
    c.observed_generation == obj.metadata.generation && (c.status == "True" || c.reason == DRIFTED)
}

const DRIFTED: &str = "Drifted";

/// `UpToDate` from what this reconcile saw: the instance, the differences, and the budget.
fn up_to_date(obj: &Ec2Instance, ctx: &Context, report: &Report) -> (bool, &'static str, String) {
    let live = report.instance.as_ref().filter(|i| !i.state.is_gone());
    let Some(instance) = live else {
        return match obj.spec.power_state {
            PowerState::Running => (false, "NotLaunched", "no instance runs yet".into()),
            PowerState::Stopped => (true, "UpToDate", "no instance, and none should run".into()),
        };
    };
    let found = differences(&obj.spec, network::wanted(obj, ctx).as_deref(), instance);
    let waits = obj.spec.update_policy == UpdatePolicy::OnNextStop;
    let refusal = report.refusal.as_ref().map(ToString::to_string);
    up_to_date_condition(&found, instance.state.is_billed(), waits, drifted(obj), refusal)
}

/// `UpToDate`: True when EC2 runs what the spec says; otherwise each differing field, both
/// values and what the operator is doing about it, under the reason that matters most (a field
/// that cannot change, then the budget, then a wait for the next stop, then drift or an update).
pub fn up_to_date_condition(
    found: &[Difference],
    running: bool,
    waits: bool,
    drifted: bool,
    refusal: Option<String>,
) -> (bool, &'static str, String) {
    if found.is_empty() {
        return (true, "UpToDate", "EC2 runs what the spec says".into());
    }
    let mut said: Vec<String> = found
        .iter()
        .map(|d| {
            let doing = match &d.fix {
                Fix::Immutable => "it cannot change on a live instance; recreate the object to change it",
                fix if fix.needs_stop() && running && waits => {
                    "made at the next stop (updatePolicy OnNextStop)"
                }
                fix if fix.needs_stop() && running => "stopping the instance to make it, then starting it",
                fix if fix.needs_stop() => "changing it while the instance is stopped",
                _ => "changing it in place",
            };
            format!("{}: EC2 has {}, the spec asks {}; {doing}", d.field, d.have, d.want)
        })
        .collect();
    let stop_waits = found.iter().any(|d| d.fix.needs_stop()) && running && waits;
    let reason = match (found.iter().any(|d| d.fix == Fix::Immutable), &refusal, stop_waits, drifted) {
        (true, _, _, _) => "Immutable",
        (false, Some(_), _, _) => "BudgetRefused",
        (false, None, true, _) => "WaitingForStop",
        (false, None, false, true) => DRIFTED,
        (false, None, false, false) => "Updating",
    };
    said.extend(refusal.map(|r| format!("held by the budget: {r}")));
    (false, reason, said.join("; "))
}

pub fn build(obj: &Ec2Instance, ctx: &Context, report: &Report) -> Ec2InstanceStatus {
    let generation = obj.metadata.generation;
    let old = obj.status.clone().unwrap_or_default();
    let live = report.instance.as_ref().filter(|i| i.state != InstanceState::Terminated);
    let mut status = Ec2InstanceStatus {
        instance_id: live.map(|i| i.id.clone()),
        state: Some(live.map_or("none", |i| i.state.as_str()).to_string()),
        instance_type: live.map(|i| i.instance_type.clone()),
        image_id: live.map(|i| i.image_id.clone()),
        security_group_ids: live.map(|i| i.security_group_ids.clone()),
        public_ip: live.and_then(|i| i.public_ip.clone()),
        private_ip: live.and_then(|i| i.private_ip.clone()),
        launch_time: live.and_then(|i| i.launch_time).map(|t| t.to_string()),
        hourly_price_usd: ctx.gate.hourly_price(live.map_or(&obj.spec.instance_type, |i| &i.instance_type)),
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
    let (current, reason, why) = up_to_date(obj, ctx, report);
    set_condition(conditions, "UpToDate", current, reason, why, generation);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Modification;

    fn difference(field: &'static str, fix: Fix) -> Difference {
        Difference { field, have: "old".into(), want: "new".into(), fix }
    }

    /// Differences, running, OnNextStop, drifted, refusal; then the reason and words of the message.
    type Case = (Vec<Difference>, bool, bool, bool, Option<String>, &'static str, &'static str);

    #[test]
    fn up_to_date_names_each_field_and_the_reason_that_matters_most() {
        let retype = difference(
            "instanceType",
            Fix::Modify(Modification::InstanceType { instance_type: "new".into() }),
        );
        let tags =
            difference("tags", Fix::Modify(Modification::Tags { set: Default::default(), remove: vec![] }));
        let image = difference("imageId", Fix::Immutable);
        let refused = || Some("maxInstanceType: too dear".to_string());
        let cases: Vec<Case> = vec![
            (vec![], true, false, false, None, "UpToDate", "EC2 runs what the spec says"),
            (
                vec![tags.clone()],
                true,
                false,
                false,
                None,
                "Updating",
                "tags: EC2 has old, the spec asks new; changing it in place",
            ),
            (vec![tags.clone()], true, false, true, None, "Drifted", "changing it in place"),
            (vec![retype.clone()], true, false, false, None, "Updating", "stopping the instance to make it"),
            (vec![retype.clone()], false, true, false, None, "Updating", "while the instance is stopped"),
            (vec![retype.clone()], true, true, true, None, "WaitingForStop", "made at the next stop"),
            (
                vec![retype.clone()],
                true,
                false,
                false,
                refused(),
                "BudgetRefused",
                "held by the budget: maxInstanceType",
            ),
            (
                vec![retype, image],
                true,
                false,
                false,
                refused(),
                "Immutable",
                "imageId: EC2 has old, the spec asks new; it cannot change",
            ),
        ];
        for (found, running, waits, drifted, refusal, reason, words) in cases {
            let (current, got, message) = up_to_date_condition(&found, running, waits, drifted, refusal);
            assert_eq!((current, got), (found.is_empty(), reason), "{message}");
            assert!(message.contains(words), "{reason}: {message}");
        }
    }
}
