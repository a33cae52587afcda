//! 50 simultaneous launch attempts with maxInstances=5: at most 5 instances exist at every moment
//! and exactly 5 at the end, on the fake EC2 (with latency, so calls overlap) and on moto.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dataroom_operator::cloud::Cloud;
use dataroom_operator::cloud::aws::AwsCloud;
use dataroom_operator::cloud::fake::Fault;
use serde_json::json;
use support::Fixture;
use support::moto::Moto;

/// Reconciles 50 objects at once (twice, as retries would) while a sampler counts live instances.
/// Returns (the most seen at any sample, the count at the end).
async fn race(f: Fixture) -> (usize, usize) {
    f.limits(5);
    let names: Vec<String> = (0..50).map(|n| format!("web-{n}")).collect();
    for name in &names {
        f.object(name, json!({}), true);
    }
    let f = Arc::new(f);
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (cloud, done, most) = (f.ctx.cloud.clone(), done.clone(), most.clone());
        tokio::spawn(async move {
            // One last look after `done`: the final launches may land while it sleeps.
            loop {
                let finished = done.load(Ordering::SeqCst);
                let live =
                    cloud.describe_managed().await.unwrap().iter().filter(|i| !i.state.is_gone()).count();
                most.fetch_max(live, Ordering::SeqCst);
                if finished {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for _round in 0..2 {
        let attempts = names.iter().map(|name| {
            let (f, name) = (f.clone(), name.clone());
            tokio::spawn(async move { f.reconcile(&name).await })
        });
        for attempt in futures::future::join_all(attempts).await {
            attempt.unwrap().unwrap();
        }
    }
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let end = f.ctx.cloud.describe_managed().await.unwrap().iter().filter(|i| !i.state.is_gone()).count();
    let blocked = names.iter().filter(|n| f.fetch(n).status.unwrap().instance_id.is_none()).count();
    assert_eq!(blocked, 45, "everyone else is told why it waits");
    (most.load(Ordering::SeqCst), end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_launches_never_exceed_five_on_the_fake() {
    let f = Fixture::new();
    f.fake.inject(Some("RunInstances"), Fault::Latency(Duration::from_millis(20)), 50);
    f.fake.inject(Some("DescribeInstances"), Fault::Latency(Duration::from_millis(5)), 50);
    assert_eq!(race(f).await, (5, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_launches_never_exceed_five_on_moto() {
    let moto = Moto::start();
    let aws: Arc<dyn Cloud> = Arc::new(AwsCloud::with_config(&moto.config().await));
    let f = Fixture::with_cloud(aws, &moto.image().await);
    assert_eq!(race(f).await, (5, 5));
}
