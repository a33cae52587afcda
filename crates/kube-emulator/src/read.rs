//! Routing, and the read side: get, list (as JSON or `Table`) and watch.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::Method;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::select::Selector;
use super::store::WatchEvent;
use super::types::ResourceType;
use super::{
    ApiRequest, ApiServer, Reply, delete, discovery, events, failure, page, review, status_body, table, write,
};

/// Where a resource request points.
pub struct Target {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub async fn route(server: &Arc<ApiServer>, req: ApiRequest) -> Reply {
    let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let json = |v: Option<Value>| {
        v.map_or_else(
            || failure(404, "NotFound", "the server could not find the requested resource"),
            |v| Reply::Json(200, v),
        )
    };
    if let Some(reply) = review(server, &segments, &req) {
        return reply;
    }
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Reply::Json(200, discovery::version()),
        ["healthz" | "livez" | "readyz"] => return Reply::Json(200, json!("ok")),
        ["api"] => return Reply::Json(200, discovery::core_versions()),
        ["apis"] => return Reply::Json(200, discovery::group_list(server)),
        ["apis", group] => return json(discovery::group(server, group)),
        ["openapi", "v3"] => return Reply::Json(200, discovery::openapi_root(server)),
        ["openapi", "v3", "api", version] => {
            return json(discovery::openapi_group_version(server, "", version));
        }
        ["openapi", "v3", "apis", group, version] => {
            return json(discovery::openapi_group_version(server, group, version));
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return failure(404, "NotFound", "the server could not find the requested resource"),
    };
    if rest.is_empty() {
        return json(discovery::resource_list(server, group, version));
    }
    let namespaced = rest.len() >= 3
        && rest[0] == "namespaces"
        && server.find(group, version, rest[2]).is_some_and(|t| t.namespaced);
    let (namespace, rest) = if namespaced { (Some(rest[1].to_string()), &rest[2..]) } else { (None, rest) };
    let Some(rt) = server.find(group, version, rest[0]) else {
        return failure(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({})", req.path),
        );
    };
    let target = Target {
        rt,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    };
    if rest.len() > 3
        || target.subresource.as_deref().is_some_and(|s| s != "status" || !target.rt.status_subresource)
    {
        return failure(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({})", req.path),
        );
    }
    match (&req.method, target.name.is_some()) {
        (&Method::GET, true) => get(server, &target, &req),
        (&Method::GET, false) if flag(&req, "watch") => watch(server, &target, &req),
        (&Method::GET, false) => list(server, &target, &req),
        (&Method::POST, false) => write::create(server, &target, &req),
        (&Method::PUT, true) => write::update(server, &target, &req),
        (&Method::PATCH, true) => write::patch(server, &target, &req),
        (&Method::DELETE, true) => delete::delete(server, &target, &req),
        (&Method::DELETE, false) => delete::delete_collection(server, &target, &req),
        _ => failure(405, "MethodNotAllowed", format!("{} is not allowed on {}", req.method, req.path)),
    }
}

/// The authentication and authorization APIs, which are not stored objects.
fn review(server: &ApiServer, segments: &[&str], req: &ApiRequest) -> Option<Reply> {
    let post = req.method == Method::POST;
    let refused =
        || failure(405, "MethodNotAllowed", format!("{} is not allowed on {}", req.method, req.path));
    Some(match segments {
        _ if !post && is_review(segments) => refused(),
        ["apis", "authentication.k8s.io", "v1", "tokenreviews"] => review::token_review(server, req),
        ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"] => {
            review::access_review(server, req, None)
        }
        ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] => {
            review::access_review(server, req, Some(review::requester(req)))
        }
        ["api", "v1", "namespaces", namespace, "serviceaccounts", name, "token"] => {
            review::token_request(server, namespace, name, req)
        }
        _ => return None,
    })
}

fn is_review(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["apis", "authentication.k8s.io" | "authorization.k8s.io", "v1", _]
            | ["api", "v1", "namespaces", _, "serviceaccounts", _, "token"]
    )
}

/// A boolean query parameter as the API server reads one (Go's `strconv.ParseBool`: the Python
/// client sends `watch=True`).
pub(crate) fn flag(req: &ApiRequest, name: &str) -> bool {
    matches!(req.query.get(name).map(String::as_str), Some("true" | "True" | "TRUE" | "t" | "T" | "1"))
}

/// An object as served through `rt` (events are converted between their two APIs).
pub fn view(rt: &ResourceType, stored: &Value) -> Value {
    if rt.group.is_empty() && rt.plural == "events" {
        return events::to_core(stored);
    }
    let mut object = stored.clone();
    object["apiVersion"] = json!(rt.api_version());
    object
}

pub fn object_key(rt: &ResourceType, namespace: Option<&str>, name: &str) -> (String, String, String) {
    (rt.key(), namespace.unwrap_or_default().to_string(), name.to_string())
}

pub fn not_found(rt: &ResourceType, name: &str) -> Reply {
    let resource =
        if rt.group.is_empty() { rt.plural.clone() } else { format!("{}.{}", rt.plural, rt.group) };
    let details = json!({ "name": name, "group": rt.group, "kind": rt.plural });
    Reply::Json(404, status_body(404, "NotFound", format!("{resource} \"{name}\" not found"), Some(details)))
}

