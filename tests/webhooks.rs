//! Webhook notifications against a local receiver: a chosen action arrives as JSON with a Slack
//! `text` and an HMAC-SHA256 signature the receiver can check, after a failed first delivery
//! is retried; actions not chosen are not sent; a receiver that never answers holds nothing up.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataroom_operator::notify::{Notifier, Webhook, signature};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use serde_json::{Value, json};
use support::harness::Harness;

const SECRET: &[u8] = b"webhook-secret-for-tests";

/// What the receiver got: (signature header, body) per delivery, and how many it refused.
#[derive(Default)]
struct Received {
    deliveries: Vec<(String, Vec<u8>)>,
    refused: usize,
}

/// A receiver on loopback that answers 500 to its first `refuse` deliveries, then 204.
async fn receiver(refuse: usize) -> (String, Arc<Mutex<Received>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Received::default()));
    let shared = received.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let received = shared.clone();
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let received = received.clone();
                async move {
                    let mac = request
                        .headers()
                        .get("x-dataroom-signature")
                        .map(|v| v.to_str().unwrap().to_string());
                    let body = request.into_body().collect().await.unwrap().to_bytes().to_vec();
                    let mut got = received.lock().unwrap();
                    let status = if got.refused < refuse {
                        got.refused += 1;
                        500
                    } else {
                        got.deliveries.push((mac.unwrap_or_default(), body));
                        204
                    };
                    Ok::<_, Infallible>(
                        hyper::Response::builder().status(status).body(Full::new(Bytes::new())).unwrap(),
                    )
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
        }
    });
    (url, received)
}

fn webhook(url: &str, actions: &[&str]) -> Webhook {
    Webhook {
        url: url.parse().unwrap(),
        secret: SECRET.to_vec(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
        attempts: 4,
        backoff: Duration::from_millis(50),
    }
}

#[tokio::test]
async fn a_chosen_action_arrives_signed_after_a_retry_and_others_do_not() {
    let (url, received) = receiver(1).await;
    let h = Harness::start().await;
    let (notifier, delivering) = Notifier::new(webhook(&url, &["launch", "start"]));
    assert!(h.ctx.webhooks.set(notifier).is_ok());
    tokio::spawn(delivering);
    // launch (chosen), stop (not chosen), start (chosen): notifications go out in the log's order,
    // so once the start's have arrived, a stop's would have too.
    h.create("web", json!({})).await;
    h.state("web", "running").await;
    h.patch_spec("web", json!({ "powerState": "Stopped" })).await;
    h.state("web", "stopped").await;
    h.patch_spec("web", json!({ "powerState": "Running" })).await;
    h.state("web", "running").await;
    let chosen = |r: &&Value| r["action"] == "launch" || r["action"] == "start";
    let logged: Vec<Value> = h.audit().iter().filter(chosen).cloned().collect();
    assert!(h.audit().iter().any(|r| r["action"] == "stop"), "the log has a stop");
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().deliveries.len() < logged.len() {
        assert!(Instant::now() < deadline, "the chosen records never all arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = received.lock().unwrap();
    assert_eq!(got.refused, 1, "the first delivery was refused and retried");
    let mut sent = Vec::new();
    for (mac, body) in &got.deliveries {
        assert_eq!(mac, &signature(SECRET, body), "the signature is HMAC-SHA256 of the body");
        let record: Value = serde_json::from_slice(body).unwrap();
        let text = record["text"].as_str().unwrap();
        assert!(text.contains("ec2instance/default/web") && text.contains("controller"), "{text}");
        sent.push((record["seq"].as_u64().unwrap(), record["action"].as_str().unwrap().to_string()));
    }
    let expected: Vec<(u64, String)> = logged
        .iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r["action"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(sent, expected, "every chosen record once, in order, and nothing else");
}

#[tokio::test]
async fn a_receiver_that_never_answers_holds_no_operation_up() {
    // A receiver that takes connections and never answers: each delivery waits out its 10 s.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let h = Harness::start().await;
    let (notifier, delivering) = Notifier::new(webhook(&format!("http://127.0.0.1:{port}/"), &["*"]));
    assert!(h.ctx.webhooks.set(notifier).is_ok());
    tokio::spawn(delivering);
    let started = Instant::now();
    h.create("web", json!({})).await;
    h.state("web", "running").await;
    assert!(started.elapsed() < Duration::from_secs(5), "the launch did not wait for the receiver");
    drop(silent);
}
