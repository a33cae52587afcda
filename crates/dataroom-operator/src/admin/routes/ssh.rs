//! `/api/ec2/instances/{id}/exec` and `/exec-batch`: commands over SSH. Each command is audited
//! as `started` before it runs and again with its exit, duration, output sizes and the SHA-256 of
//! its stdout and stderr when it ends.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{post, web};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;
use utoipa::ToSchema;

use crate::admin::auth::Admin;
use crate::admin::error::{ApiError, Problem};
use crate::admin::lookup::{connect, instance_target};
use crate::admin::scope::{Authorized, needs};
use crate::admin::{AdminState, SshWork};
use crate::audit::Outcome;
use crate::controller::operation::Failed;
use crate::crd::Ec2Instance;
use crate::crd::audit_target;
use crate::ssh::{Connection, ExecOutput, Exit, Limits, Stream};

const MAX_TIMEOUT: u64 = 600;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Run by the instance's login shell (`sh -c` semantics).
    pub command: String,
    /// Seconds before the command is killed (1–600, default 30).
    #[schema(minimum = 1, maximum = 600)]
    pub timeout_seconds: Option<u64>,
}

/// How a command ended and what it wrote (each stream kept up to the output cap).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecResult {
    /// `code`, `signal`, or `unknown` when the server never said (after a timeout, for one).
    pub exit: String,
    pub exit_code: Option<u32>,
    pub exit_signal: Option<String>,
    pub timed_out: bool,
    /// The kept bytes: as text when they are UTF-8 without control characters other than
    /// newline, carriage return and tab; otherwise base64 (see `stdout_encoding`), so that binary
    /// output arrives whole and at most a third larger, never six times (JSON's `\u0000`).
    pub stdout: String,
    pub stderr: String,
    /// `utf-8` or `base64`.
    pub stdout_encoding: String,
    pub stderr_encoding: String,
    /// Every byte written, kept or not.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration_ms: u64,
}

impl From<&ExecOutput> for ExecResult {
    fn from(out: &ExecOutput) -> Self {
        let (exit, exit_code, exit_signal) = match &out.exit {
            Exit::Code(c) => ("code", Some(*c), None),
            Exit::Signal(s) => ("signal", None, Some(s.clone())),
            Exit::Unknown => ("unknown", None, None),
        };
        let ((stdout, stdout_encoding), (stderr, stderr_encoding)) =
            (encode(&out.stdout.kept), encode(&out.stderr.kept));
        ExecResult {
            exit: exit.into(),
            exit_code,
            exit_signal,
            timed_out: out.timed_out,
            stdout,
            stderr,
            stdout_encoding: stdout_encoding.into(),
            stderr_encoding: stderr_encoding.into(),
            stdout_bytes: out.stdout.total,
            stderr_bytes: out.stderr.total,
            stdout_truncated: out.stdout.truncated(),
            stderr_truncated: out.stderr.truncated(),
            duration_ms: out.duration.as_millis() as u64,
        }
    }
}

/// Output as JSON can carry it compactly: text as is, anything else base64.
pub(super) fn encode(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) => {
            (text.to_string(), "utf-8")
        }
        _ => (base64::engine::general_purpose::STANDARD.encode(bytes), "base64"),
    }
}

/// What an exec record says of the command: all of it (it is capped at `max_command_bytes`, so
/// no benign prefix can hide a payload), its length and its SHA-256.
fn attempted(command: &str) -> serde_json::Value {
    let sha256 = hex::encode(sha2::Sha256::digest(command.as_bytes()));
    json!({"command": command, "command_bytes": command.len(), "command_sha256": sha256})
}

fn check_command(state: &AdminState, command: &str) -> Result<(), ApiError> {
    let max = state.limits.max_command_bytes;
    if command.trim().is_empty() || command.len() > max || command.contains('\0') {
        let why = format!("command must be 1 to {max} bytes without NUL");
        return Err(ApiError::bad_request("invalid_command", why));
    }
    Ok(())
}

