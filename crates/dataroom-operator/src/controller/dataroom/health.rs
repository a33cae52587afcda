//! The CheckHealth step: one GET of the room's health endpoint, which decides Configuring, Ready
//! or Failed (after `failureThreshold` failures in a row on an instance that was healthy).

use std::time::Duration;

use jiff::Timestamp;

use super::Memory;
use super::plan::{Phase, health_phase};
use super::status::Report;
use crate::controller::Context;
use crate::crd::DataRoom;
use crate::probe;

/// How long a room waits between health checks.
pub fn period(room: &DataRoom) -> Duration {
    Duration::from_secs(room.spec.health_check.period_seconds.into())
}

/// One GET of an instance's health endpoint: whether it answered 2xx, what it answered, and the
/// URL asked. A `lastActivity` in the answer counts as the room's activity.
async fn probe(room: &DataRoom, ctx: &Context, ip: &str, memory: &mut Memory) -> (bool, String, String) {
    let check = &room.spec.health_check;
    let host = ctx.settings.seams.health_host.as_deref().unwrap_or(ip);
    let address = format!("{host}:{}", check.port);
    let url = format!("{}://{address}{}", check.scheme, check.path);
    let timeout = Duration::from_secs(check.timeout_seconds.into());
    let answer = probe::get(&address, &check.path, check.scheme == "https", timeout).await;
    let detail = match &answer {
        Ok((code, body)) => {
            let reported = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("lastActivity")?.as_str()?.parse::<Timestamp>().ok());
            // A report is of activity up to now, whatever time it names: a time in the future
            // would otherwise hold off the idle stop long after the endpoint stops saying it.
            let reported = reported.map(|t| t.min((ctx.clock)()));
            memory.reported_activity = memory.reported_activity.max(reported);
            format!("HTTP {code}")
        }
        Err(why) => why.clone(),
    };
    (matches!(answer, Ok((200..=299, _))), detail, url)
}

/// Checks the instance that serves the room (or is booted to): the answer decides its phase.
pub async fn check(
    room: &DataRoom,
    ctx: &Context,
    ip: &str,
    instance_id: &str,
    memory: &mut Memory,
    report: &mut Report,
) {
    let (ok, detail, url) = probe(room, ctx, ip, memory).await;
    memory.failures = if ok { 0 } else { memory.failures + 1 };
    if ok {
        memory.answered(instance_id);
    }
    let was_healthy = memory.answered.iter().any(|a| a == instance_id);
    let check = &room.spec.health_check;
    let (failures, threshold) = (memory.failures, check.failure_threshold);
    let phase = health_phase(failures, threshold, was_healthy);
    // No counts in the reason: a status that changed with every check would wake the room at
    // once, and the checks would no longer wait for their period.
    let reason = match phase {
        Phase::Ready => format!("ready: {url} answers {detail}"),
        Phase::Configuring => format!("waiting for {url} to answer 2xx: {detail}"),
        _ => format!(
            "{url} failed {threshold} or more health checks in a row ({detail}); check the server on the instance (POST /api/ec2/instances/{instance_id}/exec); the room turns Ready when it answers"
        ),
    };
    report.healthy = Some((ok, format!("{url}: {detail}")));
    if phase == Phase::Ready && memory.boot.is_some() {
        memory.mark(|b| &mut b.ready);
        report.boot_seconds =
            memory.boot.as_ref().and_then(|b| b.ready).map(|s| (s * 1000.0).round() / 1000.0);
    }
    report.set(phase, reason);
}

/// Checks an upgrade's new instance; once it answers it serves the room (the old one's phase and
/// health stand until then). Returns whether it answered.
pub async fn check_candidate(
    room: &DataRoom,
    ctx: &Context,
    ip: &str,
    instance_id: &str,
    memory: &mut Memory,
    report: &mut Report,
) -> bool {
    let (ok, detail, url) = probe(room, ctx, ip, memory).await;
    if ok {
        memory.answered(instance_id);
        report.set(
            Phase::Ready,
            format!("upgrading: the new instance {instance_id} answers {url}; moving the room to it"),
        );
    } else {
        report.set(
            Phase::Ready,
            format!("upgrading: waiting for {url} on the new instance {instance_id} to answer 2xx: {detail}"),
        );
    }
    ok
}
