//! Rolling upgrades of a DataRoom in the sandbox, driven by the real kubectl: a client that
//! resolves the room's name (the real `dig`) and asks its health endpoint every 100 ms through a
//! change of instance type gets no failed answer, and the room ends on one instance of the new
//! type. A budget that cannot hold both instances holds the upgrade (the room keeps serving and
//! says why, with the numbers); `Recreate` stops the old instance first.

mod support;

use std::time::Duration;

use support::sandbox::{NamePoller, Sandbox, dig};

const ROOM: &str = "investor-x";
const NAME: &str = "investor-x.default.rooms.dataroom.test";

fn example() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dataroom.yaml")
}

fn field(sandbox: &Sandbox, kind_name: &str, path: &str) -> String {
    sandbox.ok(&["get", kind_name, "-o", &format!("jsonpath={{{path}}}")])
}

fn wait_for(sandbox: &Sandbox, kind_name: &str, condition: &str) {
    sandbox.ok(&["wait", kind_name, &format!("--for={condition}"), "--timeout=60s"]);
}

fn patch_room(sandbox: &Sandbox, patch: &str) {
    sandbox.ok(&["patch", "dr", ROOM, "--type", "merge", "-p", patch]);
}

/// The example room, Ready and published, with a short drain and a quick health period.
fn ready_room(sandbox: &Sandbox, strategy: &str) {
    sandbox.ok(&["apply", "-f", example()]);
    let spec = format!(
        r#"{{"spec":{{"updateStrategy":"{strategy}","drainSeconds":2,"healthCheck":{{"periodSeconds":1}}}}}}"#
    );
    patch_room(sandbox, &spec);
    wait_for(sandbox, "dr/investor-x", "jsonpath={.status.phase}=Ready");
    wait_for(sandbox, "dr/investor-x", "condition=DnsPublished");
}

/// The cluster's budget, allowing `max` instances at once.
fn budget(sandbox: &Sandbox, max: u32) {
    let manifest = format!(
        "apiVersion: dataroom.dev/v1alpha1\nkind: Ec2Budget\nmetadata:\n  name: default\nspec:\n  maxInstances: {max}\n  dailySpendUsd: 10\n"
    );
    let file = sandbox.dir.path().join(format!("budget-{max}.yaml"));
    std::fs::write(&file, manifest).unwrap();
    sandbox.ok(&["apply", "-f", file.to_str().unwrap()]);
}

fn room_instances(sandbox: &Sandbox) -> Vec<String> {
    let listed = sandbox.ok(&[
        "get",
        "ec2",
        "-l",
        "dataroom.dev/data-room=investor-x",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.instanceType} {.status.state}{\"\\n\"}{end}",
    ]);
    listed.lines().map(str::to_string).collect()
}

