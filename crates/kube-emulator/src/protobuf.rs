//! Request bodies in Kubernetes' protobuf encoding, which kubectl's typed commands send
//! (`kubectl create namespace|secret|configmap|serviceaccount|token|rolebinding|…`,
//! `kubectl auth can-i`), read
//! into the JSON the handlers take. Only the kinds those commands write are read; the rest are
//! refused with a message that says to use `kubectl apply`. Answers are always JSON, which every
//! client accepts.

use k8s_pb::api::{authentication, authorization, core, rbac};
use k8s_pb::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Map, Value, json};

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The envelope's first bytes.
const MAGIC: &[u8] = b"k8s\x00";

/// A JSON object of the fields that are set.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let set = fields.into_iter().filter(|(_, v)| match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    });
    Value::Object(set.map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())
}

fn metadata(meta: Option<ObjectMeta>) -> Value {
    let meta = meta.unwrap_or_default();
    object([
        ("name", json!(meta.name)),
        ("generateName", json!(meta.generate_name)),
        ("namespace", json!(meta.namespace)),
        ("labels", json!(meta.labels)),
        ("annotations", json!(meta.annotations)),
        ("resourceVersion", json!(meta.resource_version)),
    ])
}

/// Byte values as JSON carries them: base64.
fn base64_values(
    values: std::collections::BTreeMap<String, Vec<u8>>,
) -> std::collections::BTreeMap<String, String> {
    use base64::Engine as _;
    values.into_iter().map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v))).collect()
}

fn selector(selector: LabelSelector) -> Value {
    let expressions: Vec<Value> = selector
        .match_expressions
        .into_iter()
        .map(|e| {
            object([("key", json!(e.key)), ("operator", json!(e.operator)), ("values", json!(e.values))])
        })
        .collect();
    object([("matchLabels", json!(selector.match_labels)), ("matchExpressions", json!(expressions))])
}

fn rules(rules: Vec<rbac::v1::PolicyRule>) -> Value {
    let rules = rules.into_iter().map(|r| {
        object([
            ("verbs", json!(r.verbs)),
            ("apiGroups", json!(r.api_groups)),
            ("resources", json!(r.resources)),
            ("resourceNames", json!(r.resource_names)),
            ("nonResourceURLs", json!(r.non_resource_ur_ls)),
        ])
    });
    Value::Array(rules.collect())
}

