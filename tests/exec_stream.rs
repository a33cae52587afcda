//! The streamed exec route over a real HTTP listener and the sandbox's simulated instances: output
//! arrives as the command writes it (server-sent events), then its exit; the audit records are
//! those of `exec`; bad input is refused before any stream; a client that leaves does not stop
//! the command or its record.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use dataroom_operator::admin::{self, HealthState};
use dataroom_operator::metrics::Metrics;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::admin::{KEY, call};
use support::rig::{Rig, running};

/// The admin API on a loopback port, over the rig's controller and simulated instances.
async fn listening(rig: &Rig) -> SocketAddr {
    let health =
        HealthState { ready: Arc::new(AtomicBool::new(true)), metrics: Arc::new(Metrics::default()) };
    let (server, addr) =
        admin::serve("127.0.0.1:0".parse().unwrap(), health, Some(rig.state()), Default::default()).unwrap();
    tokio::spawn(server);
    addr
}

/// Sends the streamed exec of `command` and returns the open connection.
fn start(addr: SocketAddr, instance: &str, command: &str) -> TcpStream {
    let body = json!({ "command": command, "timeout_seconds": 10 }).to_string();
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = format!(
        "POST /api/ec2/instances/{instance}/exec/stream HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

/// Reads until `text` has arrived (or the answer ends); returns all read so far.
fn read_until(stream: &mut TcpStream, read: &mut String, text: &str) {
    let mut buffer = [0u8; 4096];
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while !read.contains(text) {
        let n = stream.read(&mut buffer).expect("the answer keeps coming");
        assert!(n > 0, "the answer ended before {text:?}:\n{read}");
        read.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
}

/// The body of an answer sent in chunks (`Transfer-Encoding: chunked`), whole.
fn dechunked(answer: &str) -> String {
    let (_, mut rest) = answer.split_once("\r\n\r\n").expect("headers and a body");
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    body
}

/// The events in an answer: (name, data as JSON).
fn events(answer: &str) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for block in dechunked(answer).split("\n\n") {
        let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(str::to_string);
        if let (Some(event), Some(data)) = (field("event: "), field("data: ")) {
            found.push((event, serde_json::from_str(&data).unwrap()));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_arrives_as_it_is_written_then_the_exit_and_both_records() {
    let rig = Rig::start().await;
    let app = support::admin::app(rig.state()).await;
    running(&app, "web").await;
    let addr = listening(&rig).await;

    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = start(addr, "web", "echo hi; sleep 1; echo there >&2; echo done");
        let mut read = String::new();
        read_until(&mut stream, &mut read, "hi\\n");
        assert!(read.starts_with("HTTP/1.0 200") || read.starts_with("HTTP/1.1 200"), "{read}");
        assert!(read.to_lowercase().contains("content-type: text/event-stream"), "{read}");
        // A second goes by before the command writes again: nothing else comes meanwhile.
        let seen_hi = Instant::now();
        read_until(&mut stream, &mut read, "there");
        assert!(seen_hi.elapsed() > Duration::from_millis(500), "hi came only with there: not streamed");
        read_until(&mut stream, &mut read, "event: exit");
        stream.read_to_string(&mut read).unwrap();
        read
    })
    .await
    .unwrap();
    let events = events(&answer);
    // Each stream in the order written (the two are separate pipes: not ordered between them).
    let stream = |name: &str| -> Vec<Value> {
        events.iter().filter(|(n, _)| n == name).map(|(_, data)| data["data"].clone()).collect()
    };
    assert_eq!(stream("stdout"), [json!("hi\n"), json!("done\n")], "{answer}");
    assert_eq!(stream("stderr"), [json!("there\n")], "{answer}");
    assert_eq!(events[0].1, json!({ "data": "hi\n", "encoding": "utf-8" }));
    let (last, exit) = events.last().unwrap();
    assert_eq!((last.as_str(), events.len()), ("exit", 4), "{answer}");
    assert_eq!((exit["exit"].as_str(), exit["exit_code"].as_u64()), (Some("code"), Some(0)), "{exit}");
    assert_eq!((exit["stdout_bytes"].as_u64(), exit["stderr_bytes"].as_u64()), (Some(8), Some(6)));
    assert_eq!(exit["stdout"], "", "the output came before, not again");

    let (_, page) = call(&app, "GET", "/api/audit?action=api.instance.exec", None).await;
    let records = page["records"].as_array().unwrap();
    let outcomes: Vec<&str> = records.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["started", "success"]);
    let sha = hex::encode(Sha256::digest(b"hi\ndone\n"));
    assert_eq!(records[1]["params"]["stdout_sha256"], sha.as_str());
    assert_eq!(records[0]["params"]["command"], "echo hi; sleep 1; echo there >&2; echo done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_a_stream_and_a_client_that_leaves_stops_nothing() {
    let rig = Rig::start().await;
    let app = support::admin::app(rig.state()).await;
    running(&app, "web").await;
    let addr = listening(&rig).await;
    for (instance, body, status, code) in [
        ("web", json!({ "command": "" }), 400, "invalid_command"),
        ("web", json!({ "command": "true", "timeout_seconds": 601 }), 400, "invalid_timeout"),
        ("nowhere", json!({ "command": "true" }), 404, "not_found"),
    ] {
        let uri = format!("/api/ec2/instances/{instance}/exec/stream");
        let (got, problem) = call(&app, "POST", &uri, Some(body)).await;
        assert_eq!((got, problem["code"].as_str()), (status, Some(code)), "{problem}");
    }

    tokio::task::spawn_blocking(move || {
        let mut stream = start(addr, "web", "echo started; sleep 1; touch finished");
        let mut read = String::new();
        read_until(&mut stream, &mut read, "started");
        drop(stream);
    })
    .await
    .unwrap();
    let id = rig.h.fake.live_instances()[0].id.clone();
    let finished = rig.root.path().join(&id).join("finished");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = call(&app, "GET", "/api/audit?action=api.instance.exec", None).await;
        let outcomes: Vec<String> = page["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["outcome"].as_str().unwrap().to_string())
            .collect();
        if outcomes.contains(&"success".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "the command's outcome was never recorded: {outcomes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(finished.exists(), "the command ran to its end after the client left");
}
