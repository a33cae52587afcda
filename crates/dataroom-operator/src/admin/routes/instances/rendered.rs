//! The instance list, rendered once per change of what it shows (see `listing::Rendered`), and
//! the page of it a query asks for.

use super::{InstanceView, ListQuery};
use crate::admin::AdminState;
use crate::admin::auth::Admin;
use crate::admin::error::ApiError;
use crate::admin::listing::{self, Item, Paging};
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

/// The page of `items` that `query` asks for among those `admin` reaches, and the next page's token.
pub(super) fn select<'a>(
    items: &'a [Item<Facets>],
    admin: &Admin,
    query: &ListQuery,
) -> Result<(Vec<&'a Item<Facets>>, Option<String>), ApiError> {
    let paging = Paging::parse(query.limit, query.continue_token.as_deref())?;
    let wanted = |i: &&Item<Facets>| {
        admin.reaches(&i.namespace)
            && (query.data_room_id.is_none() || query.data_room_id == i.facets.data_room)
            && query.status.as_ref().is_none_or(|s| *s == i.facets.status)
    };
    Ok(paging.page(items.iter().filter(wanted)))
}

/// What the list route answers `query` with, as views (for the console's table).
pub(crate) fn views(
    state: &AdminState,
    admin: &Admin,
    query: &ListQuery,
) -> Result<(Vec<InstanceView>, Option<String>), ApiError> {
    let items = rendered(state);
    let (page, next) = select(&items, admin, query)?;
    let view = |i: &&Item<Facets>| serde_json::from_slice(&i.json).expect("a view we rendered reads back");
    Ok((page.iter().map(view).collect(), next))
}
