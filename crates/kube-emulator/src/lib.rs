//! A Kubernetes API server emulator, faithful on what kube-runtime, kubectl and Helm-rendered
//! manifests use: discovery, CRDs with schema enforcement, built-in types, CRUD with every patch
//! type, resourceVersion/generation, status subresources, finalizers, ownerReference cascading,
//! selectors, watches with bookmarks and 410 Gone, and `Table` output for `kubectl get`.
//!
//! Self-contained: it depends on nothing else in this crate. Serve it over HTTP on loopback with
//! [`serve`], or use it in-process behind `kube::Client` with [`ApiServer::client`].

mod delete;
mod discovery;
mod events;
mod http;
mod page;
mod patch;
mod protobuf;
mod rbac;
mod read;
mod review;
mod rules;
mod schema;
mod select;
mod store;
mod table;
mod tls;
mod types;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures::stream::BoxStream;
use serde_json::{Value, json};

pub use http::{Access, serve};
use store::Store;
pub use tls::Secured;
use types::ResourceType;

/// Events kept for watches to resume from; older resourceVersions get 410 Gone.
pub const DEFAULT_HISTORY: usize = 100_000;

pub struct ApiServer {
    store: Store,
    types: RwLock<Vec<ResourceType>>,
    /// Seconds between watch bookmarks (when the client allows them).
    bookmark_interval: std::time::Duration,
    /// False while the server is down for a fault test: requests get 503 and open watches end.
    available: tokio::sync::watch::Sender<bool>,
    /// Requests handled, for tests that bound a client's retries.
    requests: std::sync::atomic::AtomicU64,
    /// ServiceAccount tokens made by `TokenRequest`.
    tokens: review::Tokens,
}

/// A request, as the handlers see it.
pub struct ApiRequest {
    pub method: ::http::Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub accept: String,
    pub content_type: String,
    pub body: Bytes,
    /// `Impersonate-User` and `Impersonate-Group` (kubectl's `--as` and `--as-group`).
    pub impersonate_user: Option<String>,
    pub impersonate_groups: Vec<String>,
}

/// A response: one JSON document, or a stream of watch events.
pub enum Reply {
    Json(u16, Value),
    Stream(BoxStream<'static, Bytes>),
}

impl ApiServer {
    pub fn new() -> Arc<Self> {
        Self::with_history(DEFAULT_HISTORY)
    }

    /// A server keeping `history` events for watches and sending bookmarks every `bookmarks`.
    pub fn with_history(history: usize) -> Arc<Self> {
        Self::configured(history, std::time::Duration::from_secs(5))
    }

    pub fn configured(history: usize, bookmarks: std::time::Duration) -> Arc<Self> {
        let server = Arc::new(Self {
            store: Store::new(history),
            types: RwLock::new(types::builtins()),
            bookmark_interval: bookmarks,
            available: tokio::sync::watch::Sender::new(true),
            requests: Default::default(),
            tokens: Default::default(),
        });
        for ns in ["default", "kube-system"] {
            let namespace = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
            let rt = server.find("", "v1", "namespaces").expect("namespaces are built in");
            write::create_object(&server, &rt, None, namespace, write::Mode::default())
                .unwrap_or_else(|_| panic!("{ns} is created"));
        }
        server
    }

    /// Writes every object to `path` (atomically: a temporary file, then a rename).
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&self.store.snapshot())?;
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes)?;
        std::fs::rename(partial, path)
    }

    /// A server holding what `save` wrote (CRDs registered again).
    pub fn load(path: &std::path::Path) -> std::io::Result<Arc<Self>> {
        let snapshot: Value = serde_json::from_slice(&std::fs::read(path)?)?;
        let server = Self::new();
        server.store.restore(&snapshot);
        let (crds, _) = server.store.list("apiextensions.k8s.io/customresourcedefinitions", None);
        server.types.write().unwrap().extend(crds.iter().flat_map(types::from_crd));
        Ok(server)
    }

    /// An in-process `kube::Client` talking to this server without a socket.
    pub fn client(self: &Arc<Self>) -> kube::Client {
        http::client(self.clone())
    }

    fn find(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        let types = self.types.read().unwrap();
        types.iter().find(|t| t.group == group && t.version == version && t.plural == plural).cloned()
    }

    pub async fn handle(self: &Arc<Self>, req: ApiRequest) -> Reply {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !*self.available.borrow() {
            return failure(503, "ServiceUnavailable", "the API server is down (fault injection)");
        }
        read::route(self, req).await
    }

    /// Takes the server down (every request gets 503, open watches end) or brings it back.
    pub fn set_available(&self, up: bool) {
        self.available.send_replace(up);
    }

    /// Requests handled so far, refused ones included.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A `Status` failure reply.
pub(crate) fn failure(code: u16, reason: &str, message: impl Into<String>) -> Reply {
    Reply::Json(code, status_body(code, reason, message.into(), None))
}

pub(crate) fn status_body(code: u16, reason: &str, message: String, details: Option<Value>) -> Value {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    body
}
