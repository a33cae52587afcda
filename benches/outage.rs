//! A whole EC2 and Secrets Manager outage (every call answers 500) at the production settings:
//! 15 s polls, retries from 5 s doubling to 5 min. 20 objects run when it starts; then 10 are
//! created, 5 deleted and 5 asked to stop. Prints the calls made during the outage (what
//! `Cloud` saw: the AWS SDK adds up to two retries of its own to each, and stops retrying when
//! its retry quota runs dry) and the time to converge once EC2 answers again.
//! `DATAROOM_OUTAGE_SECS` sets the outage's length (default 300). Run with `cargo bench --bench outage`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dataroom_operator::cloud::fake::Fault;
use dataroom_operator::controller::Backoff;
use dataroom_operator::crd::Ec2Budget;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::attempts;
use support::harness::{Harness, Options};

fn outage() -> Duration {
    let secs = std::env::var("DATAROOM_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    Duration::from_secs(secs)
}

async fn all_state(h: &Harness, names: &[String], state: &str) -> bool {
    for name in names {
        let obj = h.api.get(name).await.unwrap();
        if obj.status.and_then(|s| s.state).as_deref() != Some(state) {
            return false;
        }
    }
    true
}

#[tokio::main]
async fn main() {
    let window = outage();
    let (backoff, poll) = (Backoff::default(), Duration::from_secs(15));
    let h = Harness::start_with(Options { backoff, poll_interval: poll, ..Default::default() }).await;
    let budget: Ec2Budget = serde_json::from_value(json!({
        "apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Budget", "metadata": { "name": "default" },
        "spec": { "maxInstances": 100, "dailySpendUsd": 1000 },
    }))
    .unwrap();
    let params = PatchParams::apply("bench").force();
    Api::<Ec2Budget>::all(h.client.clone()).patch("default", &params, &Patch::Apply(budget)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spec = json!({ "instanceType": "t3.micro" });
    let names = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}-{i:02}")).collect::<Vec<_>>();
    let running = names("run", 20);
    for name in &running {
        h.create(name, spec.clone()).await;
    }
    while !all_state(&h, &running, "running").await {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let before = h.fake.call_counts();
    h.fake.inject(None, Fault::ServerError, usize::MAX);
    let started = Instant::now();
    let created = names("new", 10);
    for name in &created {
        h.create(name, spec.clone()).await;
    }
    let (deleted, stopped, kept) = (&running[..5], &running[5..10], &running[10..]);
    for name in deleted {
        h.api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in stopped {
        h.patch_spec(name, json!({ "powerState": "Stopped" })).await;
    }
    let mut per_minute = Vec::new();
    let mut last = before.values().sum::<u64>();
    while started.elapsed() < window {
        tokio::time::sleep((window - started.elapsed()).min(Duration::from_secs(60))).await;
        let now = h.fake.total_calls();
        per_minute.push(now - last);
        last = now;
    }
    let mut calls: BTreeMap<String, u64> = h.fake.call_counts();
    calls.iter_mut().for_each(|(op, n)| *n -= before.get(op).copied().unwrap_or(0));
    calls.retain(|_, n| *n > 0);
    h.fake.heal();
    let healed = Instant::now();

    loop {
        let gone = futures::future::join_all(deleted.iter().map(|n| h.api.get_opt(n))).await;
        let gone = gone.into_iter().all(|o| o.unwrap().is_none());
        if gone
            && all_state(&h, &created, "running").await
            && all_state(&h, stopped, "stopped").await
            && all_state(&h, kept, "running").await
        {
            break;
        }
        assert!(healed.elapsed() < Duration::from_secs(600), "not converged 600 s after the outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovery = healed.elapsed();

    let total: u64 = calls.values().sum();
    let sweeps = window.as_secs() / poll.as_secs() + 1;
    // 20 objects have work to do: 10 launches, 5 terminations, 5 stops.
    let bound = sweeps + 20 * attempts(backoff, window);
    println!(
        "outage: every EC2 and Secrets Manager call fails for {} s; 20 objects wait on it",
        window.as_secs()
    );
    println!(
        "  calls during the outage:     {total:>6}   (bound {bound}: {sweeps} sweeps + 20 objects × backoff)"
    );
    println!("  calls per minute:            {per_minute:?}");
    println!("  by operation:                {calls:?}");
    println!(
        "  converged after it ended:    {:>6.1} s (poll interval {} s)",
        recovery.as_secs_f64(),
        poll.as_secs()
    );
    assert!(total <= bound, "{total} calls during the outage (bound {bound})");
}
