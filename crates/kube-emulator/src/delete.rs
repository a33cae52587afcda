//! Deletion: finalizers mark instead of removing, ownerReferences cascade (background or
//! orphan), namespaces and CRDs take their contents with them.

use std::sync::Arc;

use serde_json::{Value, json};

use super::read::{Target, object_key, view};
use super::store::Precondition;
use super::types::{self, ResourceType};
use super::write::{conflict, current, now};
use super::{ApiRequest, ApiServer, Reply};

/// Removes an object for good, then deletes (or orphans) its dependents.
pub(super) fn remove(
    server: &Arc<ApiServer>,
    rt: &ResourceType,
    key: &(String, String, String),
    propagation: &str,
) -> Option<Value> {
    let removed = server.store.remove(key)?;
    let uid = removed["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    match rt.kind.as_str() {
        "CustomResourceDefinition" => {
            let gone = types::from_crd(&removed);
            for t in &gone {
                for (object_key, _) in server.store.select(|k, _| k.0 == t.key()) {
                    server.store.remove(&object_key);
                }
            }
            server
                .types
                .write()
                .unwrap()
                .retain(|t| !gone.iter().any(|g| g.group == t.group && g.plural == t.plural));
        }
        "Namespace" => {
            for (object_key, _) in server.store.select(|k, _| k.1 == key.2) {
                server.store.remove(&object_key);
            }
        }
        _ => {}
    }
    let dependents = server.store.select(|_, o| {
        o["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid.as_str()))
    });
    for (dependent_key, mut dependent) in dependents {
        if propagation == "Orphan" {
            let rv = dependent["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
            if let Some(refs) = dependent["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != uid.as_str());
            }
            let _ = server.store.put(dependent_key, dependent, Precondition::Version(&rv));
        } else if let Some(dependent_rt) =
            server.types.read().unwrap().iter().find(|t| t.key() == dependent_key.0).cloned()
        {
            mark_or_remove(server, &dependent_rt, &dependent_key, "Background");
        }
    }
    Some(removed)
}

/// Deletion proper: objects with finalizers are marked, the rest removed.
fn mark_or_remove(
    server: &Arc<ApiServer>,
    rt: &ResourceType,
    key: &(String, String, String),
    propagation: &str,
) -> Option<Value> {
    let mut object = server.store.get(key)?;
    let blocked = object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    let contents = rt.kind == "Namespace" && !server.store.select(|k, _| k.1 == key.2).is_empty();
    if !blocked && !contents {
        return remove(server, rt, key, propagation);
    }
    if object["metadata"]["deletionTimestamp"].is_string() {
        return Some(object);
    }
    let rv = object["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
    object["metadata"]["deletionTimestamp"] = json!(now());
    object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    if rt.kind == "Namespace" {
        object["status"]["phase"] = json!("Terminating");
        spawn_namespace_cleanup(server.clone(), key.2.clone());
    }
    server.store.put(key.clone(), object, Precondition::Version(&rv)).ok()
}

/// A terminating namespace deletes its contents and goes once they are all gone.
fn spawn_namespace_cleanup(server: Arc<ApiServer>, namespace: String) {
    tokio::spawn(async move {
        let types = server.types.read().unwrap().clone();
        for (key, _) in server.store.select(|k, _| k.1 == namespace) {
            if let Some(rt) = types.iter().find(|t| t.key() == key.0) {
                mark_or_remove(&server, rt, &key, "Background");
            }
        }
        let ns_key = ("/namespaces".to_string(), String::new(), namespace.clone());
        while !server.store.select(|k, _| k.1 == namespace).is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let ns_rt = server.find("", "v1", "namespaces").expect("namespaces are built in");
        remove(&server, &ns_rt, &ns_key, "Background");
    });
}

fn propagation(req: &ApiRequest) -> String {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let policy = body["propagationPolicy"]
        .as_str()
        .map(String::from)
        .or_else(|| req.query.get("propagationPolicy").cloned());
    policy.unwrap_or_else(|| {
        if body["orphanDependents"] == json!(true) { "Orphan".into() } else { "Background".into() }
    })
}

pub fn delete(server: &Arc<ApiServer>, target: &Target, req: &ApiRequest) -> Reply {
    let old = match current(server, target) {
        Ok(old) => old,
        Err(reply) => return *reply,
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let pre = &body["preconditions"];
    let mismatch =
        |field: &str| pre[field].as_str().is_some_and(|want| old["metadata"][field].as_str() != Some(want));
    if mismatch("uid") || mismatch("resourceVersion") {
        return *conflict(&target.rt, target.name.as_deref().unwrap_or_default());
    }
    let key = object_key(&target.rt, target.namespace.as_deref(), target.name.as_deref().unwrap_or_default());
    match super::write::mode(req) {
        Err(refused) => return *refused,
        // A dry run: the object as the deletion would leave it, nothing changed.
        Ok(mode) if mode.dry_run => return Reply::Json(200, view(&target.rt, &old)),
        Ok(_) => {}
    }
    match mark_or_remove(server, &target.rt, &key, &propagation(req)) {
        // Removed at once: the API server answers with a Status, as kube-rs's `Either` expects.
        Some(object) if server.store.get(&key).is_none() => Reply::Json(200, deleted(&target.rt, &object)),
        // Marked for deletion (finalizers, or a namespace's contents): the object as it now is.
        Some(object) => Reply::Json(200, view(&target.rt, &object)),
        None => super::read::not_found(&target.rt, &key.2),
    }
}

fn deleted(rt: &ResourceType, object: &Value) -> Value {
    let details = json!({
        "name": object["metadata"]["name"], "group": rt.group, "kind": rt.plural,
        "uid": object["metadata"]["uid"],
    });
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details })
}

pub fn delete_collection(server: &Arc<ApiServer>, target: &Target, req: &ApiRequest) -> Reply {
    let selector = match super::read::selector(req) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let (items, _) = server.store.list(&target.rt.key(), target.namespace.as_deref());
    let policy = propagation(req);
    let mut deleted = Vec::new();
    for item in items.iter().filter(|o| selector.matches(&view(&target.rt, o))) {
        let name = item["metadata"]["name"].as_str().unwrap_or_default();
        let key = object_key(&target.rt, item["metadata"]["namespace"].as_str(), name);
        if let Some(object) = mark_or_remove(server, &target.rt, &key, &policy) {
            deleted.push(view(&target.rt, &object));
        }
    }
    let list = json!({ "kind": format!("{}List", target.rt.kind), "apiVersion": target.rt.api_version(), "metadata": {}, "items": deleted });
    Reply::Json(200, list)
}
