// The derive repeats `type_ = …` across printer columns, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only `Ec2Budget` the operator reads; when it is absent the spec defaults apply.
pub const BUDGET_NAME: &str = "default";

/// Spend and count limits for every instance the operator manages, and their live usage.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, utoipa::ToSchema)]
#[kube(
    group = "dataroom.dev",
    version = "v1alpha1",
    kind = "Ec2Budget",
    doc = "Spend and count limits for all managed instances (the singleton named default), with live usage.",
    category = "dataroom",
    status = "Ec2BudgetStatus",
    printcolumn(name = "Running", type_ = "integer", json_path = ".status.runningInstances"),
    printcolumn(name = "Max", type_ = "integer", json_path = ".spec.maxInstances"),
    printcolumn(name = "Spend", type_ = "number", json_path = ".status.spendTodayUsd"),
    printcolumn(name = "Cap", type_ = "number", json_path = ".spec.dailySpendUsd")
)]
#[serde(rename_all = "camelCase")]
pub struct Ec2BudgetSpec {
    /// Most instances that may be pending or running at once (stopped ones do not count).
    #[serde(default = "default_max_instances")]
    #[schemars(range(min = 0, max = 10000))]
    pub max_instances: u32,
    /// Most dollars that running instances may cost in one UTC day, projected to its end.
    #[serde(default = "default_daily_spend")]
    #[schemars(range(min = 0.0, max = 1000000.0))]
    pub daily_spend_usd: f64,
    /// The most expensive instance type allowed; pricier types and unpriced types are refused.
    #[serde(default = "default_max_type")]
    #[schemars(regex(pattern = crate::crd::INSTANCE_TYPE_PATTERN))]
    pub max_instance_type: String,
    /// Idle timeout for DataRooms that do not set their own; 0 disables.
    #[serde(default = "default_idle")]
    #[schemars(range(min = 0, max = 100000))]
    pub default_idle_timeout_minutes: u32,
    /// Largest root volume (GiB) a launch may create. Volumes cost money while their instance
    /// runs and while it is stopped, and count against `dailySpendUsd` the whole time.
    #[serde(default = "default_max_root_volume", rename = "maxRootVolumeGiB")]
    #[schemars(range(min = 1, max = 16384))]
    pub max_root_volume_gib: u32,
    /// Most launches (RunInstances) in one UTC day; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub max_launches_per_day: Option<u32>,
}

impl Default for Ec2BudgetSpec {
    fn default() -> Self {
        Self {
            max_instances: default_max_instances(),
            daily_spend_usd: default_daily_spend(),
            max_instance_type: default_max_type(),
            default_idle_timeout_minutes: default_idle(),
            max_root_volume_gib: default_max_root_volume(),
            max_launches_per_day: None,
        }
    }
}

fn default_max_instances() -> u32 {
    5
}
fn default_daily_spend() -> f64 {
    10.0
}
fn default_max_type() -> String {
    "t3.medium".to_string()
}
fn default_idle() -> u32 {
    30
}
fn default_max_root_volume() -> u32 {
    100
}

/// Live usage. `settledSpendUsd` and `launchesToday` cannot be recomputed from EC2, so they are
/// persisted here and read back after a restart.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ec2BudgetStatus {
    #[serde(default)]
    pub running_instances: u32,
    /// GiB of root volumes that exist (their instances running or stopped), billed while they do.
    #[serde(default, rename = "rootVolumeGiB")]
    pub root_volume_gib: u32,
    /// Spend so far in the current UTC day, running instances and existing volumes included.
    #[serde(default)]
    pub spend_today_usd: f64,
    /// Spend of instance runs that ended in the current UTC day.
    #[serde(default)]
    pub settled_spend_usd: f64,
    #[serde(default)]
    pub launches_today: u32,
    /// Settled spend of the current UTC day per DataRoom (`namespace/name`), for the fleet view.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub settled_spend_by_room_usd: std::collections::BTreeMap<String, f64>,
    /// RFC 3339 start of the current UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub conditions: Vec<Condition>,
}
