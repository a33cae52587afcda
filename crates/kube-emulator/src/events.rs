//! Events are stored once and served through both APIs, converted as the API server does:
//! core/v1 (`involvedObject`, `message`, `count`) and events.k8s.io/v1 (`regarding`, `note`, `series`).

use serde_json::{Value, json};

/// core/v1 → events.k8s.io/v1 (the stored form).
pub fn from_core(core: &Value) -> Value {
    let mut e = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": core["metadata"],
        "regarding": core["involvedObject"],
        "note": core["message"],
        "reason": core["reason"],
        "type": core["type"],
        "action": core["action"],
        "reportingController": core["reportingComponent"].as_str().or(core["source"]["component"].as_str()),
        "reportingInstance": core["reportingInstance"],
        "eventTime": core["eventTime"],
        "deprecatedFirstTimestamp": core["firstTimestamp"],
        "deprecatedLastTimestamp": core["lastTimestamp"],
        "deprecatedCount": core["count"],
    });
    strip_nulls(&mut e);
    e
}

/// events.k8s.io/v1 (the stored form) → core/v1.
pub fn to_core(stored: &Value) -> Value {
    let first = stored["deprecatedFirstTimestamp"].as_str().or(stored["eventTime"].as_str());
    let last = stored["series"]["lastObservedTime"]
        .as_str()
        .or(stored["deprecatedLastTimestamp"].as_str())
        .or(stored["eventTime"].as_str());
    let count = stored["series"]["count"].as_u64().or(stored["deprecatedCount"].as_u64()).unwrap_or(1);
    let mut e = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": stored["metadata"],
        "involvedObject": stored["regarding"],
        "message": stored["note"],
        "reason": stored["reason"],
        "type": stored["type"],
        "action": stored["action"],
        "source": { "component": stored["reportingController"] },
        "reportingComponent": stored["reportingController"],
        "reportingInstance": stored["reportingInstance"],
        "eventTime": stored["eventTime"],
        "firstTimestamp": first.map(seconds),
        "lastTimestamp": last.map(seconds),
        "count": count,
    });
    strip_nulls(&mut e);
    e
}

/// core/v1 timestamps have second precision.
fn seconds(t: &str) -> String {
    t.parse::<jiff::Timestamp>()
        .map(|ts| jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts).to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn strip_nulls(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}
