//! The narrow port to the cloud: exactly the EC2 and Secrets Manager operations the controller and
//! the admin API use. `aws` implements it over the AWS SDK, `fake` in memory for tests and the sandbox.

#[cfg(feature = "aws")]
pub mod aws;
mod error;
pub mod fake;
pub mod fenced;
pub mod iam;
pub mod keys;
pub mod metered;
pub mod network;
pub mod remote;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;

use crate::budget::{Reservation, VolumeGrowth};

pub use crate::instance::{
    Instance, InstanceState, MANAGED_BY, RETAINED, TAG_DATA_ROOM, TAG_MANAGED_BY, TAG_NAME, TAG_NAMESPACE,
    TAG_OWNER_UID, TAG_ROOT_VOLUME_GIB, TAG_USER_DATA_SHA256, user_data_sha256,
};
pub use error::{CloudError, ErrorKind, classify};

pub type Result<T, E = CloudError> = std::result::Result<T, E>;

/// Secrets Manager name of the secret holding a key pair's private key.
pub fn ssh_secret_name(key_pair: &str) -> String {
    format!("dataroom-operator/ssh/{key_pair}")
}

/// Everything a launch needs. The launch policy (tags, IMDSv2, encrypted root volume, no instance
/// profile) is not optional and so is not a field: every implementation applies it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LaunchRequest {
    pub owner_uid: String,
    pub client_token: String,
    pub namespace: String,
    pub name: String,
    pub data_room: Option<String>,
    pub instance_type: String,
    pub image_id: String,
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    pub user_data: Option<String>,
    pub root_volume_gib: Option<i32>,
    pub key_name: String,
    pub extra_tags: BTreeMap<String, String>,
}

impl LaunchRequest {
    /// The tags every managed instance carries, on top of the user's own.
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut tags = self.extra_tags.clone();
        tags.insert(TAG_MANAGED_BY.into(), MANAGED_BY.into());
        tags.insert(TAG_OWNER_UID.into(), self.owner_uid.clone());
        tags.insert(TAG_NAMESPACE.into(), self.namespace.clone());
        tags.insert(TAG_NAME.into(), self.name.clone());
        if let Some(room) = &self.data_room {
            tags.insert(TAG_DATA_ROOM.into(), room.clone());
        }
        if let Some(gib) = self.root_volume_gib {
            tags.insert(TAG_ROOT_VOLUME_GIB.into(), gib.to_string());
        }
        tags.insert(TAG_USER_DATA_SHA256.into(), user_data_sha256(self.user_data.as_deref()));
        tags.insert("Name".into(), format!("{}/{}", self.namespace, self.name));
        tags
    }
}

/// A change made to an existing instance. EC2 accepts a new type or user data only while the
/// instance is stopped (`IncorrectInstanceState` otherwise); groups and tags at any time. A new
/// user data also re-tags its hash, so that the next description shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Modification {
    InstanceType {
        instance_type: String,
    },
    UserData {
        user_data: Option<String>,
    },
    SecurityGroups {
        ids: Vec<String>,
    },
    /// CreateTags for `set`, DeleteTags for `remove`.
    Tags {
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
}

