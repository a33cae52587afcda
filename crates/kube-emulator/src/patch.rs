//! Patches: JSON merge (RFC 7386; strategic merge is treated as merge), JSON patch (RFC 6902),
//! and server-side apply, approximated per field manager: the leaf fields a manager set in its
//! previous apply and omits now are removed, then the applied object is merged in. An apply
//! without `force` that would change a value another manager applied is refused as a conflict
//! (ownership taken by plain updates and patches is not tracked).

use serde_json::{Map, Value};

pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (key, value) in p {
                if value.is_null() {
                    t.remove(key);
                } else {
                    merge(t.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let mut ops = patch.as_array().cloned().ok_or("a JSON patch is an array of operations")?;
    // Like the API server, a `test` for null passes when the path is absent.
    ops.retain(|op| {
        !(op["op"] == "test"
            && op["value"].is_null()
            && op["path"].as_str().is_some_and(|p| target.pointer(p).is_none()))
    });
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).map_err(|e| e.to_string())?;
    json_patch::patch(target, &patch).map_err(|e| e.to_string())
}

/// JSON-pointer paths of every leaf of `value` (arrays count as one leaf).
pub fn leaf_paths(value: &Value) -> Vec<String> {
    fn walk(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    walk(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            _ => out.push(at),
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}

/// The paths in `applied` whose current value differs from what another manager applied there.
pub fn conflicts(current: &Value, applied: &Value, others: &[(String, Vec<String>)]) -> Vec<String> {
    let mut out = Vec::new();
    for path in leaf_paths(applied) {
        let theirs = others.iter().find(|(_, paths)| paths.contains(&path));
        if let (Some((manager, _)), Some(now)) = (theirs, current.pointer(&path))
            && Some(now) != applied.pointer(&path)
        {
            out.push(format!(
                "conflict with \"{manager}\": .{}",
                path.trim_start_matches('/').replace('/', ".")
            ));
        }
    }
    out
}

/// Applies `applied` for a manager that previously set `previous` paths.
pub fn apply(target: &mut Value, applied: &Value, previous: &[String]) {
    let now = leaf_paths(applied);
    for stale in previous.iter().filter(|p| !now.contains(p)) {
        remove_pointer(target, stale);
    }
    deep_merge(target, applied);
}

fn deep_merge(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (key, value) in a {
                deep_merge(t.entry(key.clone()).or_insert(Value::Object(Map::new())), value);
            }
        }
        (target, applied) => *target = applied.clone(),
    }
}

fn remove_pointer(target: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else { return };
    let last = last.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(map)) = target.pointer_mut(parent) {
        map.remove(&last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_replaces_and_deletes() {
        let mut obj = json!({ "spec": { "a": 1, "b": [1, 2], "c": { "d": 1 } } });
        merge(&mut obj, &json!({ "spec": { "a": null, "b": [3], "c": { "e": 2 } } }));
        assert_eq!(obj, json!({ "spec": { "b": [3], "c": { "d": 1, "e": 2 } } }));
    }

    #[test]
    fn an_apply_conflicts_only_where_another_manager_applied_a_different_value() {
        let current = json!({ "spec": { "holder": "a", "renew": "t1" } });
        let others = vec![("lease-a".to_string(), vec!["/spec/holder".to_string()])];
        let taken = conflicts(&current, &json!({ "spec": { "holder": "b" } }), &others);
        assert_eq!(taken, vec![r#"conflict with "lease-a": .spec.holder"#.to_string()]);
        assert!(conflicts(&current, &json!({ "spec": { "holder": "a" } }), &others).is_empty(), "same value");
        assert!(conflicts(&current, &json!({ "spec": { "renew": "t2" } }), &others).is_empty(), "not theirs");
        let released = json!({ "spec": {} });
        assert!(conflicts(&released, &json!({ "spec": { "holder": "b" } }), &others).is_empty(), "cleared");
    }

    #[test]
    fn apply_removes_what_the_manager_stopped_setting() {
        let mut obj = json!({ "status": { "state": "running", "publicIp": "1.2.3.4", "other": "kept" } });
        let previous = leaf_paths(&json!({ "status": { "state": "running", "publicIp": "1.2.3.4" } }));
        apply(&mut obj, &json!({ "status": { "state": "stopped" } }), &previous);
        assert_eq!(obj, json!({ "status": { "state": "stopped", "other": "kept" } }));
    }
}
