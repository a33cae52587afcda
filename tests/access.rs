//! Access control, tried as an attack: keys that hold one scope each call every operation of the
//! OpenAPI document (each gets exactly the operations its scope names), a key confined to a
//! namespace reaches into another, an expired key is used, and a revoked key goes on being used
//! while the keys file changes under the running API.

mod support;

use std::time::{Duration, Instant};

use actix_web::test;
use dataroom_operator::admin::AdminState;
use dataroom_operator::admin::auth::AdminKeys;
use dataroom_operator::admin::scope::Scope;
use serde_json::Value;
use support::admin::{app, call_as};
use support::harness::Harness;

/// A key per scope, named after it (`key-read` is `drk_read`, and so on).
fn state(h: &Harness, keys: AdminKeys) -> AdminState {
    let mut state = AdminState::new(h.ctx.shared(), keys, "default");
    state.set_limits(support::admin::unlimited());
    state
}

/// The keys-file line of the key `drk_NAME`, named NAME, with `options` after its hash.
fn key_line(name: &str, options: &str) -> String {
    format!("{} {options}\n", AdminKeys::line(name, &format!("drk_{name}")).trim_end())
}

fn scoped_keys() -> String {
    Scope::ALL.iter().map(|s| key_line(s.name(), &format!("scopes={}", s.name()))).collect()
}

#[actix_web::test]
async fn each_scope_opens_exactly_the_operations_the_document_gives_it() {
    let h = Harness::start().await;
    let keys = AdminKeys::parse(&scoped_keys()).unwrap();
    let app = app(state(&h, keys)).await;
    let doc: Value =
        test::call_and_read_body_json(&app, test::TestRequest::get().uri("/api/openapi.json").to_request())
            .await;
    let mut tried = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let documented = operation["security"][0]["admin_key"][0].as_str();
            let documented = documented.unwrap_or_else(|| panic!("{method} {path} documents no scope"));
            assert!(Scope::ALL.iter().any(|s| s.name() == documented), "{method} {path}: {documented}");
            let uri = path
                .replace("{id}", "web")
                .replace("{name}", "web")
                .replace("{namespace}", "default")
                .replace("{path}", "etc/motd")
                .replace("{image_id}", "ami-0123456789abcdef0");
            for scope in Scope::ALL {
                let (status, problem) =
                    call_as(&app, &method.to_uppercase(), &uri, &format!("drk_{}", scope.name()), None).await;
                let refused = status == 403 && problem["code"] == "insufficient_scope";
                if scope.name() == documented {
                    assert!(
                        !refused && status != 401,
                        "{method} {path} with the {documented} scope: {status} {problem}"
                    );
                } else {
                    assert!(
                        refused,
                        "{method} {path} needs {documented}, not {}: {status} {problem}",
                        scope.name()
                    );
                    let detail = problem["detail"].as_str().unwrap();
                    assert!(detail.contains(&format!("needs the `{documented}` scope")), "{detail}");
                }
                tried += 1;
            }
        }
    }
    assert!(tried >= 8 * 25, "every operation with every scope ({tried} calls)");
}

#[actix_web::test]
async fn an_expired_key_is_refused() {
    let h = Harness::start().await;
    let keys = key_line("old", "expires=2020-01-01T00:00:00Z") + &key_line("now", "");
    let app = app(state(&h, AdminKeys::parse(&keys).unwrap())).await;
    let (status, problem) = call_as(&app, "GET", "/api/ec2/instances", "drk_old", None).await;
    assert_eq!(status, 401, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("expired at 2020-01-01T00:00:00Z"), "{problem}");
    assert_eq!(call_as(&app, "GET", "/api/ec2/instances", "drk_now", None).await.0, 200);
}

