//! The Configure step: the room's content written to its instance over SFTP, each file whole or
//! not at all, audited once per attempt (a connection that sshd, still starting, does not answer
//! yet is neither a failure nor audited), then verified by a health check.

use bytes::Bytes;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::content::Content;
use super::observe::{Member, Observed};
use super::plan::Phase;
use super::status::Report;
use super::{Memory, WAIT_REQUEUE, pushed_message};
use crate::audit::{Entry, Outcome};
use crate::controller::reach::{self, ReachError};
use crate::controller::{ACTOR, Context, Error, Result};
use crate::crd::{DataRoom, Ec2Instance, audit_target};
use crate::ssh::SshError;

/// Why a push did not happen; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    /// SSH did not answer within `SshSettings::boot_grace` of the instance running.
    #[error("waiting for SSH to answer ({0})")]
    SshStarting(SshError),
    #[error("{0}; if the instance was rebuilt on purpose, remove status.sshHostKey from its Ec2Instance")]
    HostKeyChanged(SshError),
    #[error(
        "{0}; the operator must reach the instance's SSH port and log in with its key pair (check security groups and the image's SSH user)"
    )]
    Unreachable(SshError),
    #[error("{0}")]
    Reach(ReachError),
    #[error(
        "writing {path} failed ({reason}); the SSH user must be able to create it: make its directory writable in the image or user data, or change the path"
    )]
    Write { path: String, reason: String },
}

impl ConfigureError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::SshStarting(_) => "SshStarting",
            _ => "Configure",
        }
    }
}

/// Pushes the content to `member` and checks its health at once; `candidate`: it is an
/// upgrade's new instance, and the room's own status speaks of the old one until it answers.
pub async fn configure(
    room: &DataRoom,
    ctx: &Context,
    observed: &Observed,
    member: &Member,
    candidate: bool,
    memory: &mut Memory,
    report: &mut Report,
) -> Result<Action> {
    let object = &*member.object;
    let content = observed.content.as_ref().expect("content to push");
    if !candidate {
        memory.mark(|b| &mut b.running);
    }
    report.set(Phase::Configuring, format!("pushing the configuration to {}", object.name_any()));
    let starting = ssh_may_be_starting(ctx, object, memory);
    match push(room, ctx, object, content, starting).await {
        Ok(()) => {}
        Err(Error::Configure(e @ ConfigureError::SshStarting(_))) => {
            if !candidate {
                report.configured = (false, e.to_string());
            }
            report.set(Phase::Configuring, e.to_string());
            return Ok(Action::requeue(WAIT_REQUEUE));
        }
        Err(e) if candidate => {
            // The room keeps serving from the old instance; the push is tried again.
            report.set(Phase::Configuring, format!("configuring {}: {e}", object.name_any()));
            return Ok(Action::requeue(WAIT_REQUEUE));
        }
        Err(e) => {
            // `Configured` says why the push did not happen, not what the room lacked before it.
            report.configured = (false, e.to_string());
            return Err(e);
        }
    }
    if let Some(hash) = member.hash.clone() {
        memory.pushed(hash);
    }
    // A push is verified by the health check at once, so that a room already serving a changed
    // configuration never shows another phase in between.
    let target = member.live.as_ref().expect("a running instance to configure");
    if candidate {
        let answered =
            super::health::check_candidate(room, ctx, &target.ip, &target.instance_id, memory, report).await;
        return Ok(Action::requeue(if answered { std::time::Duration::ZERO } else { WAIT_REQUEUE }));
    }
    memory.mark(|b| &mut b.configured);
    report.config_hash = member.hash.clone();
    report.configured = (true, pushed_message(Some(content), report.instance_id.as_deref()));
    super::health::check(room, ctx, &target.ip, &target.instance_id, memory, report).await;
    Ok(Action::requeue(super::health::period(room)))
}

/// Whether sshd may still be starting: the instance has been up less than the boot grace.
fn ssh_may_be_starting(ctx: &Context, object: &Ec2Instance, memory: &Memory) -> bool {
    let launched = object.uid().and_then(|uid| ctx.cache.get(&uid)).and_then(|i| i.launch_time);
    let up = seconds_up(memory, launched, (ctx.clock)());
    up.is_some_and(|up| up < ctx.settings.ssh.boot_grace.as_secs_f64())
}