fn binding(
    subjects: Vec<rbac::v1::Subject>,
    role_ref: Option<rbac::v1::RoleRef>,
) -> [(&'static str, Value); 2] {
    let subjects = subjects.into_iter().map(|s| {
        object([
            ("kind", json!(s.kind)),
            ("apiGroup", json!(s.api_group)),
            ("name", json!(s.name)),
            ("namespace", json!(s.namespace)),
        ])
    });
    let role_ref = role_ref.unwrap_or_default();
    let role_ref = object([
        ("apiGroup", json!(role_ref.api_group)),
        ("kind", json!(role_ref.kind)),
        ("name", json!(role_ref.name)),
    ]);
    [("subjects", Value::Array(subjects.collect())), ("roleRef", role_ref)]
}

fn resource_attributes(a: Option<authorization::v1::ResourceAttributes>) -> Value {
    a.map_or(Value::Null, |a| {
        object([
            ("namespace", json!(a.namespace)),
            ("verb", json!(a.verb)),
            ("group", json!(a.group)),
            ("version", json!(a.version)),
            ("resource", json!(a.resource)),
            ("subresource", json!(a.subresource)),
            ("name", json!(a.name)),
        ])
    })
}

fn non_resource_attributes(a: Option<authorization::v1::NonResourceAttributes>) -> Value {
    a.map_or(Value::Null, |a| object([("path", json!(a.path)), ("verb", json!(a.verb))]))
}

/// The JSON object a protobuf body holds, or why it cannot be read.
pub fn to_json(body: &[u8]) -> Result<Value, String> {
    let envelope = body.strip_prefix(MAGIC).ok_or("the protobuf body lacks the k8s envelope")?;
    let unknown = Unknown::decode(envelope).map_err(|e| format!("the protobuf envelope: {e}"))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let (api_version, kind) = (type_meta.api_version.unwrap_or_default(), type_meta.kind.unwrap_or_default());
    let raw = unknown.raw.unwrap_or_default();
    let bad = |e: prost::DecodeError| format!("the protobuf {kind}: {e}");
    let body = match kind.as_str() {
        "Namespace" => {
            let ns = core::v1::Namespace::decode(&raw[..]).map_err(bad)?;
            object([("metadata", metadata(ns.metadata))])
        }
        "Secret" => {
            let secret = core::v1::Secret::decode(&raw[..]).map_err(bad)?;
            object([
                ("metadata", metadata(secret.metadata)),
                ("type", json!(secret.r#type)),
                ("immutable", json!(secret.immutable)),
                ("data", json!(base64_values(secret.data))),
                ("stringData", json!(secret.string_data)),
            ])
        }
        "ConfigMap" => {
            let map = core::v1::ConfigMap::decode(&raw[..]).map_err(bad)?;
            object([
                ("metadata", metadata(map.metadata)),
                ("immutable", json!(map.immutable)),
                ("data", json!(map.data)),
                ("binaryData", json!(base64_values(map.binary_data))),
            ])
        }
        "ServiceAccount" => {
            let sa = core::v1::ServiceAccount::decode(&raw[..]).map_err(bad)?;
            let automount = json!(sa.automount_service_account_token);
            object([("metadata", metadata(sa.metadata)), ("automountServiceAccountToken", automount)])
        }
        "Role" => {
            let role = rbac::v1::Role::decode(&raw[..]).map_err(bad)?;
            object([("metadata", metadata(role.metadata)), ("rules", rules(role.rules))])
        }
        "ClusterRole" => {
            let role = rbac::v1::ClusterRole::decode(&raw[..]).map_err(bad)?;
            let aggregation = role.aggregation_rule.map_or(Value::Null, |a| {
                let selectors: Vec<Value> = a.cluster_role_selectors.into_iter().map(selector).collect();
                json!({ "clusterRoleSelectors": selectors })
            });
            let rules = rules(role.rules);
            object([
                ("metadata", metadata(role.metadata)),
                ("rules", rules),
                ("aggregationRule", aggregation),
            ])
        }
        "RoleBinding" => {
            let b = rbac::v1::RoleBinding::decode(&raw[..]).map_err(bad)?;
            let [subjects, role_ref] = binding(b.subjects, b.role_ref);
            object([("metadata", metadata(b.metadata)), subjects, role_ref])
        }
        "ClusterRoleBinding" => {
            let b = rbac::v1::ClusterRoleBinding::decode(&raw[..]).map_err(bad)?;
            let [subjects, role_ref] = binding(b.subjects, b.role_ref);
            object([("metadata", metadata(b.metadata)), subjects, role_ref])
        }
        "TokenRequest" => {
            let request = authentication::v1::TokenRequest::decode(&raw[..]).map_err(bad)?;
            let spec = request.spec.unwrap_or_default();
            let spec = object([
                ("audiences", json!(spec.audiences)),
                ("expirationSeconds", json!(spec.expiration_seconds)),
            ]);
            object([("metadata", metadata(request.metadata)), ("spec", spec)])
        }
        "SelfSubjectAccessReview" => {
            let review = authorization::v1::SelfSubjectAccessReview::decode(&raw[..]).map_err(bad)?;
            let spec = review.spec.unwrap_or_default();
            let spec = object([
                ("resourceAttributes", resource_attributes(spec.resource_attributes)),
                ("nonResourceAttributes", non_resource_attributes(spec.non_resource_attributes)),
            ]);
            object([("metadata", metadata(review.metadata)), ("spec", spec)])
        }
        "SubjectAccessReview" => {
            let review = authorization::v1::SubjectAccessReview::decode(&raw[..]).map_err(bad)?;
            let spec = review.spec.unwrap_or_default();
            let spec = object([
                ("resourceAttributes", resource_attributes(spec.resource_attributes)),
                ("nonResourceAttributes", non_resource_attributes(spec.non_resource_attributes)),
                ("user", json!(spec.user)),
                ("groups", json!(spec.groups)),
                ("uid", json!(spec.uid)),
            ]);
            object([("metadata", metadata(review.metadata)), ("spec", spec)])
        }
        other => {
            return Err(format!(
                "this emulator reads protobuf bodies only for the kinds kubectl's create commands write, \
                 not {other}; send JSON or YAML (kubectl apply)"
            ));
        }
    };
    let mut body = body;
    body["apiVersion"] = json!(api_version);
    body["kind"] = json!(kind);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let type_meta = k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        };
        let unknown = Unknown { type_meta: Some(type_meta), raw: Some(raw), ..Default::default() };
        [MAGIC.to_vec(), unknown.encode_to_vec()].concat()
    }

    #[test]
    fn protobuf_bodies_read_as_the_json_kubectl_would_have_sent() {
        let binding = rbac::v1::RoleBinding {
            metadata: Some(ObjectMeta { name: Some("ci-exec".into()), ..Default::default() }),
            subjects: vec![rbac::v1::Subject {
                kind: Some("ServiceAccount".into()),
                name: Some("ci".into()),
                namespace: Some("team-a".into()),
                api_group: Some(String::new()),
            }],
            role_ref: Some(rbac::v1::RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: Some("ClusterRole".into()),
                name: Some("exec".into()),
            }),
        };
        let body = envelope("rbac.authorization.k8s.io/v1", "RoleBinding", binding.encode_to_vec());
        assert_eq!(
            to_json(&body).unwrap(),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": { "name": "ci-exec" },
                "subjects": [{ "kind": "ServiceAccount", "name": "ci", "namespace": "team-a" }],
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "exec" },
            })
        );
        let review = authorization::v1::SelfSubjectAccessReview {
            spec: Some(authorization::v1::SelfSubjectAccessReviewSpec {
                resource_attributes: Some(authorization::v1::ResourceAttributes {
                    verb: Some("create".into()),
                    resource: Some("ec2instances".into()),
                    subresource: Some("exec".into()),
                    ..Default::default()
                }),
                non_resource_attributes: None,
            }),
            ..Default::default()
        };
        let body = envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", review.encode_to_vec());
        let read = to_json(&body).unwrap();
        assert_eq!(read["spec"]["resourceAttributes"]["subresource"], "exec");
        assert!(read["spec"].get("nonResourceAttributes").is_none());
    }

    #[test]
    fn secret_bytes_read_as_base64_as_json_carries_them() {
        let secret = core::v1::Secret {
            metadata: Some(ObjectMeta { name: Some("s".into()), ..Default::default() }),
            data: [("a".to_string(), b"b\x00".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let read = to_json(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
        assert_eq!(read["data"], json!({ "a": "YgA=" }));
        assert_eq!((read["type"].as_str(), read.get("stringData")), (Some("Opaque"), None));
    }

    #[test]
    fn other_kinds_and_broken_bodies_are_refused_with_a_reason() {
        let pod = envelope("v1", "Pod", vec![]);
        assert!(to_json(&pod).unwrap_err().contains("not Pod"));
        assert!(to_json(b"{}").unwrap_err().contains("envelope"));
        let broken = envelope("v1", "Namespace", vec![0x0a, 0x05]);
        assert!(to_json(&broken).unwrap_err().contains("the protobuf Namespace"));
    }
}
