//! DataRooms end to end in-process: the whole controller over the API emulator, the fake EC2 and
//! the sandbox's simulated instances (SSH, SFTP, health), with an injected clock for idleness.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use dataroom_operator::clock;
use serde_json::json;
use support::harness::Options;
use support::rig::Rig;
use support::rooms::{condition, config_map, create_room, in_phase, patch_room, room_until, rooms};

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
    assert_eq!(status.endpoint, Some(format!("{}:{}", instance.public_ip.unwrap(), rig.health_port)));
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

    // Thirty idle minutes later the room is stopped and its instance terminated.
    hands.advance(jiff::SignedDuration::from_mins(31));
    let room = in_phase(h, "alpha", "Stopped").await;
    let reason = room.status.unwrap().reason.unwrap();
    assert!(reason.starts_with("Idle"), "{reason}");
    assert!(h.api.get_opt("dr-alpha").await.unwrap().is_none());
    assert!(h.fake.live_instances().is_empty());

    // Started again, it boots a new instance.
    patch_room(h, "alpha", json!({ "spec": { "state": "Running" } })).await;
    let room = in_phase(h, "alpha", "Ready").await;
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
