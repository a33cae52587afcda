//! The admin REST API in-process, over the whole controller (API emulator + fake EC2): keys,
//! instance lifecycle, budget pre-checks, audit, and bad input.

mod support;

use std::time::{Duration, Instant};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use serde_json::{Value, json};
use support::admin::{KEY, app, call};
use support::harness::Harness;

#[actix_web::test]
async fn every_operation_in_the_openapi_document_needs_a_key() {
    let h = Harness::start().await;
    let app = app(support::admin::state(&h)).await;
    let doc: Value =
        test::call_and_read_body_json(&app, test::TestRequest::get().uri("/api/openapi.json").to_request())
            .await;
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let uri = path
                .replace("{id}", "web")
                .replace("{name}", "web")
                .replace("{path}", "etc/motd")
                .replace("{image_id}", "ami-0123456789abcdef0");
            let wrong = format!("Bearer {KEY}x");
            let sent = [None, Some(wrong.as_str()), Some("Basic dGVzdA=="), Some(KEY)];
            for auth in sent {
                let mut req = test::TestRequest::default().method(method.to_uppercase().parse().unwrap());
                req = req.uri(&format!("{uri}?access_token={KEY}&api_key={KEY}"));
                if let Some(auth) = auth {
                    req = req.insert_header(("Authorization", auth));
                }
                let response = test::call_service(&app, req.to_request()).await;
                assert_eq!(response.status(), 401, "{method} {path} with {auth:?}");
                assert_eq!(response.headers().get("content-type").unwrap(), "application/problem+json");
                let problem: Value = test::read_body_json(response).await;
                assert_eq!(problem["code"], "unauthorized");
            }
            assert!(item[method]["security"].is_array(), "{method} {path} documents its key");
            operations += 1;
        }
    }
    assert!(operations >= 10, "the document lists the operations ({operations})");
    for open in ["/healthz", "/readyz", "/metrics"] {
        let response = test::call_service(&app, test::TestRequest::get().uri(open).to_request()).await;
        assert_eq!(response.status(), 200, "{open} needs no key");
    }
}

async fn until<S>(app: &S, uri: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = call(app, "GET", uri, None).await;
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{uri} never {what}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn an_instance_lives_through_the_api_and_every_step_is_audited() {
    let h = Harness::start().await;
    let app = app(support::admin::state(&h)).await;
    let (status, created) = call(
        &app,
        "POST",
        "/api/ec2/instances?wait=20",
        Some(json!({"name": "web", "data_room_id": "room-1"})),
    )
    .await;
    assert_eq!(status, 201, "running within the wait: {created}");
    assert_eq!(
        (created["status"].as_str(), created["instance_type"].as_str()),
        (Some("running"), Some("t3.micro"))
    );
    let id = created["instance_id"].as_str().unwrap().to_string();
    assert!(created["public_ip"].is_string() && created["uptime_seconds"].is_number());
    let (_, by_id) = call(&app, "GET", &format!("/api/ec2/instances/{id}"), None).await;
    assert_eq!((by_id["name"].as_str(), by_id["data_room_id"].as_str()), (Some("web"), Some("room-1")));
    let (_, list) = call(&app, "GET", "/api/ec2/instances?status=running&data_room_id=room-1", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, none) = call(&app, "GET", "/api/ec2/instances?status=stopped", None).await;
    assert_eq!(none, json!([]));

    let (status, _) = call(&app, "POST", "/api/ec2/instances/web/stop", None).await;
    assert_eq!(status, 202);
    until(&app, "/api/ec2/instances/web", "stopped", |v| v["status"] == "stopped").await;
    let (status, _) = call(&app, "POST", &format!("/api/ec2/instances/{id}/start"), None).await;
    assert_eq!(status, 202);
    until(&app, "/api/ec2/instances/web", "running again", |v| v["status"] == "running").await;

    let (status, problem) = call(&app, "DELETE", "/api/ec2/instances/web", None).await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("confirmation_required")));
    let (status, _) = call(&app, "DELETE", "/api/ec2/instances/web?confirm=true", None).await;
    assert_eq!(status, 202);
    until(&app, "/api/ec2/instances", "emptied", |v| v == &json!([])).await;
    assert!(h.fake.live_instances().is_empty(), "the instance is terminated");

    let (_, page) = call(&app, "GET", "/api/audit?action=api.instance.create", None).await;
    let outcomes: Vec<&str> =
        page["records"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["started", "success"], "the intent is on disk before the object is created");
    let records: Vec<&serde_json::Value> =
        page["records"].as_array().unwrap().iter().filter(|r| r["outcome"] != "started").collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["target"], "ec2instance/default/web");
    // One name for the object across the admin API and the controller.
    let (_, named) = call(&app, "GET", "/api/audit?target=ec2instance/default/web", None).await;
    let actions: Vec<&str> =
        named["records"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    for action in ["api.instance.create", "launch", "api.instance.delete"] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
    assert!(records[0]["actor"].as_str().unwrap().starts_with("admin:tester (sha256:"));
    let (_, refused) = call(&app, "GET", "/api/audit?action=api.instance.delete", None).await;
    let outcomes: Vec<&str> =
        refused["records"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["refused", "started", "success"], "the refused delete is audited too");
    let (_, first) = call(&app, "GET", "/api/audit?limit=1", None).await;
    let after = first["next_after"].as_u64().expect("more pages");
    let (_, second) = call(&app, "GET", &format!("/api/audit?limit=1&after={after}"), None).await;
    assert!(second["records"][0]["seq"].as_u64().unwrap() > after);
    let (_, verdict) = call(&app, "GET", "/api/audit/verify", None).await;
    assert_eq!(verdict["intact"], true, "{verdict}");
    let log = std::fs::read_to_string(h.audit_dir.path().join("audit.jsonl")).unwrap();
    assert!(!log.contains(KEY), "the key itself is never recorded");
}

