//! The narrow port to the cloud: exactly the EC2 and Secrets Manager operations the controller and
//! the admin API use. `aws` implements it over the AWS SDK, `fake` in memory for tests and the sandbox.

#[cfg(feature = "aws")]
pub mod aws;
mod error;
pub mod fake;
pub mod iam;
pub mod keys;
pub mod metered;
pub mod pricing;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use jiff::Timestamp;

pub use error::{CloudError, ErrorKind, classify};

pub type Result<T, E = CloudError> = std::result::Result<T, E>;

pub const TAG_MANAGED_BY: &str = "dataroom.dev/managed-by";
pub const MANAGED_BY: &str = "dataroom-operator";
pub const TAG_OWNER_UID: &str = "dataroom.dev/owner-uid";
pub const TAG_NAMESPACE: &str = "dataroom.dev/namespace";
pub const TAG_NAME: &str = "dataroom.dev/name";
pub const TAG_DATA_ROOM: &str = "dataroom.dev/data-room";

/// Secrets Manager name of the secret holding a key pair's private key.
pub fn ssh_secret_name(key_pair: &str) -> String {
    format!("dataroom-operator/ssh/{key_pair}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Stopping, Self::Stopped, Self::ShuttingDown, Self::Terminated]
            .into_iter()
            .find(|state| state.as_str() == s)
    }

    /// Pending and running instances hold a budget slot and accrue cost.
    pub fn is_billed(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }

    /// Gone, or on its way there: it will never run again.
    pub fn is_gone(self) -> bool {
        matches!(self, Self::ShuttingDown | Self::Terminated)
    }

    /// Not between states: running, stopped or terminated.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Running | Self::Stopped | Self::Terminated)
    }
}

/// One EC2 instance as the operator sees it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Instance {
    pub id: String,
    pub state: InstanceState,
    pub instance_type: String,
    pub image_id: String,
    pub key_name: Option<String>,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    /// Time of the latest start (EC2's `LaunchTime`).
    pub launch_time: Option<Timestamp>,
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    pub fn owner_uid(&self) -> Option<&str> {
        self.tag(TAG_OWNER_UID)
    }

    /// The DataRoom (`namespace/name`) this instance serves, from its tags.
    pub fn room(&self) -> Option<String> {
        Some(format!("{}/{}", self.tag(TAG_NAMESPACE)?, self.tag(TAG_DATA_ROOM)?))
    }
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
        tags.insert("Name".into(), format!("{}/{}", self.namespace, self.name));
        tags
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

/// The cloud operations the operator needs, and no others.
/// Refuses an S3 object larger than `max_bytes`.
pub fn check_object_size(bucket: &str, key: &str, size: u64, max_bytes: u64) -> Result<()> {
    if size > max_bytes {
        let msg = format!("s3://{bucket}/{key} is {size} bytes, more than the {max_bytes}-byte limit");
        return Err(CloudError::new(ErrorKind::Terminal, "ObjectTooLarge", msg));
    }
    Ok(())
}

#[async_trait]
pub trait Cloud: Send + Sync + 'static {
    /// Launches one instance under the launch policy; returns it as EC2 first reports it.
    async fn run_instance(&self, req: &LaunchRequest) -> Result<Instance>;
    /// Every instance carrying the managed-by tag, in all states, in as few paginated calls as possible.
    async fn describe_managed(&self) -> Result<Vec<Instance>>;
    /// Managed instances carrying this owner-UID tag (all states).
    async fn describe_by_owner(&self, owner_uid: &str) -> Result<Vec<Instance>>;
    async fn start_instance(&self, id: &str) -> Result<()>;
    async fn stop_instance(&self, id: &str) -> Result<()>;
    async fn terminate_instance(&self, id: &str) -> Result<()>;
    /// Removes the managed-by tag so the operator no longer counts or collects the instance.
    async fn unmanage_instance(&self, id: &str) -> Result<()>;
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