fn timeout(seconds: Option<u64>) -> Result<Duration, ApiError> {
    match seconds.unwrap_or(30) {
        s @ 1..=MAX_TIMEOUT => Ok(Duration::from_secs(s)),
        _ => Err(ApiError::bad_request("invalid_timeout", format!("timeout_seconds is 1 to {MAX_TIMEOUT}"))),
    }
}

/// Runs one command, audited before and after.
async fn run(
    state: &AdminState,
    admin: &Admin,
    object: &Ec2Instance,
    connection: &Connection,
    command: &str,
    timeout: Duration,
) -> Result<ExecOutput, ApiError> {
    run_observed(state, admin, object, connection, command, timeout, |_, _| {}).await
}

/// `run`, handing `seen` the output as it arrives.
pub(super) async fn run_observed(
    state: &AdminState,
    admin: &Admin,
    object: &Ec2Instance,
    connection: &Connection,
    command: &str,
    timeout: Duration,
    seen: impl FnMut(Stream, &[u8]) + Send,
) -> Result<ExecOutput, ApiError> {
    let target = audit_target(object);
    let mut params = attempted(command);
    params["timeout_seconds"] = timeout.as_secs().into();
    let command_sha256 = params["command_sha256"].clone();
    let op = state.operation(admin, "api.instance.exec", &target, params);
    op.start().await?;
    let limits = Limits { timeout, output_cap: state.limits.output_cap };
    let output = match connection.exec_observed(command, limits, seen).await {
        Ok(output) => output,
        Err(e) => {
            // A broken pooled connection is dropped: the next call dials afresh.
            if let Some(id) = object.status.as_ref().and_then(|s| s.instance_id.as_deref()) {
                state.ssh.forget(id);
            }
            let detail = Some(e.to_string());
            op.record(Outcome::Failure, Some(json!({})), detail).await.map_err(ApiError::unrecorded)?;
            return Err(e.into());
        }
    };
    // The outcome names its command by hash, so that it pairs with its intent.
    let params = json!({
        "command_sha256": command_sha256,
        "exit": output.exit, "timed_out": output.timed_out, "duration_ms": output.duration.as_millis() as u64,
        "stdout_bytes": output.stdout.total, "stderr_bytes": output.stderr.total,
        "stdout_sha256": output.stdout.sha256(), "stderr_sha256": output.stderr.sha256(),
    });
    let outcome = if output.succeeded() { Outcome::Success } else { Outcome::Failure };
    op.record(outcome, Some(params), None).await.map_err(ApiError::unrecorded)?;
    Ok(output)
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name")),
    request_body = ExecRequest,
    responses((status = 200, description = "the command ran (whatever its exit)", body = ExecResult),
              (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 409, description = "not running, or its host key changed", body = Problem),
              (status = 502, body = Problem), (status = 503, description = "`ssh_busy` (with `Retry-After`) or `audit_unavailable`", body = Problem), (status = 504, body = Problem)),
    security(("admin_key" = ["exec"])),
    tag = "ssh"
)]
#[post("/api/ec2/instances/{id}/exec")]
pub async fn exec(
    admin: Authorized<needs::Exec>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
    body: web::Json<ExecRequest>,
) -> Result<web::Json<ExecResult>, ApiError> {
    let (timeout, (object, connection, _work)) = prepare(&state, &admin, &id, &body).await?;
    let output = run(&state, &admin, &object, &connection, &body.command, timeout).await?;
    Ok(web::Json(ExecResult::from(&output)))
}

