//! `limit` and `continue` on lists, as clients page through them (kubectl asks for 500 at a
//! time; controllers' reflectors may page too). A continue token names the list's
//! resourceVersion and the last object served; the next page is the objects after it, in the
//! store's order (namespace, then name). Unlike a real API server, later pages are read from the
//! current state rather than a snapshot at the first page's resourceVersion.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as TOKEN;
use serde_json::{Value, json};

use super::{ApiRequest, Reply, failure};

/// One page of a list.
pub struct Page {
    pub items: Vec<Value>,
    /// Where the next page starts, when there is one.
    pub next: Option<String>,
    /// How many objects the later pages hold.
    pub remaining: usize,
}

impl Page {
    /// Adds `continue` and `remainingItemCount` to a list's (or Table's) metadata.
    pub fn annotate(&self, metadata: &mut Value) {
        if let Some(next) = &self.next {
            metadata["continue"] = json!(next);
            metadata["remainingItemCount"] = json!(self.remaining);
        }
    }
}

fn position(object: &Value) -> (String, String) {
    let metadata = &object["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (text(&metadata["namespace"]), text(&metadata["name"]))
}

fn invalid_token() -> Reply {
    failure(400, "BadRequest", "continue key is not valid: the token was not issued by this server")
}

/// The page of `items` (the whole list, in store order) that the request's `limit` and
/// `continue` ask for.
pub fn page(items: Vec<Value>, resource_version: u64, req: &ApiRequest) -> Result<Page, Reply> {
    let mut items = items;
    if let Some(token) = req.query.get("continue").filter(|t| !t.is_empty()) {
        let decoded = TOKEN.decode(token).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let start = decoded.as_ref().and_then(|d| {
            let at = d["start"].as_array()?;
            Some((at.first()?.as_str()?.to_string(), at.get(1)?.as_str()?.to_string()))
        });
        let Some(start) = start else { return Err(invalid_token()) };
        items.retain(|o| position(o) > start);
    }
    let limit = match req.query.get("limit").map(|l| l.parse::<usize>()) {
        None => 0,
        Some(Ok(limit)) => limit,
        Some(Err(_)) => return Err(failure(400, "BadRequest", "limit must be a non-negative integer")),
    };
    if limit == 0 || items.len() <= limit {
        return Ok(Page { items, next: None, remaining: 0 });
    }
    let rest = items.split_off(limit);
    let (namespace, name) = position(items.last().expect("limit is at least one"));
    let token = json!({ "rv": resource_version, "start": [namespace, name] });
    let next = TOKEN.encode(serde_json::to_vec(&token).expect("a token serialises"));
    Ok(Page { items, next: Some(next), remaining: rest.len() })
}
