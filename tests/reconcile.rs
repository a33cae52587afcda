//! Ec2Instance reconciler on the fake EC2 with a mocked Kubernetes API server that records the
//! exact requests made.

mod support;

use dataroom_operator::cloud::fake::Fault;
use dataroom_operator::cloud::{Imperative, Lifecycle, TAG_MANAGED_BY};
use dataroom_operator::crd::Ec2Instance;
use serde_json::json;
use support::{Fixture, NS, path, sweep, uid};

const EVENTS: &str = "POST /apis/events.k8s.io/v1/namespaces/team-a/events";

fn status_path(name: &str) -> String {
    format!("PATCH {}/status", path(name))
}

fn condition(obj: &Ec2Instance, type_: &str) -> (String, String, String) {
    let c = obj.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

async fn running(f: &Fixture, name: &str) -> Ec2Instance {
    f.object(name, json!({}), true);
    f.reconcile(name).await.unwrap();
    sweep(f).await;
    f.reconcile(name).await.unwrap();
    let obj = f.fetch(name);
    assert_eq!(obj.status.as_ref().unwrap().state.as_deref(), Some("running"));
    f.api.clear();
    obj
}

#[tokio::test]
async fn create_adds_the_finalizer_then_launches_under_the_launch_policy() {
    let f = Fixture::new();
    f.object("web", json!({ "instanceType": "t3.small", "tags": { "team": "a" } }), false);

    f.reconcile("web").await.unwrap();
    let requests = f.api.requests();
    assert_eq!(f.api.lines(), vec![format!("PATCH {}", path("web"))]);
    assert_eq!(
        requests[0].body[1],
        json!({ "op": "add", "path": "/metadata/finalizers", "value": ["dataroom.dev/ec2-instance"] })
    );
    assert_eq!(f.fake.calls("RunInstances"), 0, "nothing is created before the finalizer is in place");

    f.api.clear();
    f.reconcile("web").await.unwrap();
    assert_eq!(f.api.lines(), vec![EVENTS.to_string(), status_path("web")]);
    let requests = f.api.requests();
    assert_eq!(requests[0].body["reason"], "Launched");
    assert_eq!(requests[0].body["regarding"]["name"], "web");
    assert_eq!(requests[1].query, "&force=true&fieldManager=dataroom-operator");

    let instances = f.fake.instances();
    assert_eq!(instances.len(), 1);
    let instance = &instances[0];
    let owner = uid("web");
    assert_eq!(instance.tag(TAG_MANAGED_BY), Some("dataroom-operator"));
    assert_eq!(instance.owner_uid(), Some(owner.as_str()));
    assert_eq!(instance.tag("dataroom.dev/namespace"), Some(NS));
    assert_eq!(instance.tag("dataroom.dev/name"), Some("web"));
    assert_eq!(instance.tag("Name"), Some("team-a/web"));
    assert_eq!(instance.tag("team"), Some("a"));
    assert_eq!(instance.instance_type, "t3.small");
    let key_name = format!("dataroom-{owner}");
    assert_eq!(instance.key_name.as_deref(), Some(key_name.as_str()));
    assert_eq!(f.fake.secret_names(), vec![format!("dataroom-operator/ssh/{key_name}")]);

    let status = &requests[1].body["status"];
    assert_eq!(status["instanceId"], json!(instance.id));
    assert_eq!(status["state"], "pending");
    assert_eq!(status["keyPairName"], json!(key_name));
    assert_eq!(status["sshKeySecret"], json!(format!("dataroom-operator/ssh/{key_name}")));
    assert_eq!(status["hourlyPriceUsd"], 0.0208);
    let text = requests.iter().map(|r| r.body.to_string()).collect::<String>();
    assert!(!text.contains("PRIVATE KEY"), "no private key in any request");

    // The poller sees it running: status follows, Ready turns true.
    sweep(&f).await;
    f.api.clear();
    f.reconcile("web").await.unwrap();
    assert_eq!(f.api.lines(), vec![status_path("web")]);
    let obj = f.fetch("web");
    assert_eq!(condition(&obj, "Ready").0, "True");
    assert_eq!(condition(&obj, "Synced").0, "True");
    assert_eq!(condition(&obj, "BudgetAllowed").0, "True");

    // Steady state: no EC2 call and no API write at all.
    f.api.clear();
    f.fake.reset_counters();
    f.reconcile("web").await.unwrap();
    assert!(f.api.lines().is_empty(), "{:?}", f.api.lines());
    assert_eq!(f.fake.total_calls(), 0);

    let audit = f.audit_lines();
    assert_eq!(audit.len(), 2, "the launch, before EC2 is asked and after");
    assert_eq!((&audit[0]["action"], &audit[0]["outcome"]), (&json!("launch"), &json!("started")));
    assert_eq!((&audit[1]["action"], &audit[1]["outcome"]), (&json!("launch"), &json!("success")));
    assert!(!audit[0].to_string().contains("PRIVATE KEY"));
}

#[tokio::test]
async fn an_instance_launched_before_a_crash_is_adopted_not_duplicated() {
    let f = Fixture::new();
    f.object("web", json!({}), true);
    // The previous run launched the instance and died before writing status.
    let before = support::plant(f.fake.as_ref(), &uid("web"), NS, "web").await;

    f.reconcile("web").await.unwrap();
    assert_eq!(f.fake.calls("RunInstances"), 1, "only the launch from before the crash");
    assert_eq!(f.fake.live_instances().len(), 1);
    let obj = f.fetch("web");
    assert_eq!(obj.status.unwrap().instance_id, Some(before.id.clone()));
    assert_eq!(f.api.requests()[0].body["reason"], "Adopted");
    assert_eq!(f.audit_lines()[0]["action"], "adopt");
    assert!(f.ctx.gate.holds(&uid("web")), "an adopted billed instance counts against the budget");
}

#[tokio::test]
async fn power_state_is_converged_both_ways() {
    let f = Fixture::new();
    let mut obj = running(&f, "web").await;
    let id = obj.status.clone().unwrap().instance_id.unwrap();

    obj.spec.power_state = dataroom_operator::crd::PowerState::Stopped;
    f.store(&obj);
    f.reconcile("web").await.unwrap();
    assert_eq!(f.fake.calls("StopInstances"), 1);
    assert_eq!(f.fetch("web").status.unwrap().state.as_deref(), Some("stopping"));
    sweep(&f).await;
    f.reconcile("web").await.unwrap();
    let stopped = f.fetch("web");
    assert_eq!(stopped.status.as_ref().unwrap().state.as_deref(), Some("stopped"));
    assert_eq!(
        condition(&stopped, "Ready"),
        ("True".into(), "Stopped".into(), "the instance is stopped".into())
    );
    assert!(!f.ctx.gate.holds(&uid("web")), "a stopped instance frees its budget slot");

    let mut obj = f.fetch("web");
    obj.spec.power_state = dataroom_operator::crd::PowerState::Running;
    f.store(&obj);
    f.reconcile("web").await.unwrap();
    assert_eq!(f.fake.calls("StartInstances"), 1);
    assert!(f.ctx.gate.holds(&uid("web")), "a start goes through the budget gate");
    sweep(&f).await;
    f.reconcile("web").await.unwrap();
    let status = f.fetch("web").status.unwrap();
    assert_eq!(
        (status.state.as_deref(), status.instance_id.as_deref()),
        (Some("running"), Some(id.as_str()))
    );
    let actions: Vec<_> = f.audit_lines().iter().map(|r| r["action"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        actions,
        ["launch", "launch", "stop", "stop", "start", "start"],
        "each EC2 mutation is recorded before (its intent) and after (its outcome)"
    );
}

#[tokio::test]
async fn an_instance_terminated_out_of_band_is_replaced_through_the_gate() {
    let f = Fixture::new();
    let obj = running(&f, "web").await;
    let old = obj.status.unwrap().instance_id.unwrap();
    f.fake.terminate_instance(&old).await.unwrap();
    sweep(&f).await;
    f.reconcile("web").await.unwrap();
    let new = f.fetch("web").status.unwrap().instance_id.unwrap();
    assert_ne!(new, old);
    assert_eq!(f.fake.live_instances().len(), 1);
    let launch = f.audit_lines().into_iter().rfind(|r| r["action"] == "launch").unwrap();
    assert_eq!(launch["params"]["replaces"], json!(old));
}

async fn delete(f: &Fixture, name: &str, policy: &str) {
    let mut obj = f.fetch(name);
    obj.spec.deletion_policy = serde_json::from_value(json!(policy)).unwrap();
    obj.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
    f.store(&obj);
    f.api.clear();
    f.reconcile(name).await.unwrap();
}

#[tokio::test]
async fn deletion_terminates_and_removes_key_pair_and_secret() {
    let f = Fixture::new();
    running(&f, "web").await;
    delete(&f, "web", "Delete").await;
    assert!(f.fake.live_instances().is_empty());
    assert!(f.fake.secret_names().is_empty());
    assert!(f.fake.describe_key_pairs(&[]).await.unwrap().is_empty());
    assert_eq!(f.api.lines(), vec![EVENTS.to_string(), format!("PATCH {}", path("web"))]);
    let remove = &f.api.requests()[1].body;
    assert_eq!(
        remove[0],
        json!({ "op": "test", "path": "/metadata/finalizers/0", "value": "dataroom.dev/ec2-instance" })
    );
    assert_eq!(remove[1], json!({ "op": "remove", "path": "/metadata/finalizers/0" }));
    assert!(!f.ctx.gate.holds(&uid("web")));
    assert_eq!(f.audit_lines().last().unwrap()["action"], "terminate");
}

#[tokio::test]
async fn deletion_with_retain_keeps_instance_key_and_secret() {
    let f = Fixture::new();
    running(&f, "web").await;
    delete(&f, "web", "Retain").await;
    let kept = f.fake.live_instances();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].tag(TAG_MANAGED_BY), Some("retained"), "handed over: never acted on, still counted");
    assert_eq!(f.fake.secret_names().len(), 1);
    assert_eq!(f.fake.describe_key_pairs(&[]).await.unwrap().len(), 1);
    assert!(f.fetch("web").metadata.finalizers.unwrap_or_default().is_empty());
    assert_eq!(f.audit_lines().last().unwrap()["action"], "retain");
}

