//! Discovery documents: `/version`, `/api`, `/apis`, and the per-group-version resource lists
//! kubectl uses to resolve kinds, plurals, short names and categories.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::ApiServer;

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-dataroom-sandbox",
        "gitCommit": "sandbox", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64",
    })
}

pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }],
    })
}

fn group_entry(name: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> =
        versions.iter().map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v })).collect();
    json!({ "name": name, "versions": versions, "preferredVersion": versions[0] })
}

fn groups(server: &ApiServer) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in server.types.read().unwrap().iter().filter(|t| !t.group.is_empty()) {
        let versions = groups.entry(t.group.clone()).or_default();
        if !versions.contains(&t.version) {
            versions.push(t.version.clone());
        }
    }
    groups
}

pub fn group_list(server: &ApiServer) -> Value {
    let groups: Vec<Value> =
        groups(server).iter().map(|(name, versions)| group_entry(name, versions)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn group(server: &ApiServer, name: &str) -> Option<Value> {
    let versions = groups(server).remove(name)?;
    let mut entry = group_entry(name, &versions);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

pub fn resource_list(server: &ApiServer, group: &str, version: &str) -> Option<Value> {
    let types = server.types.read().unwrap();
    let served: Vec<Value> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .flat_map(|t| t.discovery())
        .collect();
    if served.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": served }),
    )
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `/openapi/v3`: the index of group-version documents.
pub fn openapi_root(server: &ApiServer) -> Value {
    let types = server.types.read().unwrap();
    let mut paths = serde_json::Map::new();
    for t in types.iter() {
        let path = gv_path(&t.group, &t.version);
        let url = format!("/openapi/v3/{path}?hash=sandbox");
        paths.insert(path, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

/// `/openapi/v3/apis/{group}/{version}`: enough for kubectl to see that every type accepts
/// `fieldValidation` (so it leaves validation to the server) and to find custom resource schemas.
pub fn openapi_group_version(server: &ApiServer, group: &str, version: &str) -> Option<Value> {
    let types = server.types.read().unwrap();
    let served: Vec<_> = types.iter().filter(|t| t.group == group && t.version == version).collect();
    if served.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in served {
        let gvk = json!([{ "group": t.group, "version": t.version, "kind": t.kind }]);
        let scope = if t.namespaced { "namespaces/{namespace}/" } else { "" };
        let path = format!("/{}/{scope}{}/{{name}}", gv_path(&t.group, &t.version), t.plural);
        let param = json!({ "name": "fieldValidation", "in": "query", "schema": { "type": "string", "uniqueItems": true } });
        let patch = json!({ "x-kubernetes-group-version-kind": gvk[0], "parameters": [param], "responses": { "200": { "description": "OK" } } });
        paths.insert(path, json!({ "patch": patch }));
        if let Some(schema) = &t.schema {
            let mut schema = schema.clone();
            schema["x-kubernetes-group-version-kind"] = gvk;
            let reversed: Vec<&str> = t.group.split('.').rev().collect();
            schemas.insert(format!("{}.{}.{}", reversed.join("."), t.version, t.kind), schema);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.32.0-dataroom-sandbox" },
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}
