//! Drift-poll cost for 1,000 and 10,000 managed instances on the fake EC2: DescribeInstances
//! calls and wall time per sweep, beside the naive peer (one Describe per object) measured in
//! the same run. Run with `cargo bench --bench poll`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dataroom_operator::budget::Gate;
use dataroom_operator::budget::pricing::PriceTable;
use dataroom_operator::clock;
use dataroom_operator::cloud::Lifecycle;
use dataroom_operator::cloud::fake::{Delays, FakeCloud};
use dataroom_operator::controller::InstanceCache;
use dataroom_operator::controller::poller::Poller;
use dataroom_operator::metrics::Metrics;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn measure(count: usize) {
    let fake = Arc::new(FakeCloud::new(Delays::default()));
    let owners: Vec<String> = (0..count).map(|n| format!("owner-{n:06}")).collect();
    for (n, owner) in owners.iter().enumerate() {
        fake.seed_running(owner, "bench", &format!("web-{n}"));
    }
    let (trigger, _triggered) = futures::channel::mpsc::unbounded();
    let clock = clock::system();
    let poller = Poller {
        cloud: fake.clone(),
        cache: Arc::new(InstanceCache::default()),
        gate: Arc::new(Gate::new(PriceTable::default(), "us-east-1", clock.clone())),
        metrics: Arc::new(Metrics::default()),
        clock,
        trigger,
        interval: Duration::from_secs(15),
        busy_interval: Duration::from_secs(2),
    };
    poller.sweep().await.unwrap();

    let rounds = 9;
    fake.reset_counters();
    let mut batched = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        poller.sweep().await.unwrap();
        batched.push(start.elapsed());
    }
    let batched_calls = fake.calls("DescribeInstances") as f64 / rounds as f64;

    fake.reset_counters();
    let start = Instant::now();
    for owner in &owners {
        fake.describe_by_owner(owner).await.unwrap();
    }
    let naive = start.elapsed();
    let naive_calls = fake.calls("DescribeInstances") as f64;

    let batched = median(batched);
    println!(
        "{count:>6} instances | batched sweep: {batched_calls:>4.1} Describe calls, {:>8.2} ms | \
         per-object peer: {naive_calls:>6.0} calls, {:>9.2} ms | calls ratio {:.0}x, time ratio {:.1}x",
        batched.as_secs_f64() * 1e3,
        naive.as_secs_f64() * 1e3,
        naive_calls / batched_calls,
        naive.as_secs_f64() / batched.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() {
    println!("drift poll on the fake EC2 (pages of {} instances)", dataroom_operator::cloud::fake::PAGE_SIZE);
    for count in [1_000, 10_000] {
        measure(count).await;
    }
}
