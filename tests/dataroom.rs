//! DataRooms end to end in-process: the whole controller over the API emulator, the fake EC2 and
//! the sandbox's simulated instances (SSH, SFTP, health), with an injected clock for idleness.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use dataroom_operator::clock;
use dataroom_operator::cloud::fake::Fault;
use serde_json::json;
use support::admin::call;
use support::harness::Options;
use support::rig::Rig;
use support::rooms::{
    condition, condition_and_message, config_map, create_room, in_phase, patch_room, phase, room_until, rooms,
};

fn audit_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn room_spec(rig: &Rig) -> serde_json::Value {
    json!({
        "config": { "configMapKeyRef": { "name": "alpha-config", "key": "config.json" } },
        "files": [{ "path": "/srv/motd", "mode": "0644", "configMapKeyRef": { "name": "alpha-config", "key": "motd" } }],
        "healthCheck": { "port": rig.health_port, "periodSeconds": 1 },
        "idleTimeoutMinutes": 30,
    })
}

#[tokio::test]
async fn a_room_boots_configures_idles_out_and_boots_again() {
    let (clock, hands) = clock::manual(jiff::Timestamp::now());
    let rig = Rig::start_with(Options { clock, ..Default::default() }).await;
    let h = &rig.h;
    config_map(h, "alpha-config", json!({ "config.json": "{\"room\": 1}\n", "motd": "hello\n" })).await;
    create_room(h, "alpha", room_spec(&rig)).await;

    let room = in_phase(h, "alpha", "Ready").await;
    let status = room.status.clone().unwrap();
    assert_eq!(status.instance_name.as_deref(), Some("dr-alpha"));
    let instance = h.fake.live_instances()[0].clone();
    assert_eq!(status.instance_id.as_deref(), Some(instance.id.as_str()));
    assert_eq!(status.endpoint, Some(format!("{}:{}", instance.private_ip.unwrap(), rig.health_port)));
    assert!(status.boot_seconds.is_some_and(|s| s > 0.0), "{status:?}");
    for type_ in ["InstanceReady", "Configured", "Healthy", "BudgetAllowed"] {
        assert_eq!(condition(&room, type_), "True", "{type_}: {status:#?}");
    }
    let config = rig.home().join("etc/dataroom/config.json");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "{\"room\": 1}\n");
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(rig.home().join("srv/motd")).unwrap(), "hello\n");
    let first_hash = status.config_hash.clone().unwrap();

    // A changed ConfigMap is pushed again.
    config_map(h, "alpha-config", json!({ "config.json": "{\"room\": 2}\n", "motd": "hello\n" })).await;
    room_until(h, "alpha", "re-pushed", 30, |r| {
        r.status.as_ref().and_then(|s| s.config_hash.as_deref()).is_some_and(|c| c != first_hash)
    })
    .await;
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "{\"room\": 2}\n");

    // Activity holds the idle timeout off: the annotation, and admin calls on the instance.
    let app = support::admin::app(rig.state()).await;
    hands.advance(jiff::SignedDuration::from_mins(20));
    let now = (h.ctx.clock)().to_string();
    patch_room(h, "alpha", json!({ "metadata": { "annotations": { "dataroom.dev/last-activity": now } } }))
        .await;
    // The controller must have seen the annotation before the clock jumps again (real clocks do
    // not move 20 minutes while a watch event is on its way).
    room_until(h, "alpha", "the annotation recorded", 30, |r| {
        r.status.as_ref().and_then(|s| s.last_activity_time.as_deref()) == Some(now.as_str())
    })
    .await;
    hands.advance(jiff::SignedDuration::from_mins(20));
    let (code, out) =
        call(&app, "POST", "/api/ec2/instances/dr-alpha/exec", Some(json!({"command": "true"}))).await;
    assert_eq!(code, 200, "{out}");
    hands.advance(jiff::SignedDuration::from_mins(20));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let room = rooms(h).get("alpha").await.unwrap();
    assert_eq!(phase(&room), "Ready", "60 minutes up, 20 idle: {:?}", room.status);

    // Thirty idle minutes later the room is stopped and its instance terminated.
    hands.advance(jiff::SignedDuration::from_mins(11));
    let room = in_phase(h, "alpha", "Stopped").await;
    let reason = room.status.unwrap().reason.unwrap();
    assert!(reason.starts_with("Idle"), "{reason}");
    assert!(h.api.get_opt("dr-alpha").await.unwrap().is_none());
    assert!(h.fake.live_instances().is_empty());

    let audit = h.ctx.audit.path();
    let idle: Vec<_> = audit_lines(&audit).into_iter().filter(|r| r["action"] == "idle-stop").collect();
    assert_eq!(idle.len(), 1, "{idle:?}");
    assert_eq!(idle[0]["target"], "dataroom/default/alpha");

    // Started again through the fleet route, it boots a new instance.
    let (code, view) = call(&app, "POST", "/api/fleet/rooms/default/alpha/start", None).await;
    assert_eq!(code, 202, "{view}");
    let room = in_phase(h, "alpha", "Ready").await;
    let (code, list) = call(&app, "GET", "/api/fleet/rooms", None).await;
    assert_eq!(code, 200);
    assert_eq!(list["rooms"][0]["phase"], "Ready");
    assert!(list["rooms"][0]["spend_today_usd"].as_f64().unwrap() > 0.0, "{list}");
    let steps: Vec<String> = audit_lines(&audit)
        .into_iter()
        .filter(|r| r["target"] == "dataroom/default/alpha")
        .map(|r| format!("{} {}", r["action"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    let expected = [
        "boot success",
        "configure success",
        "ready success",
        "configure success",
        "idle-stop success",
        "stop success",
        "terminate success",
        "stopped success",
        "api.room.start started",
        "api.room.start success",
        "boot success",
        "configure success",
        "ready success",
    ];
    assert_eq!(steps, expected);
    assert_ne!(room.status.unwrap().instance_id.as_deref(), Some(instance.id.as_str()));
    assert_eq!(
        std::fs::read_to_string(rig.home().join("etc/dataroom/config.json")).unwrap(),
        "{\"room\": 2}\n"
    );

    // Deleting the room terminates its instance and lets the room go.
    rooms(h).delete("alpha", &Default::default()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rooms(h).get_opt("alpha").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "the room was never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(h.fake.live_instances().is_empty());
}

fn reason(room: &dataroom_operator::crd::DataRoom) -> String {
    room.status.as_ref().and_then(|s| s.reason.clone()).unwrap_or_default()
}

#[tokio::test]
async fn a_missing_config_map_fails_before_any_launch_and_recovers_once_created() {
    let rig = Rig::start().await;
    let h = &rig.h;
    create_room(h, "alpha", room_spec(&rig)).await;
    let room = in_phase(h, "alpha", "Failed").await;
    assert!(
        reason(&room).contains("ConfigMap default/alpha-config does not exist; create it"),
        "{}",
        reason(&room)
    );
    assert!(
        h.api.get_opt("dr-alpha").await.unwrap().is_none(),
        "nothing is launched for a room that cannot work"
    );
    config_map(h, "alpha-config", json!({ "config.json": "{}", "motd": "hi" })).await;
    room_until(h, "alpha", "Ready after the ConfigMap appeared", 40, |r| phase(r) == "Ready").await;
}

#[tokio::test]
async fn an_image_that_cannot_launch_fails_until_the_spec_is_fixed() {
    let rig = Rig::start().await;
    let h = &rig.h;
    h.fake.inject(Some("RunInstances"), Fault::ImageNotFound, 1000);
    let spec = json!({ "imageId": "ami-0000000000000bad0", "healthCheck": { "port": rig.health_port } });
    create_room(h, "alpha", spec).await;
    let room = in_phase(h, "alpha", "Failed").await;
    assert!(
        reason(&room).contains("cannot be launched") && reason(&room).contains("InvalidAMIID.NotFound"),
        "{}",
        reason(&room)
    );
    h.fake.reset_counters();
    patch_room(h, "alpha", json!({ "spec": { "imageId": "ami-00000000000000f1" } })).await;
    let room = room_until(h, "alpha", "Ready on the fixed image", 40, |r| phase(r) == "Ready").await;
    assert_eq!(h.fake.live_instances()[0].image_id, "ami-00000000000000f1");
    assert_eq!(h.fake.live_instances().len(), 1);
    assert!(room.status.unwrap().instance_id.is_some());
}

#[tokio::test]
async fn an_unreachable_instance_fails_the_push_and_recovers() {
    // No grace for sshd to start: the first refused connection is a failure.
    let ssh = dataroom_operator::ssh::SshSettings { boot_grace: Duration::ZERO, ..Default::default() };
    let rig = Rig::start_with(Options { ssh, ..Default::default() }).await;
    let h = &rig.h;
    rig.simulator.abort();
    config_map(h, "alpha-config", json!({ "config.json": "{}", "motd": "hi" })).await;
    create_room(h, "alpha", room_spec(&rig)).await;
    let room = in_phase(h, "alpha", "Failed").await;
    assert!(
        reason(&room).contains("cannot reach") && reason(&room).contains("security groups"),
        "{}",
        reason(&room)
    );
    let (configured, message) = condition_and_message(&room, "Configured");
    assert_eq!(configured, "False");
    assert_eq!(message, reason(&room), "Configured says why the push failed");
    let _simulator = Rig::simulate(h, rig.root.path(), rig.ssh_port, rig.health_port);
    room_until(h, "alpha", "Ready once SSH answers", 40, |r| phase(r) == "Ready").await;
    assert!(rig.home().join("etc/dataroom/config.json").exists());
}

#[tokio::test]
async fn a_failing_health_check_fails_the_room_until_it_answers() {
    let rig = Rig::start().await;
    let h = &rig.h;
    let closed = support::rig::free_port();
    let spec = json!({ "healthCheck": { "port": closed, "periodSeconds": 1, "failureThreshold": 2 } });
    create_room(h, "alpha", spec).await;
    let room = in_phase(h, "alpha", "Failed").await;
    assert!(reason(&room).contains("failed 2 or more health checks in a row"), "{}", reason(&room));
    assert_eq!(condition(&room, "Healthy"), "False");
    assert_eq!(condition(&room, "Configured"), "True");
    patch_room(h, "alpha", json!({ "spec": { "healthCheck": { "port": rig.health_port } } })).await;
    let room = in_phase(h, "alpha", "Ready").await;
    assert_eq!(condition(&room, "Healthy"), "True");
}

#[tokio::test]
async fn an_exhausted_budget_blocks_the_room_until_headroom_returns() {
    let rig = Rig::start().await;
    let h = &rig.h;
    let app = support::admin::app(rig.state()).await;
    let (code, body) = call(&app, "PUT", "/api/ec2/budget", Some(json!({ "maxInstances": 0 }))).await;
    assert_eq!(code, 200, "{body}");
    create_room(h, "alpha", json!({ "healthCheck": { "port": rig.health_port } })).await;
    let room = in_phase(h, "alpha", "BudgetBlocked").await;
    assert!(reason(&room).contains("maxInstances"), "{}", reason(&room));
    assert_eq!(condition(&room, "BudgetAllowed"), "False");
    assert!(h.fake.live_instances().is_empty());
    let (code, problem) = call(&app, "POST", "/api/fleet/rooms/default/alpha/start", None).await;
    assert_eq!(code, 202, "already Running: nothing to refuse; {problem}");
    call(&app, "PUT", "/api/ec2/budget", Some(json!({ "maxInstances": 5 }))).await;
    let room = in_phase(h, "alpha", "Ready").await;
    assert_eq!(condition(&room, "BudgetAllowed"), "True");
}
