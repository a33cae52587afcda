//! The orphan collector: a managed instance whose Ec2Instance is gone is terminated after the
//! grace period (and not before), audited; instances with a live owner are never touched.

mod support;

use dataroom_operator::clock;
use dataroom_operator::cloud::InstanceState;
use dataroom_operator::controller::gc::{Orphans, collect};
use jiff::SignedDuration;
use serde_json::json;
use support::harness::{Harness, Options};

#[tokio::test]
async fn an_orphaned_instance_is_terminated_after_the_grace_period() {
    let (clock, hands) = clock::manual(jiff::Timestamp::now());
    let h = Harness::start_with(Options { clock, ..Options::default() }).await;
    h.create("web", json!({"instanceType": "t3.micro"})).await;
    h.state("web", "running").await;
    // Launched for an object that no longer exists (as after a crash before its status write).
    let orphan =
        support::plant(h.fake.as_ref(), "00000000-0000-4000-8000-00000000dead", "default", "gone").await;
    h.ctx.cache.put(orphan.clone());
    let grace = SignedDuration::from_mins(5);
    let mut orphans = Orphans::default();
    assert!(collect(&h.ctx, &mut orphans, grace).await.is_empty(), "first seen: within its grace");
    hands.advance(SignedDuration::from_mins(4));
    assert!(collect(&h.ctx, &mut orphans, grace).await.is_empty(), "still within its grace");
    hands.advance(SignedDuration::from_mins(2));
    assert_eq!(collect(&h.ctx, &mut orphans, grace).await, vec![orphan.id.clone()]);

    let live = h.fake.live_instances();
    assert!(!live.iter().any(|i| i.id == orphan.id), "the orphan is terminated");
    assert!(live.iter().any(|i| i.state == InstanceState::Running), "web's instance is untouched");
    let audit = std::fs::read_to_string(h.audit_dir.path().join("audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["action"] == "gc.terminate")
        .collect();
    assert_eq!(records.len(), 2, "the intent, then the outcome: {audit}");
    assert_eq!((&records[0]["outcome"], &records[1]["outcome"]), (&json!("started"), &json!("success")));
    let records = &records[1..];
    assert_eq!(records[0]["target"], "ec2instance/default/gone");
    assert_eq!(records[0]["params"]["instance_id"], orphan.id.as_str());
}
