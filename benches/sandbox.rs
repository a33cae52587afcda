//! Sandbox startup and footprint: time from process start to ready, resident memory idle and
//! with 100 Ec2Instances running, and how long those 100 take to be running. Run with
//! `cargo bench --bench sandbox` (needs kubectl on PATH).

// The bench uses part of the test helper.
#[allow(dead_code)]
#[path = "../tests/support/sandbox.rs"]
mod sandbox;

use std::time::{Duration, Instant};

const COUNT: usize = 100;

fn main() {
    let sandbox = sandbox::Sandbox::start();
    std::thread::sleep(Duration::from_secs(1));
    let idle = sandbox.rss_mib();
    let mut manifest = String::from(
        "apiVersion: dataroom.dev/v1alpha1\nkind: Ec2Budget\nmetadata:\n  name: default\nspec:\n  maxInstances: 1000\n  dailySpendUsd: 10000\n",
    );
    for n in 0..COUNT {
        manifest.push_str(&format!(
            "---\napiVersion: dataroom.dev/v1alpha1\nkind: Ec2Instance\nmetadata:\n  name: web-{n:03}\nspec:\n  instanceType: t3.micro\n"
        ));
    }
    let file = sandbox.dir.path().join("fleet.yaml");
    std::fs::write(&file, manifest).unwrap();
    let started = Instant::now();
    sandbox.ok(&["apply", "-f", file.to_str().unwrap()]);
    // One list per poll: `kubectl wait --all` would measure kubectl's own client-side throttling.
    loop {
        let states = sandbox.ok(&["get", "ec2", "-o", "jsonpath={.items[*].status.state}"]);
        if states.split_whitespace().filter(|s| *s == "running").count() == COUNT {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "not all running after 300 s: {states}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let converged = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let loaded = sandbox.rss_mib();
    println!("sandbox (debug={}) startup and footprint", cfg!(debug_assertions));
    println!("  process start to /readyz 200:     {:>8.3} s", sandbox.ready_after);
    println!("  resident memory, idle:            {idle:>8.1} MiB");
    println!("  {COUNT} Ec2Instances applied to running: {:>8.2} s", converged.as_secs_f64());
    println!("  resident memory, {COUNT} running:     {loaded:>8.1} MiB");
}
