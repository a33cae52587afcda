// The derive repeats `type_ = …` across printer columns, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

//! The `DataRoom` type. Its controller arrives with its own issue; the type is here so that the CRD
//! can be installed and validated from the start.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A data room server: one instance, its configuration and files, a health check and an idle policy.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "dataroom.dev",
    version = "v1alpha1",
    kind = "DataRoom",
    doc = "A data room server: one instance with its configuration, files, health check and idle policy.",
    namespaced,
    shortname = "dr",
    category = "dataroom",
    status = "DataRoomStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.instanceType"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct DataRoomSpec {
    #[serde(default)]
    pub state: DataRoomState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::crd::INSTANCE_TYPE_PATTERN))]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::crd::IMAGE_ID_PATTERN))]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigSource>,
    /// Where the configuration is written on the instance (mode 0600).
    #[serde(default = "default_config_path")]
    #[schemars(regex(pattern = r"^/"))]
    pub config_path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Minutes without activity before the room is stopped; the budget's default when absent; 0 disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub idle_timeout_minutes: Option<u32>,
    /// How the room is published in DNS while it is Ready (when the operator has a zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<RoomDns>,
    /// How a change of `instanceType` or `imageId` reaches a room that runs: `Rolling` boots the
    /// new instance beside the old one and switches over once it is healthy (the budget must hold
    /// both for a while); `Recreate` stops the old instance first.
    #[serde(default)]
    pub update_strategy: UpdateStrategy,
    /// Seconds the old instance keeps answering after a rolling upgrade has moved the room to the
    /// new one, for clients that still hold its address (DNS answers are cached for 30 s).
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub drain_seconds: u32,
}

/// How a room moves to a new instance type or image.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpdateStrategy {
    /// Boot the new instance, configure it, wait for it to be healthy, move the room's endpoint
    /// and name to it, then stop and delete the old one: no moment without a healthy instance.
    #[default]
    Rolling,
    /// Stop and delete the old instance, then boot the new one: one instance at a time.
    Recreate,
}

/// As long as the records the operator publishes are cached.
fn default_drain_seconds() -> u32 {
    30
}

/// The room's DNS name: `<name>.<namespace>.<zone>` unless `hostname` names the labels before
/// the zone (`deals` gives `deals.<zone>`). A name another, older room has is refused.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomDns {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(max = 200)
    )]
    pub hostname: Option<String>,
}

fn default_config_path() -> String {
    "/etc/dataroom/config.json".to_string()
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DataRoomState {
    #[default]
    Running,
    Stopped,
}

/// Configuration: inline JSON, or one key of a ConfigMap or Secret in the room's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSource {
    /// The configuration itself, a JSON object (kept as written: the API server prunes nothing in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub inline: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct KeyRef {
    pub name: String,
    pub key: String,
}

/// A file written to the instance from a ConfigMap or Secret key.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileSpec {
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    /// Octal file mode, for example `0644`.
    #[serde(default = "default_mode")]
    #[schemars(regex(pattern = r"^0?[0-7]{3}$"))]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
}

fn default_mode() -> String {
    "0644".to_string()
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    #[serde(default = "default_health_path")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
    #[serde(default = "default_scheme")]
    #[schemars(regex(pattern = r"^https?$"))]
    pub scheme: String,
    #[serde(default = "default_period")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: u32,
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: u32,
    #[serde(default = "default_failures")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            port: default_port(),
            path: default_health_path(),
            scheme: default_scheme(),
            period_seconds: default_period(),
            timeout_seconds: default_timeout(),
            failure_threshold: default_failures(),
        }
    }
}

fn default_port() -> u16 {
    8000
}
fn default_health_path() -> String {
    "/health".to_string()
}
fn default_scheme() -> String {
    "http".to_string()
}
fn default_period() -> u32 {
    10
}
fn default_timeout() -> u32 {
    5
}
fn default_failures() -> u32 {
    3
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataRoomStatus {
    /// Pending, Provisioning, Configuring, Ready, Stopping, Stopped, Failed or BudgetBlocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The DNS name the room is published under, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