/// Seconds since the instance was seen running in this boot; after an operator restart, which
/// forgets boots, since EC2 last launched or started it.
fn seconds_up(memory: &Memory, launched: Option<Timestamp>, now: Timestamp) -> Option<f64> {
    let boot = memory.boot.as_ref();
    let running = boot.and_then(|b| Some(b.started.elapsed().as_secs_f64() - b.running?));
    running.or_else(|| launched.map(|t| now.duration_since(t).as_secs_f64()))
}

/// The connection's failure as the room reports it.
fn unreached(e: ReachError, ssh_starting: bool) -> Error {
    let configure = match e {
        ReachError::Audit(e) => return Error::Audit(e),
        ReachError::Ssh(e @ SshError::HostKeyChanged { .. }) => ConfigureError::HostKeyChanged(e),
        ReachError::Ssh(e @ SshError::Unreachable { .. }) if ssh_starting => ConfigureError::SshStarting(e),
        ReachError::Ssh(e @ (SshError::Unreachable { .. } | SshError::AuthRejected)) => {
            ConfigureError::Unreachable(e)
        }
        other => ConfigureError::Reach(other),
    };
    Error::Configure(configure)
}

/// Writes every payload to the instance over SFTP (each one whole or not at all).
async fn push(
    room: &DataRoom,
    ctx: &Context,
    object: &Ec2Instance,
    content: &Content,
    ssh_starting: bool,
) -> Result<()> {
    let paths: Vec<&str> = content.payloads.iter().map(|p| p.path.as_str()).collect();
    let params = json!({ "instance": object.name_any(), "paths": paths, "bytes": content.bytes() });
    let result = async {
        let connection =
            reach::connect(ctx, &ctx.ssh, ACTOR, object).await.map_err(|e| unreached(e, ssh_starting))?;
        for p in &content.payloads {
            let body =
                futures::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(p.bytes.clone()))]);
            if let Err(e) = connection.upload(&p.path, p.mode, body, u64::MAX).await {
                let write = ConfigureError::Write { path: p.path.clone(), reason: e.to_string() };
                return Err(Error::Configure(write));
            }
        }
        Ok(())
    }
    .await;
    // A room is configured once per boot: its connection is not kept for later (a failed one
    // must not be reused, and a fleet's worth of idle sessions would stay in memory).
    if let Some(id) = object.status.as_ref().and_then(|s| s.instance_id.as_deref()) {
        ctx.ssh.forget(id);
    }
    if matches!(&result, Err(Error::Configure(ConfigureError::SshStarting(_)))) {
        return result;
    }
    let (outcome, detail, event) = match &result {
        Ok(()) => {
            (Outcome::Success, format!("pushed {} file(s)", paths.len()), (EventType::Normal, "Configured"))
        }
        Err(e) => (Outcome::Failure, e.to_string(), (EventType::Warning, "ConfigureFailed")),
    };
    let entry = Entry::new(ACTOR, "configure", &audit_target(room), outcome).params(params).detail(detail);
    ctx.record(room, entry, Some(event)).await?;
    result
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};

    use super::seconds_up;
    use crate::controller::dataroom::{Boot, Memory};

    #[test]
    fn time_up_comes_from_this_boot_or_after_a_restart_from_ec2s_launch_time() {
        let now = Timestamp::now();
        let launched = Some(now - SignedDuration::from_secs(90));
        let fresh = Memory::default();
        assert_eq!(seconds_up(&fresh, launched, now), Some(90.0), "a restarted operator asks EC2");
        assert_eq!(seconds_up(&fresh, None, now), None);
        let mut seen = Memory { boot: Some(Boot::new()), ..Memory::default() };
        seen.boot.as_mut().unwrap().running = Some(0.0);
        let up = seconds_up(&seen, launched, now).unwrap();
        assert!(up < 1.0, "this boot saw it running just now, whatever EC2's launch time says: {up}");
    }
}
