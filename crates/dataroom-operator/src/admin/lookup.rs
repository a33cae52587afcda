//! Finding what a route names: an instance (by EC2 instance ID in any namespace, or by object name
//! in the API's namespace), a room, and an SSH connection to a running instance. From the
//! controller's views only, never from EC2.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::auth::Admin;
use super::error::ApiError;
use super::{AdminState, SshWork, is_dns_label};
use crate::controller::reach;
use crate::crd::{DataRoom, Ec2Instance, audit_name, audit_target};
use crate::ssh::Connection;

/// Finds an instance by EC2 instance ID (any namespace) or object name (the API's namespace),
/// among those `admin`'s key reaches: one in another namespace is not found, as if it were not there.
pub fn instance(state: &AdminState, admin: &Admin, id: &str) -> Result<Arc<Ec2Instance>, ApiError> {
    let by_instance_id = |o: &Ec2Instance| {
        let cached = o.uid().and_then(|uid| state.shared.cache.get(&uid)).map(|i| i.id);
        let recorded = o.status.as_ref().and_then(|s| s.instance_id.clone());
        cached.as_deref() == Some(id) || recorded.as_deref() == Some(id)
    };
    let found = match id.starts_with("i-") {
        true => state.shared.instances.find(|o| by_instance_id(o)),
        false => state.shared.instances.get(&ObjectRef::new(id).within(&state.namespace)),
    };
    let reached = found.filter(|o| admin.reaches(o.namespace().as_deref().unwrap_or_default()));
    reached.ok_or_else(|| ApiError::not_found(&format!("instance {id}")))
}

/// The audit target (`ec2instance/namespace/name`) of what `id` names, found or not, so that a
/// refused attempt is recorded against the target the operation would have had.
pub fn instance_target(state: &AdminState, admin: &Admin, id: &str) -> String {
    match instance(state, admin, id) {
        Ok(object) => audit_target(&*object),
        // An instance ID is looked for in every namespace.
        Err(_) if id.starts_with("i-") => audit_name::<Ec2Instance>("*", id),
        Err(_) => audit_name::<Ec2Instance>(&state.namespace, id),
    }
}

/// The audit target of what is not a namespaced object (an AMI, a key pair, the cluster's
/// budget): `kind//name`, the namespace left empty.
pub fn unnamespaced_target(kind: &str, name: &str) -> String {
    format!("{kind}//{name}")
}

/// The DataRoom `namespace/name`, if `admin`'s key reaches its namespace.
pub fn room(
    state: &AdminState,
    admin: &Admin,
    namespace: &str,
    name: &str,
) -> Result<Arc<DataRoom>, ApiError> {
    if !is_dns_label(namespace) || !is_dns_label(name) {
        return Err(ApiError::bad_request("invalid_name", "namespace and name are DNS labels"));
    }
    let reached = admin.reaches(namespace).then_some(());
    let found = reached.and_then(|()| state.shared.rooms.get(&ObjectRef::new(name).within(namespace)));
    found.ok_or_else(|| ApiError::not_found(&format!("room {namespace}/{name}")))
}

/// An open connection to a running instance (its host key pinned on first use, a changed one
/// refused; both audited), and a place among the SSH operations allowed at once, held until the
/// operation is over. Counts as activity on the instance's DataRoom.
pub async fn connect(
    state: &AdminState,
    admin: &Admin,
    id: &str,
) -> Result<(Arc<Ec2Instance>, Arc<Connection>, SshWork), ApiError> {
    let object = instance(state, admin, id)?;
    let work = state.ssh_work()?;
    let connection = reach::connect(&state.shared, &state.ssh, &admin.actor(), &object).await?;
    if let Some(room) = object.room_key() {
        state.shared.touch(&room);
    }
    Ok((object, connection, work))
}
