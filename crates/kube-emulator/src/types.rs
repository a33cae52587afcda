//! The resource types the emulator serves: built-ins, plus whatever CRDs are created through it.

use serde_json::{Value, json};

/// One served resource type (one group/version/plural).
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Has a `/status` subresource: the main endpoint ignores status, `/status` ignores the rest.
    pub status_subresource: bool,
    /// The OpenAPI v3 schema of a custom resource, enforced on every write.
    pub schema: Option<Value>,
    pub printer_columns: Vec<Value>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Storage identity: the same objects whatever version they are read through.
    pub fn key(&self) -> String {
        // Events are one store served through two APIs.
        if self.plural == "events" && (self.group.is_empty() || self.group == "events.k8s.io") {
            return "events.k8s.io/events".into();
        }
        format!("{}/{}", self.group, self.plural)
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }

    /// The entry of this type in an `APIResourceList`, plus its status subresource entry.
    pub fn discovery(&self) -> Vec<Value> {
        let mut entries = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs(),
            "shortNames": self.short_names,
            "categories": self.categories,
        })];
        if self.status_subresource {
            entries.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        entries
    }
}

fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    inert: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if inert || group.is_empty() { vec![] } else { vec!["all".into()] },
        status_subresource: matches!(
            kind,
            "Namespace" | "Deployment" | "Service" | "CustomResourceDefinition" | "PodDisruptionBudget"
        ),
        schema: None,
        printer_columns: vec![],
    }
}

/// The built-in types the operator and its chart use; the `inert` ones (Deployments, Services,
/// RBAC, …) are stored and served so rendered manifests apply, but nothing acts on them.
pub fn builtins() -> Vec<ResourceType> {
    let active = [
        ("", "v1", "Namespace", "namespaces", false, &["ns"][..]),
        ("", "v1", "Secret", "secrets", true, &[][..]),
        ("", "v1", "ConfigMap", "configmaps", true, &["cm"][..]),
        ("", "v1", "Event", "events", true, &["ev"][..]),
        ("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"][..]),
        ("events.k8s.io", "v1", "Event", "events", true, &["ev"][..]),
        ("coordination.k8s.io", "v1", "Lease", "leases", true, &[][..]),
        (
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"][..],
        ),
    ];
    let inert = [
        ("", "v1", "Service", "services", true, &["svc"][..]),
        ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", true, &[][..]),
        ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true, &["pvc"][..]),
        ("", "v1", "Pod", "pods", true, &["po"][..]),
        ("apps", "v1", "Deployment", "deployments", true, &["deploy"][..]),
        ("rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[][..]),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true, &[][..]),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false, &[][..]),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false, &[][..]),
        ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true, &["netpol"][..]),
        ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true, &["pdb"][..]),
        ("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", true, &[][..]),
        ("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules", true, &[][..]),
        ("cert-manager.io", "v1", "Certificate", "certificates", true, &["cert", "certs"][..]),
    ];
    let active = active.iter().map(|(g, v, k, p, ns, s)| builtin(g, v, k, p, *ns, s, false));
    let inert = inert.iter().map(|(g, v, k, p, ns, s)| builtin(g, v, k, p, *ns, s, true));
    active.chain(inert).collect()
}

/// The served types a CRD object defines (one per served version).
pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .map(|v| ResourceType {
            group: spec["group"].as_str().unwrap_or_default().into(),
            version: v["name"].as_str().unwrap_or_default().into(),
            kind: names["kind"].as_str().unwrap_or_default().into(),
            plural: names["plural"].as_str().unwrap_or_default().into(),
            singular: names["singular"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| names["kind"].as_str().unwrap_or_default().to_ascii_lowercase()),
            namespaced: spec["scope"].as_str() != Some("Cluster"),
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: v["subresources"]["status"].is_object(),
            schema: Some(v["schema"]["openAPIV3Schema"].clone()).filter(|s| s.is_object()),
            printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
        })
        .collect()
}