#[actix_web::test]
async fn the_budget_refuses_before_anything_is_created() {
    let h = Harness::start().await;
    let app = app(support::admin::state(&h)).await;
    let (status, view) = call(&app, "PUT", "/api/ec2/budget", Some(json!({"maxInstances": 0}))).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (view["limits"]["maxInstances"].as_u64(), view["limits"]["dailySpendUsd"].as_f64()),
        (Some(0), Some(10.0))
    );
    let (status, problem) = call(&app, "POST", "/api/ec2/instances", Some(json!({}))).await;
    assert_eq!(
        (status, problem["code"].as_str(), problem["limit"].as_str()),
        (403, Some("budget_exceeded"), Some("maxInstances"))
    );
    let (status, problem) =
        call(&app, "POST", "/api/ec2/instances", Some(json!({"instance_type": "p5.48xlarge"}))).await;
    assert_eq!((status, problem["limit"].as_str()), (403, Some("maxInstanceType")));
    let (_, list) = call(&app, "GET", "/api/ec2/instances", None).await;
    assert_eq!(list, json!([]), "nothing was created");

    let (status, problem) = call(&app, "PUT", "/api/ec2/budget", Some(json!({"maxInstances": 20000}))).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("invalid")), "{problem}");
    let (status, _) = call(&app, "PUT", "/api/ec2/budget", Some(json!({"maxInstances": -1}))).await;
    assert_eq!(status, 400);
    let (status, problem) = call(&app, "PUT", "/api/ec2/budget", Some(json!({"maxInstanes": 3}))).await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("invalid_body")));
    let (_, view) = call(&app, "GET", "/api/ec2/budget", None).await;
    assert_eq!(view["limits"]["maxInstances"], 0, "refused changes change nothing");
    let (_, page) = call(&app, "GET", "/api/audit?action=api.instance.create", None).await;
    let outcomes: Vec<&str> =
        page["records"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["refused", "refused"]);
}

/// An operator installed without `budget.writableThroughApi` refuses the route in words (not the
/// API server's 403 relayed as a 502), changes nothing, and audits the refusal.
#[actix_web::test]
async fn a_read_only_budget_is_refused_by_name() {
    let h = Harness::start().await;
    let mut state = support::admin::state(&h);
    state.budget_writes = false;
    let app = app(state).await;
    let (_, before) = call(&app, "GET", "/api/ec2/budget", None).await;
    let (status, problem) = call(&app, "PUT", "/api/ec2/budget", Some(json!({"maxInstances": 99}))).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("budget_read_only")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("kubectl edit ec2budget default"));
    let (_, after) = call(&app, "GET", "/api/ec2/budget", None).await;
    assert_eq!(before["limits"], after["limits"]);
    let (_, page) = call(&app, "GET", "/api/audit?action=api.budget.update", None).await;
    assert_eq!(page["records"][0]["outcome"], "refused", "{page}");
}

