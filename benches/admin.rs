//! Admin API figures, each beside its peer measured in the same run:
//! - exec of `true` over a pooled connection (p50/p99 of 200) vs `ssh` with ControlMaster;
//! - a 100 MiB upload through the API vs `scp` to the same sshd;
//! - `GET /api/ec2/instances` with 1,000 instances under `wrk`, vs `/healthz` (the HTTP floor).
//!
//! Run with `cargo bench --bench admin` (needs sshd, ssh, scp and wrk; `make test` installs them).

#[allow(unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataroom_operator::admin::{self, HealthState};
use dataroom_operator::metrics::Metrics;
use dataroom_operator::seams::Seams;
use dataroom_operator::ssh::{Pool, SshSettings};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use support::admin::{KEY, state};
use support::harness::Harness;
use support::sshd::{Sshd, user, workdir};

const INSTANCES: usize = 1000;
const EXECS: usize = 200;
const UPLOAD: usize = 100 << 20;

/// One kept-alive HTTP/1.1 connection to the admin API.
struct Http {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Http {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Http { sender, addr }
    }

    async fn post(&mut self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Bytes) {
        self.send("POST", path, content_type, body).await
    }

    async fn send(&mut self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Bytes) {
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.sender.ready().await.unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        (status, response.into_body().collect().await.unwrap().to_bytes())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn wrk(url: &str) -> (f64, f64) {
    support::wrk::wrk(url, KEY)
}

#[tokio::main]
async fn main() {
    let h = Harness::start().await;
    let mut http = {
        let health =
            HealthState { ready: Arc::new(AtomicBool::new(true)), metrics: Arc::new(Metrics::default()) };
        let mut api = state(&h);
        // Measured here is the API's own speed, not its rate limits (`state` lifts them).
        let (pem, sshd) = first_instance(&h).await;
        let seams = Seams { ssh_address: Some(sshd.address()), ..Default::default() };
        api.ssh = Arc::new(Pool::new(
            h.ctx.cloud.clone(),
            SshSettings { user: user(), ..Default::default() },
            &seams,
        ));
        let (server, addr) =
            admin::serve("127.0.0.1:0".parse().unwrap(), health, Some(api), Default::default()).unwrap();
        tokio::spawn(server);
        let http = Http::connect(addr).await;
        exec_and_upload(http, &pem, &sshd).await;
        Http::connect(addr).await
    };
    list(&h, &mut http).await;
}

/// Creates `bench-0` and an sshd that accepts its key: (private key file, sshd).
async fn first_instance(h: &Harness) -> (tempfile::NamedTempFile, Sshd) {
    h.create("bench-0", json!({})).await;
    let object = h.state("bench-0", "running").await;
    let secret = object.status.unwrap().ssh_key_secret.unwrap();
    let pem = h.ctx.cloud.get_secret(&secret).await.unwrap().unwrap();
    let key = ssh_key::PrivateKey::from_openssh(pem.expose()).unwrap();
    let sshd = Sshd::start(&key.public_key().to_openssh().unwrap());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pem.expose()).unwrap();
    (file, sshd)
}

async fn exec_and_upload(mut http: Http, key: &tempfile::NamedTempFile, sshd: &Sshd) {
    let body = serde_json::to_vec(&json!({"command": "true"})).unwrap();
    let (status, reply) =
        http.post("/api/ec2/instances/bench-0/exec", "application/json", body.clone()).await;
    assert_eq!(status, 200, "{reply:?}");
    let mut api = Vec::new();
    for _ in 0..EXECS {
        let started = Instant::now();
        let (status, _) =
            http.post("/api/ec2/instances/bench-0/exec", "application/json", body.clone()).await;
        api.push(started.elapsed());
        assert_eq!(status, 200);
    }
    let control = tempfile::tempdir().unwrap();
    let ssh_args = |program: &str| {
        let mut c = Command::new(program);
        c.args([
            "-i",
            key.path().to_str().unwrap(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]);
        c
    };
    let control_path = format!("ControlPath={}/cm", control.path().display());
    let port = sshd.port.to_string();
    let target = format!("{}@127.0.0.1", user());
    let ssh_true = || {
        let status = ssh_args("ssh")
            .args([
                "-o",
                "ControlMaster=auto",
                "-o",
                &control_path,
                "-o",
                "ControlPersist=60",
                "-p",
                &port,
                &target,
                "true",
            ])
            .status()
            .unwrap();
        assert!(status.success());
    };
    ssh_true();
    let mut floor = Vec::new();
    for _ in 0..EXECS {
        let started = Instant::now();
        ssh_true();
        floor.push(started.elapsed());
    }
    api.sort();
    floor.sort();
    let (a50, a99, f50, f99) =
        (percentile(&api, 0.5), percentile(&api, 0.99), percentile(&floor, 0.5), percentile(&floor, 0.99));
    println!(
        "exec `true` x{EXECS}: API p50 {:.2} ms, p99 {:.2} ms | ssh ControlMaster p50 {:.2} ms, p99 {:.2} ms | ratio p50 {:.2}x, p99 {:.2}x",
        millis(a50),
        millis(a99),
        millis(f50),
        millis(f99),
        a50.as_secs_f64() / f50.as_secs_f64(),
        a99.as_secs_f64() / f99.as_secs_f64()
    );

    let work = workdir();
    let mut data = vec![0u8; UPLOAD];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut data);
    let source = work.path().join("source.bin");
    std::fs::write(&source, &data).unwrap();
    let boundary = "bench-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&data);
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
    let path = format!("/api/ec2/instances/bench-0/files?destination_path={}/api.bin", work.path().display());
    // A connection of its own: the one the execs used may have idled past the server's keep-alive
    // while the ssh floor ran (5 s when the machine is busy), and would be closed under the upload.
    let mut http = Http::connect(http.addr).await;
    let started = Instant::now();
    let (status, reply) = http.post(&path, &format!("multipart/form-data; boundary={boundary}"), body).await;
    let api_secs = started.elapsed().as_secs_f64();
    assert_eq!(status, 201, "{reply:?}");
    let started = Instant::now();
    let status = ssh_args("scp")
        .args(["-P", &port, source.to_str().unwrap(), &format!("{target}:{}/scp.bin", work.path().display())])
        .status()
        .unwrap();
    let scp_secs = started.elapsed().as_secs_f64();
    assert!(status.success());
    let mib = (UPLOAD >> 20) as f64;
    println!(
        "upload {mib} MiB: API {:.1} MiB/s | scp {:.1} MiB/s | ratio {:.2}x of scp's throughput",
        mib / api_secs,
        mib / scp_secs,
        scp_secs / api_secs
    );
}

async fn list(h: &Harness, http: &mut Http) {
    let budget = json!({"maxInstances": 5000, "dailySpendUsd": 1000000.0, "maxLaunchesPerDay": 100000});
    let (status, _) =
        http.send("PUT", "/api/ec2/budget", "application/json", budget.to_string().into_bytes()).await;
    assert_eq!(status, 200);
    for n in 1..INSTANCES {
        h.create(&format!("bench-{n}"), json!({})).await;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while h.ctx.instances.len() < INSTANCES || h.ctx.cache.len() < INSTANCES {
        assert!(Instant::now() < deadline, "only {} of {INSTANCES} launched", h.ctx.cache.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls_before = h.fake.calls("DescribeInstances");
    let base = format!("http://{}", http.addr);
    let measure = |path: String| tokio::task::spawn_blocking(move || wrk(&path));
    let (list_rps, list_p99) = measure(format!("{base}/api/ec2/instances")).await.unwrap();
    let (page_rps, page_p99) = measure(format!("{base}/api/ec2/instances?limit=100")).await.unwrap();
    let (floor_rps, floor_p99) = measure(format!("{base}/healthz")).await.unwrap();
    let describes = h.fake.calls("DescribeInstances") - calls_before;
    println!(
        "GET /api/ec2/instances ({INSTANCES} instances, wrk -t2 -c16 10 s): {list_rps:.0} req/s, p99 {list_p99:.2} ms | \
         /healthz {floor_rps:.0} req/s, p99 {floor_p99:.2} ms | {:.3}x of the floor's rate (goal 0.035x) | \
         EC2 DescribeInstances during the run: {describes} (the poller's, none per request)",
        list_rps / floor_rps
    );
    println!(
        "GET /api/ec2/instances?limit=100 (a page of 100 of {INSTANCES}): {page_rps:.0} req/s, p99 {page_p99:.2} ms | \
         {:.3}x of the floor's rate (goal 0.25x)",
        page_rps / floor_rps
    );
}
