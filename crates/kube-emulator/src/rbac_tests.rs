use serde_json::json;

use super::*;

fn policy() -> Policy {
    let rule = |verbs: &[&str], resources: &[&str]| json!({ "apiGroups": ["dataroom.dev"], "resources": resources, "verbs": verbs });
    Policy {
        cluster_roles: vec![
            json!({ "metadata": { "name": "viewer", "labels": { "aggregate-to-view": "true" } },
                    "rules": [rule(&["get", "list", "watch"], &["ec2instances", "datarooms"])] }),
            json!({ "metadata": { "name": "exec" },
                    "rules": [rule(&["create"], &["ec2instances/exec"])] }),
            json!({ "metadata": { "name": "view" },
                    "aggregationRule": { "clusterRoleSelectors": [{ "matchLabels": { "aggregate-to-view": "true" } }] } }),
            json!({ "metadata": { "name": "named" },
                    "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"], "verbs": ["get"] }] }),
            json!({ "metadata": { "name": "healthz" },
                    "rules": [{ "nonResourceURLs": ["/healthz", "/logs/*"], "verbs": ["get"] }] }),
            json!({ "metadata": { "name": "subresources" },
                    "rules": [rule(&["*"], &["*/files", "datarooms/*"])] }),
        ],
        cluster_role_bindings: vec![json!({
            "metadata": { "name": "everyone-views" }, "roleRef": { "kind": "ClusterRole", "name": "view" },
            "subjects": [{ "kind": "Group", "name": "viewers" }, { "kind": "User", "name": "sam" }],
        })],
        roles: vec![json!({ "metadata": { "name": "local", "namespace": "team-a" },
                            "rules": [rule(&["update"], &["ec2budgets"])] })],
        role_bindings: [
            (
                "team-a",
                "ClusterRole",
                "exec",
                json!({ "kind": "ServiceAccount", "name": "ci", "namespace": "team-a" }),
            ),
            ("team-a", "Role", "local", json!({ "kind": "User", "name": "ann" })),
            ("team-a", "ClusterRole", "named", json!({ "kind": "User", "name": "ann" })),
            ("team-a", "ClusterRole", "subresources", json!({ "kind": "User", "name": "ann" })),
            ("team-a", "ClusterRole", "healthz", json!({ "kind": "User", "name": "ann" })),
        ]
        .into_iter()
        .enumerate()
        .map(|(n, (namespace, kind, role, subject))| {
            json!({ "metadata": { "name": format!("b{n}"), "namespace": namespace },
                    "roleRef": { "kind": kind, "name": role }, "subjects": [subject] })
        })
        .collect(),
    }
}

fn asks(verb: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let group = if resource == "configmaps" { "" } else { "dataroom.dev" };
    Attributes {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        name: name.into(),
        namespace: namespace.into(),
        path: None,
    }
}

#[test]
fn rbac_decides_as_kube_apiserver_does() {
    let policy = policy();
    let ci = User::service_account("team-a", "ci", "u1");
    let other_sa = User::service_account("team-b", "ci", "u2");
    let ann = User { name: "ann".into(), uid: String::new(), groups: vec!["system:authenticated".into()] };
    let viewer = User { name: "vic".into(), uid: String::new(), groups: vec!["viewers".into()] };
    let sam = User { name: "sam".into(), uid: String::new(), groups: vec![] };
    let cases = [
        // A ClusterRoleBinding of an aggregated role: the aggregated rules, every namespace.
        (&viewer, asks("get", "ec2instances", "", ""), true),
        (&viewer, asks("list", "datarooms", "team-z", ""), true),
        (&sam, asks("get", "ec2instances", "team-a", "web"), true),
        (&viewer, asks("create", "ec2instances/exec", "team-a", "web"), false),
        (&viewer, asks("get", "ec2instances/exec", "", ""), false),
        // A RoleBinding of a ClusterRole to a ServiceAccount: in its namespace only.
        (&ci, asks("create", "ec2instances/exec", "team-a", "web"), true),
        (&ci, asks("create", "ec2instances/exec", "team-b", "web"), false),
        (&ci, asks("create", "ec2instances/exec", "", ""), false),
        (&ci, asks("create", "ec2instances", "team-a", ""), false),
        (&other_sa, asks("create", "ec2instances/exec", "team-a", "web"), false),
        // A Role, in its namespace.
        (&ann, asks("update", "ec2budgets", "team-a", ""), true),
        (&ann, asks("update", "ec2budgets", "team-b", ""), false),
        // resourceNames.
        (&ann, asks("get", "configmaps", "team-a", "one"), true),
        (&ann, asks("get", "configmaps", "team-a", "two"), false),
        // `*/sub` and `resource/*`.
        (&ann, asks("create", "ec2instances/files", "team-a", ""), true),
        (&ann, asks("create", "datarooms/exec", "team-a", ""), true),
        (&ann, asks("create", "ec2instances/exec", "team-a", ""), false),
        (&ann, asks("get", "datarooms", "team-a", ""), false),
        // system:masters.
        (&User::admin(), asks("delete", "anything", "", ""), true),
    ];
    for (user, attrs, allowed) in cases {
        let decision = policy.decide(user, &attrs);
        assert_eq!(decision.allowed, allowed, "{} {attrs:?}: {}", user.name, decision.reason);
        assert_eq!(decision.reason.is_empty(), !allowed);
    }
}

#[test]
fn non_resource_paths_match_exactly_or_by_prefix() {
    let policy = policy();
    let ann = User { name: "ann".into(), uid: String::new(), groups: vec![] };
    let path = |p: &str| Attributes { verb: "get".into(), path: Some(p.into()), ..Attributes::default() };
    // Non-resource URLs are granted only by ClusterRoleBindings.
    assert!(!policy.decide(&ann, &path("/healthz")).allowed);
    let mut cluster = policy;
    cluster.cluster_role_bindings.push(json!({
        "metadata": { "name": "h" }, "roleRef": { "kind": "ClusterRole", "name": "healthz" },
        "subjects": [{ "kind": "User", "name": "ann" }],
    }));
    assert!(cluster.decide(&ann, &path("/healthz")).allowed);
    assert!(cluster.decide(&ann, &path("/logs/a/b")).allowed);
    assert!(!cluster.decide(&ann, &path("/healthz/x")).allowed);
}

#[test]
fn review_specs_read_into_attributes() {
    let spec = json!({ "resourceAttributes": { "verb": "create", "group": "dataroom.dev", "resource": "ec2instances",
                                              "subresource": "exec", "namespace": "ns" } });
    assert_eq!(Attributes::from_spec(&spec), asks("create", "ec2instances/exec", "ns", ""));
    let spec = json!({ "nonResourceAttributes": { "verb": "get", "path": "/metrics" } });
    assert_eq!(Attributes::from_spec(&spec).path.as_deref(), Some("/metrics"));
}
