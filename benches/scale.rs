//! Scale: N DataRooms (default 1000; `DATAROOM_SCALE_ROOMS`) applied at once with the budget
//! raised. The operator (`run`) is its own process, against a sandbox started without its operator
//! (the API emulator, the simulated EC2 and instances). Prints the time until all are Ready, the
//! operator's resident memory, EC2 calls per instance and DescribeInstances calls per poll, against
//! the goals (≤ 100 MiB, ≤ 1.2 RunInstances per instance, one Describe per 1,000 instances per
//! poll). Run with `cargo bench --bench scale` (needs kubectl on PATH).

#[allow(dead_code)]
#[path = "../tests/support/sandbox.rs"]
mod sandbox;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn rooms() -> usize {
    std::env::var("DATAROOM_SCALE_ROOMS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000)
}

/// The operator as its own process, on the sandbox's API emulator and simulated EC2.
struct Operator {
    child: Child,
    http: String,
}

impl Operator {
    fn start(sandbox: &sandbox::Sandbox, cloud: u16) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_dataroom-operator"))
            .args(["run", "--sandbox-cloud", &format!("127.0.0.1:{cloud}")])
            .arg("--sandbox-cloud-token-file")
            .arg(sandbox.dir.path().join("cloud-token"))
            .args([
                "--http-addr",
                &format!("127.0.0.1:{port}"),
                "--default-image-id",
                "ami-0000000000000000a",
            ])
            .args(["--ssh-port", "2222", "--poll-interval", "5", "--orphan-grace", "60"])
            .arg("--audit-log")
            .arg(sandbox.dir.path().join("operator-audit.jsonl"))
            .env("KUBECONFIG", sandbox.kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while sandbox::http_get(&format!("{http}/readyz")).map(|(s, _)| s) != Some(200) {
            assert!(Instant::now() < deadline, "the operator was not ready within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Operator { child, http }
    }

    fn rss_mib(&self) -> f64 {
        sandbox::rss_mib(self.child.id())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums the operator's samples of a metric family whose labels contain `labels`.
fn metric(operator: &Operator, name: &str, labels: &str) -> f64 {
    let (_, body) = sandbox::http_get(&format!("{}/metrics", operator.http)).unwrap();
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    let n = rooms();
    let (sandbox, cloud) = sandbox::Sandbox::start_without_operator();
    let operator = Operator::start(&sandbox, cloud);
    let mut manifest = format!(
        "apiVersion: dataroom.dev/v1alpha1\nkind: Ec2Budget\nmetadata:\n  name: default\nspec:\n  maxInstances: {}\n  dailySpendUsd: 100000\n",
        n * 2
    );
    for i in 0..n {
        manifest.push_str(&format!(
            "---\napiVersion: dataroom.dev/v1alpha1\nkind: DataRoom\nmetadata:\n  name: room-{i:04}\nspec:\n  config:\n    inline: {{room: {i}}}\n  healthCheck: {{periodSeconds: 30}}\n"
        ));
    }
    let file = sandbox.dir.path().join("rooms.yaml");
    std::fs::write(&file, manifest).unwrap();
    let started = Instant::now();
    sandbox.ok(&["apply", "-f", file.to_str().unwrap()]);
    let applied = started.elapsed();
    let (mut peak, mut peers) = (0.0f64, 0.0f64);
    loop {
        peak = peak.max(operator.rss_mib());
        peers = peers.max(sandbox.rss_mib());
        let phases = sandbox.ok(&["get", "dr", "-o", "jsonpath={.items[*].status.phase}"]);
        let ready = phases.split_whitespace().filter(|p| *p == "Ready").count();
        if ready == n {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "{ready} of {n} Ready after 900 s");
        std::thread::sleep(Duration::from_secs(1));
    }
    let all_ready = started.elapsed();
    let run_instances = metric(&operator, "dataroom_cloud_calls_total", r#"operation="RunInstances""#);
    // The steady state: polls and their Describe calls over a quiet minute.
    let (describes, polls) = (
        metric(&operator, "dataroom_cloud_calls_total", r#"operation="DescribeInstances""#),
        metric(&operator, "dataroom_poll_duration_seconds_count", ""),
    );
    std::thread::sleep(Duration::from_secs(60));
    let steady = operator.rss_mib();
    peak = peak.max(steady);
    peers = peers.max(sandbox.rss_mib());
    let describes =
        metric(&operator, "dataroom_cloud_calls_total", r#"operation="DescribeInstances""#) - describes;
    let polls = metric(&operator, "dataroom_poll_duration_seconds_count", "") - polls;
    let total_calls = metric(&operator, "dataroom_cloud_calls_total", "");
    println!("scale: {n} DataRooms applied at once; the operator in its own process");
    println!("  kubectl apply of {n} rooms:            {:>8.1} s", applied.as_secs_f64());
    println!("  apply until all {n} Ready:             {:>8.1} s", all_ready.as_secs_f64());
    println!("  operator resident memory, peak:       {peak:>8.1} MiB   (goal <= 100; its own process)");
    println!("  operator resident memory, steady:     {steady:>8.1} MiB");
    println!(
        "  sandbox without operator, peak:       {peers:>8.1} MiB   (emulator, simulated EC2 and instances)"
    );
    println!("  RunInstances per instance:            {:>8.3}       (goal <= 1.2)", run_instances / n as f64);
    println!(
        "  DescribeInstances per poll, steady:   {:>8.2}       (goal: 1 per 1,000 instances; {polls} polls in 60 s)",
        describes / polls.max(1.0)
    );
    println!("  EC2 calls per instance, all kinds:    {:>8.2}", total_calls / n as f64);
}
