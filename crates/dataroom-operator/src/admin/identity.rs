//! Kubernetes identities on `/api`: a bearer token that is not an admin key (admin keys begin
//! with `drk_`) is a Kubernetes token. `TokenReview` says who it is, and `SubjectAccessReview`
//! whether that user may do the operation, asked as a verb on a resource of the operator's kinds
//! (see [`rbac_question`]), so that cluster RBAC governs the API as it governs kubectl. Both
//! answers are kept for a short time (`ttl`, 10 s by default): a revoked binding or a deleted
//! ServiceAccount stops working within it.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::scope::Scope;

/// The ClusterRoles that answer these questions for people (viewer, lifecycle, exec, admin): the
/// sandbox creates them, and the chart ships a copy (`files/user-roles.yaml`; a test keeps the two
/// the same).
pub const USER_ROLES: &str = include_str!("user-roles.yaml");

/// The API group the questions name.
pub const GROUP: &str = "dataroom.dev";

/// What RBAC is asked for `scope`: verb, resource and subresource in [`GROUP`]. `rooms` is true
/// for the fleet routes, which act on DataRooms. Operations that are not plain reads are `create`
/// on a subresource named after the scope, as `pods/exec` is for `kubectl exec`.
pub fn rbac_question(scope: Scope, rooms: bool) -> (&'static str, &'static str, &'static str) {
    let kind = if rooms { "datarooms" } else { "ec2instances" };
    match scope {
        Scope::Read => ("get", kind, ""),
        Scope::Lifecycle => ("create", kind, "lifecycle"),
        Scope::Exec => ("create", kind, "exec"),
        Scope::Files => ("create", kind, "files"),
        Scope::Images => ("create", kind, "images"),
        Scope::Keypairs => ("create", kind, "keypairs"),
        Scope::Audit => ("get", kind, "audit"),
        Scope::Budget => ("update", "ec2budgets", ""),
    }
}

/// Who a token is, as TokenReview says.
#[derive(Clone, Debug, PartialEq)]
pub struct Person {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// Why a token names no one.
#[derive(Debug)]
pub enum Unrecognised {
    /// The cluster does not accept it: a failed login.
    Refused(String),
    /// The cluster could not be asked.
    Unavailable(ApiError),
}

/// Where a person may do an operation: everywhere, or in these namespaces.
#[derive(Clone, Debug, PartialEq)]
pub enum Reach {
    Everywhere,
    Namespaces(BTreeSet<String>),
}

/// Answers kept for `ttl`; the expired ones are dropped when the map grows large.
struct Cache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

/// Entries after which expired ones are swept (a flood of distinct tokens cannot grow it unbounded:
/// only authenticated tokens are kept).
const SWEEP_AT: usize = 10_000;

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    fn new(ttl: Duration) -> Self {
        Cache { ttl, entries: Mutex::default() }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap();
        entries.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= SWEEP_AT {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        entries.insert(key, (Instant::now(), value));
    }
}

pub struct Identities {
    client: kube::Client,
    people: Cache<[u8; 32], Person>,
    access: Cache<(String, Vec<String>, Scope, bool), Option<Reach>>,
}

fn unavailable(what: &str, e: kube::Error) -> ApiError {
    tracing::warn!(error = %e, "{what} failed");
    let why = format!("the Kubernetes API did not answer the {what}; try again shortly");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "identity_unavailable", why).retry_after(1)
}

impl Identities {
    pub fn new(client: kube::Client, ttl: Duration) -> Self {
        Identities { client, people: Cache::new(ttl), access: Cache::new(ttl) }
    }

    /// Who `token` is, as the cluster's TokenReview says.
    pub async fn person(&self, token: &str) -> Result<Person, Unrecognised> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(person) = self.people.get(&hash) {
            return Ok(person);
        }
        let review = TokenReview {
            spec: TokenReviewSpec { token: token.to_string(), ..Default::default() },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await;
        let answer = answer.map_err(|e| Unrecognised::Unavailable(unavailable("TokenReview", e)))?;
        let status = answer.status.unwrap_or_default();
        let user = status.user.filter(|_| status.authenticated == Some(true));
        let Some(user) = user else {
            let why = "the bearer token is neither an admin key nor a Kubernetes token the cluster accepts";
            return Err(Unrecognised::Refused(why.into()));
        };
        let person = Person {
            username: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
        };
        self.people.put(hash, person.clone());
        Ok(person)
    }

