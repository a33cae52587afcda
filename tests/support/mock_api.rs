//! A mocked Kubernetes API server behind `kube::Client`: it keeps the objects a test puts in it,
//! answers the few calls the controller makes (get, JSON patch, status apply, event create), and
//! records every request so tests can assert exactly what was sent.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl Recorded {
    /// `"PATCH /apis/…/status"`: method and path, for compact assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Clone, Default)]
pub struct MockApi {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl MockApi {
    pub fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(req).await) }
        });
        kube::Client::new(service, "default")
    }

    /// Stores `obj` at its API path (namespaced custom resources of dataroom.dev).
    pub fn put(&self, path: &str, obj: Value) {
        self.objects.lock().unwrap().insert(path.to_string(), obj);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests as "METHOD path" lines.
    pub fn lines(&self) -> Vec<String> {
        self.requests().iter().map(Recorded::line).collect()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let bytes = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.requests.lock().unwrap().push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query,
            body: body.clone(),
        });
        let mut objects = self.objects.lock().unwrap();
        let (status, reply) = match (method, path.strip_suffix("/status")) {
            (Method::POST, _) if path.ends_with("/events") => (StatusCode::CREATED, body),
            (Method::GET, None) => match objects.get(&path) {
                Some(obj) => (StatusCode::OK, obj.clone()),
                None => not_found(&path),
            },
            (Method::PATCH, Some(main)) => match objects.get_mut(main) {
                Some(obj) => {
                    obj["status"] = body["status"].clone();
                    (StatusCode::OK, obj.clone())
                }
                None => not_found(&path),
            },
            (Method::PATCH, None) => match objects.get_mut(&path) {
                Some(obj) => {
                    // The API server treats a missing field as null in a JSON patch `test`.
                    if obj["metadata"].get("finalizers").is_none() {
                        obj["metadata"]["finalizers"] = Value::Null;
                    }
                    let patch: json_patch::Patch = serde_json::from_value(body).expect("a JSON patch");
                    match json_patch::patch(obj, &patch) {
                        Ok(()) => (StatusCode::OK, obj.clone()),
                        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, status_body(422, &e.to_string())),
                    }
                }
                None => not_found(&path),
            },
            _ => not_found(&path),
        };
        let bytes = serde_json::to_vec(&reply).unwrap();
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .unwrap()
    }
}

fn not_found(path: &str) -> (StatusCode, Value) {
    (StatusCode::NOT_FOUND, status_body(404, &format!("{path} not found")))
}

fn status_body(code: u16, message: &str) -> Value {
    let reason = if code == 404 { "NotFound" } else { "Invalid" };
    json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code })
}
