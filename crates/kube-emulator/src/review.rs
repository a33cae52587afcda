//! Who a token is and what it may do: `TokenRequest` (`kubectl create token SA`), `TokenReview`,
//! `SubjectAccessReview` and `SelfSubjectAccessReview` (`kubectl auth can-i`, with `--as`
//! honoured through the impersonation headers), decided by [`rbac`](super::rbac).
//!
//! Tokens are random (244 bits) and held in memory: they end with the ServiceAccount they were
//! made for (deleted, or deleted and made again under the same name), at their expiry, and when
//! the emulator restarts.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::rbac::{Attributes, Policy, User};
use super::{ApiRequest, ApiServer, Reply, failure};

/// The audience a token is for when its request names none (kube-apiserver's default issuer).
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// Shortest and default lifetimes kube-apiserver allows for a requested token.
const MIN_SECONDS: i64 = 600;
const DEFAULT_SECONDS: i64 = 3600;
/// Longest: kube-apiserver's `--service-account-max-token-expiration` is often 48 hours.
const MAX_SECONDS: i64 = 48 * 3600;

struct Issued {
    namespace: String,
    name: String,
    /// The ServiceAccount's UID when the token was made.
    uid: String,
    audiences: Vec<String>,
    expires: jiff::Timestamp,
}

#[derive(Default)]
pub struct Tokens(Mutex<HashMap<String, Issued>>);

fn service_account(server: &ApiServer, namespace: &str, name: &str) -> Option<Value> {
    server.store.get(&("/serviceaccounts".into(), namespace.into(), name.into()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
}

fn body(req: &ApiRequest) -> Result<Value, Reply> {
    serde_json::from_slice(&req.body)
        .map_err(|e| failure(400, "BadRequest", format!("the body is not JSON: {e}")))
}

/// `POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`.
pub fn token_request(server: &ApiServer, namespace: &str, name: &str, req: &ApiRequest) -> Reply {
    let request = match body(req) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let Some(account) = service_account(server, namespace, name) else {
        return failure(404, "NotFound", format!("serviceaccounts \"{name}\" not found"));
    };
    let seconds = request["spec"]["expirationSeconds"].as_i64().unwrap_or(DEFAULT_SECONDS);
    if seconds < MIN_SECONDS {
        let why = format!(
            "spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less than 10 minutes"
        );
        return failure(422, "Invalid", why);
    }
    let audiences = match strings(&request["spec"]["audiences"]) {
        given if given.is_empty() => vec![API_AUDIENCE.to_string()],
        given => given,
    };
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds.min(MAX_SECONDS));
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let uid = account["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let issued =
        Issued { namespace: namespace.into(), name: name.into(), uid, audiences: audiences.clone(), expires };
    server.tokens.0.lock().unwrap().insert(token.clone(), issued);
    let mut reply = request;
    reply["apiVersion"] = json!("authentication.k8s.io/v1");
    reply["kind"] = json!("TokenRequest");
    reply["metadata"] = json!({ "name": name, "namespace": namespace });
    reply["spec"]["audiences"] = json!(audiences);
    reply["spec"]["expirationSeconds"] = json!(seconds.min(MAX_SECONDS));
    reply["status"] = json!({ "token": token, "expirationTimestamp": expires.to_string() });
    Reply::Json(201, reply)
}

/// Whose `token` is, for one of `audiences` (the API's when none are named).
fn authenticate(
    server: &ApiServer,
    token: &str,
    audiences: &[String],
) -> Result<(User, Vec<String>), String> {
    let tokens = server.tokens.0.lock().unwrap();
    let issued = tokens.get(token).ok_or("invalid bearer token")?;
    if issued.expires <= jiff::Timestamp::now() {
        return Err("the token has expired".into());
    }
    let wanted = if audiences.is_empty() { vec![API_AUDIENCE.to_string()] } else { audiences.to_vec() };
    let shared: Vec<String> = wanted.into_iter().filter(|a| issued.audiences.contains(a)).collect();
    if shared.is_empty() {
        return Err("the token is for another audience".into());
    }
    let account = service_account(server, &issued.namespace, &issued.name);
    let current_uid = account.as_ref().and_then(|a| a["metadata"]["uid"].as_str());
    if current_uid != Some(issued.uid.as_str()) {
        return Err(format!(
            "the service account {}/{} the token was made for is gone",
            issued.namespace, issued.name
        ));
    }
    Ok((User::service_account(&issued.namespace, &issued.name, &issued.uid), shared))
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`.
pub fn token_review(server: &ApiServer, req: &ApiRequest) -> Reply {
    let mut review = match body(req) {
        Ok(review) => review,
        Err(refused) => return refused,
    };
    let token = review["spec"]["token"].as_str().unwrap_or_default().to_string();
    let status = match authenticate(server, &token, &strings(&review["spec"]["audiences"])) {
        Ok((user, audiences)) => json!({
            "authenticated": true, "audiences": audiences,
            "user": { "username": user.name, "uid": user.uid, "groups": user.groups },
        }),
        Err(why) => json!({ "authenticated": false, "error": why }),
    };
    review["status"] = status;
    review["metadata"] = json!({ "creationTimestamp": null });
    Reply::Json(201, review)
}

fn policy(server: &ApiServer) -> Policy {
    let all = |plural: &str| server.store.list(&format!("rbac.authorization.k8s.io/{plural}"), None).0;
    Policy {
        cluster_roles: all("clusterroles"),
        cluster_role_bindings: all("clusterrolebindings"),
        roles: all("roles"),
        role_bindings: all("rolebindings"),
    }
}

/// `POST …/subjectaccessreviews` (`requester` is `None`: the user is in the spec) and
/// `POST …/selfsubjectaccessreviews` (the requester is the one asked about).
pub fn access_review(server: &ApiServer, req: &ApiRequest, requester: Option<User>) -> Reply {
    let mut review = match body(req) {
        Ok(review) => review,
        Err(refused) => return refused,
    };
    let spec = &review["spec"];
    if spec["resourceAttributes"].is_object() == spec["nonResourceAttributes"].is_object() {
        let why = "spec: exactly one of resourceAttributes and nonResourceAttributes must be given";
        return failure(422, "Invalid", why);
    }
    let user = match requester {
        Some(user) => user,
        None => {
            let name = spec["user"].as_str().unwrap_or_default().to_string();
            let groups = strings(&spec["groups"]);
            if name.is_empty() && groups.is_empty() {
                return failure(422, "Invalid", "spec.user: at least one of user or group must be specified");
            }
            User { name, uid: spec["uid"].as_str().unwrap_or_default().into(), groups }
        }
    };
    let decision = policy(server).decide(&user, &Attributes::from_spec(spec));
    review["status"] = json!({ "allowed": decision.allowed, "reason": decision.reason });
    review["metadata"] = json!({ "creationTimestamp": null });
    Reply::Json(201, review)
}

/// The user a request acts as: the one its impersonation headers name (the emulator's
/// administrator may impersonate anyone), else the administrator.
pub fn requester(req: &ApiRequest) -> User {
    let Some(name) = req.impersonate_user.clone() else { return User::admin() };
    let mut groups = req.impersonate_groups.clone();
    let account_namespace = name.strip_prefix("system:serviceaccount:").and_then(|r| r.split(':').next());
    if let Some(namespace) = account_namespace.filter(|_| groups.is_empty()) {
        groups = super::rbac::service_account_groups(namespace);
    }
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    User { name, uid: String::new(), groups }
}
