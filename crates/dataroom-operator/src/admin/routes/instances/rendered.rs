//! The instance list, rendered once per change of what it shows (see `listing::Rendered`).

use super::InstanceView;
use crate::admin::AdminState;
use crate::admin::listing::{self, Item};
use crate::crd::Ec2Instance;

/// What the instance list filters by.
#[derive(Debug)]
pub struct Facets {
    pub(super) status: String,
    pub(super) data_room: Option<String>,
}

/// Every instance's view, rendered again when an object, the EC2 view or the second (uptimes)
/// has changed.
pub(super) fn rendered(state: &AdminState) -> listing::Items<Facets> {
    use std::hash::{Hash, Hasher};
    use std::sync::atomic::Ordering;
    // Read before the store and the view are: what is rendered is no older than the version.
    let shared = &state.shared;
    let seen = (shared.instances_version.load(Ordering::SeqCst), shared.cache.version());
    let mut version = std::hash::DefaultHasher::new();
    (seen, (shared.clock)().as_second()).hash(&mut version);
    state.instance_list.get(version.finish(), || {
        let render = |o: &std::sync::Arc<Ec2Instance>| {
            let view = InstanceView::of(state, o);
            let facets = Facets { status: view.status.clone(), data_room: view.data_room_id.clone() };
            Item::render(view.namespace.clone(), view.name.clone(), facets, &view)
        };
        shared.instances.state().iter().map(render).collect()
    })
}
