//! One EC2 instance as the operator sees it, and the tags that tie it to its object: the facts
//! that the budget, the controller and the admin API's read-only view share. A leaf module, so
//! that the budget depends on no cloud port.

use std::collections::BTreeMap;

use jiff::Timestamp;

pub const TAG_MANAGED_BY: &str = "dataroom.dev/managed-by";
pub const MANAGED_BY: &str = "dataroom-operator";
/// The managed-by tag's value on an instance handed over by `deletionPolicy: Retain`: no longer
/// acted on, still counted by the budget while it runs.
pub const RETAINED: &str = "retained";
pub const TAG_OWNER_UID: &str = "dataroom.dev/owner-uid";
pub const TAG_NAMESPACE: &str = "dataroom.dev/namespace";
pub const TAG_NAME: &str = "dataroom.dev/name";
pub const TAG_DATA_ROOM: &str = "dataroom.dev/data-room";
/// The root volume's size in GiB, tagged at launch: EC2's instance descriptions do not carry it,
/// and the budget bills the volume for as long as the instance exists.
pub const TAG_ROOT_VOLUME_GIB: &str = "dataroom.dev/root-volume-gib";
/// The size assumed for a root volume whose size is not known (an image's own size, before the
/// launch tags it): the usual Linux image's.
pub const DEFAULT_ROOT_VOLUME_GIB: u32 = 8;
/// SHA-256 (hex) of the user data the instance was given, tagged at launch and after each change:
/// EC2's descriptions do not carry user data, and reading it back is a call per instance.
pub const TAG_USER_DATA_SHA256: &str = "dataroom.dev/user-data-sha256";

/// The value of `TAG_USER_DATA_SHA256` for `user_data` (none is the hash of the empty string).
pub fn user_data_sha256(user_data: Option<&str>) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(user_data.unwrap_or_default().as_bytes()))
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
    /// The security groups of its primary network interface, in EC2's order.
    #[serde(default)]
    pub security_group_ids: Vec<String>,
}

impl Instance {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// Handed over by `deletionPolicy: Retain`: counted, never acted on.
    pub fn is_retained(&self) -> bool {
        self.tag(TAG_MANAGED_BY) == Some(RETAINED)
    }

    pub fn owner_uid(&self) -> Option<&str> {
        self.tag(TAG_OWNER_UID)
    }

    /// The root volume's size, from its launch tag (an unreadable one counts as the default).
    pub fn root_volume_gib(&self) -> u32 {
        self.tag(TAG_ROOT_VOLUME_GIB).and_then(|g| g.parse().ok()).unwrap_or(DEFAULT_ROOT_VOLUME_GIB)
    }

    /// The hash of its user data, from its tag; `None` for an instance launched before the tag.
    pub fn user_data_sha256(&self) -> Option<&str> {
        self.tag(TAG_USER_DATA_SHA256)
    }

    /// The DataRoom (`namespace/name`) this instance serves, from its tags.
    pub fn room(&self) -> Option<String> {
        Some(format!("{}/{}", self.tag(TAG_NAMESPACE)?, self.tag(TAG_DATA_ROOM)?))
    }
}
