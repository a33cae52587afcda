//! The admin API against the real peers: OpenSSH's sshd on a loopback port (the instance's
//! address mapped to it by the test-only seam `Seams::ssh_address`) and moto for EC2, Secrets Manager
//! and S3, with the controller launching the instance on moto.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::test;
use dataroom_operator::cloud::Cloud;
use dataroom_operator::cloud::aws::AwsCloud;
use dataroom_operator::seams::Seams;
use dataroom_operator::ssh::{Pool, SshSettings};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::admin::{KEY, call, state};
use support::harness::Harness;
use support::moto::Moto;
use support::sshd::{Sshd, user, workdir};

/// Moto, the controller on it, and one running instance named `web`: (moto, harness, public key).
async fn launched() -> (Moto, Harness, String) {
    let moto = Moto::start();
    let cloud: Arc<dyn Cloud> = Arc::new(AwsCloud::with_config(&moto.config().await));
    let h = Harness::start_on(cloud.clone(), &moto.image().await).await;
    let app = support::admin::app(state(&h)).await;
    let (status, view) = call(&app, "POST", "/api/ec2/instances?wait=60", Some(json!({"name": "web"}))).await;
    assert_eq!(status, 201, "{view}");
    let object = h.api.get("web").await.unwrap();
    let secret = object.status.unwrap().ssh_key_secret.unwrap();
    let pem = cloud.get_secret(&secret).await.unwrap().expect("the private key is in Secrets Manager");
    let public = ssh_key::PrivateKey::from_openssh(pem.expose()).unwrap().public_key().to_openssh().unwrap();
    (moto, h, public)
}

fn pool(h: &Harness, sshd: &Sshd) -> Arc<Pool> {
    let settings = SshSettings { user: user(), ..Default::default() };
    let seams = Seams { ssh_address: Some(sshd.address()), ..Default::default() };
    Arc::new(Pool::new(h.ctx.cloud.clone(), settings, &seams))
}

fn multipart(name: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "sshd-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[actix_web::test]
async fn exec_and_files_reach_openssh_with_the_instance_key() {
    let (_moto, h, public) = launched().await;
    let sshd = Sshd::start(&public);
    let mut admin = state(&h);
    admin.ssh = pool(&h, &sshd);
    admin.limits.output_cap = 1024;
    let app = support::admin::app(admin).await;
    let exec = |command: String, timeout: u64| {
        call(
            &app,
            "POST",
            "/api/ec2/instances/web/exec",
            Some(json!({"command": command, "timeout_seconds": timeout})),
        )
    };
    let work = workdir();
    let dir = work.path().display().to_string();

    let (status, out) = exec("echo $((6*7))".into(), 10).await;
    assert_eq!(
        (status, out["stdout"].as_str(), out["exit_code"].as_u64()),
        (200, Some("42\n"), Some(0)),
        "{out}"
    );
    let (_, out) = exec("exit 3".into(), 10).await;
    assert_eq!((out["exit"].as_str(), out["exit_code"].as_u64()), (Some("code"), Some(3)));
    let (_, out) = exec("kill -TERM $$".into(), 10).await;
    assert_eq!((out["exit"].as_str(), out["exit_signal"].as_str()), (Some("signal"), Some("TERM")), "{out}");
    let (_, out) = exec("head -c 5000 /dev/zero | tr '\\0' a".into(), 10).await;
    assert_eq!((out["stdout_bytes"].as_u64(), out["stdout_truncated"].as_bool()), (Some(5000), Some(true)));
    assert_eq!(out["stdout"].as_str().unwrap().len(), 1024);
    let (_, out) = exec(format!("sleep 3; touch {dir}/late"), 1).await;
    assert_eq!(out["timed_out"], true, "{out}");
    assert_ne!(out["exit_code"], 0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!work.path().join("late").exists(), "the timed-out command was killed");

    // Each command is counted and timed for the dashboard and the alerts.
    let metrics = h.ctx.metrics.render();
    assert!(
        metrics.contains("dataroom_audit_records_total{action=\"api.instance.exec\",outcome=\"started\"} 5")
            && metrics
                .contains("dataroom_audit_records_total{action=\"api.instance.exec\",outcome=\"failure\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dataroom_operation_duration_seconds_count{action=\"api.instance.exec\"} 5"),
        "{metrics}"
    );

    let batch = json!({"commands": ["true", "false", format!("touch {dir}/never")]});
    let (_, out) = call(&app, "POST", "/api/ec2/instances/web/exec-batch", Some(batch)).await;
    assert_eq!((out["results"].as_array().unwrap().len(), &out["stopped_early"]), (2, &json!(true)));
    assert!(!work.path().join("never").exists());

    let object = h.api.get("web").await.unwrap();
    let pin = object.status.unwrap().ssh_host_key.expect("the host key is pinned");
    assert_eq!(pin.public_key.split_whitespace().nth(1), sshd.host_key.split_whitespace().nth(1));

    let mut data = vec![0; 50 << 20];
    rand::thread_rng().fill_bytes(&mut data);
    let (content_type, body) = multipart("blob.bin", &data);
    let req = test::TestRequest::post()
        .uri(&format!("/api/ec2/instances/web/files?destination_path={dir}/up/blob.bin"))
        .insert_header(("Authorization", format!("Bearer {KEY}")))
        .insert_header(("content-type", content_type))
        .set_payload(body);
    let response = test::call_service(&app, req.to_request()).await;
    assert_eq!(response.status(), 201);
    let hash = hex::encode(Sha256::digest(&data));
    assert_eq!(hex::encode(Sha256::digest(std::fs::read(work.path().join("up/blob.bin")).unwrap())), hash);
    let req = test::TestRequest::get()
        .uri(&format!("/api/ec2/instances/web/files{dir}/up/blob.bin"))
        .insert_header(("Authorization", format!("Bearer {KEY}")));
    let downloaded = test::call_and_read_body(&app, req.to_request()).await;
    assert_eq!(hex::encode(Sha256::digest(&downloaded)), hash, "50 MiB down equals 50 MiB up");
    let traversal = format!("/api/ec2/instances/web/files?destination_path={dir}/../../etc/evil");
    let (status, _) = call(&app, "POST", &traversal, None).await;
    assert_eq!(status, 400);

    let body = json!({"config_source": {"rooms": 1}, "path": format!("{dir}/etc/config.json")});
    let (status, _) = call(&app, "POST", "/api/ec2/instances/web/push-config", Some(body)).await;
    assert_eq!(status, 201);
    let config = work.path().join("etc/config.json");
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(on_disk, json!({"rooms": 1}));

    // Another host answers at the instance's address: refused, and audited.
    let imposter = Sshd::start(&public);
    let mut admin = state(&h);
    admin.ssh = pool(&h, &imposter);
    let app = support::admin::app(admin).await;
    let (status, problem) = call(
        &app,
        "POST",
        "/api/ec2/instances/web/exec",
        Some(json!({"command": format!("touch {dir}/pwned")})),
    )
    .await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("host_key_changed")), "{problem}");
    assert!(!work.path().join("pwned").exists());
}

