//! Label selectors (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`) and field selectors
//! (`metadata.name=x`, any dotted path, `=`, `==`, `!=`).

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

#[derive(Debug, Default, PartialEq)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<(String, bool, String)>,
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn set(values: &str) -> Result<Vec<String>, String> {
    let inner = values.trim().strip_prefix('(').and_then(|v| v.strip_suffix(')'));
    let inner = inner.ok_or_else(|| format!("expected a parenthesised set, found {values:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn label_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::Absent(key.trim().into()));
    }
    if let Some((key, values)) = part.split_once(" notin ") {
        return Ok(Requirement::NotIn(key.trim().into(), set(values)?));
    }
    if let Some((key, values)) = part.split_once(" in ") {
        return Ok(Requirement::In(key.trim().into(), set(values)?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(key.trim().into(), value.trim().into()));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(key.trim().into(), value.trim().into()));
    }
    if part.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
        return Ok(Requirement::Exists(part.into()));
    }
    Err(format!("unable to parse requirement: {part:?}"))
}

impl Selector {
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, String> {
        let labels =
            split_top(labels.unwrap_or("")).into_iter().map(label_requirement).collect::<Result<_, _>>()?;
        let mut parsed = Vec::new();
        for part in split_top(fields.unwrap_or("")) {
            let (key, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!("invalid field selector: {part:?}"));
            };
            parsed.push((key.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(Self { labels, fields: parsed })
    }

    /// A structured `LabelSelector` (`matchLabels`, `matchExpressions`), as RBAC aggregation and
    /// workloads write them.
    pub fn from_label_selector(selector: &Value) -> Self {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let mut labels: Vec<Requirement> = selector["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| Requirement::Equals(k.clone(), text(v)))
            .collect();
        for expression in selector["matchExpressions"].as_array().into_iter().flatten() {
            let key = text(&expression["key"]);
            let values = expression["values"].as_array().into_iter().flatten().map(text).collect();
            labels.push(match expression["operator"].as_str() {
                Some("In") => Requirement::In(key, values),
                Some("NotIn") => Requirement::NotIn(key, values),
                Some("Exists") => Requirement::Exists(key),
                // DoesNotExist, and an operator this does not know (which then matches nothing
                // that carries the label).
                _ => Requirement::Absent(key),
            });
        }
        Self { labels, fields: Vec::new() }
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v),
            Requirement::NotEquals(k, v) => label(k) != Some(v),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::Absent(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|(path, equal, value)| {
                let found = path.split('.').try_fold(object, |v, key| v.get(key));
                let text = match found {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (text == *value) == *equal
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_as_kubernetes_does() {
        let obj = json!({ "metadata": { "name": "a", "namespace": "n", "labels": { "app": "web", "tier": "db" } } });
        let m = |l: &str, f: &str| Selector::parse(Some(l), Some(f)).unwrap().matches(&obj);
        assert!(m("app=web", "metadata.name=a"));
        assert!(m("app==web,tier", ""));
        assert!(m("app in (web, api),tier notin (cache)", "metadata.namespace!=x"));
        assert!(!m("app!=web", ""));
        assert!(!m("!tier", ""));
        assert!(!m("", "metadata.name=b"));
        assert!(m("missing notin (x)", ""));
        assert!(Selector::parse(Some("a in b"), None).is_err());
    }
}
