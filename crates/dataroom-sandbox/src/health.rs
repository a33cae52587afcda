//! The application health endpoint of a simulated instance: every `GET` path answers
//! `{"status":"ok"}` with 200, unless the instance's working directory holds `health.json`, whose
//! contents are served instead (503 when its `status` is not `"ok"`). Commands run over SSH can
//! so make an instance unhealthy, or report `lastActivity`, as a real data room server would.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};

/// Port of the simulated instances' health servers (the DataRoom default).
pub const HEALTH_PORT: u16 = 8000;

/// The file in an instance's working directory that overrides its health answer.
pub const HEALTH_FILE: &str = "health.json";

fn answer(home: &Path, method: &Method) -> (StatusCode, Vec<u8>) {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, br#"{"status":"method not allowed"}"#.to_vec());
    }
    let Ok(body) = std::fs::read(home.join(HEALTH_FILE)) else {
        return (StatusCode::OK, br#"{"status":"ok"}"#.to_vec());
    };
    let healthy = serde_json::from_slice::<serde_json::Value>(&body)
        .is_ok_and(|v| v.get("status").and_then(|s| s.as_str()) == Some("ok"));
    (if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
}

/// Serves the health endpoint on `address` until the task is dropped.
pub async fn listen(home: PathBuf, address: String) {
    let listener = super::instances::bind(&address, "health checks").await;
    while let Ok((stream, _)) = listener.accept().await {
        let home = home.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (status, body) = answer(&home, req.method());
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .expect("a valid response");
                async move { Ok::<_, Infallible>(response) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}
