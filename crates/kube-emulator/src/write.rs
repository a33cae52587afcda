//! The write side: create, update, patch (merge, JSON, apply), delete with finalizers and
//! ownerReference cascading, and what CRDs and Namespaces do when written.

use std::sync::Arc;

use serde_json::{Value, json};

use super::read::{Target, object_key, view};
use super::store::Precondition;
use super::types::{self, ResourceType};
use super::{ApiRequest, ApiServer, Reply, delete, events, failure, patch, rules, schema, status_body};

/// A write refused: the reply to send.
pub type Refused = Box<Reply>;

fn refuse(code: u16, reason: &str, message: impl Into<String>) -> Refused {
    Box::new(failure(code, reason, message))
}

pub(super) fn now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).expect("now is in range").to_string()
}

fn resource_name(rt: &ResourceType) -> String {
    if rt.group.is_empty() { rt.plural.clone() } else { format!("{}.{}", rt.plural, rt.group) }
}

/// How a write is made: with unknown fields refused (`fieldValidation=Strict`), and whether it is
/// a dry run (`dryRun=All`: validated and defaulted as a real write, nothing stored, no watch event).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mode {
    pub strict: bool,
    pub dry_run: bool,
}

pub(super) fn mode(req: &ApiRequest) -> Result<Mode, Refused> {
    let dry_run = match req.query.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            let why = format!("dryRun: Unsupported value: \"{other}\": supported values: \"All\"");
            return Err(refuse(400, "BadRequest", why));
        }
    };
    Ok(Mode { strict: req.query.get("fieldValidation").map(String::as_str) == Some("Strict"), dry_run })
}

