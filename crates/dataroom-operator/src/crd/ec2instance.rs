// The derive repeats `type_ = …` across printer columns, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One EC2 instance in a declared power state.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "dataroom.dev",
    version = "v1alpha1",
    kind = "Ec2Instance",
    doc = "An EC2 instance the operator launches, keeps in its declared power state and terminates on deletion.",
    namespaced,
    shortname = "ec2",
    category = "dataroom",
    status = "Ec2InstanceStatus",
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Type", type_ = "string", json_path = ".status.instanceType"),
    printcolumn(
        name = "UpToDate",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"UpToDate\")].status"
    ),
    printcolumn(name = "Instance", type_ = "string", json_path = ".status.instanceId"),
    printcolumn(name = "IP", type_ = "string", json_path = ".status.privateIp"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = immutable_fields()))]
pub struct Ec2InstanceSpec {
    /// EC2 instance type; it must be priced no higher than the budget's `maxInstanceType`.
    #[serde(default = "default_instance_type")]
    #[schemars(regex(pattern = crate::crd::INSTANCE_TYPE_PATTERN), length(max = crate::crd::INSTANCE_TYPE_MAX))]
    pub instance_type: String,
    /// AMI to launch; the operator's configured default image when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = crate::crd::IMAGE_ID_PATTERN), length(max = 21))]
    pub image_id: Option<String>,
    /// Desired power state: the controller starts or stops the instance to match.
    #[serde(default)]
    pub power_state: PowerState,
    /// Subnet to launch into; the operator's configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^subnet-[0-9a-f]{8,17}$"), length(max = 24))]
    pub subnet_id: Option<String>,
    /// Security groups; the operator's configured defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 5))]
    pub security_group_ids: Option<Vec<String>>,
    /// User data passed to the instance at launch (plain text; the operator base64-encodes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    pub user_data: Option<String>,
    /// Size of the encrypted root volume in GiB; the image's size when absent.
    #[serde(default, rename = "rootVolumeGiB", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16384))]
    pub root_volume_gib: Option<i32>,
    /// Extra EC2 tags. Keys starting with `dataroom.dev/` and the key `Name` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// What happens to the EC2 instance when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// How a change EC2 takes only from a stopped instance (`instanceType`, `userData`) is made:
    /// `Restart` stops, changes and starts the instance; `OnNextStop` waits for its next stop.
    #[serde(default)]
    pub update_policy: UpdatePolicy,
    /// Name of the DataRoom this instance serves, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub data_room: Option<String>,
}

impl Ec2Instance {
    /// The DataRoom (`namespace/name`) this instance serves, if any.
    pub fn room_key(&self) -> Option<String> {
        Some(format!("{}/{}", self.metadata.namespace.as_ref()?, self.spec.data_room.as_ref()?))
    }
}

/// The fields a live instance cannot change (CRD transition rules, enforced at admission by the
/// API server): the image and subnet it was launched with, the room it serves, and a root
/// volume that may grow but not shrink.
fn immutable_fields() -> serde_json::Value {
    let fixed = |field: &str| {
        serde_json::json!({
            "rule": format!("has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})"),
            "message": format!("spec.{field} is immutable: a live instance cannot change it; delete the object and create a new one"),
            "fieldPath": format!(".{field}"),
        })
    };
    serde_json::json!([
        fixed("imageId"),
        fixed("subnetId"),
        fixed("dataRoom"),
        {
            "rule": "!has(oldSelf.rootVolumeGiB) || (has(self.rootVolumeGiB) && self.rootVolumeGiB >= oldSelf.rootVolumeGiB)",
            "message": "spec.rootVolumeGiB may grow but not shrink (EBS volumes cannot be made smaller)",
            "fieldPath": ".rootVolumeGiB",
        },
    ])
}

/// The instance type when none is named (here and in DataRooms).
pub const DEFAULT_INSTANCE_TYPE: &str = "t3.micro";

fn default_instance_type() -> String {
    DEFAULT_INSTANCE_TYPE.to_string()
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PowerState {
    #[default]
    Running,
    Stopped,
}

/// `Delete` terminates the instance and removes its key pair and secret; `Retain` leaves all three
/// in place and stops managing the instance (its managed-by tag becomes `retained`); the budget
/// counts a retained instance until it is stopped or terminated.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

/// How changes that need a stopped instance are made.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpdatePolicy {
    /// Stop the instance, change it, start it again (budget-checked before the stop).
    #[default]
    Restart,
    /// Change it at its next stop; until then `UpToDate` is False and says so.
    OnNextStop,
}

/// A pinned SSH host key.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostKeyPin {
    pub instance_id: String,
    /// OpenSSH public key (`ssh-ed25519 AAAA…`).
    pub public_key: String,
}

/// What the controller last observed. `sshKeySecret` is the secret's name, never its value.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ec2InstanceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// EC2 instance state: pending, running, stopping, stopped, shutting-down, terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The type EC2 runs (which may differ from the spec's while a change is under way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// The image EC2 runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The security groups EC2 gives the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    /// RFC 3339 time of the instance's latest start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_time: Option<String>,
    /// The price of the type EC2 runs (of the spec's type before launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_price_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_pair_name: Option<String>,
    /// Name of the Secrets Manager secret that holds the SSH private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_secret: Option<String>,
    /// The SSH host key trusted on first use, for this instance ID only; a different key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<HostKeyPin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Synced`, `BudgetAllowed` and `UpToDate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// One line saying what the controller is doing or waiting for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
