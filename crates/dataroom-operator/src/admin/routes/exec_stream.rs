//! `POST /api/ec2/instances/{id}/exec/stream`: one command whose output arrives as it is produced,
//! as server-sent events, with the limits, timeout and audit records of `POST …/exec` (`started`
//! before it runs; its exit, duration, sizes and SHA-256s after). The command runs to its end
//! (or its timeout) and is recorded whether or not the client stays to read it.

use std::convert::Infallible;

use actix_web::{HttpResponse, post, web};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::ssh::{ExecRequest, ExecResult, encode, prepare, run_observed};
use crate::admin::AdminState;
use crate::admin::error::{ApiError, Problem};
use crate::admin::scope::{Authorized, needs};
use crate::ssh::Stream;

/// A piece of a command's output (`stdout` and `stderr` events).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OutputChunk {
    /// The bytes, as text when they are UTF-8 without control characters other than newline,
    /// carriage return and tab, otherwise base64 (see `encoding`).
    pub data: String,
    /// `utf-8` or `base64`.
    pub encoding: String,
}

#[utoipa::path(
    params(("id" = String, Path, description = "EC2 instance ID or object name")),
    request_body = ExecRequest,
    responses(
        (status = 200, content_type = "text/event-stream",
         description = "Server-sent events: `stdout` and `stderr` (each an OutputChunk, in the order written, up to the output cap per stream), then one `exit` (an ExecResult whose stdout and stderr are empty: the output came before) or one `error` (a Problem)",
         body = OutputChunk),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "not running, or its host key changed", body = Problem),
        (status = 502, body = Problem), (status = 503, description = "`ssh_busy` (with `Retry-After`) or `audit_unavailable`", body = Problem),
        (status = 504, body = Problem)),
    security(("admin_key" = ["exec"])),
    tag = "ssh"
)]
#[post("/api/ec2/instances/{id}/exec/stream")]
pub async fn exec_stream(
    admin: Authorized<needs::Exec>,
    state: web::Data<AdminState>,
    id: web::Path<String>,
    body: web::Json<ExecRequest>,
) -> Result<HttpResponse, ApiError> {
    let (timeout, (object, connection, work)) = prepare(&state, &admin, &id, &body).await?;
    let (events, received) = mpsc::unbounded_channel::<Bytes>();
    let admin = (*admin).clone();
    tokio::spawn(async move {
        let _work = work;
        let mut text = [Utf8Carry::default(), Utf8Carry::default()];
        let seen = |stream: Stream, bytes: &[u8]| {
            let (name, carry) = match stream {
                Stream::Stdout => ("stdout", &mut text[0]),
                Stream::Stderr => ("stderr", &mut text[1]),
            };
            if let Some(chunk) = carry.take(bytes) {
                let _ = events.send(event(name, &chunk));
            }
        };
        let ran = run_observed(&state, &admin, &object, &connection, &body.command, timeout, seen).await;
        for (name, carry) in ["stdout", "stderr"].into_iter().zip(text.iter_mut()) {
            if let Some(rest) = carry.rest() {
                let _ = events.send(event(name, &rest));
            }
        }
        let last = match ran {
            Ok(output) => {
                let mut result = ExecResult::from(&output);
                (result.stdout, result.stderr) = (String::new(), String::new());
                sse("exit", &json!(result))
            }
            Err(e) => sse("error", &json!(e.problem())),
        };
        let _ = events.send(last);
    });
    let body = futures::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|event| (Ok::<_, Infallible>(event), received))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // Proxies that buffer responses (nginx) would hold the output back.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

fn event(name: &str, bytes: &[u8]) -> Bytes {
    let (data, encoding) = encode(bytes);
    sse(name, &json!(OutputChunk { data, encoding: encoding.into() }))
}

/// One server-sent event: its name and one line of JSON.
fn sse(name: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// Holds back the end of a UTF-8 character split between two pieces of output, so that each event
/// is whole text; bytes that are not UTF-8 at all pass on as they are (and go out as base64).
#[derive(Default)]
struct Utf8Carry(Vec<u8>);

impl Utf8Carry {
    /// The bytes to send now, if any.
    fn take(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.0.extend_from_slice(bytes);
        let whole = match std::str::from_utf8(&self.0) {
            Ok(_) => self.0.len(),
            // Cut short at the end (no `error_len`): keep the start of that character back.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.0.len(),
        };
        let rest = self.0.split_off(whole);
        let ready = std::mem::replace(&mut self.0, rest);
        (!ready.is_empty()).then_some(ready)
    }

    /// What was held back when the output ends.
    fn rest(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.0);
        (!rest.is_empty()).then_some(rest)
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(exec_stream);
}

#[cfg(test)]
mod tests {
    use super::Utf8Carry;

    #[test]
    fn a_character_split_between_pieces_goes_out_whole() {
        let mut carry = Utf8Carry::default();
        let euro = "€".as_bytes(); // three bytes
        assert_eq!(carry.take(b"price: "), Some(b"price: ".to_vec()));
        assert_eq!(carry.take(&euro[..1]), None, "held back");
        assert_eq!(carry.take(&euro[1..]), Some(euro.to_vec()));
        assert_eq!(carry.take(&[0xff, b'a']), Some(vec![0xff, b'a']), "not UTF-8: passed on");
        assert_eq!(carry.take(&euro[..2]), None);
        assert_eq!(carry.rest(), Some(euro[..2].to_vec()), "the cut end, at the end");
        assert_eq!(carry.rest(), None);
    }
}
