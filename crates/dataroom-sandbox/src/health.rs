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
    // Read beneath the instance directory: a `health.json` linked to a file of this machine is
    // not served.
    let beneath = cap_std::fs::Dir::open_ambient_dir(home, cap_std::ambient_authority());
    let Ok(body) = beneath.and_then(|dir| dir.read(HEALTH_FILE)) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `ln -s /etc/passwd health.json` through exec does not serve the machine's file.
    #[test]
    fn a_health_file_linked_out_of_the_instance_is_not_served() {
        let home = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host file").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), home.path().join(HEALTH_FILE)).unwrap();
        let (status, body) = answer(home.path(), &Method::GET);
        assert_eq!((status, body.as_slice()), (StatusCode::OK, br#"{"status":"ok"}"#.as_slice()));
        std::fs::write(home.path().join("mine.json"), r#"{"status":"down"}"#).unwrap();
        std::fs::remove_file(home.path().join(HEALTH_FILE)).unwrap();
        std::os::unix::fs::symlink("mine.json", home.path().join(HEALTH_FILE)).unwrap();
        assert_eq!(
            answer(home.path(), &Method::GET).0,
            StatusCode::SERVICE_UNAVAILABLE,
            "a link inside is followed"
        );
    }
}