/// What one command needs before it runs: a valid command and timeout, and a connection with a
/// place among the SSH operations; a refusal here is audited as one.
pub(super) async fn prepare(
    state: &AdminState,
    admin: &Admin,
    id: &str,
    body: &ExecRequest,
) -> Result<(Duration, (Arc<Ec2Instance>, Arc<Connection>, SshWork)), ApiError> {
    let prepared = async {
        check_command(state, &body.command)?;
        let timeout = timeout(body.timeout_seconds)?;
        Ok((timeout, connect(state, admin, id).await?))
    };
    match prepared.await {
        Ok(ready) => Ok(ready),
        Err(e) => {
            let target = instance_target(state, admin, id);
            Err(state
                .operation(admin, "api.instance.exec", &target, attempted(&body.command))
                .refused(e)
                .await)
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Run in order, over one connection (1–50 commands).
    pub commands: Vec<String>,
    /// Stop at the first command that does not exit 0 (default true).
    pub stop_on_error: Option<bool>,
    /// Per command (1–600, default 30).
    #[schema(minimum = 1, maximum = 600)]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResult {
    /// One per command run, in order.
    pub results: Vec<ExecResult>,
    /// True when the remaining commands were not run: `stop_on_error`, or the output cap.
    pub stopped_early: bool,
    /// True when the batch's kept output reached its cap (4 MiB) with commands left to run.
    pub output_capped: bool,
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name")),
    request_body = BatchRequest,
    responses((status = 200, body = BatchResult), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem), (status = 502, body = Problem), (status = 503, description = "`ssh_busy` (with `Retry-After`) or `audit_unavailable`", body = Problem),
              (status = 504, body = Problem)),
    security(("admin_key" = ["exec"])),
    tag = "ssh"
)]
#[post("/api/ec2/instances/{id}/exec-batch")]
pub async fn exec_batch(
    admin: Authorized<needs::Exec>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
    body: web::Json<BatchRequest>,
) -> Result<web::Json<BatchResult>, ApiError> {
    let prepared = async {
        let max = state.limits.max_batch;
        if body.commands.is_empty() || body.commands.len() > max {
            return Err(ApiError::bad_request(
                "invalid_batch",
                format!("commands holds 1 to {max} commands"),
            ));
        }
        for command in &body.commands {
            check_command(&state, command)?;
        }
        let timeout = timeout(body.timeout_seconds)?;
        Ok((timeout, connect(&state, &admin, &id).await?))
    };
    let (timeout, (object, connection, _work)) = match prepared.await {
        Ok(ready) => ready,
        Err(e) => {
            let params = json!({"commands": body.commands.len()});
            return Err(state
                .operation(&admin, "api.instance.exec_batch", &instance_target(&state, &admin, &id), params)
                .refused(e)
                .await);
        }
    };
    let (mut results, mut kept, mut output_capped) = (Vec::new(), 0, false);
    for (n, command) in body.commands.iter().enumerate() {
        let output = run(&state, &admin, &object, &connection, command, timeout).await?;
        results.push(ExecResult::from(&output));
        kept += output.stdout.kept.len() + output.stderr.kept.len();
        if body.stop_on_error.unwrap_or(true) && !output.succeeded() {
            break;
        }
        if kept >= state.limits.max_batch_output_bytes && n + 1 < body.commands.len() {
            output_capped = true;
            break;
        }
    }
    let stopped_early = results.len() < body.commands.len();
    Ok(web::Json(BatchResult { results, stopped_early, output_capped }))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(exec).service(exec_batch);
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn text_stays_text_and_anything_else_is_base64() {
        assert_eq!(encode(b"hello\n\tworld\r\n"), ("hello\n\tworld\r\n".to_string(), "utf-8"));
        assert_eq!(encode(b""), (String::new(), "utf-8"));
        // NUL bytes would be six bytes each as JSON escapes; base64 is four per three.
        assert_eq!(encode(&[0, 0, 0]), ("AAAA".to_string(), "base64"));
        assert_eq!(encode(&[0xff, 0xfe]), ("//4=".to_string(), "base64"));
        assert_eq!(encode(b"\x1b[31mred"), ("G1szMW1yZWQ=".to_string(), "base64"));
    }
}
