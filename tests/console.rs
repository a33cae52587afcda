//! The console's sessions and headers, as an attacker would try them: the cookie's flags, the
//! headers that stop framing, sniffing and injected script, CSRF from another origin (and with no
//! origin), a session used after its four hours or after sign-out, a scoped key's session doing
//! what the key may not, and the audit records of sign-in, failed sign-in and sign-out; and an
//! instance's page with what it shows.

mod support;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use dataroom_operator::admin::auth::AdminKeys;
use dataroom_operator::clock;
use jiff::SignedDuration;
use serde_json::{Value, json};
use support::admin::{KEY, app, state};
use support::harness::{Harness, Options};
use support::rooms::create_room;

const HOST: &str = "console.test:8080";
const ORIGIN: &str = "http://console.test:8080";
const READER: &str = "drk_reader-key-0123456789";

struct Answer {
    status: u16,
    headers: actix_web::http::header::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> String {
        self.headers.get_all(name).map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>().join("\n")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A request from a browser at `origin` (`None`: no Origin header) with the session `cookie`.
async fn browse<S>(app: &S, method: &str, uri: &str, cookie: Option<&str>, origin: Option<&str>) -> Answer
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let method = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = test::TestRequest::default().method(method).uri(uri).insert_header(("Host", HOST));
    if let Some(cookie) = cookie {
        request = request.insert_header(("Cookie", format!("dataroom_session={cookie}")));
    }
    if let Some(origin) = origin {
        request = request.insert_header(("Origin", origin));
    }
    send(app, request).await
}

async fn send<S>(app: &S, request: test::TestRequest) -> Answer
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let request = request.peer_addr("192.0.2.7:40000".parse().unwrap());
    let response = test::call_service(app, request.to_request()).await;
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
    Answer { status, headers, body }
}

/// Signs in with `key` from `origin`: the answer and the session ID its cookie carries.
async fn sign_in<S>(app: &S, key: &str, origin: Option<&str>) -> (Answer, Option<String>)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let mut request =
        test::TestRequest::post().uri("/ui/sign-in").insert_header(("Host", HOST)).set_form([("key", key)]);
    if let Some(origin) = origin {
        request = request.insert_header(("Origin", origin));
    }
    let answer = send(app, request).await;
    let cookie = answer.header("set-cookie");
    let id = cookie.strip_prefix("dataroom_session=").and_then(|c| c.split(';').next()).map(str::to_string);
    (answer, id)
}

fn actions(h: &Harness, action: &str) -> Vec<Value> {
    h.audit().into_iter().filter(|r| r["action"] == action).collect()
}

#[tokio::test]
async fn a_session_has_its_keys_rights_for_four_hours_and_only_from_its_own_origin() {
    let (clock, hands) = clock::manual(jiff::Timestamp::now());
    let h = Harness::start_with(Options { clock, ..Default::default() }).await;
    create_room(&h, "alpha", json!({ "state": "Stopped" })).await;
    let app = app(state(&h)).await;

    let page = browse(&app, "GET", "/ui/sign-in", None, None).await;
    let csp = page.header("content-security-policy");
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !page.body.contains("<script>"), "no inline script");
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(browse(&app, "GET", "/ui/fleet", None, None).await.header("location"), "/ui/sign-in");

    // Signing in: from another site, with a wrong key, then rightly.
    let (forged, id) = sign_in(&app, KEY, Some("http://evil.example")).await;
    assert_eq!((forged.status, id), (403, None), "a sign-in form posted from another site is refused");
    let malformed = test::TestRequest::post()
        .uri("/ui/sign-in")
        .insert_header(("Host", HOST))
        .insert_header(("Origin", ORIGIN))
        .set_form([("password", "x")]);
    let malformed = send(&app, malformed).await;
    assert_eq!(malformed.status, 400, "a form without its key is a 400: {}", malformed.body);
    let (wrong, id) = sign_in(&app, "drk_guessed", Some(ORIGIN)).await;
    assert_eq!((wrong.status, id), (401, None));
    assert!(wrong.body.contains("not accepted") && !wrong.body.contains("drk_guessed"));
    let failed = actions(&h, "console.sign_in");
    assert_eq!(
        (failed[0]["outcome"].as_str(), failed[0]["params"]["source"].as_str()),
        (Some("refused"), Some("192.0.2.7"))
    );
    let (signed, id) = sign_in(&app, KEY, Some(ORIGIN)).await;
    let id = id.expect("a session cookie");
    assert_eq!((signed.status, signed.header("location").as_str()), (303, "/ui/fleet"));
    let cookie = signed.header("set-cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Max-Age=14400", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: Secure would keep the browser from sending it");
    assert!(!cookie.contains(KEY), "the cookie carries a session ID, never the key");
    let audited = actions(&h, "console.sign_in");
    assert_eq!(
        (audited[1]["outcome"].as_str(), audited[1]["actor"].as_str().unwrap().starts_with("admin:tester")),
        (Some("success"), true)
    );

    let fleet = browse(&app, "GET", "/ui/fleet", Some(&id), None).await;
    assert_eq!(fleet.status, 200);
    assert!(
        fleet.body.contains("alpha") && fleet.body.contains("Signed in as admin:tester"),
        "{}",
        fleet.body
    );
    let list = browse(&app, "GET", "/api/fleet/rooms", Some(&id), None).await;
    assert_eq!(list.status, 200, "the session works on the API");

    // CSRF: a change through the session from another origin, or none, is refused; from the console it is done.
    let start = "/api/fleet/rooms/default/alpha/start";
    for origin in [Some("http://evil.example"), None, Some("null")] {
        let refused = browse(&app, "POST", start, Some(&id), origin).await;
        assert_eq!(
            (refused.status, refused.json()["code"].as_str()),
            (403, Some("cross_origin")),
            "{origin:?}"
        );
    }
    assert_eq!(h.ctx.rooms.state()[0].spec.state, dataroom_operator::crd::DataRoomState::Stopped);
    assert_eq!(browse(&app, "POST", start, Some(&id), Some(ORIGIN)).await.status, 202);

    // Four hours on, the session is over, on pages and on the API alike.
    hands.advance(SignedDuration::from_hours(4));
    assert_eq!(browse(&app, "GET", "/ui/fleet", Some(&id), None).await.header("location"), "/ui/sign-in");
    assert_eq!(browse(&app, "GET", "/api/fleet/rooms", Some(&id), None).await.status, 401);
}

