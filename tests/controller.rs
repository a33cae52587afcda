//! The whole controller (`controller::run`: watches, poller, budget persistence, retries of
//! refused objects) in-process against the API emulator and the fake EC2.

mod support;

use std::time::{Duration, Instant};

use dataroom_operator::cloud::{Lifecycle, TAG_MANAGED_BY};
use dataroom_operator::crd::{Ec2Budget, Ec2Instance};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::harness::Harness;

fn instance_id(obj: &Ec2Instance) -> String {
    obj.status.as_ref().unwrap().instance_id.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_driven_through_its_life_by_watch_events_and_the_poller() {
    let h = Harness::start().await;
    h.create("web", json!({})).await;
    let first = instance_id(&h.state("web", "running").await);
    h.patch_spec("web", json!({ "powerState": "Stopped" })).await;
    h.state("web", "stopped").await;
    h.patch_spec("web", json!({ "powerState": "Running" })).await;
    h.state("web", "running").await;

    // Terminated behind the operator's back: the poller notices, the controller replaces it.
    h.fake.terminate_instance(&first).await.unwrap();
    let replaced = h
        .until("web", "replaced", |o| {
            o.status.as_ref().and_then(|s| s.instance_id.as_deref()).is_some_and(|id| id != first)
        })
        .await;
    h.state("web", "running").await;
    assert_eq!(h.fake.live_instances().len(), 1);

    h.api.delete("web", &DeleteParams::default()).await.unwrap();
    h.gone("web").await;
    assert!(h.fake.live_instances().is_empty(), "terminated on deletion");
    assert!(h.fake.secret_names().is_empty(), "secret removed");
    assert_ne!(instance_id(&replaced), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_hands_the_instance_over() {
    let h = Harness::start().await;
    h.create("keep", json!({ "deletionPolicy": "Retain" })).await;
    h.state("keep", "running").await;
    h.api.delete("keep", &DeleteParams::default()).await.unwrap();
    h.gone("keep").await;
    let live = h.fake.live_instances();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].tag(TAG_MANAGED_BY), Some("retained"), "handed over, still counted");
    assert_eq!(h.fake.secret_names().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_launch_goes_ahead_as_soon_as_headroom_returns() {
    let h = Harness::start().await;
    let budgets: Api<Ec2Budget> = Api::all(h.client.clone());
    let budget: Ec2Budget = serde_json::from_value(json!({
        "apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Budget", "metadata": { "name": "default" }, "spec": { "maxInstances": 1 },
    }))
    .unwrap();
    // The operator may have created the default budget already: apply, as a user would.
    budgets.patch("default", &PatchParams::apply("test").force(), &Patch::Apply(&budget)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.create("a", json!({})).await;
    h.state("a", "running").await;
    h.create("b", json!({})).await;
    let refused = |o: &Ec2Instance| {
        o.status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "BudgetAllowed" && c.status == "False"))
    };
    let b = h.until("b", "refused", refused).await;
    assert!(b.status.unwrap().message.unwrap().contains("maxInstances: 1 of 1"));

    // `until` gives up after 20 s, well before the 60 s requeue: b is retried on release.
    h.patch_spec("a", json!({ "powerState": "Stopped" })).await;
    h.state("a", "stopped").await;
    h.state("b", "running").await;

    let usage = h.until_budget(&budgets, |s| s.launches_today == 2 && s.running_instances == 1).await;
    assert!(usage.spend_today_usd > 0.0);
}

impl Harness {
    async fn until_budget(
        &self,
        budgets: &Api<Ec2Budget>,
        check: impl Fn(&dataroom_operator::crd::Ec2BudgetStatus) -> bool,
    ) -> dataroom_operator::crd::Ec2BudgetStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = budgets.get("default").await.unwrap().status.unwrap_or_default();
            if check(&status) {
                return status;
            }
            assert!(Instant::now() < deadline, "budget status never matched: {status:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