impl Modification {
    /// The spec field this change brings EC2 to.
    pub fn field(&self) -> &'static str {
        match self {
            Self::InstanceType { .. } => "instanceType",
            Self::UserData { .. } => "userData",
            Self::SecurityGroups { .. } => "securityGroupIds",
            Self::Tags { .. } => "tags",
        }
    }

    /// Whether EC2 takes it only from a stopped instance.
    pub fn needs_stop(&self) -> bool {
        matches!(self, Self::InstanceType { .. } | Self::UserData { .. })
    }

    /// `instance` as EC2 describes it once this change is made.
    pub fn apply_to(&self, instance: &mut Instance) {
        match self {
            Self::InstanceType { instance_type } => instance.instance_type = instance_type.clone(),
            Self::UserData { user_data } => {
                let hash = user_data_sha256(user_data.as_deref());
                instance.tags.insert(TAG_USER_DATA_SHA256.into(), hash);
            }
            Self::SecurityGroups { ids } => instance.security_group_ids = ids.clone(),
            Self::Tags { set, remove } => {
                remove.iter().for_each(|key| drop(instance.tags.remove(key)));
                instance.tags.extend(set.clone());
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub state: String,
    pub root_device_name: Option<String>,
    pub creation_date: Option<String>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyPair {
    pub name: String,
    pub fingerprint: Option<String>,
    pub key_type: Option<String>,
}

/// A secret value. Its `Debug` never prints the value, so it cannot leak through a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Refuses an S3 object larger than `max_bytes`.
pub fn check_object_size(bucket: &str, key: &str, size: u64, max_bytes: u64) -> Result<()> {
    if size > max_bytes {
        let msg = format!("s3://{bucket}/{key} is {size} bytes, more than the {max_bytes}-byte limit");
        return Err(CloudError::new(ErrorKind::Terminal, "ObjectTooLarge", msg));
    }
    Ok(())
}

/// The instance's life: launch, power, termination, and the describes that find instances. Only
/// the controller holds this port. A launch and a start take the budget gate's reservation, so no
/// cost can be incurred without one.
#[async_trait]
pub trait Lifecycle: Send + Sync + 'static {
    /// Launches one instance under the launch policy; returns it as EC2 first reports it.
    async fn run_instance(&self, req: &LaunchRequest, reservation: &Reservation) -> Result<Instance>;
    /// Every instance carrying the managed-by tag, in all states, in as few paginated calls as possible.
    async fn describe_managed(&self) -> Result<Vec<Instance>>;
    /// Managed instances carrying this owner-UID tag (all states).
    async fn describe_by_owner(&self, owner_uid: &str) -> Result<Vec<Instance>>;
    async fn start_instance(&self, id: &str, reservation: &Reservation) -> Result<()>;
    async fn stop_instance(&self, id: &str) -> Result<()>;
    async fn terminate_instance(&self, id: &str) -> Result<()>;
    /// One in-place change (see [`Modification`] for which need a stopped instance).
    async fn modify_instance(&self, id: &str, change: &Modification) -> Result<()>;
    /// Grows the root volume to the size the budget granted (ModifyVolume), and re-tags its size.
    async fn grow_root_volume(&self, id: &str, growth: &VolumeGrowth) -> Result<()>;
    /// Hands the instance over (`deletionPolicy: Retain`): its managed-by tag becomes
    /// `retained`, so that no controller or collector acts on it again, while the budget keeps
    /// counting it for as long as it runs (the sweep still lists it).
    async fn retain_instance(&self, id: &str) -> Result<()>;
    /// The named security groups with their ingress rules; one that does not exist is NotFound.
    async fn describe_security_groups(&self, ids: &[String]) -> Result<Vec<network::SecurityGroup>>;
    /// The operator's security group in the VPC of `group.subnet_id` (the default VPC without
    /// one): created if missing, its ingress made exactly `group`'s. Returns its ID.
    async fn ensure_security_group(&self, group: &network::ManagedGroup) -> Result<String>;
}

/// The imperative operations that are not an instance's life: console output, images, key pairs,
/// secrets and objects. This is the only cloud port the admin API gets.
#[async_trait]
pub trait Imperative: Send + Sync + 'static {
    async fn console_output(&self, id: &str) -> Result<String>;

    async fn create_image(&self, instance_id: &str, name: &str) -> Result<String>;
    /// The given images, or with no ids every image this account owns.
    async fn describe_images(&self, ids: &[String]) -> Result<Vec<Image>>;
    async fn deregister_image(&self, id: &str) -> Result<()>;

    async fn import_key_pair(&self, name: &str, public_key_openssh: &str) -> Result<KeyPair>;
    /// The named key pairs that exist, or with no names all of them.
    async fn describe_key_pairs(&self, names: &[String]) -> Result<Vec<KeyPair>>;
    /// Deleting a key pair that does not exist succeeds.
    async fn delete_key_pair(&self, name: &str) -> Result<()>;

    /// Creates the secret, or replaces its value when it exists.
    async fn put_secret(&self, name: &str, value: &SecretValue) -> Result<()>;
    async fn get_secret(&self, name: &str) -> Result<Option<SecretValue>>;
    /// Deletes without a recovery window; deleting a missing secret succeeds.
    async fn delete_secret(&self, name: &str) -> Result<()>;

    /// An S3 object's bytes; refused (terminal) when larger than `max_bytes`.
    async fn get_object(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>>;
}

/// A whole cloud (AWS, the fake, a remote sandbox): both ports. The assembly hands the lifecycle
/// port to the controller and only the imperative one to the admin API.
pub trait Cloud: Lifecycle + Imperative {}

impl<T: Lifecycle + Imperative> Cloud for T {}
