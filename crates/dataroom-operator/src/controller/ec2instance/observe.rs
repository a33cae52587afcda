//! What an Ec2Instance's reconcile reads before it decides: its instance as the EC2 view last saw
//! it, the image a launch would use, and, when the view has none and one should run, what EC2
//! holds under the object's owner tag (a crash between RunInstances and the status write leaves an
//! instance the view may not show yet). Read-only.

use super::plan::{Step, plan};
use crate::cloud::Instance;
use crate::controller::{Context, Result};
use crate::crd::Ec2Instance;

/// The snapshot one reconcile works from.
pub struct Observed {
    pub instance: Option<Instance>,
    /// The spec's image, or the operator's default.
    pub image: Option<String>,
    /// The security groups the instance should have, when known (`network::wanted`).
    pub groups: Option<Vec<String>>,
    /// Live instances found by owner tag when the view has none to serve the object, oldest first.
    pub found: Vec<Instance>,
}

pub async fn observe(
    obj: &Ec2Instance,
    ctx: &Context,
    uid: &str,
    cached: Option<Instance>,
) -> Result<Observed> {
    let image = obj.spec.image_id.clone().or_else(|| ctx.settings.default_image_id.clone());
    let groups = super::network::wanted(obj, ctx);
    let mut observed = Observed { instance: cached, image, groups, found: Vec::new() };
    if let Step::Launch { .. } = observed.plan(obj) {
        let mut live = ctx.cloud.describe_by_owner(uid).await?;
        live.retain(|i| !i.state.is_gone());
        live.sort_by(|a, b| (a.launch_time, &a.id).cmp(&(b.launch_time, &b.id)));
        observed.found = live;
    }
    Ok(observed)
}

impl Observed {
    pub fn plan(&self, obj: &Ec2Instance) -> Step {
        plan(&obj.spec, self.image.as_deref(), self.groups.as_deref(), self.instance.as_ref())
    }
}
