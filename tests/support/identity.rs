//! Kubernetes identities in the emulator: the chart's user ClusterRoles, and a ServiceAccount bound
//! to one of them with its token, made through the API as kubectl would.

use dataroom_operator::admin::identity::USER_ROLES;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, PostParams};
use serde_json::json;

/// Creates the ClusterRoles the chart ships (dataroom-viewer, -lifecycle, -exec, -admin).
pub async fn install_user_roles(client: &kube::Client) {
    for doc in USER_ROLES.split("\n---\n") {
        let role: ClusterRole = serde_yaml::from_str(doc).unwrap();
        Api::<ClusterRole>::all(client.clone()).create(&PostParams::default(), &role).await.unwrap();
    }
}

/// A ServiceAccount `namespace/name` bound cluster-wide to the ClusterRole `role`, and a token of it.
pub async fn bound_token(client: &kube::Client, namespace: &str, name: &str, role: &str) -> String {
    let create = PostParams::default();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let account: ServiceAccount = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    accounts.create(&create, &account).await.unwrap();
    let binding = json!({
        "metadata": { "name": format!("{namespace}-{name}") },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
        "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": namespace }],
    });
    let binding: ClusterRoleBinding = serde_json::from_value(binding).unwrap();
    Api::<ClusterRoleBinding>::all(client.clone()).create(&create, &binding).await.unwrap();
    let request = TokenRequest { spec: Some(TokenRequestSpec::default()), ..Default::default() };
    let token = accounts.create_token_request(name, &create, &request).await.unwrap();
    token.status.unwrap().token.unwrap()
}