fn parse_body(req: &ApiRequest) -> Result<Value, Refused> {
    let parsed = if req.content_type.contains("yaml") {
        serde_yaml::from_slice::<Value>(&req.body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(&req.body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| refuse(400, "BadRequest", format!("the request body is not valid: {e}")))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn invalid(rt: &ResourceType, name: &str, causes: Vec<schema::Cause>) -> Refused {
    let messages: Vec<String> = causes.iter().map(schema::Cause::describe).collect();
    let message =
        format!("{} \"{name}\" is invalid: {}", rt.kind.clone() + "." + &rt.group, join_causes(&messages));
    let causes: Vec<Value> = causes
        .iter()
        .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
        .collect();
    let details = json!({ "name": name, "group": rt.group, "kind": rt.kind, "causes": causes });
    Box::new(Reply::Json(422, status_body(422, "Invalid", message, Some(details))))
}

fn join_causes(messages: &[String]) -> String {
    if messages.len() == 1 { messages[0].clone() } else { format!("[{}]", messages.join(", ")) }
}

/// Common admission for every write: identity, schema and validation rules (those comparing
/// with `old`, the stored object, on an update). Unknown fields are pruned, or refused when the
/// client asked for `fieldValidation=Strict` (as kubectl does).
fn admit(rt: &ResourceType, object: &mut Value, old: Option<&Value>, strict: bool) -> Result<(), Refused> {
    object["apiVersion"] = json!(rt.api_version());
    object["kind"] = json!(rt.kind);
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("managedFields");
    }
    if let Some(schema) = &rt.schema {
        let report = schema::enforce(schema, object);
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if !report.causes.is_empty() {
            return Err(invalid(rt, &name, report.causes));
        }
        let violated = rules::check(schema, object, old);
        if !violated.is_empty() {
            return Err(invalid(rt, &name, violated));
        }
        if strict && !report.pruned.is_empty() {
            let unknown: Vec<String> =
                report.pruned.iter().map(|p| format!("unknown field \"{p}\"")).collect();
            let message =
                format!("{}.{} \"{name}\": strict decoding error: {}", rt.kind, rt.group, unknown.join(", "));
            return Err(refuse(400, "BadRequest", message));
        }
    }
    Ok(())
}

/// Creates `object` in `namespace` (the path's), applying everything a create does.
pub fn create_object(
    server: &Arc<ApiServer>,
    rt: &ResourceType,
    namespace: Option<&str>,
    mut object: Value,
    mode: Mode,
) -> Result<Value, Refused> {
    if !object.is_object() {
        return Err(refuse(400, "BadRequest", "the request body must be an object"));
    }
    if let Some(kind) = object["kind"].as_str().filter(|k| *k != rt.kind) {
        return Err(refuse(
            400,
            "BadRequest",
            format!("the kind {kind} does not match the resource {}", rt.plural),
        ));
    }
    if rt.group.is_empty() && rt.plural == "events" {
        object = events::from_core(&object);
    }
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let metadata = &mut object["metadata"];
    if rt.namespaced {
        let ns = namespace.ok_or_else(|| {
            refuse(400, "BadRequest", format!("{} must be created in a namespace", rt.plural))
        })?;
        if metadata["namespace"].as_str().is_some_and(|given| given != ns) {
            return Err(refuse(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        metadata["namespace"] = json!(ns);
        let ns_key = ("/namespaces".to_string(), String::new(), ns.to_string());
        if server.store.get(&ns_key).is_none() {
            return Err(refuse(404, "NotFound", format!("namespaces \"{ns}\" not found")));
        }
    } else if let Some(map) = metadata.as_object_mut() {
        map.remove("namespace");
    }
    if metadata["name"].as_str().is_none_or(str::is_empty)
        && let Some(prefix) = metadata["generateName"].as_str()
    {
        let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(5).collect();
        metadata["name"] = json!(format!("{prefix}{suffix}"));
    }
    let name = metadata["name"].as_str().unwrap_or_default().to_string();
    if !valid_name(&name) {
        let cause = schema::Cause {
            field: "metadata.name".into(),
            reason: "FieldValueInvalid",
            message: format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        };
        return Err(invalid(rt, &name, vec![cause]));
    }
    metadata["uid"] = json!(uuid::Uuid::new_v4().to_string());
    metadata["creationTimestamp"] = json!(now());
    metadata["generation"] = json!(1);
    if let Some(map) = metadata.as_object_mut() {
        map.remove("deletionTimestamp");
        map.remove("resourceVersion");
    }
    if rt.status_subresource && !matches!(rt.kind.as_str(), "CustomResourceDefinition" | "Namespace") {
        object.as_object_mut().map(|o| o.remove("status"));
    }
    admit(rt, &mut object, None, mode.strict)?;
    match rt.kind.as_str() {
        "Namespace" => object["status"] = json!({ "phase": "Active" }),
        "CustomResourceDefinition" if !mode.dry_run => establish(server, &mut object)?,
        _ => {}
    }
    let key = object_key(rt, namespace.filter(|_| rt.namespaced), &name);
    let exists = || {
        let message = format!("{} \"{name}\" already exists", resource_name(rt));
        let details = json!({ "name": name, "group": rt.group, "kind": rt.plural });
        Box::new(Reply::Json(409, status_body(409, "AlreadyExists", message, Some(details))))
    };
    if mode.dry_run {
        return if server.store.get(&key).is_some() { Err(exists()) } else { Ok(object) };
    }
    server.store.put(key, object, Precondition::Absent).map_err(|_| exists())
}

/// Registers a CRD's types and marks it established.
fn establish(server: &ApiServer, crd: &mut Value) -> Result<(), Refused> {
    let served = types::from_crd(crd);
    let expected = format!(
        "{}.{}",
        crd["spec"]["names"]["plural"].as_str().unwrap_or_default(),
        crd["spec"]["group"].as_str().unwrap_or_default()
    );
    if served.is_empty() || crd["metadata"]["name"].as_str() != Some(expected.as_str()) {
        return Err(refuse(
            422,
            "Invalid",
            format!(
                "CustomResourceDefinition is invalid: metadata.name must be spec.names.plural+\".\"+spec.group ({expected}) and at least one version must be served"
            ),
        ));
    }
    let time = now();
    let condition = |type_: &str, reason: &str| json!({ "type": type_, "status": "True", "reason": reason, "message": "", "lastTransitionTime": time });
    crd["status"] = json!({
        "conditions": [condition("NamesAccepted", "NoConflicts"), condition("Established", "InitialNamesAccepted")],
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": served.iter().map(|t| t.version.clone()).collect::<Vec<_>>(),
    });
    let mut types = server.types.write().unwrap();
    types.retain(|t| !served.iter().any(|s| s.group == t.group && s.plural == t.plural));
    types.extend(served);
    Ok(())
}

pub fn create(server: &Arc<ApiServer>, target: &Target, req: &ApiRequest) -> Reply {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(reply) => return *reply,
    };
    let created =
        mode(req).and_then(|mode| create_object(server, &target.rt, target.namespace.as_deref(), body, mode));
    match created {
        Ok(stored) => Reply::Json(201, view(&target.rt, &stored)),
        Err(reply) => *reply,
    }
}

/// Everything but metadata and status: what `generation` tracks.
fn spec_of(object: &Value) -> Value {
    let mut rest = object.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    rest
}

/// Turns a proposed new version of `old` into what is stored, and stores it.
fn replace(
    server: &Arc<ApiServer>,
    target: &Target,
    old: &Value,
    mut new: Value,
    mode: Mode,
) -> Result<Value, Refused> {
    let rt = &target.rt;
    if rt.group.is_empty() && rt.plural == "events" {
        new = events::from_core(&new);
    }
    let name = target.name.clone().unwrap_or_default();
    let old_rv = old["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
    if new["metadata"]["resourceVersion"].as_str().is_some_and(|rv| rv != old_rv) {
        return Err(conflict(rt, &name));
    }
    if target.subresource.as_deref() == Some("status") {
        let status = new.get("status").cloned();
        new = old.clone();
        match status {
            Some(status) => new["status"] = status,
            None => drop(new.as_object_mut().map(|o| o.remove("status"))),
        }
    } else {
        if !new["metadata"].is_object() {
            return Err(refuse(400, "BadRequest", "metadata must be an object"));
        }
        if rt.status_subresource {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => drop(new.as_object_mut().map(|o| o.remove("status"))),
            }
        }
        let m = &mut new["metadata"];
        for kept in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old["metadata"].get(kept) {
                Some(v) => m[kept] = v.clone(),
                None => drop(m.as_object_mut().map(|o| o.remove(kept))),
            }
        }
        if spec_of(&new) != spec_of(old) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(generation + 1);
        }
    }
    admit(rt, &mut new, Some(old), mode.strict)?;
    if rt.kind == "CustomResourceDefinition" && !mode.dry_run {
        establish(server, &mut new)?;
    }
    let finalized = new["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
    let key = object_key(rt, target.namespace.as_deref(), &name);
    let releases = old["metadata"]["deletionTimestamp"].is_string() && finalized;
    if !releases && unchanged(old, &new) {
        // As the API server: a write that changes nothing stores nothing, so the resourceVersion
        // stays and no watch event goes out (controllers that write their own status rely on it).
        return Ok(old.clone());
    }
    if mode.dry_run {
        return Ok(new);
    }
    if releases {
        let stored = server
            .store
            .put(key.clone(), new, Precondition::Version(&old_rv))
            .map_err(|_| conflict(rt, &name))?;
        return Ok(delete::remove(server, rt, &key, "Background").unwrap_or(stored));
    }
    server.store.put(key, new, Precondition::Version(&old_rv)).map_err(|_| conflict(rt, &name))
}

/// Whether `new` is `old` but for the resourceVersion and apiVersion a client sent with it.
fn unchanged(old: &Value, new: &Value) -> bool {
    let comparable = |object: &Value| {
        let mut object = object.clone();
        if let Some(map) = object.as_object_mut() {
            map.remove("apiVersion");
        }
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("resourceVersion");
        }
        object
    };
    comparable(old) == comparable(new)
}

pub(super) fn conflict(rt: &ResourceType, name: &str) -> Refused {
    let message = format!(
        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
        resource_name(rt)
    );
    let details = json!({ "name": name, "group": rt.group, "kind": rt.plural });
    Box::new(Reply::Json(409, status_body(409, "Conflict", message, Some(details))))
}

pub(super) fn current(server: &ApiServer, target: &Target) -> Result<Value, Refused> {
    let name = target.name.as_deref().unwrap_or_default();
    let key = object_key(&target.rt, target.namespace.as_deref(), name);
    server.store.get(&key).ok_or_else(|| Box::new(super::read::not_found(&target.rt, name)))
}

pub fn update(server: &Arc<ApiServer>, target: &Target, req: &ApiRequest) -> Reply {
    let result = parse_body(req).and_then(|new| {
        let old = current(server, target)?;
        replace(server, target, &old, new, mode(req)?)
    });
    match result {
        Ok(stored) => Reply::Json(200, view(&target.rt, &stored)),
        Err(reply) => *reply,
    }
}

pub fn patch(server: &Arc<ApiServer>, target: &Target, req: &ApiRequest) -> Reply {
    let body = match parse_body(req) {
        Ok(b) => b,
        Err(reply) => return *reply,
    };
    let apply = req.content_type.contains("apply-patch");
    let manager = req.query.get("fieldManager").cloned().unwrap_or_default();
    if apply && manager.is_empty() {
        return failure(400, "BadRequest", "PATCH with apply-patch requires fieldManager");
    }
    let mode = match mode(req) {
        Ok(mode) => mode,
        Err(refused) => return *refused,
    };
    let sub = target.subresource.clone().unwrap_or_default();
    // Like the API server, retry a patch that lost a race against another writer.
    for _ in 0..5 {
        let old = match current(server, target) {
            Ok(old) => old,
            // Apply creates a missing object, but not through a subresource (as the API server).
            Err(_) if apply && sub.is_empty() => {
                let created =
                    create_object(server, &target.rt, target.namespace.as_deref(), body.clone(), mode);
                return match created {
                    Ok(stored) => {
                        let uid = stored["metadata"]["uid"].as_str().unwrap_or_default();
                        if !mode.dry_run {
                            server.store.set_applied_paths(uid, &manager, &sub, patch::leaf_paths(&body));
                        }
                        Reply::Json(201, view(&target.rt, &stored))
                    }
                    // Someone created it meanwhile: apply to what they made.
                    Err(reply) if matches!(*reply, Reply::Json(409, _)) => continue,
                    Err(reply) => *reply,
                };
            }
            Err(reply) => return *reply,
        };
        let mut new = view(&target.rt, &old);
        let uid = old["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        if apply {
            let others = server.store.others_applied(&uid, &manager, &sub);
            let conflicts = patch::conflicts(&new, &body, &others);
            if !conflicts.is_empty() && !super::read::flag(req, "force") {
                let message =
                    format!("Apply failed with {} conflict(s): {}", conflicts.len(), conflicts.join(", "));
                return failure(409, "Conflict", message);
            }
            let previous = server.store.applied_paths(&uid, &manager, &sub);
            patch::apply(&mut new, &body, &previous);
        } else if req.content_type.contains("json-patch") {
            if let Err(e) = patch::json_patch(&mut new, &body) {
                return failure(422, "Invalid", format!("the JSON patch could not be applied: {e}"));
            }
        } else {
            patch::merge(&mut new, &body);
        }
        match replace(server, target, &old, new, mode) {
            Ok(stored) => {
                if apply && !mode.dry_run {
                    server.store.set_applied_paths(&uid, &manager, &sub, patch::leaf_paths(&body));
                }
                return Reply::Json(200, view(&target.rt, &stored));
            }
            Err(reply)
                if matches!(*reply, Reply::Json(409, _)) && body["metadata"]["resourceVersion"].is_null() =>
            {
                continue;
            }
            Err(reply) => return *reply,
        }
    }
    *conflict(&target.rt, target.name.as_deref().unwrap_or_default())
}
