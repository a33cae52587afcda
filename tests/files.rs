//! Files over SFTP through the admin API, to the sandbox's simulated instances (in-process):
//! streamed upload and download with equal hashes, size limits that leave nothing behind, path
//! rules, several files at once, configuration pushes (inline and S3), and health checks.

mod support;

use std::os::unix::fs::PermissionsExt;

use actix_web::test;
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::admin::{KEY, call};
use support::rig::{Rig, running};

/// A multipart/form-data body: (content type, bytes) for parts (name, file name, content).
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "dataroom-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, file, content) in parts {
        let file = file.map(|f| format!("; filename=\"{f}\"")).unwrap_or_default();
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n").bytes(),
        );
        body.extend(b"Content-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(content);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn send<S>(app: &S, uri: &str, parts: &[(&str, Option<&str>, &[u8])]) -> (u16, Value)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    let (content_type, body) = multipart(parts);
    let req = test::TestRequest::post()
        .uri(uri)
        .insert_header(("Authorization", format!("Bearer {KEY}")))
        .insert_header(("content-type", content_type))
        .set_payload(body);
    let response = test::call_service(app, req.to_request()).await;
    let status = response.status().as_u16();
    (status, serde_json::from_slice(&test::read_body(response).await).unwrap_or(Value::Null))
}

fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let entries = std::fs::read_dir(dir).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    entries
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".upload-"))
        .collect()
}

#[actix_web::test]
async fn upload_and_download_stream_whole_files_and_refuse_bad_ones() {
    let rig = Rig::start().await;
    let mut state = rig.state();
    state.limits.max_file_bytes = 6 << 20;
    let app = support::admin::app(state).await;
    running(&app, "web").await;
    let data = random(5 << 20);
    let (status, written) = send(
        &app,
        "/api/ec2/instances/web/files?destination_path=/srv/data/blob.bin&mode=0600",
        &[("file", Some("b"), &data)],
    )
    .await;
    assert_eq!(status, 201, "{written}");
    let hash = hex::encode(Sha256::digest(&data));
    assert_eq!((written["bytes"].as_u64(), written["sha256"].as_str()), (Some(5 << 20), Some(hash.as_str())));
    let local = rig.home().join("srv/data/blob.bin");
    assert_eq!(std::fs::metadata(&local).unwrap().permissions().mode() & 0o777, 0o600);

    let req = test::TestRequest::get()
        .uri("/api/ec2/instances/web/files/srv/data/blob.bin")
        .insert_header(("Authorization", format!("Bearer {KEY}")));
    let response = test::call_service(&app, req.to_request()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-length").unwrap().to_str().unwrap(), (5 << 20).to_string());
    let body = test::read_body(response).await;
    assert_eq!(hex::encode(Sha256::digest(&body)), hash, "the download equals the upload");

    let big = random(7 << 20);
    let uri = "/api/ec2/instances/web/files?destination_path=/srv/data/blob.bin";
    let (status, problem) = send(&app, uri, &[("file", Some("b"), &big)]).await;
    assert_eq!((status, problem["code"].as_str()), (413, Some("file_too_large")));
    assert_eq!(std::fs::read(&local).unwrap().len(), 5 << 20, "the old file is untouched");
    assert!(leftovers(&rig.home().join("srv/data")).is_empty(), "no temporary file is left");

    for bad in ["relative/x", "/srv/../etc/passwd", "/srv//x", "/srv/./x", "/srv/x/"] {
        let uri = format!("/api/ec2/instances/web/files?destination_path={}", urlencode(bad));
        let (status, problem) = send(&app, &uri, &[("file", Some("b"), b"x")]).await;
        assert_eq!((status, problem["code"].as_str()), (400, Some("invalid_path")), "{bad}");
    }
    for bad in ["srv/%2E%2E/etc/passwd", "srv//data", "srv/data/"] {
        let (status, problem) = call(&app, "GET", &format!("/api/ec2/instances/web/files/{bad}"), None).await;
        assert_eq!((status, problem["code"].as_str()), (400, Some("invalid_path")), "{bad}");
    }
    let (status, problem) = call(&app, "GET", "/api/ec2/instances/web/files/srv/missing", None).await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("not_found")));
    let (status, problem) = call(&app, "GET", "/api/ec2/instances/web/files/srv/data", None).await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("not_a_file")));
    let (status, problem) =
        send(&app, "/api/ec2/instances/web/files?destination_path=/x&mode=999", &[]).await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("invalid_mode")));
    let (_, page) = call(&app, "GET", "/api/audit?action=api.instance.upload", None).await;
    let outcomes: Vec<&str> =
        page["records"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.len(), 10, "every upload is audited, refused ones too: {outcomes:?}");
    // Each upload's intent, then its outcome; the oversized one is refused while it streams.
    assert_eq!(outcomes[..4], ["started", "success", "started", "refused"], "{outcomes:?}");
    assert!(outcomes[4..].iter().all(|o| *o == "refused"), "bad paths never start: {outcomes:?}");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[actix_web::test]
