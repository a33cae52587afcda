//! A DataRoom against the real peers: moto for EC2 and Secrets Manager, OpenSSH's sshd for the
//! configuration push (the instance's address mapped to it), and a local health endpoint.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dataroom_operator::clock;
use dataroom_operator::cloud::Cloud;
use dataroom_operator::cloud::aws::AwsCloud;
use dataroom_operator::seams::Seams;
use dataroom_operator::ssh::SshSettings;
use serde_json::json;
use ssh_key::{Algorithm, PrivateKey, rand_core::OsRng};
use support::admin::call;
use support::harness::{Harness, Options};
use support::moto::Moto;
use support::rooms::{create_room, in_phase, patch_room, room_until};
use support::sshd::{Sshd, user, workdir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers every request with 200 `{"status":"ok"}`.
async fn health_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf).await;
            let body = r#"{"status":"ok"}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
        }
    });
    port
}

/// Lets sshd accept the key of the room's current instance, once it is in Secrets Manager.
async fn authorize(h: &Harness, sshd: &Sshd) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let secret = loop {
        let object = h.api.get_opt("dr-beta").await.unwrap();
        if let Some(secret) = object.and_then(|o| o.status?.ssh_key_secret) {
            break secret;
        }
        assert!(Instant::now() < deadline, "the room's instance never got a key");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let pem = h.ctx.cloud.get_secret(&secret).await.unwrap().expect("the key is in Secrets Manager");
    let public = PrivateKey::from_openssh(pem.expose()).unwrap().public_key().to_openssh().unwrap();
    let file = sshd.dir.path().join("authorized_keys");
    let mut keys = std::fs::read_to_string(&file).unwrap();
    keys.push_str(&format!("{public}\n"));
    std::fs::write(file, keys).unwrap();
}

#[actix_web::test]
async fn a_room_on_moto_and_openssh_is_configured_idles_out_and_waits_for_budget() {
    let moto = Moto::start();
    let cloud: Arc<dyn Cloud> = Arc::new(AwsCloud::with_config(&moto.config().await));
    let stranger = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
    let sshd = Sshd::start(&stranger.public_key().to_openssh().unwrap());
    let health_port = health_server().await;
    let (clock, hands) = clock::manual(jiff::Timestamp::now());
    let options = Options {
        ssh: SshSettings { user: user(), ..Default::default() },
        seams: Seams {
            ssh_address: Some(sshd.address()),
            health_host: Some("127.0.0.1".into()),
            ..Default::default()
        },
        clock,
        ..Default::default()
    };
    let h = Harness::start_on_with(cloud.clone(), &moto.image().await, options).await;
    let app = support::admin::app(support::admin::state(&h)).await;
    let work = workdir();
    let path = format!("{}/etc/dataroom/config.json", work.path().display());
    let spec = json!({
        "config": { "inline": { "room": "beta" } }, "configPath": path,
        "healthCheck": { "port": health_port, "periodSeconds": 1 }, "idleTimeoutMinutes": 30,
    });
    create_room(&h, "beta", spec).await;
    authorize(&h, &sshd).await;
    room_until(&h, "beta", "Ready", 90, |r| support::rooms::phase(r) == "Ready").await;

    // Read back over SSH: mode 0600 and the content.
    let read = json!({ "command": format!("stat -c %a {path} && cat {path}") });
    let (code, out) = call(&app, "POST", "/api/ec2/instances/dr-beta/exec", Some(read.clone())).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["stdout"], "600\n{\n  \"room\": \"beta\"\n}\n");

    // A changed configuration is pushed again.
    patch_room(&h, "beta", json!({ "spec": { "config": { "inline": { "room": "beta", "v": 2 } } } })).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out) = call(&app, "POST", "/api/ec2/instances/dr-beta/exec", Some(read.clone())).await;
        if out["stdout"].as_str().is_some_and(|s| s.contains("\"v\": 2")) {
            break;
        }
        assert!(Instant::now() < deadline, "never re-pushed: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Idle past the timeout: stopped, and the instance terminated in EC2.
    let first = h.api.get("dr-beta").await.unwrap();
    hands.advance(jiff::SignedDuration::from_mins(31));
    in_phase(&h, "beta", "Stopped").await;
    let uid = first.metadata.uid.clone().unwrap();
    let instances = cloud.describe_by_owner(&uid).await.unwrap();
    assert!(instances.iter().all(|i| i.state.is_gone()), "{instances:?}");

    // With no headroom the fleet start is refused, and a declared start waits in BudgetBlocked.
    let (code, _) = call(&app, "PUT", "/api/ec2/budget", Some(json!({ "maxInstances": 0 }))).await;
    assert_eq!(code, 200);
    let (code, problem) = call(&app, "POST", "/api/fleet/rooms/default/beta/start", None).await;
    assert_eq!((code, problem["code"].as_str()), (403, Some("budget_exceeded")), "{problem}");
    patch_room(&h, "beta", json!({ "spec": { "state": "Running" } })).await;
    in_phase(&h, "beta", "BudgetBlocked").await;
    call(&app, "PUT", "/api/ec2/budget", Some(json!({ "maxInstances": 5 }))).await;
    authorize(&h, &sshd).await;
    room_until(&h, "beta", "Ready again", 90, |r| support::rooms::phase(r) == "Ready").await;
}
