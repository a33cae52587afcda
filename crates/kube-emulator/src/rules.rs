//! CRD validation rules (`x-kubernetes-validations`), applied after the schema as the API server
//! applies them: each rule is a CEL expression over `self`, the value where the rule sits in the
//! schema. A transition rule (one that names `oldSelf`) is evaluated only on an update, and only
//! where the old object has a value too. A rule that is false is a 422 naming its `fieldPath`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::Value;

use super::schema::Cause;

/// The violated rules of `new` (an update of `old`, if given) under `schema`.
pub fn check(schema: &Value, new: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    walk(schema, new, old, "", &mut causes);
    causes
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn walk(schema: &Value, new: &Value, old: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    for rule in schema["x-kubernetes-validations"].as_array().into_iter().flatten() {
        if let Some(cause) = violation(rule, new, old, path) {
            causes.push(cause);
        }
    }
    if let (Some(props), Some(map)) = (schema["properties"].as_object(), new.as_object()) {
        for (key, sub) in props {
            if let Some(value) = map.get(key) {
                walk(sub, value, old.and_then(|o| o.get(key)), &join(path, key), causes);
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), new.as_array()) {
        // Items are not paired with the old list's (no listType=map here): transition rules on
        // items are not evaluated.
        for (i, item) in list.iter().enumerate() {
            walk(items, item, None, &format!("{path}[{i}]"), causes);
        }
    }
}

/// The cause if `rule` does not hold for `new` (and `old`) at `path`.
fn violation(rule: &Value, new: &Value, old: Option<&Value>, path: &str) -> Option<Cause> {
    let text = rule["rule"].as_str()?;
    let transition = text.contains("oldSelf");
    if transition && old.is_none() {
        return None;
    }
    let field = match rule["fieldPath"].as_str() {
        Some(sub) => format!("{path}{sub}"),
        None => path.to_string(),
    };
    let kind = if new.is_object() { "object" } else { "value" };
    let message = match evaluate(text, new, old.filter(|_| transition)) {
        Ok(true) => return None,
        Ok(false) => rule["message"].as_str().map_or_else(|| format!("failed rule: {text}"), str::to_string),
        Err(e) => format!("rule evaluation error: {text}: {e}"),
    };
    let message = format!("Invalid value: \"{kind}\": {message}");
    Some(Cause { field, reason: "FieldValueInvalid", message })
}

thread_local! {
    /// Compiled rules by their text: the same few rules are evaluated at every write.
    static PROGRAMS: RefCell<HashMap<String, Rc<cel::Program>>> = RefCell::default();
}

fn evaluate(text: &str, new: &Value, old: Option<&Value>) -> Result<bool, String> {
    let program = PROGRAMS.with(|cache| {
        if let Some(program) = cache.borrow().get(text) {
            return Ok(program.clone());
        }
        let program = Rc::new(cel::Program::compile(text).map_err(|e| e.to_string())?);
        cache.borrow_mut().insert(text.to_string(), program.clone());
        Ok::<_, String>(program)
    })?;
    let mut context = cel::Context::default();
    let value = |v: &Value| cel::to_value(v).map_err(|e| e.to_string());
    context.add_variable_from_value("self", value(new)?);
    if let Some(old) = old {
        context.add_variable_from_value("oldSelf", value(old)?);
    }
    match program.execute(&context).map_err(|e| e.to_string())? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(format!("the rule gave {other:?}, not a boolean")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({ "properties": { "spec": {
            "x-kubernetes-validations": [
                { "rule": "has(self.image) == has(oldSelf.image) && (!has(self.image) || self.image == oldSelf.image)",
                  "message": "spec.image is immutable", "fieldPath": ".image" },
                { "rule": "!has(oldSelf.size) || (has(self.size) && self.size >= oldSelf.size)",
                  "message": "spec.size may not shrink", "fieldPath": ".size" },
                { "rule": "self.replicas <= 5", "message": "at most 5 replicas" },
            ],
            "properties": { "image": {}, "size": {}, "replicas": {} },
        } } })
    }

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn transition_rules_hold_on_update_only() {
        let old = json!({ "spec": { "image": "a", "size": 10, "replicas": 1 } });
        let same = old.clone();
        assert_eq!(check(&schema(), &same, Some(&old)), vec![]);
        let changed = json!({ "spec": { "image": "b", "size": 5, "replicas": 1 } });
        let causes = check(&schema(), &changed, Some(&old));
        assert_eq!(fields(&causes), ["spec.image", "spec.size"]);
        assert_eq!(causes[0].message, "Invalid value: \"object\": spec.image is immutable");
        // Unset is a change too; growing is not.
        let unset = json!({ "spec": { "size": 20, "replicas": 1 } });
        assert_eq!(fields(&check(&schema(), &unset, Some(&old))), ["spec.image"]);
        // On create, only the rules without oldSelf.
        assert_eq!(check(&schema(), &changed, None), vec![]);
        let many = json!({ "spec": { "replicas": 9 } });
        assert_eq!(fields(&check(&schema(), &many, None)), ["spec"]);
    }

    #[test]
    fn a_rule_that_cannot_be_evaluated_is_a_violation() {
        let broken = json!({ "properties": { "spec": { "x-kubernetes-validations": [{ "rule": "self.missing == 1" }] } } });
        let causes = check(&broken, &json!({ "spec": {} }), None);
        assert!(causes[0].message.contains("rule evaluation error"), "{causes:?}");
    }
}