#[actix_web::test]
async fn bad_input_gets_a_problem_with_a_stable_code_and_writes_nothing() {
    let h = Harness::start().await;
    let app = app(support::admin::state(&h)).await;
    let cases = [
        ("/api/ec2/instances", json!({"name": "Not_A_Label"}), 400, "invalid_name"),
        ("/api/ec2/instances", json!({"instance_type": "huge"}), 400, "invalid_instance_type"),
        ("/api/ec2/instances", json!({"image_id": "ami-xyz"}), 400, "invalid_image_id"),
        ("/api/ec2/instances", json!({"colour": "blue"}), 400, "invalid_body"),
        ("/api/ec2/instances", json!({"instance_type": 3}), 400, "invalid_body"),
        ("/api/ec2/instances?wait=301", json!({}), 400, "invalid_wait"),
        ("/api/ec2/instances?wait=soon", json!({}), 400, "invalid_query"),
    ];
    for (uri, body, status, code) in cases {
        let (got, problem) = call(&app, "POST", uri, Some(body.clone())).await;
        assert_eq!((got, problem["code"].as_str()), (status, Some(code)), "{uri} {body}");
        assert!(problem["detail"].is_string() && problem["type"].as_str().unwrap().ends_with(code));
    }
    let big = json!({"name": "x".repeat(2 * 1024 * 1024)});
    let (status, problem) = call(&app, "POST", "/api/ec2/instances", Some(big)).await;
    assert_eq!((status, problem["code"].as_str()), (413, Some("body_rejected")));
    let req = test::TestRequest::post()
        .uri("/api/ec2/instances")
        .insert_header(("Authorization", format!("Bearer {KEY}")))
        .insert_header(("content-type", "application/json"))
        .set_payload("{not json");
    let response = test::call_service(&app, req.to_request()).await;
    assert_eq!(response.status(), 400);
    for (method, uri) in
        [("GET", "/api/ec2/instances/nope"), ("POST", "/api/ec2/instances/i-0000000000000000/stop")]
    {
        let (status, problem) = call(&app, method, uri, None).await;
        assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")), "{method} {uri}");
    }
    let (status, problem) = call(&app, "GET", "/api/audit?since=yesterday", None).await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("invalid_query")));
    let (_, list) = call(&app, "GET", "/api/ec2/instances", None).await;
    assert_eq!(list, json!([]));
    assert!(h.fake.instances().is_empty());
}

#[actix_web::test]
async fn amis_are_followed_until_available_and_private_keys_never_leave_secrets_manager() {
    let h = Harness::start().await;
    let mut state = support::admin::state(&h);
    state.ami_poll = Duration::from_millis(50);
    let app = app(state).await;
    let (status, _) = call(&app, "POST", "/api/ec2/instances?wait=20", Some(json!({"name": "web"}))).await;
    assert_eq!(status, 201);

    let body = json!({"instance_id": "web", "ami_name": "web backup (1)"});
    let (status, ami) = call(&app, "POST", "/api/ec2/amis", Some(body.clone())).await;
    assert_eq!((status, ami["state"].as_str()), (202, Some("pending")), "{ami}");
    let id = ami["image_id"].as_str().unwrap().to_string();
    until(&app, &format!("/api/ec2/amis/{id}"), "available", |v| v["state"] == "available").await;
    let (_, all) = call(&app, "GET", "/api/ec2/amis", None).await;
    assert!(all.as_array().unwrap().iter().any(|a| a["image_id"] == id.as_str()));
    until(&app, "/api/audit?action=api.ami.available", "audited", |v| {
        v["records"][0]["target"] == format!("image//{id}").as_str()
    })
    .await;
    let (status, problem) = call(&app, "POST", "/api/ec2/amis", Some(body)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("cloud_refused")),
        "a duplicate name: {problem}"
    );
    for (body, status, code) in [
        (json!({"instance_id": "web", "ami_name": "x"}), 400, "invalid_name"),
        (json!({"instance_id": "nope", "ami_name": "fine name"}), 404, "not_found"),
    ] {
        let (got, problem) = call(&app, "POST", "/api/ec2/amis", Some(body)).await;
        assert_eq!((got, problem["code"].as_str()), (status, Some(code)));
    }

    let (status, pair) = call(&app, "POST", "/api/ec2/keypairs", Some(json!({"name": "ops-key"}))).await;
    assert_eq!(status, 201, "{pair}");
    assert_eq!(pair["secret_name"], "dataroom-operator/ssh/ops-key");
    assert!(!pair.to_string().contains("PRIVATE KEY"), "the private key is never returned");
    assert!(h.fake.secret_names().contains(&"dataroom-operator/ssh/ops-key".to_string()));
    let (status, problem) = call(&app, "POST", "/api/ec2/keypairs", Some(json!({"name": "ops-key"}))).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("already_exists")));
    let (status, _) = call(&app, "POST", "/api/ec2/keypairs", Some(json!({"name": "has space"}))).await;
    assert_eq!(status, 400);
    let (_, pairs) = call(&app, "GET", "/api/ec2/keypairs", None).await;
    let names: Vec<&str> = pairs.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"ops-key") && names.len() == 2, "{names:?}");
    let in_use = names.iter().find(|n| **n != "ops-key").unwrap().to_string();
    let (status, problem) =
        call(&app, "DELETE", &format!("/api/ec2/keypairs/{in_use}?confirm=true"), None).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("key_pair_in_use")));
    let (status, _) = call(&app, "DELETE", "/api/ec2/keypairs/ops-key", None).await;
    assert_eq!(status, 400, "deleting needs confirm=true");
    let (status, _) = call(&app, "DELETE", "/api/ec2/keypairs/ops-key?confirm=true", None).await;
    assert_eq!(status, 204);
    assert!(!h.fake.secret_names().contains(&"dataroom-operator/ssh/ops-key".to_string()));
    let log = std::fs::read_to_string(h.audit_dir.path().join("audit.jsonl")).unwrap();
    assert!(!log.contains("PRIVATE KEY"));
}