#[tokio::test]
async fn sign_out_ends_the_session_and_a_scoped_keys_session_does_only_what_the_key_may() {
    let h = Harness::start().await;
    let app = {
        let mut state = state(&h);
        let lines =
            format!("{}{}", AdminKeys::line("tester", KEY), AdminKeys::line("reader", READER).trim_end());
        state.keys = dataroom_operator::admin::keyfile::LiveKeys::new(
            AdminKeys::parse(&format!("{lines} scopes=read\n")).unwrap(),
        );
        app(state).await
    };
    let (_, id) = sign_in(&app, READER, Some(ORIGIN)).await;
    let id = id.expect("a reader may sign in");
    assert_eq!(browse(&app, "GET", "/ui/instances", Some(&id), None).await.status, 200);
    let audit = browse(&app, "GET", "/ui/audit", Some(&id), None).await;
    assert_eq!(audit.status, 403);
    assert!(audit.body.contains("needs the `audit` scope"), "{}", audit.body);
    let budget = browse(&app, "PUT", "/api/ec2/budget", Some(&id), Some(ORIGIN)).await;
    assert_eq!((budget.status, budget.json()["code"].as_str()), (403, Some("insufficient_scope")));

    let forged = browse(&app, "POST", "/ui/sign-out", Some(&id), Some("http://evil.example")).await;
    assert_eq!(forged.status, 403, "another site cannot sign the viewer out");
    let out = browse(&app, "POST", "/ui/sign-out", Some(&id), Some(ORIGIN)).await;
    assert_eq!((out.status, out.header("location").as_str()), (303, "/ui/sign-in"));
    assert!(out.header("set-cookie").contains("Max-Age=0"), "the browser forgets the cookie");
    assert_eq!(
        browse(&app, "GET", "/ui/instances", Some(&id), None).await.status,
        303,
        "the session is over"
    );
    assert_eq!(browse(&app, "GET", "/api/ec2/instances", Some(&id), None).await.status, 401);
    let records = actions(&h, "console.sign_out");
    assert_eq!(records.len(), 1);
    assert!(records[0]["actor"].as_str().unwrap().starts_with("admin:reader"));
}

#[tokio::test]
async fn an_instances_page_shows_its_conditions_events_and_latest_audit_first() {
    let h = Harness::start().await;
    h.create("web", json!({})).await;
    h.state("web", "running").await;
    let app = app(state(&h)).await;
    let (_, id) = sign_in(&app, KEY, Some(ORIGIN)).await;
    let id = id.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let page = loop {
        let page = browse(&app, "GET", "/ui/instances/web", Some(&id), None).await;
        assert_eq!(page.status, 200, "{}", page.body);
        if page.body.contains("Launched") && page.body.contains("the instance is running") {
            break page.body;
        }
        assert!(std::time::Instant::now() < deadline, "the page never showed the launch: {}", page.body);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(page.contains("<td>Ready</td><td>True</td>"), "the conditions: {page}");
    let (done, started) =
        (page.find("<td>launch</td><td>success</td>"), page.find("<td>launch</td><td>started</td>"));
    assert!(done.unwrap() < started.unwrap(), "the latest record first");
    assert!(
        page.contains("id=\"exec\"") && page.contains("id=\"upload-progress\""),
        "the tools for a key with every scope"
    );

    h.create("web-2", json!({})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let first = loop {
        let first = browse(&app, "GET", "/ui/instances?limit=1&data_room_id=", Some(&id), None).await.body;
        if first.contains("rel=\"next\"") {
            break first;
        }
        assert!(std::time::Instant::now() < deadline, "no second page: {first}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let next =
        first.split("href=\"").filter_map(|h| h.split('"').next()).find(|h| h.contains("continue=")).unwrap();
    assert!(next.starts_with("/ui/instances?limit=1&amp;continue="), "the filters and the token: {next}");
    let second = browse(&app, "GET", &next.replace("&amp;", "&"), Some(&id), None).await.body;
    assert!(second.contains("default/web-2") && !second.contains("default/web<"), "{second}");
    let running = browse(&app, "GET", "/ui/instances?status=running", Some(&id), None).await;
    assert!(running.body.contains("default/web"));
    let stopped = browse(&app, "GET", "/ui/instances?status=stopped&data_room_id=", Some(&id), None).await;
    assert!(stopped.body.contains("No instance matches.") && !stopped.body.contains("default/web"));
    let unknown = browse(&app, "GET", "/ui/instances/nope", Some(&id), None).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("instance nope does not exist"), "{}", unknown.body);
    let bad = browse(&app, "GET", "/ui/instances?limit=0", Some(&id), None).await;
    assert_eq!(bad.status, 400, "a bad page is a 400 in words, not a 500");
}
