//! Faults: EC2 throttling storms, 5xx and capacity errors, a Secrets Manager outage, instances
//! whose SSH does not answer, and an API server that goes down and cuts every watch. In each
//! case the operator must make a bounded number of calls while the fault lasts (jittered
//! exponential backoff, no hot loop) and converge once it ends, with one instance per object.
//!
//! Times are scaled down: retries start at 200 ms instead of 5 s. `benches/outage.rs` counts the
//! calls of a 5-minute outage at the production settings.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use dataroom_operator::cloud::fake::Fault;
use dataroom_operator::cloud::{Lifecycle, TAG_OWNER_UID};
use dataroom_operator::controller::Backoff;
use kube::api::DeleteParams;
use serde_json::json;
use support::attempts;
use support::harness::{Harness, Options};
use support::rig::{Rig, free_port};
use support::rooms::{condition_and_message, create_room, in_phase, phase, rooms};

/// How long each fault lasts.
const WINDOW: Duration = Duration::from_secs(8);

fn backoff(base_ms: u64, max_secs: u64) -> Backoff {
    Backoff { base: Duration::from_millis(base_ms), max: Duration::from_secs(max_secs) }
}

/// Calls per operation since `before`.
fn since(h: &Harness, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut now = h.fake.call_counts();
    now.iter_mut().for_each(|(op, n)| *n -= before.get(op).copied().unwrap_or(0));
    now.retain(|_, n| *n > 0);
    now
}

/// Live instances per owner UID.
fn owners(h: &Harness) -> HashMap<String, usize> {
    let mut owners = HashMap::new();
    for instance in h.fake.live_instances() {
        *owners.entry(instance.tag(TAG_OWNER_UID).unwrap_or_default().to_string()).or_default() += 1;
    }
    owners
}

fn synced(obj: &dataroom_operator::crd::Ec2Instance) -> (String, String) {
    let conditions = obj.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let c = conditions.into_iter().find(|c| c.type_ == "Synced").expect("a Synced condition");
    (c.status, c.message)
}

