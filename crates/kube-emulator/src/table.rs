//! `Table` responses for `kubectl get`: Name, the type's printer columns (or Age), one row per object.

use serde_json::{Value, json};

use super::types::ResourceType;

/// Looks up the JSONPath printer columns use: fields (`.status.state`), an index (`.items[0]`),
/// and a filter on a list (`.status.conditions[?(@.type=="Ready")].status`).
pub fn lookup<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut value = object;
    let mut rest = path.trim_start_matches('.');
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        if end > 0 {
            value = value.get(&rest[..end])?;
        }
        rest = &rest[end..];
        if let Some(bracket) = rest.strip_prefix('[') {
            let close = bracket.find(']')?;
            value = select(value, &bracket[..close])?;
            rest = &bracket[close + 1..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some(value)
}

/// One bracket of a JSONPath: `N`, or `?(@.field=="value")` (the first item that matches).
fn select<'a>(list: &'a Value, inside: &str) -> Option<&'a Value> {
    let items = list.as_array()?;
    if let Ok(index) = inside.parse::<usize>() {
        return items.get(index);
    }
    let condition = inside.strip_prefix("?(@.")?.strip_suffix(')')?;
    let (field, wanted) = condition.split_once("==")?;
    let wanted = wanted.trim().trim_matches(['"', '\'']);
    items.iter().find(|item| item.get(field.trim()).and_then(Value::as_str) == Some(wanted))
}

/// kubectl's short human duration: 42s, 5m, 3h, 12d.
pub fn age(since: &str, now: jiff::Timestamp) -> String {
    let Ok(t) = since.parse::<jiff::Timestamp>() else { return "<unknown>".into() };
    let secs = now.duration_since(t).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn columns(rt: &ResourceType) -> Vec<Value> {
    if rt.printer_columns.is_empty() {
        return vec![json!({ "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp" })];
    }
    rt.printer_columns.clone()
}

fn cell(object: &Value, column: &Value, now: jiff::Timestamp) -> Value {
    let path = column["jsonPath"].as_str().unwrap_or_default();
    match (lookup(object, path), column["type"].as_str()) {
        (None | Some(Value::Null), _) => Value::Null,
        (Some(Value::String(s)), Some("date")) => Value::String(age(s, now)),
        (Some(v), _) => v.clone(),
    }
}

/// `kubectl get events`: the columns kube-apiserver prints for core Events (Count and Name only
/// with `-o wide`), the object as `kind/name` with the kind in lower case.
fn event_table(objects: &[Value], resource_version: u64) -> Value {
    let now = jiff::Timestamp::now();
    let definitions: Vec<Value> = [
        ("Last Seen", "string", 0),
        ("Type", "string", 0),
        ("Reason", "string", 0),
        ("Object", "string", 0),
        ("Message", "string", 0),
        ("Count", "integer", 1),
        ("Name", "string", 1),
    ]
    .into_iter()
    .map(|(name, kind, priority)| json!({ "name": name, "type": kind, "format": if name == "Name" { "name" } else { "" }, "description": "", "priority": priority }))
    .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|e| {
            let last = [".lastTimestamp", ".eventTime", ".metadata.creationTimestamp"].iter().find_map(|p| lookup(e, p)?.as_str());
            let involved = &e["involvedObject"];
            let object = format!(
                "{}/{}",
                involved["kind"].as_str().unwrap_or_default().to_ascii_lowercase(),
                involved["name"].as_str().unwrap_or_default()
            );
            let cells = json!([
                last.map_or_else(|| "<unknown>".to_string(), |t| age(t, now)),
                e["type"], e["reason"], object, e["message"], e["count"], e["metadata"]["name"],
            ]);
            let metadata = json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": e["metadata"] });
            json!({ "cells": cells, "object": metadata })
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version.to_string() },
        "columnDefinitions": definitions, "rows": rows,
    })
}

pub fn table(rt: &ResourceType, objects: &[Value], resource_version: u64) -> Value {
    if rt.group.is_empty() && rt.plural == "events" {
        return event_table(objects, resource_version);
    }
    let columns = columns(rt);
    let now = jiff::Timestamp::now();
    let mut definitions = vec![
        json!({ "name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0 }),
    ];
    definitions.extend(columns.iter().map(|c| {
        json!({
            "name": c["name"], "type": if c["type"] == "date" { json!("string") } else { c["type"].clone() },
            "format": c.get("format").cloned().unwrap_or(json!("")),
            "description": c.get("description").cloned().unwrap_or(json!("")),
            "priority": c.get("priority").cloned().unwrap_or(json!(0)),
        })
    }));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(columns.iter().map(|c| cell(o, c, now)));
            let metadata = json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"] });
            json!({ "cells": cells, "object": metadata })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version.to_string() },
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths_reach_fields_indexes_and_filtered_items() {
        let object = json!({ "status": { "state": "running", "conditions": [
            { "type": "Ready", "status": "True" }, { "type": "UpToDate", "status": "False" } ] } });
        assert_eq!(lookup(&object, ".status.state"), Some(&json!("running")));
        assert_eq!(lookup(&object, ".status.conditions[1].type"), Some(&json!("UpToDate")));
        let up_to_date = r#".status.conditions[?(@.type=="UpToDate")].status"#;
        assert_eq!(lookup(&object, up_to_date), Some(&json!("False")));
        assert_eq!(lookup(&object, r#".status.conditions[?(@.type=="Synced")].status"#), None);
        assert_eq!(lookup(&object, ".status.conditions[7]"), None);
        assert_eq!(lookup(&object, ".status.missing.deeper"), None);
    }
}
