//! RBAC as kube-apiserver decides it: whether a user (name and groups) may do a verb on a
//! resource, from the Roles, ClusterRoles and their bindings in the store. Aggregated ClusterRoles
//! take the rules of the ClusterRoles their selectors match, as the aggregation controller would
//! have written them. `system:masters` may do everything, as on a cluster.

use serde_json::Value;

use super::select::Selector;

/// Who asks.
#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    /// The user a ServiceAccount's token stands for, with the groups kube-apiserver gives it.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> Self {
        User {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            uid: uid.to_string(),
            groups: service_account_groups(namespace),
        }
    }

    /// The emulator's own administrator: whoever holds the kubeconfig's token.
    pub fn admin() -> Self {
        let groups = vec!["system:masters".to_string(), "system:authenticated".to_string()];
        User { name: "kubernetes-admin".into(), uid: String::new(), groups }
    }
}

pub fn service_account_groups(namespace: &str) -> Vec<String> {
    let groups =
        ["system:serviceaccounts", &format!("system:serviceaccounts:{namespace}"), "system:authenticated"];
    groups.map(String::from).to_vec()
}

/// What is asked: a resource request (`namespace` empty for every namespace or a cluster-scoped
/// resource), or a non-resource path when `path` is set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
    pub path: Option<String>,
}

impl Attributes {
    /// From a SubjectAccessReview's `spec` (`resourceAttributes` or `nonResourceAttributes`).
    pub fn from_spec(spec: &Value) -> Self {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        if let Some(non_resource) = spec["nonResourceAttributes"].as_object() {
            let verb = text(&non_resource.get("verb").cloned().unwrap_or_default());
            let path = text(&non_resource.get("path").cloned().unwrap_or_default());
            return Attributes { verb, path: Some(path), ..Attributes::default() };
        }
        let r = &spec["resourceAttributes"];
        Attributes {
            verb: text(&r["verb"]),
            group: text(&r["group"]),
            resource: text(&r["resource"]),
            subresource: text(&r["subresource"]),
            name: text(&r["name"]),
            namespace: text(&r["namespace"]),
            path: None,
        }
    }
}

/// Every RBAC object in the store.
pub struct Policy {
    pub cluster_roles: Vec<Value>,
    pub cluster_role_bindings: Vec<Value>,
    pub roles: Vec<Value>,
    pub role_bindings: Vec<Value>,
}

/// The answer, with kube-apiserver's kind of reason.
#[derive(Debug, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn names(v: &Value, wanted: &str) -> bool {
    strings(v).any(|s| s == "*" || s == wanted)
}

fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    if !names(&rule["verbs"], &attrs.verb) {
        return false;
    }
    if let Some(path) = &attrs.path {
        let matches = |url: &str| url == path || url.strip_suffix('*').is_some_and(|p| path.starts_with(p));
        return strings(&rule["nonResourceURLs"]).any(matches);
    }
    let resource = match attrs.subresource.as_str() {
        "" => attrs.resource.clone(),
        sub => format!("{}/{sub}", attrs.resource),
    };
    let resource_matches = strings(&rule["resources"]).any(|r| {
        r == "*"
            || r == resource
            || (!attrs.subresource.is_empty()
                && (r == format!("{}/*", attrs.resource) || r == format!("*/{}", attrs.subresource)))
    });
    let named = rule["resourceNames"].as_array().is_none_or(|n| n.is_empty())
        || strings(&rule["resourceNames"]).any(|n| n == attrs.name);
    names(&rule["apiGroups"], &attrs.group) && resource_matches && named
}

fn binds(binding: &Value, user: &User) -> bool {
    binding["subjects"].as_array().into_iter().flatten().any(|subject| {
        let name = subject["name"].as_str().unwrap_or_default();
        match subject["kind"].as_str() {
            Some("User") => name == user.name,
            Some("Group") => user.groups.iter().any(|g| g == name),
            Some("ServiceAccount") => {
                let namespace = subject["namespace"].as_str().unwrap_or_default();
                user.name == format!("system:serviceaccount:{namespace}:{name}")
            }
            _ => false,
        }
    })
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

impl Policy {
    /// A ClusterRole's rules, with those aggregated into it.
    fn cluster_role_rules(&self, name: &str) -> Vec<&Value> {
        let Some(role) = self.cluster_roles.iter().find(|r| name_of(r) == name) else { return vec![] };
        let mut rules: Vec<&Value> = role["rules"].as_array().into_iter().flatten().collect();
        let selectors = role["aggregationRule"]["clusterRoleSelectors"].as_array().into_iter().flatten();
        for selector in selectors.map(Selector::from_label_selector) {
            let aggregated = self.cluster_roles.iter().filter(|r| name_of(r) != name && selector.matches(r));
            rules.extend(aggregated.flat_map(|r| r["rules"].as_array().into_iter().flatten()));
        }
        rules
    }

    fn role_rules(&self, namespace: &str, name: &str) -> Vec<&Value> {
        let in_namespace = |r: &&Value| r["metadata"]["namespace"].as_str() == Some(namespace);
        let role = self.roles.iter().filter(in_namespace).find(|r| name_of(r) == name);
        role.map(|r| r["rules"].as_array().into_iter().flatten().collect()).unwrap_or_default()
    }

    pub fn decide(&self, user: &User, attrs: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == "system:masters") {
            return Decision { allowed: true, reason: "the user is in system:masters".into() };
        }
        let allows = |rules: Vec<&Value>| rules.into_iter().any(|rule| rule_allows(rule, attrs));
        for binding in self.cluster_role_bindings.iter().filter(|b| binds(b, user)) {
            let role = binding["roleRef"]["name"].as_str().unwrap_or_default();
            if allows(self.cluster_role_rules(role)) {
                let why = format!(
                    "RBAC: allowed by ClusterRoleBinding \"{}\" of ClusterRole \"{role}\"",
                    name_of(binding)
                );
                return Decision { allowed: true, reason: why };
            }
        }
        let namespaced = attrs.path.is_none() && !attrs.namespace.is_empty();
        let in_namespace = |b: &&Value| b["metadata"]["namespace"].as_str() == Some(attrs.namespace.as_str());
        for binding in
            self.role_bindings.iter().filter(|_| namespaced).filter(in_namespace).filter(|b| binds(b, user))
        {
            let role = binding["roleRef"]["name"].as_str().unwrap_or_default();
            let (kind, rules) = match binding["roleRef"]["kind"].as_str() {
                Some("ClusterRole") => ("ClusterRole", self.cluster_role_rules(role)),
                _ => ("Role", self.role_rules(&attrs.namespace, role)),
            };
            if allows(rules) {
                let why = format!(
                    "RBAC: allowed by RoleBinding \"{}/{}\" of {kind} \"{role}\"",
                    attrs.namespace,
                    name_of(binding)
                );
                return Decision { allowed: true, reason: why };
            }
        }
        Decision { allowed: false, reason: String::new() }
    }
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
