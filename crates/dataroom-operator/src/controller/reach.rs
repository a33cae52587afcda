//! SSH to a managed instance on someone's behalf (the DataRoom controller, an admin key): the
//! address and key come from the EC2 view and the object's status; the host key is trusted on
//! first use and pinned for that instance ID (in status, by the Ec2Instance status writer alone),
//! and a changed one is refused. Both are audited under the caller's name.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use thiserror::Error;

use super::Shared;
use crate::audit::{AuditError, Entry, Outcome};
use crate::cloud::{InstanceState, ssh_secret_name};
use crate::crd::Ec2Instance;
use crate::ssh::{Connection, Pool, SshError, Target};

/// How long a first connection waits for its pin to reach status.
const PIN_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum ReachError {
    #[error("instance {0} is {1}; start it first")]
    NotRunning(String, String),
    #[error("instance {0} has no SSH key pair")]
    NoKey(String),
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Where `object`'s instance is and how to log in, if it is running. The private address comes
/// first: the operator runs in (or next to) the VPC, so SSH and health checks need no public
/// address and no port open to the internet.
pub fn target(ctx: &Shared, object: &Ec2Instance) -> Result<Target, ReachError> {
    let name = object.name_any();
    let status = object.status.clone().unwrap_or_default();
    let uid = object.uid().unwrap_or_default();
    let (id, state, ip, key) = match ctx.cache.get(&uid) {
        Some(i) => (Some(i.id), i.state.as_str().to_string(), i.private_ip.or(i.public_ip), i.key_name),
        None => {
            let state = status.state.clone().unwrap_or_else(|| "not launched".into());
            (status.instance_id, state, status.private_ip.or(status.public_ip), status.key_pair_name)
        }
    };
    let running = state == InstanceState::Running.as_str() && object.meta().deletion_timestamp.is_none();
    let (Some(instance_id), Some(ip), true) = (id, ip, running) else {
        return Err(ReachError::NotRunning(name, state));
    };
    let secret = key.as_deref().map(ssh_secret_name).ok_or(ReachError::NoKey(name))?;
    let persisted = status.ssh_host_key.filter(|p| p.instance_id == instance_id).map(|p| p.public_key);
    let pinned = persisted.or_else(|| ctx.trusted_host_key(&instance_id));
    Ok(Target { instance_id, ip, secret, pinned })
}

/// An open connection to `object`'s running instance through `pool`, for `actor`.
pub async fn connect(
    ctx: &Shared,
    pool: &Pool,
    actor: &str,
    object: &Ec2Instance,
) -> Result<Arc<Connection>, ReachError> {
    let target = target(ctx, object)?;
    let audit_target = crate::crd::audit_target(object);
    let instance_id = target.instance_id.clone();
    match pool.connect(&target).await {
        Ok((connection, None)) => Ok(connection),
        Ok((connection, Some(trusted))) => {
            let params = json!({"instance_id": instance_id, "host_key": trusted});
            let entry =
                Entry::new(actor, "ssh.host_key.pinned", &audit_target, Outcome::Success).params(params);
            ctx.append(entry).await?;
            ctx.trust_host_key(object, &instance_id, &trusted);
            persisted(ctx, object, &instance_id).await;
            Ok(connection)
        }
        Err(e) => {
            if let SshError::HostKeyChanged { pinned, offered } = &e {
                let params = json!({"instance_id": instance_id, "pinned": pinned, "offered": offered});
                let entry =
                    Entry::new(actor, "ssh.host_key.refused", &audit_target, Outcome::Refused).params(params);
                ctx.append(entry).await?;
            }
            Err(e.into())
        }
    }
}

/// Waits (a little) until the object's status writer has persisted the pin of `instance_id`, so
/// that a caller who reads the object next finds it there; the pin is trusted meanwhile anyway.
async fn persisted(ctx: &Shared, object: &Ec2Instance, instance_id: &str) {
    let key = ObjectRef::from_obj(object);
    let deadline = tokio::time::Instant::now() + PIN_WAIT;
    while tokio::time::Instant::now() < deadline {
        let pinned = ctx.instances.get(&key).and_then(|o| o.status.clone()?.ssh_host_key);
        if pinned.is_some_and(|pin| pin.instance_id == instance_id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!(instance = %instance_id, "the host key pin is not in status yet; it is trusted meanwhile");
}
