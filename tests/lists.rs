//! The admin API's lists, paged and validated: `limit` and `continue` walk the instance list and
//! the fleet's rooms by key, so that instances created and deleted between pages shift nothing;
//! `ETag` with `If-None-Match` answers 304 until something shown changes; bad paging is a 400
//! with its code.

mod support;

use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use dataroom_operator::clock;
use jiff::SignedDuration;
use serde_json::{Value, json};
use support::admin::{KEY, app, call, state};
use support::harness::{Harness, Options};
use support::rooms::create_room;

/// A GET with the admin key: status, the headers this test reads, and the JSON body.
async fn get<S>(app: &S, uri: &str, etag: Option<&str>) -> (u16, [Option<String>; 3], Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let mut request =
        test::TestRequest::get().uri(uri).insert_header(("Authorization", format!("Bearer {KEY}")));
    if let Some(tag) = etag {
        request = request.insert_header(("If-None-Match", tag.to_string()));
    }
    let response = test::call_service(app, request.to_request()).await;
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    let headers = [header("ETag"), header("X-Continue"), header("Link")];
    let status = response.status().as_u16();
    let body = test::read_body(response).await;
    (status, headers, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect()
}

/// Waits until the instance list shows `count` instances running and their status says so too:
/// EC2's view shows `running` before the controller has written the status that settles the
/// object (its message), and that write changes the list once more.
async fn running<S>(app: &S, count: usize)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list) = call(app, "GET", "/api/ec2/instances?status=running", None).await;
        let settled = |i: &Value| i["message"] == "the instance is running";
        if list.as_array().is_some_and(|l| l.len() == count && l.iter().all(settled)) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "not {count} running: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pages_walk_the_list_by_key_while_it_changes() {
    let h = Harness::start().await;
    let app = app(state(&h)).await;
    let (status, _) = call(&app, "PUT", "/api/ec2/budget", Some(json!({ "maxInstances": 20 }))).await;
    assert_eq!(status, 200);
    for n in [1, 2, 3, 4, 5, 6, 7] {
        h.create(&format!("web-{n}"), json!({})).await;
    }
    running(&app, 7).await;
    let (status, [_, token, link], first) =
        get(&app, "/api/ec2/instances?limit=3&status=running", None).await;
    assert_eq!(status, 200);
    assert_eq!(names(&first), ["web-1", "web-2", "web-3"]);
    let token = token.expect("a next page");
    let link = link.expect("a Link header");
    assert_eq!(link, format!("</api/ec2/instances?limit=3&status=running&continue={token}>; rel=\"next\""));

    // Between pages web-2 (read) and web-6 (not yet) go, and web-0 (before) and web-35 (after) come.
    h.api.delete("web-2", &Default::default()).await.unwrap();
    h.api.delete("web-6", &Default::default()).await.unwrap();
    h.create("web-0", json!({})).await;
    h.create("web-35", json!({})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !names(&call(&app, "GET", "/api/ec2/instances?status=running", None).await.1)
        .contains(&"web-35".into())
        || h.ctx.instances.state().iter().any(|o| o.metadata.name.as_deref() == Some("web-6"))
    {
        assert!(std::time::Instant::now() < deadline, "the changes did not show");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = names(&first);
    let mut next = Some(token);
    while let Some(token) = next {
        let (status, [_, token, _], page) =
            get(&app, &format!("/api/ec2/instances?limit=3&status=running&continue={token}"), None).await;
        assert_eq!(status, 200);
        seen.extend(names(&page));
        next = token;
    }
    assert_eq!(
        seen,
        ["web-1", "web-2", "web-3", "web-35", "web-4", "web-5", "web-7"],
        "each once, in key order"
    );

    for (uri, code) in [
        ("/api/ec2/instances?limit=0", "invalid_limit"),
        ("/api/ec2/instances?limit=5001", "invalid_limit"),
        ("/api/ec2/instances?limit=many", "invalid_query"),
        ("/api/ec2/instances?continue=%25%25", "invalid_continue"),
        ("/api/fleet/rooms?continue=bm90LWEta2V5", "invalid_continue"),
    ] {
        let (status, problem) = call(&app, "GET", uri, None).await;
        assert_eq!((status, problem["code"].as_str()), (400, Some(code)), "{uri}: {problem}");
    }
}

#[tokio::test]
async fn an_unchanged_list_is_not_sent_again() {
    // The fake cloud stamps launches with the real time: the operator's clock runs a minute ahead
    // so that every uptime is positive and moves with the hands.
    let (clock, hands) = clock::manual(jiff::Timestamp::now() + SignedDuration::from_secs(60));
    let h = Harness::start_with(Options { clock, ..Default::default() }).await;
    for name in ["web-1", "web-2"] {
        h.create(name, json!({})).await;
    }
    let app = app(state(&h)).await;
    running(&app, 2).await;
    let (_, [tag, _, _], _) = get(&app, "/api/ec2/instances", None).await;
    let tag = tag.expect("an ETag");
    let (status, [again, _, _], body) = get(&app, "/api/ec2/instances", Some(&tag)).await;
    assert_eq!((status, body), (304, Value::Null), "nothing changed: nothing sent");
    assert_eq!(again.as_deref(), Some(tag.as_str()));
    let (status, _, _) = get(&app, "/api/ec2/instances", Some(&format!("W/{tag}"))).await;
    assert_eq!(status, 304, "a weak comparison matches too");

    // A second later every running instance's uptime is another: the list is sent again.
    hands.advance(SignedDuration::from_secs(1));
    let (status, [newer, _, _], body) = get(&app, "/api/ec2/instances", Some(&tag)).await;
    assert_eq!(status, 200);
    assert_ne!(newer.as_deref(), Some(tag.as_str()));
    assert_eq!(names(&body), ["web-1", "web-2"]);
    // A stop changes what is shown.
    let newer = newer.unwrap();
    h.patch_spec("web-1", json!({ "powerState": "Stopped" })).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = get(&app, "/api/ec2/instances", Some(&newer)).await;
        if status == 200 {
            assert_eq!(body[0]["power_state"], "Stopped", "the first change shown is the spec's");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the stop never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_fleet_list_pages_with_its_token_in_the_body() {
    let h = Harness::start().await;
    for name in ["alpha", "bravo", "charlie"] {
        create_room(&h, name, json!({ "state": "Stopped" })).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while h.ctx.rooms.state().len() < 3 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let app = app(state(&h)).await;
    let (status, [tag, header, _], page) = get(&app, "/api/fleet/rooms?limit=2", None).await;
    assert_eq!(status, 200);
    let rooms: Vec<&str> =
        page["rooms"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(rooms, ["alpha", "bravo"]);
    assert_eq!(page["continue"].as_str(), header.as_deref(), "the token in the body and the header");
    let (status, _, last) =
        get(&app, &format!("/api/fleet/rooms?limit=2&continue={}", header.unwrap()), None).await;
    assert_eq!(status, 200);
    assert_eq!(last, json!({ "rooms": [last["rooms"][0].clone()] }), "no token after the last page");
    assert_eq!(last["rooms"][0]["name"], "charlie");
    let (status, _, _) = get(&app, "/api/fleet/rooms?limit=2", tag.as_deref()).await;
    assert_eq!(status, 304);
}
