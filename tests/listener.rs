//! The HTTP listener as deployed: HTTPS from PEM files (the console's cookie Secure on it), and
//! CORS only for configured origins.
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
    // The console's session cookie is Secure over TLS (the browser sends it over HTTPS only).
    let (sign_in, origin, cacert) = (
        format!("https://{addr}/ui/sign-in"),
        format!("Origin: https://{addr}"),
        cert.to_str().unwrap().to_string(),
    );
    let (_, head) = tokio::task::spawn_blocking(move || {
        curl(&["--cacert", &cacert, "-i", "-H", &origin, "--data-urlencode", &format!("key={KEY}"), &sign_in])
    })
    .await
    .unwrap();
    let cookie = head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap_or_default();
    assert!(head.starts_with("HTTP/2 303") || head.starts_with("HTTP/1.1 303"), "{head}");
    assert!(cookie.contains("dataroom_session=") && cookie.contains("; Secure"), "{cookie}");
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

/// A client announces a body and then stalls, as a slow-loris attack does: the body is cut off
/// with `408 body_timeout` once no byte has come for the idle deadline, and nothing is created;
/// a body that keeps coming, however slowly, is read whole.
#[actix_web::test]
async fn a_stalled_body_is_cut_off_and_a_slow_one_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    let mut api = state(&h);
    let mut limits = api.limits.clone();
    limits.body_idle = std::time::Duration::from_millis(300);
    api.set_limits(limits);
    let (server, addr) =
        admin::serve("127.0.0.1:0".parse().unwrap(), health(), Some(api), Listener::default()).unwrap();
    tokio::spawn(server);
    let request = |length: usize| {
        format!(
            "POST /api/ec2/instances HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    let body = br#"{"name": "stalled", "instance_type": "t3.micro"}"#;

    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled.write_all(request(body.len()).as_bytes()).await.unwrap();
    stalled.write_all(&body[..10]).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stalled.read(&mut answer)).await;
    let answer =
        String::from_utf8_lossy(&answer[..read.expect("answered within 10 s").unwrap()]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("body_timeout"), "{answer}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "cut off after {:?}", started.elapsed());

    // A body a few bytes at a time, each gap under the deadline, is read whole.
    let body = br#"{"name": "slow", "instance_type": "t3.micro"}"#;
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(request(body.len()).as_bytes()).await.unwrap();
    for piece in body.chunks(12) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        slow.write_all(piece).await.unwrap();
    }
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 20"), "a slow body that keeps coming is served: {answer}");
    let names: Vec<String> =
        h.ctx.shared().instances.state().iter().map(|o| o.metadata.name.clone().unwrap()).collect();
    assert!(!names.is_empty() && names.iter().all(|n| n == "slow"), "{names:?}");
}
