//! Kubernetes identities in the emulator: a ServiceAccount bound to one of the user ClusterRoles
//! (`dataroom_sandbox::install_user_roles` creates them) with its token, made through the API as
//! kubectl would.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PostParams};
use serde_json::json;

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