/// The keys file changes under the running API: a removed line stops working within the poll
/// interval, a file that does not parse leaves the keys in force, and each reload is audited by
/// name and fingerprint.
#[actix_web::test]
async fn a_revoked_key_stops_working_without_a_restart() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-keys");
    let (alice, bob) = (AdminKeys::line("alice", "drk_alice"), AdminKeys::line("bob", "drk_bob"));
    std::fs::write(&file, format!("{alice}{bob}")).unwrap();
    let state = state(&h, AdminKeys::load(&file).unwrap());
    let watching = tokio::spawn(dataroom_operator::admin::keyfile::watch(
        file.clone(),
        state.keys.clone(),
        h.ctx.shared(),
    ));
    let app = app(state).await;
    let works = async |key: &str| call_as(&app, "GET", "/api/ec2/instances", key, None).await.0 == 200;
    assert!(works("drk_bob").await);

    // A broken file: refused, the keys in force stay.
    std::fs::write(&file, format!("{alice}bob sha256:not-hex\n")).unwrap();
    let refused = audit_until(&h, |r| r["action"] == "admin.keys.reload" && r["outcome"] == "refused").await;
    assert!(refused["detail"].as_str().unwrap().starts_with("line 2"), "{refused}");
    assert!(works("drk_bob").await, "the last good keys stay");
    assert!(h.ctx.metrics.render().contains("dataroom_admin_keys_reload_failures_total 1"));

    // Bob's line removed while his key is in use: refused within 5 s.
    std::fs::write(&file, &alice).unwrap();
    let removed = Instant::now();
    while works("drk_bob").await {
        assert!(removed.elapsed() < Duration::from_secs(5), "bob's key still works 5 s after its line went");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("a removed key stopped working after {:.2} s", removed.elapsed().as_secs_f64());
    assert!(works("drk_alice").await, "the others keep working");
    let record = audit_until(&h, |r| r["action"] == "admin.keys.reload" && r["outcome"] == "success").await;
    assert_eq!(record["params"]["removed"][0]["name"], "bob", "{record}");
    assert!(record["params"]["removed"][0]["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    let text = std::fs::read_to_string(h.ctx.audit.path()).unwrap();
    let bob_hash = bob.split_whitespace().nth(1).unwrap().trim_start_matches("sha256:");
    assert!(!text.contains(bob_hash), "no whole hash of a key in the log");
    watching.abort();
}

async fn audit_until(h: &Harness, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(h.ctx.audit.path()).unwrap();
        if let Some(found) =
            text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|r| matches(r))
        {
            return found;
        }
        assert!(Instant::now() < deadline, "no such audit record within 5 s:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A key confined to another namespace reaches into `default`: it sees no instance there, cannot
/// address one by name or instance ID, cannot create one there, and reads no audit record of it.
#[actix_web::test]
async fn a_key_confined_to_a_namespace_reaches_nothing_outside_it() {
    let h = Harness::start().await;
    let keys = key_line("root", "")
        + &key_line("outsider", "namespaces=team-b")
        + &key_line("insider", "namespaces=default");
    let app = app(state(&h, AdminKeys::parse(&keys).unwrap())).await;
    let (status, created) = call_as(
        &app,
        "POST",
        "/api/ec2/instances?wait=20",
        "drk_root",
        Some(serde_json::json!({"name": "web"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let instance_id = created["instance_id"].as_str().unwrap().to_string();

    let (_, listed) = call_as(&app, "GET", "/api/ec2/instances", "drk_outsider", None).await;
    assert_eq!(listed, serde_json::json!([]), "the list holds nothing of default");
    for id in ["web", instance_id.as_str()] {
        for (method, uri) in [
            ("GET", format!("/api/ec2/instances/{id}")),
            ("POST", format!("/api/ec2/instances/{id}/stop")),
            ("DELETE", format!("/api/ec2/instances/{id}?confirm=true")),
            ("POST", format!("/api/ec2/instances/{id}/exec")),
        ] {
            let body = (uri.ends_with("/exec")).then(|| serde_json::json!({"command": "id"}));
            let (status, problem) = call_as(&app, method, &uri, "drk_outsider", body).await;
            assert_eq!(status, 404, "{method} {uri}: {problem}");
        }
    }
    let (status, problem) = call_as(
        &app,
        "POST",
        "/api/ec2/instances",
        "drk_outsider",
        Some(serde_json::json!({"name": "mine"})),
    )
    .await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("namespace_not_allowed")), "{problem}");
    let (_, page) = call_as(&app, "GET", "/api/audit", "drk_outsider", None).await;
    assert_eq!(page["records"], serde_json::json!([]), "no record of default: {page}");

    let (_, listed) = call_as(&app, "GET", "/api/ec2/instances", "drk_insider", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "its own namespace is in reach");
    let (_, page) = call_as(&app, "GET", "/api/audit", "drk_insider", None).await;
    assert!(
        page["records"].as_array().unwrap().iter().any(|r| r["target"] == "ec2instance/default/web"),
        "{page}"
    );
    let (status, _) = call_as(&app, "GET", "/api/ec2/instances/web", "drk_root", None).await;
    assert_eq!(status, 200, "nothing was stopped or deleted");
}

/// A burst over the rate from one address with one key: 429 with `Retry-After`; another key from
/// another address is served meanwhile. Bad keys from one address are counted, then written to the
/// audit log as one record with their number.
#[actix_web::test]
async fn a_burst_is_limited_per_key_and_address_and_failed_logins_are_audited_in_aggregate() {
    use dataroom_operator::admin::rate::Rate;
    let h = Harness::start().await;
    let keys = AdminKeys::line("alice", "drk_alice") + &AdminKeys::line("bob", "drk_bob");
    let mut state = AdminState::new(h.ctx.shared(), AdminKeys::parse(&keys).unwrap(), "default");
    let limits = dataroom_operator::admin::ApiLimits {
        key_rate: Rate { per_second: 1, burst: 5 },
        address_rate: Rate { per_second: 1, burst: 20 },
        ..Default::default()
    };
    state.set_limits(limits);
    let rates = state.rates.clone();
    let app = app(state).await;
    let from = |ip: &str, key: &str| {
        test::TestRequest::get()
            .uri("/api/ec2/instances")
            .peer_addr(format!("{ip}:40000").parse().unwrap())
            .insert_header(("Authorization", format!("Bearer {key}")))
            .to_request()
    };
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = test::call_service(&app, from("192.0.2.1", "drk_alice")).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert!(response.headers().get("retry-after").is_some(), "429 says when to retry");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429], "alice's bucket holds 5");
    let other = test::call_service(&app, from("192.0.2.2", "drk_bob")).await;
    assert_eq!(other.status(), 200, "bob, from elsewhere, is not held back by alice's burst");

    for _ in 0..7 {
        let response = test::call_service(&app, from("192.0.2.3", "drk_guess")).await;
        assert_eq!(response.status(), 401);
    }
    assert!(h.ctx.metrics.render().contains("dataroom_api_auth_failures_total 7"));
    rates.flush(&h.ctx.shared()).await;
    let text = std::fs::read_to_string(h.ctx.audit.path()).unwrap();
    let failed: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["action"] == "api.auth.failed")
        .collect();
    assert_eq!(failed.len(), 1, "one record for the source, not seven: {failed:?}");
    assert_eq!(
        (failed[0]["params"]["source"].as_str(), failed[0]["params"]["failures"].as_u64()),
        (Some("192.0.2.3"), Some(7))
    );
    assert!(!text.contains("drk_guess"), "the guessed key is not recorded");
}