/// Every intent has its outcome: a termination EC2 refuses is recorded as a failure, the finalizer
/// stays, and the retry records its own intent and success.
#[tokio::test]
async fn a_failed_termination_is_recorded_and_retried() {
    use dataroom_operator::cloud::fake::Fault;
    let f = Fixture::new();
    running(&f, "web").await;
    f.fake.inject(Some("TerminateInstances"), Fault::ServerError, 1);
    let mut obj = f.fetch("web");
    obj.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
    f.store(&obj);
    assert!(f.reconcile("web").await.is_err(), "EC2 refused the termination");
    assert!(!f.fetch("web").metadata.finalizers.unwrap_or_default().is_empty(), "the finalizer stays");
    f.reconcile("web").await.unwrap();
    let outcomes: Vec<_> = f
        .audit_lines()
        .into_iter()
        .filter(|r| r["action"] == "terminate")
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["started", "failure", "started", "success"]);
    assert!(f.fake.live_instances().is_empty());
}

#[tokio::test]
async fn an_instance_already_gone_never_blocks_deletion() {
    let f = Fixture::new();
    let obj = running(&f, "web").await;
    f.fake.terminate_instance(&obj.status.unwrap().instance_id.unwrap()).await.unwrap();
    delete(&f, "web", "Delete").await;
    assert!(f.fetch("web").metadata.finalizers.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn a_budget_refusal_is_explained_once_and_retried_when_headroom_returns() {
    let f = Fixture::new();
    f.limits(1);
    running(&f, "a").await;
    f.object("b", json!({}), true);
    f.reconcile("b").await.unwrap();
    assert_eq!(f.fake.live_instances().len(), 1);
    let b = f.fetch("b");
    let (allowed, reason, message) = condition(&b, "BudgetAllowed");
    assert_eq!((allowed.as_str(), reason.as_str()), ("False", "MaxInstancesReached"));
    assert_eq!(message, "maxInstances: 1 of 1 instances are pending or running");
    assert_eq!(f.api.requests()[0].body["reason"], "BudgetExceeded");
    assert!(f.ctx.blocked.lock().unwrap().iter().any(|o| o.name == "b"));
    f.reconcile("b").await.unwrap();
    let refusals = f.audit_lines().iter().filter(|r| r["outcome"] == "refused").count();
    assert_eq!(refusals, 1, "the same refusal is audited once, not on every retry");

    let mut a = f.fetch("a");
    a.spec.power_state = dataroom_operator::crd::PowerState::Stopped;
    f.store(&a);
    f.reconcile("a").await.unwrap();
    sweep(&f).await;
    f.reconcile("a").await.unwrap();
    f.reconcile("b").await.unwrap();
    let b = f.fetch("b");
    assert_eq!(condition(&b, "BudgetAllowed").0, "True");
    assert!(b.status.unwrap().instance_id.is_some());
    assert_eq!(f.fake.calls("RunInstances"), 2);
}

#[tokio::test]
async fn an_unaffordable_type_is_refused_before_any_ec2_call() {
    let f = Fixture::new();
    f.object("big", json!({ "instanceType": "m5.2xlarge" }), true);
    f.reconcile("big").await.unwrap();
    let (allowed, reason, message) = condition(&f.fetch("big"), "BudgetAllowed");
    assert_eq!((allowed.as_str(), reason.as_str()), ("False", "InstanceTypeNotAllowed"));
    assert!(message.contains("m5.2xlarge") && message.contains("t3.medium"), "{message}");
    assert_eq!(f.fake.calls("RunInstances"), 0);
}

#[tokio::test]
async fn failures_show_in_synced_and_release_the_reservation() {
    let f = Fixture::new();
    f.object("web", json!({}), true);
    f.fake.inject(Some("RunInstances"), Fault::InsufficientCapacity, 1);
    let err = f.reconcile("web").await.unwrap_err();
    assert_eq!(err.label(), "CloudRetryable");
    let (synced, reason, message) = condition(&f.fetch("web"), "Synced");
    assert_eq!((synced.as_str(), reason.as_str()), ("False", "CloudRetryable"));
    assert!(message.contains("InsufficientInstanceCapacity"));
    assert!(!f.ctx.gate.holds(&uid("web")), "a failed launch gives its slot back");
    f.reconcile("web").await.unwrap();
    assert_eq!(f.fake.live_instances().len(), 1);
    assert_eq!(condition(&f.fetch("web"), "Synced").0, "True");

    f.object("bad", json!({ "tags": { "dataroom.dev/owner-uid": "spoof" } }), true);
    f.reconcile("bad").await.unwrap();
    let (synced, reason, _) = condition(&f.fetch("bad"), "Synced");
    assert_eq!((synced.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert_eq!(f.fake.live_instances().len(), 1);
}

#[tokio::test]
async fn a_key_pair_removed_behind_the_operators_back_is_made_again() {
    let f = Fixture::new();
    f.object("web", json!({}), true);
    f.fake.inject(Some("RunInstances"), Fault::InsufficientCapacity, 1);
    f.reconcile("web").await.unwrap_err();
    // Someone deletes the key pair between two launch attempts: the operator believed it ready.
    let key_name = format!("dataroom-{}", uid("web"));
    f.fake.delete_key_pair(&key_name).await.unwrap();
    let err = f.reconcile("web").await.unwrap_err();
    assert!(err.to_string().contains("InvalidKeyPair.NotFound"), "{err}");
    f.reconcile("web").await.unwrap();
    assert_eq!(f.fake.live_instances().len(), 1);
    assert_eq!(f.fake.calls("DescribeKeyPairs"), 2, "looked up on the first try and after the loss only");
    assert_eq!(f.fake.describe_key_pairs(&[key_name]).await.unwrap().len(), 1, "made again");
}
