//! A read deadline on request bodies: a body that stalls (no byte for `ApiLimits::body_idle`, 30 s
//! by default) is cut off with `408 body_timeout`, so a client that announces a body and then
//! sends it a byte at a time, or not at all, cannot hold a connection, a worker's buffer and an
//! SSH place open. A body that keeps coming may take as long as it needs (a 100 MiB upload on a
//! slow link), which a total deadline would refuse.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use futures::StreamExt;

use super::AdminState;
use super::error::ApiError;

const STALLED: &str = "the request body stalled";

/// Wraps the request's body in the idle deadline of the admin API's limits.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse, actix_web::Error> {
    if let Some(idle) = req.app_data::<web::Data<AdminState>>().map(|s| s.limits.body_idle) {
        let payload = req.take_payload();
        req.set_payload(Payload::from(guarded(payload, idle)));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

type Chunks = std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, PayloadError>>>>;

fn guarded(payload: Payload, idle: Duration) -> Chunks {
    let chunks = futures::stream::unfold(Some(payload), move |payload| async move {
        let mut payload = payload?;
        match tokio::time::timeout(idle, payload.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(payload))),
            Ok(None) => None,
            Err(_) => {
                let why = format!("{STALLED}: no byte arrived for {} s", idle.as_secs_f64());
                let stalled = std::io::Error::new(std::io::ErrorKind::TimedOut, why);
                Some((Err(PayloadError::Io(stalled)), None))
            }
        }
    });
    // Fused: a multipart reader polls again after the end, which an unfused unfold forbids.
    Box::pin(chunks.fuse())
}

/// `408 body_timeout` if `error` (from reading a body, as JSON, multipart or a stream) is the
/// deadline's.
pub fn stalled(error: &impl std::fmt::Display) -> Option<ApiError> {
    let text = error.to_string();
    text.contains(STALLED).then(|| ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", text))
}