async fn several_files_and_configurations_are_pushed_whole() {
    let rig = Rig::start().await;
    let app = support::admin::app(rig.state()).await;
    running(&app, "web").await;
    let parts: [(&str, Option<&str>, &[u8]); 3] = [
        ("a", Some("index.html"), b"<h1>hi</h1>"),
        ("note", None, b"ignored"),
        ("b", Some("app.js"), b"run()"),
    ];
    let (status, pushed) =
        send(&app, "/api/ec2/instances/web/push-files?destination_dir=/srv/app", &parts).await;
    assert_eq!(status, 201, "{pushed}");
    assert_eq!(pushed["files"].as_array().unwrap().len(), 2);
    assert_eq!(std::fs::read(rig.home().join("srv/app/app.js")).unwrap(), b"run()");
    let (status, problem) = send(
        &app,
        "/api/ec2/instances/web/push-files?destination_dir=/srv/app",
        &[("a", Some("../evil"), b"x")],
    )
    .await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("invalid_path")));

    let config = json!({"rooms": 3, "title": "Q3 close"});
    let (status, written) =
        call(&app, "POST", "/api/ec2/instances/web/push-config", Some(json!({"config_source": config})))
            .await;
    assert_eq!(status, 201, "{written}");
    let local = rig.home().join("etc/dataroom/config.json");
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&local).unwrap()).unwrap();
    assert_eq!(on_disk, config);
    assert_eq!(std::fs::metadata(&local).unwrap().permissions().mode() & 0o777, 0o600, "configs are 0600");

    rig.h.fake.put_object("configs", "rooms/web.json", br#"{"from":"s3"}"#);
    let body = json!({"config_source": "s3://configs/rooms/web.json", "path": "/etc/dataroom/s3.json"});
    let (status, _) = call(&app, "POST", "/api/ec2/instances/web/push-config", Some(body)).await;
    assert_eq!(status, 201);
    assert_eq!(std::fs::read(rig.home().join("etc/dataroom/s3.json")).unwrap(), br#"{"from":"s3"}"#);

    rig.h.fake.put_object("configs", "broken.json", b"{not json");
    for (source, status, code) in [
        (json!("s3://configs/missing.json"), 404, "not_found"),
        (json!("s3://configs/broken.json"), 400, "invalid_config"),
        (json!("s3://configs"), 400, "invalid_config"),
        (json!("{\"ok\": tru"), 400, "invalid_config"),
        (json!(42), 400, "invalid_config"),
    ] {
        let body = json!({"config_source": source});
        let (got, problem) = call(&app, "POST", "/api/ec2/instances/web/push-config", Some(body)).await;
        assert_eq!((got, problem["code"].as_str()), (status, Some(code)), "{source}");
    }
    let (_, page) = call(&app, "GET", "/api/audit?action=api.instance.push_config", None).await;
    let record = &page["records"][0];
    assert!(record["params"]["sha256"].is_string());
    assert!(!record.to_string().contains("Q3 close"), "configurations are audited by hash, not content");
}

#[actix_web::test]
async fn health_checks_reach_the_instance_application_server() {
    let rig = Rig::start().await;
    let app = support::admin::app(rig.state()).await;
    running(&app, "web").await;
    let uri = format!("/api/ec2/instances/web/health?port={}", rig.health_port);
    let mut checked = Value::Null;
    for _ in 0..100 {
        checked = call(&app, "GET", &uri, None).await.1;
        if checked["healthy"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        (&checked["status_code"], &checked["body"]),
        (&json!(200), &json!({"status": "ok"})),
        "{checked}"
    );
    std::fs::write(rig.home().join("health.json"), r#"{"status":"degraded"}"#).unwrap();
    let (_, checked) = call(&app, "GET", &uri, None).await;
    assert_eq!((&checked["healthy"], &checked["status_code"]), (&json!(false), &json!(503)));
    let closed =
        format!("/api/ec2/instances/web/health?port={}&timeout_seconds=2", support::rig::free_port());
    let (_, checked) = call(&app, "GET", &closed, None).await;
    assert_eq!(checked["healthy"], false);
    assert!(checked["error"].is_string());
    let (status, _) = call(&app, "GET", "/api/ec2/instances/web/health?timeout_seconds=0", None).await;
    assert_eq!(status, 400);
}
