//! OpenAPI v3 structural-schema enforcement for custom resources, as the API server does it:
//! defaults applied, unknown fields pruned, then type, required, enum, pattern, length and bounds
//! checked. Every violation is reported with its field path.

use serde_json::{Map, Value};

/// One violation, in the API server's words: `message` without the field, which `field` names.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

impl Cause {
    /// `field: message`, as the top-level Status message lists it.
    pub fn describe(&self) -> String {
        if self.field.is_empty() { self.message.clone() } else { format!("{}: {}", self.field, self.message) }
    }
}

/// What enforcement found: violations, and the unknown fields it pruned.
#[derive(Debug, Default)]
pub struct Report {
    pub causes: Vec<Cause>,
    pub pruned: Vec<String>,
}

/// Defaults, prunes and validates `object` (a whole custom resource) against `schema`.
pub fn enforce(schema: &Value, object: &mut Value) -> Report {
    let mut report = Report::default();
    let Some(map) = object.as_object_mut() else {
        report.causes.push(cause("", "FieldValueTypeInvalid", "the object must be a JSON object".into()));
        return report;
    };
    // apiVersion, kind and metadata are the server's, whatever the schema says.
    let keep = ["apiVersion", "kind", "metadata"];
    let props = schema.get("properties").and_then(Value::as_object);
    let removed: Vec<String> = map
        .keys()
        .filter(|k| !keep.contains(&k.as_str()) && !props.is_some_and(|p| p.contains_key(*k)))
        .cloned()
        .collect();
    if !preserves(schema) {
        removed.iter().for_each(|k| drop(map.remove(k)));
        report.pruned.extend(removed);
    }
    if let Some(props) = props {
        for (key, sub) in props.iter().filter(|(k, _)| !keep.contains(&k.as_str())) {
            walk_property(map, key, sub, key, &mut report);
        }
    }
    required(schema, map, "", &mut report);
    report
}

fn preserves(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true)
}

fn cause(field: &str, reason: &'static str, message: String) -> Cause {
    let message = message.strip_prefix(&format!("{field}: ")).map(String::from).unwrap_or(message);
    Cause { field: field.to_string(), reason, message }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn walk_property(map: &mut Map<String, Value>, key: &str, schema: &Value, path: &str, report: &mut Report) {
    let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
    let absent = match map.get(key) {
        None => true,
        Some(Value::Null) => !nullable,
        Some(_) => false,
    };
    if absent {
        map.remove(key);
        if let Some(default) = schema.get("default") {
            map.insert(key.to_string(), default.clone());
        } else {
            return;
        }
    }
    if let Some(value) = map.get_mut(key) {
        walk(schema, value, path, report);
    }
}

fn required(schema: &Value, map: &Map<String, Value>, path: &str, report: &mut Report) {
    for field in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        let Some(field) = field.as_str() else { continue };
        if !map.contains_key(field) {
            report.causes.push(cause(
                &join(path, field),
                "FieldValueRequired",
                format!("{}: Required value", join(path, field)),
            ));
        }
    }
}

fn walk(schema: &Value, value: &mut Value, path: &str, report: &mut Report) {
    if value.is_null() {
        return; // nullable and null: nothing more to check
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    let kind = schema.get("type").and_then(Value::as_str);
    let type_ok = match kind {
        _ if int_or_string => value.is_string() || value.is_i64() || value.is_u64(),
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(_) => true,
    };
    if !type_ok {
        let kind = kind.unwrap_or("int-or-string");
        let message = format!(
            "{path}: Invalid value: {}: {path} in body must be of type {kind}: {}",
            shown_type(value),
            value_type(value)
        );
        report.causes.push(cause(path, "FieldValueTypeInvalid", message));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        let message = format!("{path}: Unsupported value: {value}: supported values: {}", list.join(", "));
        report.causes.push(cause(path, "FieldValueNotSupported", message));
    }
    match value {
        Value::Object(map) => walk_object(schema, map, path, report),
        Value::Array(items) => walk_array(schema, items, path, report),
        Value::String(s) => check_string(schema, s, path, report),
        Value::Number(n) => check_number(schema, n.as_f64().unwrap_or(0.0), value_text(value), path, report),
        _ => {}
    }
}

fn walk_object(schema: &Value, map: &mut Map<String, Value>, path: &str, report: &mut Report) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    if let Some(props) = props {
        for (key, sub) in props {
            walk_property(map, key, sub, &join(path, key), report);
        }
    }
    let unknown: Vec<String> =
        map.keys().filter(|k| !props.is_some_and(|p| p.contains_key(*k))).cloned().collect();
    for key in unknown {
        match additional {
            Some(sub) if sub.is_object() => {
                if let Some(value) = map.get_mut(&key) {
                    walk(sub, value, &join(path, &key), report);
                }
            }
            Some(Value::Bool(true)) => {}
            _ if preserves(schema) => {}
            _ => {
                map.remove(&key);
                report.pruned.push(join(path, &key));
            }
        }
    }
    required(schema, map, path, report);
    bound(schema, "minProperties", "maxProperties", map.len(), path, "properties", report);
}