#[actix_web::test]
async fn configuration_from_s3_amis_key_pairs_and_the_budget_on_moto() {
    let (moto, h, public) = launched().await;
    let sshd = Sshd::start(&public);
    let mut admin = state(&h);
    admin.ssh = pool(&h, &sshd);
    admin.ami_poll = Duration::from_millis(100);
    let app = support::admin::app(admin).await;

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.config().await).force_path_style(true).build(),
    );
    s3.create_bucket().bucket("configs").send().await.unwrap();
    let object = aws_sdk_s3::primitives::ByteStream::from_static(br#"{"from":"s3"}"#);
    s3.put_object().bucket("configs").key("web.json").body(object).send().await.unwrap();
    let work = workdir();
    let path = format!("{}/config.json", work.path().display());
    let body = json!({"config_source": "s3://configs/web.json", "path": path});
    let (status, written) = call(&app, "POST", "/api/ec2/instances/web/push-config", Some(body)).await;
    assert_eq!(status, 201, "{written}");
    assert_eq!(std::fs::read(&path).unwrap(), br#"{"from":"s3"}"#);
    let body = json!({"config_source": "s3://configs/absent.json"});
    let (status, _) = call(&app, "POST", "/api/ec2/instances/web/push-config", Some(body)).await;
    assert_eq!(status, 404);

    let (status, ami) =
        call(&app, "POST", "/api/ec2/amis", Some(json!({"instance_id": "web", "ami_name": "web-golden"})))
            .await;
    assert_eq!(status, 202, "{ami}");
    let id = ami["image_id"].as_str().unwrap().to_string();
    let mut state_now = Value::Null;
    for _ in 0..100 {
        state_now = call(&app, "GET", &format!("/api/ec2/amis/{id}"), None).await.1["state"].clone();
        if state_now == "available" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state_now, "available");

    let (status, pair) = call(&app, "POST", "/api/ec2/keypairs", Some(json!({"name": "ops"}))).await;
    assert_eq!(status, 201, "{pair}");
    assert!(!pair.to_string().contains("PRIVATE"), "{pair}");
    let secret = h.ctx.cloud.get_secret("dataroom-operator/ssh/ops").await.unwrap().unwrap();
    assert!(secret.expose().contains("OPENSSH PRIVATE KEY"));

    let (status, _) = call(&app, "PUT", "/api/ec2/budget", Some(json!({"maxInstances": 1}))).await;
    assert_eq!(status, 200);
    let (status, problem) = call(&app, "POST", "/api/ec2/instances", Some(json!({"name": "second"}))).await;
    assert_eq!((status, problem["limit"].as_str()), (403, Some("maxInstances")));
}