/// Four objects are created and one running object is deleted while `operation` (every
/// operation when `None`) fails with `fault`; then the fault ends. Returns how long convergence
/// took after it, and the calls made while it lasted.
async fn ec2_outage(
    operation: Option<&str>,
    fault: Fault,
    code: &str,
    backoff: Backoff,
) -> (Duration, BTreeMap<String, u64>) {
    let h = Harness::start_with(Options { backoff, ..Default::default() }).await;
    let spec = json!({ "instanceType": "t3.micro" });
    h.create("steady", spec.clone()).await;
    h.state("steady", "running").await;

    let before = h.fake.call_counts();
    h.fake.inject(operation, fault, usize::MAX);
    let names: Vec<String> = (0..4).map(|n| format!("web-{n}")).collect();
    for name in &names {
        h.create(name, spec.clone()).await;
    }
    h.api.delete("steady", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(WINDOW).await;
    let calls = since(&h, &before);
    h.fake.heal();
    let healed = Instant::now();

    let obj = h.api.get("web-0").await.unwrap();
    assert_ne!(obj.status.as_ref().and_then(|s| s.state.as_deref()), Some("running"));
    let (status, message) = synced(&obj);
    assert_eq!(status, "False");
    assert!(message.contains(code), "the condition names the EC2 error: {message}");
    if operation.is_none() {
        assert!(
            h.api.get_opt("steady").await.unwrap().is_some(),
            "deleted before its instance was terminated"
        );
    }

    // At most one sweep per poll interval, and a bounded number of tries by each of the five
    // objects (every operation fails, so each try is one call).
    let total: u64 = calls.values().sum();
    let sweeps = WINDOW.as_secs() + 1;
    let tries = attempts(backoff, WINDOW);
    let (failed, bound) = match operation {
        Some(op) => (calls.get(op).copied().unwrap_or(0), 5 * tries),
        None => (total, sweeps + 5 * tries),
    };
    assert!(failed <= bound, "{failed} failed calls in {WINDOW:?} (bound {bound}): {calls:?}");

    for name in &names {
        h.state(name, "running").await;
    }
    h.gone("steady").await;
    let recovery = healed.elapsed();
    let owners = owners(&h);
    assert_eq!(owners.len(), 4, "one live instance per object: {owners:?}");
    assert!(owners.values().all(|n| *n == 1), "one live instance per object: {owners:?}");
    println!(
        "{fault:?} on {}: {total} calls in {WINDOW:?} ({failed} failed, bound {bound}): {calls:?}; \
         converged {:.1} s after it ended",
        operation.unwrap_or("every operation"),
        recovery.as_secs_f64()
    );
    (recovery, calls)
}

#[tokio::test]
async fn a_throttling_storm_is_waited_out() {
    // The objects' next tries are at least 4.4 s after the storm (0.5 s doubling, shortest
    // jitter), but the first good sweep retries every object at once.
    let (recovery, _) = ec2_outage(None, Fault::Throttle, "RequestLimitExceeded", backoff(500, 60)).await;
    assert!(recovery < Duration::from_secs(4), "converged {recovery:?} after the storm");
}

#[tokio::test]
async fn an_ec2_server_error_outage_is_waited_out() {
    let (recovery, _) = ec2_outage(None, Fault::ServerError, "InternalError", backoff(500, 60)).await;
    assert!(recovery < Duration::from_secs(4), "converged {recovery:?} after the outage");
}

#[tokio::test]
async fn insufficient_capacity_is_retried_with_backoff() {
    let code = "InsufficientInstanceCapacity";
    let (_, calls) =
        ec2_outage(Some("RunInstances"), Fault::InsufficientCapacity, code, backoff(200, 4)).await;
    // Each new object's key pair is made once, not looked up again on every launch attempt.
    for op in ["DescribeKeyPairs", "GetSecretValue", "ImportKeyPair"] {
        assert_eq!(calls.get(op), Some(&4), "{op} once per object: {calls:?}");
    }
}

fn room_spec(health_port: u16) -> serde_json::Value {
    json!({ "config": { "inline": { "room": 1 } }, "healthCheck": { "port": health_port, "periodSeconds": 1 } })
}

#[tokio::test]
async fn a_secrets_manager_outage_launches_nothing_until_keys_are_in_custody() {
    let rig = Rig::start_with(Options { backoff: backoff(200, 2), ..Default::default() }).await;
    let h = &rig.h;
    for op in ["GetSecretValue", "PutSecretValue"] {
        h.fake.inject(Some(op), Fault::ServerError, usize::MAX);
    }
    create_room(h, "alpha", room_spec(rig.health_port)).await;
    tokio::time::sleep(WINDOW).await;

    assert_eq!(h.fake.calls("RunInstances"), 0, "launched with a key that is not in Secrets Manager");
    assert_eq!(h.fake.calls("ImportKeyPair"), 0, "imported a key whose private half is not stored");
    let reads = h.fake.calls("GetSecretValue");
    let bound = attempts(backoff(200, 2), WINDOW);
    assert!((1..=bound).contains(&reads), "{reads} Secrets Manager reads in {WINDOW:?} (bound {bound})");
    let room = rooms(h).get("alpha").await.unwrap();
    assert_ne!(phase(&room), "Ready");

    h.fake.heal();
    in_phase(h, "alpha", "Ready").await;
    assert_eq!(h.fake.live_instances().len(), 1);
    println!("Secrets Manager outage: {reads} reads in {WINDOW:?} (bound {bound}), then Ready");
}

#[tokio::test]
async fn a_room_waits_for_ssh_that_does_not_answer_yet_and_is_configured_once_it_does() {
    let (ssh_port, health_port) = (free_port(), free_port());
    let ssh = dataroom_operator::ssh::SshSettings { port: ssh_port, ..Default::default() };
    let h = Harness::start_with(Options { ssh, backoff: backoff(200, 2), ..Default::default() }).await;
    create_room(&h, "alpha", room_spec(health_port)).await;
    tokio::time::sleep(WINDOW).await;

    // sshd starts after the instance does: within the boot grace a refused connection is waited
    // for (every 2 s), neither a failure nor an audit record.
    let room = rooms(&h).get("alpha").await.unwrap();
    let reason = room.status.as_ref().and_then(|s| s.reason.clone()).unwrap_or_default();
    assert_eq!(phase(&room), "Configuring", "{:?}", room.status);
    assert!(reason.contains("waiting for SSH"), "the room says why: {reason}");
    assert_eq!(condition_and_message(&room, "Configured"), ("False".into(), reason.clone()));
    let audit = std::fs::read_to_string(h.audit_dir.path().join("audit.jsonl")).unwrap();
    assert!(!audit.lines().any(|l| l.contains("\"configure\"")), "a boot-time wait was audited");
    assert_eq!(h.fake.calls("RunInstances"), 1);

    // SSH and health start answering.
    let root = tempfile::tempdir().unwrap();
    let _simulator = Rig::simulate(&h, root.path(), ssh_port, health_port);
    in_phase(&h, "alpha", "Ready").await;
    assert_eq!(h.fake.calls("RunInstances"), 1, "the instance was kept, not replaced");
    let audit = std::fs::read_to_string(h.audit_dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(audit.lines().filter(|l| l.contains("\"configure\"")).count(), 1, "configured once");
}

#[tokio::test]
async fn an_api_server_outage_cuts_watches_and_the_operator_catches_up() {
    let h = Harness::start_with(Options { backoff: backoff(200, 2), ..Default::default() }).await;
    let spec = json!({ "instanceType": "t3.micro" });
    for name in ["a", "b"] {
        h.create(name, spec.clone()).await;
    }
    let a = h.state("a", "running").await;
    h.state("b", "running").await;

    let before = h.server.requests();
    h.server.set_available(false);
    // EC2 changes while the operator cannot write status: someone stops a's instance.
    let id = a.status.unwrap().instance_id.unwrap();
    h.fake.stop_instance(&id).await.unwrap();
    tokio::time::sleep(WINDOW).await;
    let requests = h.server.requests() - before;
    // Three watches, each re-listed with kube's backoff (0.8 s doubling), and reconciles of `a`
    // backing off: tens of requests, where a hot loop would make thousands.
    assert!(requests <= 60, "{requests} API requests in {WINDOW:?} while it was down");
    h.server.set_available(true);
    let up = Instant::now();

    // The stopped instance is started again, and the watches see new work.
    h.create("c", spec.clone()).await;
    h.api.delete("b", &DeleteParams::default()).await.unwrap();
    h.until("a", "running again", |o| {
        o.status
            .as_ref()
            .is_some_and(|s| s.state.as_deref() == Some("running") && s.instance_id == Some(id.clone()))
    })
    .await;
    h.state("c", "running").await;
    h.gone("b").await;
    assert!(h.fake.calls("StartInstances") >= 1);
    assert_eq!(owners(&h).len(), 2);
    println!(
        "API server outage: {requests} requests in {WINDOW:?}; caught up {:.1} s after it ended",
        up.elapsed().as_secs_f64()
    );
}
