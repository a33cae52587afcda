//! SSH to a managed instance on someone's behalf (the DataRoom controller, an admin key): the
//! address and key come from the EC2 view and the object's status; the host key is trusted on
//! first use and pinned in status for that instance ID, and a changed one is refused. Both are
//! audited under the caller's name.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use thiserror::Error;

use super::Shared;
use crate::audit::{AuditError, Entry, Outcome};
use crate::cloud::{InstanceState, ssh_secret_name};
use crate::crd::Ec2Instance;
use crate::ssh::{Connection, Pool, SshError, Target};

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

/// Where `object`'s instance is and how to log in, if it is running.
pub fn target(ctx: &Shared, object: &Ec2Instance) -> Result<Target, ReachError> {
    let name = object.name_any();
    let status = object.status.clone().unwrap_or_default();
    let uid = object.uid().unwrap_or_default();
    let (id, state, ip, key) = match ctx.cache.get(&uid) {
        Some(i) => (Some(i.id), i.state.as_str().to_string(), i.public_ip.or(i.private_ip), i.key_name),
        None => {
            let state = status.state.clone().unwrap_or_else(|| "not launched".into());
            (status.instance_id, state, status.public_ip.or(status.private_ip), status.key_pair_name)
        }
    };
    let running = state == InstanceState::Running.as_str() && object.meta().deletion_timestamp.is_none();
    let (Some(instance_id), Some(ip), true) = (id, ip, running) else {
        return Err(ReachError::NotRunning(name, state));
    };
    let secret = key.as_deref().map(ssh_secret_name).ok_or(ReachError::NoKey(name))?;
    let pinned = status.ssh_host_key.filter(|p| p.instance_id == instance_id).map(|p| p.public_key);
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
            let pin = json!({"status": {"sshHostKey": {"instanceId": instance_id, "publicKey": trusted}}});
            let api: Api<Ec2Instance> =
                Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
            if let Err(e) =
                api.patch_status(&object.name_any(), &PatchParams::default(), &Patch::Merge(pin)).await
            {
                tracing::warn!(error = %e, instance = %instance_id, "could not persist the host key pin");
            }
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