fn walk_array(schema: &Value, items: &mut [Value], path: &str, report: &mut Report) {
    if let Some(sub) = schema.get("items") {
        for (i, item) in items.iter_mut().enumerate() {
            walk(sub, item, &format!("{path}[{i}]"), report);
        }
    }
    bound(schema, "minItems", "maxItems", items.len(), path, "items", report);
}

fn check_string(schema: &Value, s: &str, path: &str, report: &mut Report) {
    bound(schema, "minLength", "maxLength", s.chars().count(), path, "characters", report);
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        let matches = regex::Regex::new(pattern).map(|re| re.is_match(s)).unwrap_or(true);
        if !matches {
            let message = format!("{path}: Invalid value: {s:?}: {path} in body should match '{pattern}'");
            report.causes.push(cause(path, "FieldValueInvalid", message));
        }
    }
}

fn check_number(schema: &Value, n: f64, shown: String, path: &str, report: &mut Report) {
    let exclusive = |key| schema.get(key).and_then(Value::as_bool) == Some(true);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let (bad, words) = if exclusive("exclusiveMinimum") {
            (n <= min, "greater than")
        } else {
            (n < min, "greater than or equal to")
        };
        if bad {
            let message =
                format!("{path}: Invalid value: {shown}: {path} in body should be {words} {}", number(min));
            report.causes.push(cause(path, "FieldValueInvalid", message));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let (bad, words) = if exclusive("exclusiveMaximum") {
            (n >= max, "less than")
        } else {
            (n > max, "less than or equal to")
        };
        if bad {
            let message =
                format!("{path}: Invalid value: {shown}: {path} in body should be {words} {}", number(max));
            report.causes.push(cause(path, "FieldValueInvalid", message));
        }
    }
}

fn bound(
    schema: &Value,
    min_key: &str,
    max_key: &str,
    len: usize,
    path: &str,
    unit: &str,
    report: &mut Report,
) {
    if let Some(max) = schema.get(max_key).and_then(Value::as_u64)
        && len as u64 > max
    {
        let message = format!("{path}: Too long: may not be more than {max} {unit}");
        report.causes.push(cause(path, "FieldValueTooLong", message));
    }
    if let Some(min) = schema.get(min_key).and_then(Value::as_u64)
        && (len as u64) < min
    {
        let message =
            format!("{path}: Invalid value: {len}: {path} in body should have at least {min} {unit}");
        report.causes.push(cause(path, "FieldValueInvalid", message));
    }
}

fn number(f: f64) -> String {
    if f.fract() == 0.0 { format!("{}", f as i64) } else { f.to_string() }
}

fn value_text(value: &Value) -> String {
    value.to_string()
}

fn value_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown_type(value: &Value) -> String {
    format!("\"{}\"", value_type(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": { "type": "string", "maxLength": 5, "pattern": "^[a-z]+$" },
                        "power": { "type": "string", "enum": ["Running", "Stopped"], "default": "Running" },
                        "size": { "type": "integer", "minimum": 1, "maximum": 10, "nullable": true },
                        "tags": { "type": "object", "additionalProperties": { "type": "string" } },
                        "free": { "x-kubernetes-preserve-unknown-fields": true, "nullable": true }
                    }
                },
                "status": { "type": "object", "properties": { "state": { "type": "string" } } }
            }
        })
    }

    #[test]
    fn defaults_are_applied_and_unknown_fields_pruned() {
        let mut obj = json!({ "apiVersion": "x/v1", "kind": "X", "metadata": { "name": "a" },
            "spec": { "name": "ok", "bogus": 1, "tags": { "a": "b" }, "free": { "any": [1] } }, "extra": true });
        let report = enforce(&schema(), &mut obj);
        assert!(report.causes.is_empty());
        assert_eq!(report.pruned, ["extra", "spec.bogus"]);
        assert_eq!(obj["spec"]["power"], "Running");
        assert!(obj["spec"].get("bogus").is_none() && obj.get("extra").is_none());
        assert_eq!(obj["spec"]["free"], json!({ "any": [1] }));
        assert_eq!(obj["metadata"]["name"], "a");
    }

    #[test]
    fn violations_name_their_field() {
        let mut obj =
            json!({ "spec": { "name": "TOOLONG", "power": "Paused", "size": 0, "tags": { "a": 1 } } });
        let causes = enforce(&schema(), &mut obj).causes;
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["spec.name", "spec.name", "spec.power", "spec.size", "spec.tags.a"]);
        assert!(
            causes[2]
                .message
                .contains("Unsupported value: \"Paused\": supported values: \"Running\", \"Stopped\"")
        );
        assert!(causes[3].message.contains("should be greater than or equal to 1"));
        let mut missing = json!({ "spec": {} });
        assert_eq!(enforce(&schema(), &mut missing).causes[0].describe(), "spec.name: Required value");
    }
}
