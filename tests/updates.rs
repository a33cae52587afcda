//! Declarative updates of an Ec2Instance, through the whole controller against the API emulator
//! and the fake EC2 (which, like EC2, refuses a type change of an instance that is not stopped):
//! every change converges or is refused, and the status says what EC2 runs, never what the spec
//! merely asks for.

mod support;

use std::sync::{Arc, Mutex};

use dataroom_operator::cloud::network::Permission;
use dataroom_operator::cloud::{Instance, InstanceState, TAG_ROOT_VOLUME_GIB};
use dataroom_operator::crd::{Ec2BudgetSpec, Ec2Instance};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use support::harness::{Harness, condition, has_condition};

fn instance(h: &Harness) -> Instance {
    let live = h.fake.live_instances();
    assert_eq!(live.len(), 1, "exactly one instance: {live:?}");
    live.into_iter().next().unwrap()
}

fn up_to_date(obj: &Ec2Instance) -> bool {
    has_condition(obj, "UpToDate", "True", "UpToDate")
}

/// Records of `action` with `outcome`, in order.
fn records(h: &Harness, action: &str, outcome: &str) -> Vec<Value> {
    h.audit().into_iter().filter(|r| r["action"] == action && r["outcome"] == outcome).collect()
}

/// Every status the object is written with, from a watch started now.
fn statuses(h: &Harness) -> Arc<Mutex<Vec<(String, String, String)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stream = watcher(h.api.clone(), watcher::Config::default()).applied_objects();
    let sink = seen.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(Ok(obj)) = stream.next().await {
            let status = obj.status.clone().unwrap_or_default();
            let up = condition(&obj, "UpToDate").map(|c| c.status).unwrap_or_default();
            let state = status.state.unwrap_or_default();
            sink.lock().unwrap().push((status.instance_type.unwrap_or_default(), state, up));
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_change_stops_changes_and_starts_and_the_status_follows_ec2() {
    let h = Harness::start().await;
    h.create("web", json!({ "instanceType": "t3.micro" })).await;
    h.until("web", "running and up to date", |o| {
        up_to_date(o) && o.status.as_ref().unwrap().state.as_deref() == Some("running")
    })
    .await;
    let seen = statuses(&h);
    let launched = instance(&h);

    h.patch_spec("web", json!({ "instanceType": "t3.small" })).await;
    let done = h
        .until("web", "running t3.small", |o| {
            let s = o.status.as_ref().unwrap();
            up_to_date(o)
                && s.state.as_deref() == Some("running")
                && s.instance_type.as_deref() == Some("t3.small")
        })
        .await;
    let running = instance(&h);
    assert_eq!((running.id.as_str(), running.instance_type.as_str()), (launched.id.as_str(), "t3.small"));
    let status = done.status.unwrap();
    assert_eq!(status.hourly_price_usd, h.ctx.gate.hourly_price("t3.small"), "the price follows the type");

    // While EC2 ran the old type, the status said so, and said it was not up to date.
    let seen = seen.lock().unwrap().clone();
    let before: Vec<_> = seen.iter().take_while(|(t, _, _)| t == "t3.micro").collect();
    assert!(before.iter().any(|(_, _, up)| up == "False"), "UpToDate went False first: {seen:?}");
    assert!(before.iter().any(|(_, state, _)| state == "stopping"), "stopped to change: {seen:?}");
    assert!(seen.iter().all(|(t, _, up)| t != "t3.small" || up == "True" || up.is_empty()), "{seen:?}");

    // Stop, change, start: each recorded before and after.
    let stop = records(&h, "stop", "success").len();
    let updates = records(&h, "update", "success");
    let start = records(&h, "start", "success").len();
    assert_eq!((stop, updates.len(), start), (1, 1, 1), "{:#?}", h.audit());
    assert_eq!(updates[0]["params"]["field"], "instanceType");
    assert_eq!(
        (&updates[0]["params"]["from"], &updates[0]["params"]["to"]),
        (&json!("t3.micro"), &json!("t3.small"))
    );
    assert_eq!(records(&h, "update", "started").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_the_budget_refuses_stops_nothing() {
    let h = Harness::start().await;
    h.ctx.gate.set_limits(Ec2BudgetSpec { max_instance_type: "t3.small".into(), ..Default::default() });
    h.create("web", json!({})).await;
    h.state("web", "running").await;

    h.patch_spec("web", json!({ "instanceType": "m5.4xlarge" })).await;
    let held = h
        .until("web", "held by the budget", |o| has_condition(o, "UpToDate", "False", "BudgetRefused"))
        .await;
    let budget = condition(&held, "BudgetAllowed").unwrap();
    assert_eq!((budget.status.as_str(), budget.reason.as_str()), ("False", "InstanceTypeNotAllowed"));
    assert!(budget.message.contains("m5.4xlarge"), "{}", budget.message);
    let message = condition(&held, "UpToDate").unwrap().message;
    assert!(message.contains("instanceType: EC2 has t3.micro, the spec asks m5.4xlarge"), "{message}");
    let status = held.status.unwrap();
    assert_eq!(
        (status.state.as_deref(), status.instance_type.as_deref()),
        (Some("running"), Some("t3.micro"))
    );
    assert_eq!(instance(&h).state, InstanceState::Running);
    assert_eq!(h.fake.calls("StopInstances"), 0, "nothing was stopped");
    assert_eq!(records(&h, "update", "refused").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_groups_and_a_larger_volume_change_in_place() {
    let h = Harness::start().await;
    let ssh_from_office = vec![Permission::tcp(22, "10.0.0.0/8")];
    let (a, b) = (
        h.fake.add_security_group("a", ssh_from_office.clone()),
        h.fake.add_security_group("b", ssh_from_office),
    );
    let open = h.fake.add_security_group("open", vec![Permission::tcp(22, "0.0.0.0/0")]);
    h.create(
        "web",
        json!({ "tags": { "team": "a", "old": "x" }, "securityGroupIds": [a], "rootVolumeGiB": 10 }),
    )
    .await;
    h.until("web", "running", |o| {
        up_to_date(o) && o.status.as_ref().unwrap().state.as_deref() == Some("running")
    })
    .await;
    let launched = instance(&h);

    h.patch_spec("web", json!({ "tags": { "team": "b", "env": "prod", "old": null }, "securityGroupIds": [b], "rootVolumeGiB": 20 })).await;
    let done = h
        .until("web", "updated", |o| {
            up_to_date(o) && o.status.as_ref().unwrap().observed_generation == Some(2)
        })
        .await;
    let now = instance(&h);
    assert_eq!((now.tag("team"), now.tag("env"), now.tag("old")), (Some("b"), Some("prod"), None));
    assert_eq!(now.security_group_ids, std::slice::from_ref(&b));
    assert_eq!(now.tag(TAG_ROOT_VOLUME_GIB), Some("20"));
    assert_eq!(now.tag("Name"), launched.tag("Name"), "reserved tags untouched");
    assert_eq!((now.launch_time, h.fake.calls("StopInstances")), (launched.launch_time, 0), "never stopped");
    assert_eq!(done.status.unwrap().security_group_ids, Some(vec![b.clone()]));
    assert_eq!(h.ctx.gate.snapshot().root_volume_gib, 20, "the budget counts the larger volume");
    let fields: Vec<Value> =
        records(&h, "update", "success").iter().map(|r| r["params"]["field"].clone()).collect();
    assert_eq!(fields, [json!("securityGroupIds"), json!("tags"), json!("rootVolumeGiB")]);

    // A group that opens SSH to the internet is refused in an update as at a launch.
    h.patch_spec("web", json!({ "securityGroupIds": [open] })).await;
    let refused =
        h.until("web", "refused", |o| has_condition(o, "Synced", "False", "SecurityGroupOpenToWorld")).await;
    assert!(condition(&refused, "Synced").unwrap().message.contains(&open));
    assert_eq!(instance(&h).security_group_ids, [b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_next_stop_waits_for_the_stop_and_changes_a_stopped_instance_without_starting_it() {
    let h = Harness::start().await;
    h.create("web", json!({ "updatePolicy": "OnNextStop", "userData": "#!/bin/sh\necho one\n" })).await;
    h.state("web", "running").await;

    h.patch_spec("web", json!({ "instanceType": "t3.small", "userData": "#!/bin/sh\necho two\n" })).await;
    let waiting =
        h.until("web", "waiting", |o| has_condition(o, "UpToDate", "False", "WaitingForStop")).await;
    let message = condition(&waiting, "UpToDate").unwrap().message;
    assert!(
        message.contains("instanceType") && message.contains("userData") && message.contains("next stop"),
        "{message}"
    );
    assert!(!message.contains("echo"), "user data is shown by hash only: {message}");
    assert_eq!((instance(&h).instance_type.as_str(), h.fake.calls("StopInstances")), ("t3.micro", 0));

    h.patch_spec("web", json!({ "powerState": "Stopped" })).await;
    h.until("web", "stopped and changed", |o| {
        up_to_date(o) && o.status.as_ref().unwrap().state.as_deref() == Some("stopped")
    })
    .await;
    let stopped = instance(&h);
    assert_eq!(
        (stopped.instance_type.as_str(), h.fake.calls("StartInstances")),
        ("t3.small", 0),
        "changed, not started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_made_outside_is_corrected_and_recorded() {
    let h = Harness::start().await;
    h.create("web", json!({ "tags": { "team": "a" } })).await;
    h.until("web", "running", |o| {
        up_to_date(o) && o.status.as_ref().unwrap().state.as_deref() == Some("running")
    })
    .await;
    let id = instance(&h).id;

    // Someone retags it and changes its type in the console, between two looks of the poller.
    h.fake.tamper(&id, |i| {
        i.tags.insert("team".into(), "x".into());
        i.instance_type = "t3.large".into();
    });

    // Seen by the poller, corrected by the controller: a stop for the type, tags in place.
    h.until("web", "corrected", |o| {
        let s = o.status.as_ref().unwrap();
        let i = instance(&h);
        let fixed = (i.tag("team"), i.instance_type.as_str(), i.state)
            == (Some("a"), "t3.micro", InstanceState::Running);
        fixed
            && up_to_date(o)
            && s.state.as_deref() == Some("running")
            && s.instance_type.as_deref() == Some("t3.micro")
    })
    .await;
    let now = instance(&h);
    assert_eq!((now.tag("team"), now.instance_type.as_str()), (Some("a"), "t3.micro"));
    let corrected = records(&h, "drift.corrected", "success");
    let fields: Vec<(Value, Value, Value)> = corrected
        .iter()
        .map(|r| (r["params"]["field"].clone(), r["params"]["from"].clone(), r["params"]["to"].clone()))
        .collect();
    assert!(fields.contains(&(json!("tags"), json!("{team=x}"), json!("{team=a}"))), "{fields:?}");
    assert!(fields.contains(&(json!("instanceType"), json!("t3.large"), json!("t3.micro"))), "{fields:?}");
    assert!(records(&h, "update", "success").is_empty(), "a correction is not a spec update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_fields_are_refused_at_admission_naming_the_field() {
    let h = Harness::start().await;
    h.create("web", json!({ "imageId": "ami-11111111", "subnetId": "subnet-11111111", "rootVolumeGiB": 20 }))
        .await;
    let refusals = [
        (json!({ "imageId": "ami-22222222" }), "spec.imageId"),
        (json!({ "imageId": null }), "spec.imageId"),
        (json!({ "subnetId": "subnet-22222222" }), "spec.subnetId"),
        (json!({ "dataRoom": "investor-x" }), "spec.dataRoom"),
        (json!({ "rootVolumeGiB": 10 }), "spec.rootVolumeGiB"),
    ];
    for (change, field) in refusals {
        let refused =
            h.api.patch("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": change }))).await;
        match refused {
            Err(kube::Error::Api(e)) => {
                assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{change}");
                assert!(e.message.contains(&format!("{field}: Invalid value")), "{change}: {}", e.message);
            }
            other => panic!("{change} was not refused: {other:?}"),
        }
    }
    let grown = h
        .api
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "rootVolumeGiB": 30 } })))
        .await;
    assert_eq!(grown.unwrap().spec.root_volume_gib, Some(30), "growing is allowed");
}

/// The AWS path against moto: ModifyInstanceAttribute (type, user data, groups),
/// CreateTags/DeleteTags and ModifyVolume, read back through the SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_reaches_ec2_through_the_aws_sdk() {
    let moto = support::moto::Moto::start();
    let config = moto.config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let cloud = Arc::new(dataroom_operator::cloud::aws::AwsCloud::with_config(&config));
    let group = |name: &'static str| {
        let ec2 = ec2.clone();
        async move {
            let made = ec2.create_security_group().group_name(name).description("test").send().await;
            made.unwrap().group_id.unwrap()
        }
    };
    let (a, b) = (group("a").await, group("b").await);
    let h = Harness::start_on(cloud, &moto.image().await).await;
    let spec = json!({ "tags": { "team": "a", "old": "x" }, "securityGroupIds": [a], "rootVolumeGiB": 10, "userData": "b25l" });
    h.create("web", spec).await;
    let running = h.state("web", "running").await;
    let id = running.status.unwrap().instance_id.unwrap();

    // Moto 5.2 base64-decodes ModifyInstanceAttribute's UserData blob and then wants base64 text
    // inside it (EC2 takes the blob as the user data; the SDK encodes it once, as the user guide
    // says SDKs do): user data that is itself base64 text passes both.
    let change = json!({ "instanceType": "t3.small", "userData": "dHdv", "tags": { "team": "b", "old": null },
                         "securityGroupIds": [b], "rootVolumeGiB": 20 });
    h.patch_spec("web", change).await;
    h.until("web", "up to date", |o| {
        let s = o.status.as_ref().unwrap();
        up_to_date(o) && s.observed_generation == Some(2) && s.state.as_deref() == Some("running")
    })
    .await;

    let described = ec2.describe_instances().instance_ids(&id).send().await.unwrap();
    let instance = described.reservations.unwrap()[0].instances.clone().unwrap().remove(0);
    assert_eq!(instance.instance_type().map(|t| t.as_str()), Some("t3.small"));
    let groups: Vec<String> = instance.security_groups().iter().filter_map(|g| g.group_id.clone()).collect();
    assert_eq!(groups, [b]);
    let tags: std::collections::BTreeMap<String, String> =
        instance.tags().iter().map(|t| (t.key.clone().unwrap(), t.value.clone().unwrap())).collect();
    assert_eq!((tags.get("team").map(String::as_str), tags.get("old")), (Some("b"), None));
    assert_eq!(tags.get("dataroom.dev/managed-by").map(String::as_str), Some("dataroom-operator"));
    let attribute = aws_sdk_ec2::types::InstanceAttributeName::UserData;
    let user_data =
        ec2.describe_instance_attribute().instance_id(&id).attribute(attribute).send().await.unwrap();
    assert!(user_data.user_data.and_then(|u| u.value).is_some(), "the user data was replaced");
    let hash = dataroom_operator::cloud::user_data_sha256(Some("dHdv"));
    assert_eq!(tags.get(dataroom_operator::cloud::TAG_USER_DATA_SHA256), Some(&hash), "and its hash tagged");
    let attached = aws_sdk_ec2::types::Filter::builder().name("attachment.instance-id").values(&id).build();
    let volumes = ec2.describe_volumes().filters(attached).send().await.unwrap().volumes.unwrap();
    assert_eq!(volumes[0].size, Some(20));
}