fn audit(sandbox: &Sandbox) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(sandbox.dir.path().join("audit.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_rolling_upgrade_keeps_the_room_answering_by_name_and_ends_on_one_new_instance() {
    let sandbox = Sandbox::start();
    ready_room(&sandbox, "Rolling");
    let old_address =
        field(&sandbox, "dr/investor-x", ".status.endpoint").split(':').next().unwrap().to_string();
    let old_id = field(&sandbox, "dr/investor-x", ".status.instanceId");

    let poller = NamePoller::start(sandbox.dns, NAME, 8000);
    std::thread::sleep(Duration::from_millis(500));
    patch_room(&sandbox, r#"{"spec":{"instanceType":"t3.small"}}"#);
    wait_for(&sandbox, "dr/investor-x", "jsonpath={.status.instanceName}=dr-investor-x.b");
    // The old instance drains, stops and is terminated (its object goes once EC2 says so).
    wait_for(&sandbox, "ec2/dr-investor-x", "delete");
    std::thread::sleep(Duration::from_millis(500));
    let polls = poller.stop();

    let failed: Vec<String> =
        polls.iter().filter(|p| !p.ok).map(|p| format!("{:.1}s {:?}", p.at, p.address)).collect();
    assert!(polls.len() >= 20, "the client polled through the upgrade: {} polls", polls.len());
    assert!(failed.is_empty(), "{} of {} polls failed: {failed:?}", failed.len(), polls.len());
    let new_address =
        field(&sandbox, "dr/investor-x", ".status.endpoint").split(':').next().unwrap().to_string();
    assert_ne!(new_address, old_address);
    let seen: Vec<&str> = polls.iter().filter_map(|p| p.address.as_deref()).collect();
    assert_eq!(seen.first(), Some(&old_address.as_str()));
    assert_eq!(seen.last(), Some(&new_address.as_str()), "the name moved to the new instance");
    let switches = seen.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(switches, 1, "the name moved once, and never back");

    assert_eq!(room_instances(&sandbox), ["dr-investor-x.b t3.small running"], "exactly one instance");
    assert_eq!(field(&sandbox, "dr/investor-x", ".status.phase"), "Ready");
    let records = audit(&sandbox);
    let switch = records.iter().find(|r| r["action"] == "upgrade.switch").expect("the switch is audited");
    assert_eq!(switch["params"]["from"]["instance_id"], old_id.as_str());
    assert_eq!(switch["params"]["to"]["instance_type"], "t3.small");
    assert!(switch["params"]["upgrade_seconds"].as_f64().is_some(), "{switch}");
    let terminated =
        records.iter().any(|r| r["action"] == "terminate" && r["params"]["instance"] == "dr-investor-x");
    assert!(terminated, "the old instance's end is audited");
    let (status, metrics) = support::sandbox::http_get(&format!("{}/metrics", sandbox.admin)).unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("dataroom_budget_instances 1\n"), "one instance holds a budget slot");
}

#[test]
fn a_budget_that_cannot_hold_both_instances_holds_the_upgrade_while_the_room_serves() {
    let sandbox = Sandbox::start();
    ready_room(&sandbox, "Rolling");
    budget(&sandbox, 1);
    let old_address = field(&sandbox, "dr/investor-x", ".status.endpoint");
    patch_room(&sandbox, r#"{"spec":{"instanceType":"t3.small"}}"#);
    wait_for(&sandbox, "dr/investor-x", "condition=BudgetAllowed=false");
    let message =
        field(&sandbox, "dr/investor-x", r#".status.conditions[?(@.type=="BudgetAllowed")].message"#);
    assert!(message.contains("maxInstances: 1 of 1"), "both numbers: {message}");
    assert!(message.contains("dr-investor-x serves the room"), "{message}");
    assert!(message.contains("Recreate"), "it names the way out: {message}");
    assert_eq!(field(&sandbox, "dr/investor-x", ".status.phase"), "Ready", "the room keeps serving");
    assert_eq!(field(&sandbox, "dr/investor-x", ".status.endpoint"), old_address);
    assert_eq!(dig(sandbox.dns, NAME).1, [old_address.split(':').next().unwrap()]);

    // Room in the budget: the upgrade goes on by itself.
    budget(&sandbox, 2);
    wait_for(&sandbox, "dr/investor-x", "jsonpath={.status.instanceName}=dr-investor-x.b");
    wait_for(&sandbox, "dr/investor-x", "condition=BudgetAllowed");
    wait_for(&sandbox, "ec2/dr-investor-x", "delete");
    assert_eq!(room_instances(&sandbox), ["dr-investor-x.b t3.small running"]);
}

#[test]
fn recreate_stops_the_old_instance_before_the_new_image_boots() {
    let sandbox = Sandbox::start();
    ready_room(&sandbox, "Recreate");
    budget(&sandbox, 1);
    // A new image: an upgrade as a new type is.
    patch_room(&sandbox, r#"{"spec":{"imageId":"ami-0000000000000000b"}}"#);
    wait_for(&sandbox, "ec2/dr-investor-x", "delete");
    wait_for(&sandbox, "dr/investor-x", "jsonpath={.status.phase}=Ready");
    assert_eq!(room_instances(&sandbox), ["dr-investor-x.b t3.micro running"]);
    assert_eq!(field(&sandbox, "ec2/dr-investor-x.b", ".status.imageId"), "ami-0000000000000000b");
    let records = audit(&sandbox);
    let position = |action: &str, instance: &str| {
        records.iter().position(|r| r["action"] == action && r["params"]["instance"] == instance)
    };
    let stopped = position("stop", "dr-investor-x").expect("the old instance is stopped");
    let booted = position("boot", "dr-investor-x.b").expect("the new one is booted");
    assert!(stopped < booted, "stopped first: {records:?}");
    let refusals = records.iter().filter(|r| r["outcome"] == "refused").count();
    assert_eq!(refusals, 0, "one instance at a time fits a budget of one");
}

/// The drain is kept on the old instance's object: an operator restarted mid-drain leaves the
/// room on the new instance and stops the old one no sooner than the drain said.
#[test]
fn an_operator_restarted_mid_drain_keeps_the_switch_and_the_drain() {
    let sandbox = Sandbox::start();
    ready_room(&sandbox, "Rolling");
    patch_room(&sandbox, r#"{"spec":{"drainSeconds":8,"instanceType":"t3.small"}}"#);
    wait_for(&sandbox, "dr/investor-x", "jsonpath={.status.instanceName}=dr-investor-x.b");
    let after = field(&sandbox, "ec2/dr-investor-x", r#".metadata.annotations.dataroom\.dev/retire-after"#);
    let after: jiff::Timestamp = after.parse().unwrap_or_else(|e| panic!("retire-after {after:?}: {e}"));
    let new_address =
        field(&sandbox, "dr/investor-x", ".status.endpoint").split(':').next().unwrap().to_string();
    let sandbox = sandbox.restart();
    let poller = NamePoller::start(sandbox.dns, NAME, 8000);
    wait_for(&sandbox, "ec2/dr-investor-x", "delete");
    let deleted = jiff::Timestamp::now();
    let polls = poller.stop();
    assert!(deleted >= after, "the old instance went at {deleted}, before its drain ended at {after}");
    assert!(
        polls.iter().all(|p| p.ok && p.address.as_deref() == Some(new_address.as_str())),
        "the name stays on the new instance"
    );
    assert_eq!(field(&sandbox, "dr/investor-x", ".status.instanceName"), "dr-investor-x.b");
    assert_eq!(room_instances(&sandbox), ["dr-investor-x.b t3.small running"]);
}
