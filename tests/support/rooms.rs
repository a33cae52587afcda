//! DataRoom helpers over the in-process harness: create rooms and ConfigMaps, wait for phases.

use std::time::{Duration, Instant};

use dataroom_operator::crd::DataRoom;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::harness::Harness;

pub fn rooms(h: &Harness) -> Api<DataRoom> {
    Api::namespaced(h.client.clone(), "default")
}

pub async fn create_room(h: &Harness, name: &str, spec: Value) {
    let room: DataRoom = serde_json::from_value(json!({
        "apiVersion": "dataroom.dev/v1alpha1", "kind": "DataRoom", "metadata": { "name": name }, "spec": spec,
    }))
    .unwrap();
    rooms(h).create(&PostParams::default(), &room).await.unwrap();
}

pub async fn patch_room(h: &Harness, name: &str, patch: Value) {
    rooms(h).patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

/// Creates or replaces the ConfigMap `name` in `default` with `data`, labelled pushable.
pub async fn config_map(h: &Harness, name: &str, data: Value) {
    let api: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    let metadata = json!({ "name": name, "labels": { "dataroom.dev/pushable": "true" } });
    let map = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data });
    let params = PatchParams::apply("test").force();
    api.patch(name, &params, &Patch::Apply(map)).await.unwrap();
}

/// Polls the room until `check` holds (panics after `secs` with the last status).
pub async fn room_until(
    h: &Harness,
    name: &str,
    what: &str,
    secs: u64,
    check: impl Fn(&DataRoom) -> bool,
) -> DataRoom {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let room = rooms(h).get_opt(name).await.unwrap();
        if let Some(room) = room.as_ref().filter(|r| check(r)) {
            return room.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name}: never {what}; last status {:#?}",
            room.and_then(|r| r.status)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn phase(room: &DataRoom) -> &str {
    room.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

pub async fn in_phase(h: &Harness, name: &str, want: &str) -> DataRoom {
    room_until(h, name, want, 30, |r| phase(r) == want).await
}

pub fn condition(room: &DataRoom, type_: &str) -> String {
    condition_and_message(room, type_).0
}

/// The status (`True`/`False`) and the message of the room's condition `type_`.
pub fn condition_and_message(room: &DataRoom, type_: &str) -> (String, String) {
    let conditions = room.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let found = conditions.iter().find(|c| c.type_ == type_);
    found.map(|c| (c.status.clone(), c.message.clone())).unwrap_or_default()
}