fn get(server: &ApiServer, target: &Target, req: &ApiRequest) -> Reply {
    let name = target.name.as_deref().unwrap_or_default();
    match server.store.get(&object_key(&target.rt, target.namespace.as_deref(), name)) {
        // `kubectl get KIND NAME` asks for a one-row Table, as for a list.
        Some(stored) if req.accept.contains("as=Table") => {
            let rv = stored["metadata"]["resourceVersion"].as_str().and_then(|rv| rv.parse().ok());
            Reply::Json(200, table::table(&target.rt, &[view(&target.rt, &stored)], rv.unwrap_or_default()))
        }
        Some(stored) => Reply::Json(200, view(&target.rt, &stored)),
        None => not_found(&target.rt, name),
    }
}

pub fn selector(req: &ApiRequest) -> Result<Selector, Reply> {
    Selector::parse(
        req.query.get("labelSelector").map(String::as_str),
        req.query.get("fieldSelector").map(String::as_str),
    )
    .map_err(|e| failure(400, "BadRequest", e))
}

fn list(server: &ApiServer, target: &Target, req: &ApiRequest) -> Reply {
    let selector = match selector(req) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let (stored, rv) = server.store.list(&target.rt.key(), target.namespace.as_deref());
    let items: Vec<Value> =
        stored.iter().map(|o| view(&target.rt, o)).filter(|o| selector.matches(o)).collect();
    let page = match page::page(items, rv, req) {
        Ok(page) => page,
        Err(reply) => return reply,
    };
    let mut list = match req.accept.contains("as=Table") {
        true => table::table(&target.rt, &page.items, rv),
        false => json!({
            "kind": format!("{}List", target.rt.kind),
            "apiVersion": target.rt.api_version(),
            "metadata": { "resourceVersion": rv.to_string() },
            "items": page.items,
        }),
    };
    page.annotate(&mut list["metadata"]);
    Reply::Json(200, list)
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text =
        serde_json::to_string(&json!({ "type": kind, "object": object })).expect("events serialise");
    text.push('\n');
    Bytes::from(text)
}

fn watch(server: &Arc<ApiServer>, target: &Target, req: &ApiRequest) -> Reply {
    let selector = match selector(req) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let rt = target.rt.clone();
    let namespace = target.namespace.clone();
    let bookmarks = flag(req, "allowWatchBookmarks");
    let initial_events = flag(req, "sendInitialEvents");
    let timeout = req.query.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(1800u64);
    let from = req.query.get("resourceVersion").and_then(|v| v.parse::<u64>().ok()).filter(|v| *v > 0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let (kind, api_version) = (rt.kind.clone(), rt.api_version());
    let bookmark = move |rv: u64, end: bool| {
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        line("BOOKMARK", &json!({ "kind": kind, "apiVersion": api_version, "metadata": metadata }))
    };
    // Initial state when no version is given (or when asked to stream it), then history, then live.
    let (initial, start) = match (from, initial_events) {
        (Some(rv), false) => (vec![], rv),
        _ => {
            let (items, rv) = server.store.list(&rt.key(), namespace.as_deref());
            (items, rv)
        }
    };
    let (past, mut live) = match server.store.watch_from(start) {
        Ok(found) => found,
        Err(_) => {
            let gone = status_body(410, "Expired", format!("too old resource version: {start}"), None);
            return Reply::Stream(futures::stream::iter([line("ERROR", &gone)]).boxed());
        }
    };
    let wanted = move |e: &WatchEvent| {
        e.key == rt.key()
            && namespace.as_deref().is_none_or(|ns| e.object["metadata"]["namespace"].as_str() == Some(ns))
            && selector.matches(&view(&rt, &e.object))
    };
    let target_rt = target.rt.clone();
    let interval = server.bookmark_interval;
    let mut available = server.available.subscribe();
    tokio::spawn(async move {
        let rt = target_rt;
        let mut last = start;
        for object in initial
            .iter()
            .filter(|o| wanted(&WatchEvent { rv: 0, key: rt.key(), kind: "ADDED", object: (*o).clone() }))
        {
            if tx.send(line("ADDED", &view(&rt, object))).await.is_err() {
                return;
            }
        }
        if initial_events && tx.send(bookmark(start, true)).await.is_err() {
            return;
        }
        for event in past.iter().filter(|e| wanted(e)) {
            last = event.rv;
            if tx.send(line(event.kind, &view(&rt, &event.object))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut ticks = tokio::time::interval(interval);
        loop {
            let out = tokio::select! {
                _ = &mut deadline => return,
                _ = available.wait_for(|up| !*up) => return,
                _ = ticks.tick(), if bookmarks => bookmark(last.max(start), false),
                event = live.recv() => match event {
                    Ok(e) if e.rv > last && wanted(&e) => {
                        last = e.rv;
                        line(e.kind, &view(&rt, &e.object))
                    }
                    Ok(e) => {
                        last = last.max(e.rv);
                        continue;
                    }
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    });
    Reply::Stream(tokio_stream::wrappers::ReceiverStream::new(rx).boxed())
}
