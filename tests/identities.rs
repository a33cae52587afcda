//! Kubernetes identities on the admin API, tried as their users and their attackers would: a
//! ServiceAccount token made with the real `kubectl create token` is refused until RBAC grants it,
//! reaches only the namespaces its bindings cover, agrees with `kubectl auth can-i` at every step,
//! is named in the audit log, and stops working when its binding or its ServiceAccount goes.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::sandbox::{Sandbox, http_post_json, http_request};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ec2instance.yaml");
const ACCOUNT: &str = "system:serviceaccount:team-a:ci";

struct Caller<'a> {
    sandbox: &'a Sandbox,
    token: String,
}

impl Caller<'_> {
    fn get(&self, path: &str) -> (u16, Value) {
        let auth = format!("Authorization: Bearer {}\r\n", self.token);
        let (status, body) =
            http_request("GET", &format!("{}{path}", self.sandbox.admin), &auth, "").unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    fn exec(&self, id: &str, command: &str) -> (u16, Value) {
        let auth = format!("Authorization: Bearer {}\r\n", self.token);
        let url = format!("{}/api/ec2/instances/{id}/exec", self.sandbox.admin);
        let (status, body) =
            http_post_json(&url, &auth, &serde_json::json!({ "command": command }).to_string()).unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// What `kubectl auth can-i VERB RESOURCE [--subresource S] --as=<the ServiceAccount> -n
    /// team-a` answers (`ec2instances/exec` is a name to kubectl; the subresource is a flag).
    fn can_i(&self, verb: &str, resource: &str) -> String {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let mut args = vec!["auth", "can-i", verb, resource, "--as", ACCOUNT, "-n", "team-a"];
        if !subresource.is_empty() {
            args.extend(["--subresource", subresource]);
        }
        let out = self.sandbox.kubectl(&args);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Polls `call` until it answers `status`: RBAC answers are kept for a second in this sandbox.
fn until(what: &str, status: u16, call: impl Fn() -> (u16, Value)) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (got, body) = call();
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: {got} {body}, not {status}, within 5 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Binds the ServiceAccount team-a:ci to the ClusterRole `role` in team-a, as `name`.
fn bind(sandbox: &Sandbox, name: &str, role: &str) {
    sandbox.ok(&[
        "-n",
        "team-a",
        "create",
        "rolebinding",
        name,
        "--clusterrole",
        role,
        "--serviceaccount",
        "team-a:ci",
    ]);
}

fn running_instance_id(sandbox: &Sandbox, namespace: &str) -> String {
    sandbox.ok(&[
        "-n",
        namespace,
        "wait",
        "ec2/web",
        "--for=jsonpath={.status.state}=running",
        "--timeout=60s",
    ]);
    sandbox.ok(&["-n", namespace, "get", "ec2", "web", "-o", "jsonpath={.status.instanceId}"])
}

#[test]
fn rbac_governs_the_api_for_a_service_account_token_made_with_kubectl() {
    let sandbox = Sandbox::start_with(&["--identity-cache-seconds", "1"]);
    sandbox.ok(&["create", "namespace", "team-a"]);
    sandbox.ok(&["-n", "team-a", "create", "serviceaccount", "ci"]);
    for namespace in ["team-a", "default"] {
        sandbox.ok(&["-n", namespace, "apply", "-f", EXAMPLE]);
    }
    let (ours, theirs) = (running_instance_id(&sandbox, "team-a"), running_instance_id(&sandbox, "default"));
    let token = sandbox.ok(&["-n", "team-a", "create", "token", "ci"]).trim().to_string();
    assert!(!token.is_empty() && !token.starts_with("drk_"));
    let ci = Caller { sandbox: &sandbox, token };

    // No binding: the token is someone, who may do nothing.
    let (status, refused) = ci.get("/api/ec2/instances");
    assert_eq!((status, refused["code"].as_str()), (403, Some("insufficient_scope")), "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("`get` on `ec2instances`"), "{refused}");
    assert_eq!(ci.can_i("get", "ec2instances"), "no");

    // The viewer role, in team-a: reads there, and nothing of default; no exec.
    bind(&sandbox, "ci-view", "dataroom-viewer");
    assert_eq!(
        (ci.can_i("get", "ec2instances"), ci.can_i("create", "ec2instances/exec")),
        ("yes".into(), "no".into())
    );
    let listed = until("list as viewer", 200, || ci.get("/api/ec2/instances"));
    let seen: Vec<&str> =
        listed.as_array().unwrap().iter().map(|v| v["namespace"].as_str().unwrap()).collect();
    assert_eq!(seen, ["team-a"], "a RoleBinding in team-a reaches team-a only: {listed}");
    assert_eq!(ci.get(&format!("/api/ec2/instances/{theirs}")).0, 404);
    let (status, refused) = ci.exec(&ours, "echo hello");
    assert_eq!((status, refused["code"].as_str()), (403, Some("insufficient_scope")), "{refused}");

    // The exec role too: commands run in team-a, still not in default.
    bind(&sandbox, "ci-exec", "dataroom-exec");
    assert_eq!(ci.can_i("create", "ec2instances/exec"), "yes");
    let ran = until("exec with the exec role", 200, || ci.exec(&ours, "echo hello"));
    assert_eq!(ran["stdout"].as_str(), Some("hello\n"), "{ran}");
    assert_eq!(ci.exec(&theirs, "echo hello").0, 404, "team-a's binding does not reach default");
    let audit = std::fs::read_to_string(sandbox.dir.path().join("audit.jsonl")).unwrap();
    let named = audit.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).any(|r| {
        r["action"] == "api.instance.exec"
            && r["actor"] == format!("k8s:{ACCOUNT}")
            && r["outcome"] == "success"
    });
    assert!(named, "the audit log names the Kubernetes user:\n{audit}");

    // Revocation: the binding goes, then the ServiceAccount.
    sandbox.ok(&["-n", "team-a", "delete", "rolebinding", "ci-exec"]);
    assert_eq!(ci.can_i("create", "ec2instances/exec"), "no");
    until("exec after the binding is deleted", 403, || ci.exec(&ours, "echo hello"));
    sandbox.ok(&["-n", "team-a", "delete", "serviceaccount", "ci"]);
    let refused = until("list after the ServiceAccount is deleted", 401, || ci.get("/api/ec2/instances"));
    assert_eq!(refused["code"].as_str(), Some("unauthorized"), "{refused}");
}

/// Each ClusterRole the chart ships, bound cluster-wide to its own ServiceAccount, opens exactly
/// the scopes its comment promises, through the operator's whole path (TokenRequest, TokenReview,
/// SubjectAccessReview) against the emulator's RBAC.
#[tokio::test]
async fn the_shipped_roles_open_exactly_their_scopes() {
    use dataroom_operator::admin::identity::{Identities, Reach};
    use dataroom_operator::admin::scope::Scope;

    let server = kube_emulator::ApiServer::new();
    let client = server.client();
    dataroom_sandbox::install_user_roles(&client).await.unwrap();
    let identities = Identities::new(client.clone(), Duration::from_secs(10));
    let expected = [
        ("dataroom-viewer", vec![Scope::Read]),
        ("dataroom-lifecycle", vec![Scope::Lifecycle]),
        ("dataroom-exec", vec![Scope::Exec, Scope::Files]),
        ("dataroom-admin", Scope::ALL.to_vec()),
    ];
    for (role, scopes) in expected {
        let token = support::identity::bound_token(&client, "default", role, role).await;
        let person = identities.person(&token).await.unwrap();
        assert_eq!(person.username, format!("system:serviceaccount:default:{role}"));
        for scope in Scope::ALL {
            let namespaces = || std::collections::BTreeSet::from(["default".to_string()]);
            let reach = identities.reach(&person, scope, false, namespaces).await.unwrap();
            let opened = reach == Some(Reach::Everywhere);
            assert_eq!(opened, scopes.contains(&scope), "{role} and the {} scope: {reach:?}", scope.name());
        }
    }
    assert!(identities.person("not-a-token").await.is_err());
}

/// One raw HTTP/1.0 request to the sandbox's admin address from a browser at its own origin: the
/// whole reply, head and body.
fn browse(sandbox: &Sandbox, method: &str, path: &str, cookie: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let host = sandbox.admin.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nOrigin: {}\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        sandbox.admin,
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn a_kubernetes_token_signs_in_to_the_console_with_the_rights_rbac_gives_it() {
    let sandbox = Sandbox::start_with(&["--identity-cache-seconds", "1"]);
    sandbox.ok(&["create", "namespace", "team-a"]);
    sandbox.ok(&["-n", "team-a", "create", "serviceaccount", "ci"]);
    // The operator asks RBAC about the namespaces it serves: team-a has an instance.
    sandbox.ok(&["-n", "team-a", "apply", "-f", EXAMPLE]);
    let token = sandbox.ok(&["-n", "team-a", "create", "token", "ci"]).trim().to_string();
    let form = format!("key={token}");

    let refused = browse(&sandbox, "POST", "/ui/sign-in", "", &form);
    assert!(refused.starts_with("HTTP/1.0 401") || refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(
        refused.contains("ec2instances") && !refused.contains("Set-Cookie"),
        "no binding, no session: {refused}"
    );

    bind(&sandbox, "ci-view", "dataroom-viewer");
    // RBAC answers are kept a second: the API says when the binding counts (sign-ins are few a
    // minute per address, so the sign-in is not what polls).
    let ci = Caller { sandbox: &sandbox, token: token.clone() };
    until("list as viewer", 200, || ci.get("/api/ec2/instances"));
    let signed = browse(&sandbox, "POST", "/ui/sign-in", "", &form);
    assert!(signed.contains("303 See Other"), "{signed}");
    let cookie = signed
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")));
    let cookie = cookie.expect("a session cookie").split(';').next().unwrap().to_string();
    assert!(!cookie.contains(&token), "the cookie carries a session ID, not the token");
    let fleet = browse(&sandbox, "GET", "/ui/fleet", &cookie, "");
    assert!(fleet.contains("200 OK") && fleet.contains(&format!("Signed in as k8s:{ACCOUNT}")), "{fleet}");
    let audit = browse(&sandbox, "GET", "/ui/audit", &cookie, "");
    assert!(audit.contains("403 Forbidden"), "the viewer role has no audit scope: {audit}");
}
