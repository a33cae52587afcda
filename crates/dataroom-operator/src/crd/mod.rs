//! Custom resources of group `dataroom.dev/v1alpha1`, and the names shared with the rest of the crate.

mod budget;
mod conditions;
mod dataroom;
mod ec2instance;

pub use budget::{BUDGET_NAME, Ec2Budget, Ec2BudgetSpec, Ec2BudgetStatus};
pub use conditions::{set_condition, upsert_condition};
pub use dataroom::{
    ConfigSource, DataRoom, DataRoomSpec, DataRoomState, DataRoomStatus, FileSpec, HealthCheck, KeyRef,
    RoomDns, UpdateStrategy,
};
pub use ec2instance::{
    DEFAULT_INSTANCE_TYPE, DeletionPolicy, Ec2Instance, Ec2InstanceSpec, Ec2InstanceStatus, HostKeyPin,
    PowerState, UpdatePolicy,
};

use std::sync::LazyLock;

use regex::Regex;

/// What an instance type looks like (`t3.micro`): the CRDs' schema pattern, and so every check
/// of one outside the API server (the admin API's, the command line's).
pub const INSTANCE_TYPE_PATTERN: &str = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$";
/// The longest instance type the Ec2Instance schema accepts.
pub const INSTANCE_TYPE_MAX: usize = 32;
/// What an AMI ID looks like: `ami-` and 8 to 17 lower-case hex digits.
pub const IMAGE_ID_PATTERN: &str = r"^ami-[0-9a-f]{8,17}$";

/// Whether the Ec2Instance schema accepts `s` as `spec.instanceType`.
pub fn is_instance_type(s: &str) -> bool {
    static PATTERN: LazyLock<Regex> = LazyLock::new(|| Regex::new(INSTANCE_TYPE_PATTERN).expect("a regex"));
    s.len() <= INSTANCE_TYPE_MAX && PATTERN.is_match(s)
}

/// Whether the schema accepts `s` as `spec.imageId`.
pub fn is_image_id(s: &str) -> bool {
    static PATTERN: LazyLock<Regex> = LazyLock::new(|| Regex::new(IMAGE_ID_PATTERN).expect("a regex"));
    PATTERN.is_match(s)
}

use kube::{CustomResourceExt, ResourceExt};

/// `namespace/name`: how budgets and activity name an object.
pub fn qualified_name<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// `kind/namespace/name` (kind in lower case): how every audit record names an object, so that
/// `?target=` finds what the controllers and the admin API did to it.
pub fn audit_target<K: kube::Resource<DynamicType = ()> + ResourceExt>(obj: &K) -> String {
    audit_name::<K>(&obj.namespace().unwrap_or_default(), &obj.name_any())
}

/// [`audit_target`] for an object known only by name.
pub fn audit_name<K: kube::Resource<DynamicType = ()>>(namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", K::kind(&()).to_lowercase())
}

pub const GROUP: &str = "dataroom.dev";
pub const EC2_FINALIZER: &str = "dataroom.dev/ec2-instance";
pub const DATAROOM_FINALIZER: &str = "dataroom.dev/data-room";
pub const ACTIVITY_ANNOTATION: &str = "dataroom.dev/last-activity";
/// Field manager used for every server-side apply this operator makes.
pub const MANAGER: &str = "dataroom-operator";

/// Every CRD as one multi-document YAML stream, in a stable order (what `crdgen` prints).
pub fn crds_yaml() -> String {
    let crds = [Ec2Instance::crd(), Ec2Budget::crd(), DataRoom::crd()];
    let docs: Vec<String> =
        crds.iter().map(|crd| serde_yaml::to_string(crd).expect("a CRD always serialises")).collect();
    docs.join("---\n")
}
