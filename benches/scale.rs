//! Scale: N DataRooms (default 1000; `DATAROOM_SCALE_ROOMS`) applied at once to the sandbox with
//! the budget raised. Prints the time until all are Ready, the sandbox's resident memory, EC2
//! calls per instance and DescribeInstances calls per poll, against the goals (≤ 1.2
//! RunInstances per instance, one Describe per 1,000 instances per poll).
//! Run with `cargo bench --bench scale` (needs kubectl on PATH).

#[allow(dead_code)]
#[path = "../tests/support/sandbox.rs"]
mod sandbox;

use std::time::{Duration, Instant};

fn rooms() -> usize {
    std::env::var("DATAROOM_SCALE_ROOMS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000)
}

/// Sums the samples of a metric family whose labels contain `labels`.
fn metric(sandbox: &sandbox::Sandbox, name: &str, labels: &str) -> f64 {
    let (_, body) = sandbox::http_get(&format!("{}/metrics", sandbox.admin)).unwrap();
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    let n = rooms();
    let sandbox = sandbox::Sandbox::start();
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
    let mut peak = 0.0f64;
    loop {
        peak = peak.max(sandbox.rss_mib());
        let phases = sandbox.ok(&["get", "dr", "-o", "jsonpath={.items[*].status.phase}"]);
        let ready = phases.split_whitespace().filter(|p| *p == "Ready").count();
        if ready == n {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "{ready} of {n} Ready after 900 s");
        std::thread::sleep(Duration::from_secs(1));
    }
    let all_ready = started.elapsed();
    let run_instances = metric(&sandbox, "dataroom_cloud_calls_total", r#"operation="RunInstances""#);
    // The steady state: polls and their Describe calls over a quiet minute.
    let (describes, polls) = (
        metric(&sandbox, "dataroom_cloud_calls_total", r#"operation="DescribeInstances""#),
        metric(&sandbox, "dataroom_poll_duration_seconds_count", ""),
    );
    std::thread::sleep(Duration::from_secs(60));
    peak = peak.max(sandbox.rss_mib());
    let describes =
        metric(&sandbox, "dataroom_cloud_calls_total", r#"operation="DescribeInstances""#) - describes;
    let polls = metric(&sandbox, "dataroom_poll_duration_seconds_count", "") - polls;
    let total_calls = metric(&sandbox, "dataroom_cloud_calls_total", "");
    println!("scale (debug={}): {n} DataRooms applied at once to the sandbox", cfg!(debug_assertions));
    println!("  kubectl apply of {n} rooms:            {:>8.1} s", applied.as_secs_f64());
    println!("  apply until all {n} Ready:             {:>8.1} s", all_ready.as_secs_f64());
    // One process holds the operator, the API emulator (with its watch history), the simulated EC2
    // and every simulated instance's SSH and health server: the operator's goal (<= 100 MiB) is
    // not judged by this figure.
    println!("  sandbox resident memory, peak:        {peak:>8.1} MiB   (whole system in one process)");
    println!("  RunInstances per instance:            {:>8.3}       (goal <= 1.2)", run_instances / n as f64);
    println!(
        "  DescribeInstances per poll, steady:   {:>8.2}       (goal: 1 per 1,000 instances; {polls} polls in 60 s)",
        describes / polls.max(1.0)
    );
    println!("  EC2 calls per instance, all kinds:    {:>8.2}", total_calls / n as f64);
}
