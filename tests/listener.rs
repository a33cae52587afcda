//! The HTTP listener as deployed: HTTPS from PEM files, and CORS only for configured origins.
//! Driven with curl, a real client.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use dataroom_operator::admin::{self, HealthState, Listener};
use dataroom_operator::metrics::Metrics;
use support::admin::{KEY, state};
use support::harness::Harness;

fn health() -> HealthState {
    HealthState { ready: Arc::new(AtomicBool::new(true)), metrics: Arc::new(Metrics::default()) }
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("curl runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[actix_web::test]
async fn https_serves_the_api_with_the_given_certificate() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let tls = admin::tls::server_config(&cert, &key).unwrap();
    let listener = Listener { tls: Some(tls), ..Listener::default() };
    let (server, addr) =
        admin::serve("127.0.0.1:0".parse().unwrap(), health(), Some(state(&h)), listener).unwrap();
    tokio::spawn(server);
    let url = format!("https://{addr}/api/ec2/budget");
    let auth = format!("Authorization: Bearer {KEY}");
    let cacert = cert.to_str().unwrap().to_string();
    let (ok, body) =
        tokio::task::spawn_blocking(move || curl(&["--cacert", &cacert, "-H", &auth, &url])).await.unwrap();
    assert!(ok && body.contains("maxInstances"), "{body}");
    let plain = format!("http://{addr}/healthz");
    let (ok, _) = tokio::task::spawn_blocking(move || curl(&[&plain])).await.unwrap();
    assert!(!ok, "plain HTTP is not served on the TLS port");
    assert!(admin::tls::server_config(&key, &cert).is_err(), "swapped files are refused");
}

#[actix_web::test]
async fn cors_answers_only_configured_origins() {
    let h = Harness::start().await;
    let listener = Listener { cors_origins: vec!["https://console.example".into()], ..Listener::default() };
    let (server, addr) =
        admin::serve("127.0.0.1:0".parse().unwrap(), health(), Some(state(&h)), listener).unwrap();
    tokio::spawn(server);
    let (closed, closed_addr) =
        admin::serve("127.0.0.1:0".parse().unwrap(), health(), Some(state(&h)), Listener::default()).unwrap();
    tokio::spawn(closed);
    let preflight = |addr: std::net::SocketAddr, origin: &'static str| {
        let url = format!("http://{addr}/api/ec2/instances");
        let origin = format!("Origin: {origin}");
        tokio::task::spawn_blocking(move || {
            curl(&["-i", "-X", "OPTIONS", "-H", &origin, "-H", "Access-Control-Request-Method: GET", &url]).1
        })
    };
    let allowed = preflight(addr, "https://console.example").await.unwrap().to_lowercase();
    assert!(allowed.contains("access-control-allow-origin: https://console.example"), "{allowed}");
    let other = preflight(addr, "https://evil.example").await.unwrap().to_lowercase();
    assert!(!other.contains("access-control-allow-origin"), "{other}");
    let none = preflight(closed_addr, "https://console.example").await.unwrap().to_lowercase();
    assert!(!none.contains("access-control-allow-origin"), "no CORS unless configured: {none}");
}