    async fn allowed(
        &self,
        person: &Person,
        scope: Scope,
        rooms: bool,
        namespace: &str,
    ) -> Result<bool, ApiError> {
        let (verb, resource, subresource) = rbac_question(scope, rooms);
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(person.username.clone()),
                uid: Some(person.uid.clone()).filter(|u| !u.is_empty()),
                groups: Some(person.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(GROUP.into()),
                    resource: Some(resource.into()),
                    subresource: Some(subresource.into()).filter(|s: &String| !s.is_empty()),
                    namespace: Some(namespace.into()).filter(|n: &String| !n.is_empty()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await;
        let status = answer.map_err(|e| unavailable("SubjectAccessReview", e))?.status.unwrap_or_default();
        Ok(status.allowed && status.denied != Some(true))
    }

    /// Where `person` may do `scope`'s operation: everywhere when RBAC allows it cluster-wide,
    /// else in those of `namespaces` where it does; `None` where it is allowed nowhere. The
    /// budget is cluster scoped, so only a cluster-wide grant counts for it.
    pub async fn reach(
        &self,
        person: &Person,
        scope: Scope,
        rooms: bool,
        namespaces: impl FnOnce() -> BTreeSet<String>,
    ) -> Result<Option<Reach>, ApiError> {
        let key = (person.username.clone(), person.groups.clone(), scope, rooms);
        if let Some(reach) = self.access.get(&key) {
            return Ok(reach);
        }
        let reach = if self.allowed(person, scope, rooms, "").await? {
            Some(Reach::Everywhere)
        } else if scope == Scope::Budget {
            None
        } else {
            let asked = namespaces().into_iter().map(|ns| async move {
                let allowed = self.allowed(person, scope, rooms, &ns).await;
                allowed.map(|yes| yes.then_some(ns))
            });
            let answers = futures::future::try_join_all(asked).await?;
            let allowed: BTreeSet<String> = answers.into_iter().flatten().collect();
            (!allowed.is_empty()).then_some(Reach::Namespaces(allowed))
        };
        self.access.put(key, reach.clone());
        Ok(reach)
    }
}

/// 403 for a person RBAC allows `scope`'s operation nowhere, naming what was asked.
pub fn refused(person: &Person, scope: Scope, rooms: bool) -> ApiError {
    let (verb, resource, subresource) = rbac_question(scope, rooms);
    let resource =
        if subresource.is_empty() { resource.to_string() } else { format!("{resource}/{subresource}") };
    let why = format!(
        "this operation needs the `{}` scope, which for a Kubernetes identity is RBAC's `{verb}` on \
         `{resource}` ({GROUP}); {} may not do that in any namespace this operator serves",
        scope.name(),
        person.username
    );
    ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scope_asks_rbac_one_question_about_the_operators_kinds() {
        let asked: Vec<_> = Scope::ALL.iter().map(|s| rbac_question(*s, false)).collect();
        assert_eq!(
            asked,
            [
                ("get", "ec2instances", ""),
                ("create", "ec2instances", "lifecycle"),
                ("create", "ec2instances", "exec"),
                ("create", "ec2instances", "files"),
                ("create", "ec2instances", "images"),
                ("create", "ec2instances", "keypairs"),
                ("update", "ec2budgets", ""),
                ("get", "ec2instances", "audit"),
            ]
        );
        assert_eq!(rbac_question(Scope::Lifecycle, true), ("create", "datarooms", "lifecycle"));
        assert_eq!(rbac_question(Scope::Budget, true), ("update", "ec2budgets", ""));
        let person =
            Person { username: "system:serviceaccount:a:b".into(), uid: String::new(), groups: vec![] };
        let refused = refused(&person, Scope::Exec, false);
        assert_eq!((refused.status.as_u16(), refused.code), (403, "insufficient_scope"));
        assert!(refused.detail.contains("`create` on `ec2instances/exec`"), "{}", refused.detail);
    }

    #[test]
    fn cached_answers_last_their_time_only() {
        let cache = Cache::new(Duration::from_millis(50));
        cache.put("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&"a"), None);
    }
}
