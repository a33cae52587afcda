//! SSH through the admin API to the sandbox's simulated instances (in-process): exit codes,
//! output caps, timeouts that kill, batches, audit records, and host keys pinned on first use.

mod support;

use std::time::Duration;

use dataroom_operator::ssh::SshSettings;
use serde_json::json;
use sha2::{Digest, Sha256};
use support::admin::call;
use support::rig::{Rig, free_port, running};

#[actix_web::test]
async fn exec_reports_exits_caps_output_and_kills_on_timeout() {
    let rig = Rig::start().await;
    let mut state = rig.state();
    state.limits.output_cap = 16;
    let app = support::admin::app(state).await;
    running(&app, "web").await;
    let exec = |command: &str, timeout: u64| {
        let body = json!({"command": command, "timeout_seconds": timeout});
        call(&app, "POST", "/api/ec2/instances/web/exec", Some(body))
    };

    let (status, ok) = exec("echo hello; echo warn >&2", 10).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!((ok["exit"].as_str(), ok["exit_code"].as_u64()), (Some("code"), Some(0)));
    assert_eq!((ok["stdout"].as_str(), ok["stderr"].as_str()), (Some("hello\n"), Some("warn\n")));
    let (_, failed) = exec("exit 3", 10).await;
    assert_eq!((failed["exit"].as_str(), failed["exit_code"].as_u64()), (Some("code"), Some(3)));

    let (_, long) = exec("seq 1 1000", 10).await;
    assert_eq!(long["stdout"].as_str().unwrap().len(), 16);
    assert_eq!((long["stdout_bytes"].as_u64(), long["stdout_truncated"].as_bool()), (Some(3893), Some(true)));

    let (_, slow) = exec("sleep 2 && touch late", 1).await;
    assert_eq!(slow["timed_out"], true, "{slow}");
    assert_ne!(slow["exit_code"], 0, "a timeout is never reported as success");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let id = rig.h.fake.live_instances()[0].id.clone();
    assert!(!rig.root.path().join(&id).join("late").exists(), "the timed-out command was killed");

    for (body, code) in [
        (json!({"command": ""}), "invalid_command"),
        (json!({"command": "a\u{0}b"}), "invalid_command"),
        (json!({"command": "x".repeat(17 * 1024)}), "invalid_command"),
        (json!({"command": "true", "timeout_seconds": 601}), "invalid_timeout"),
        (json!({"command": "true", "timeout_seconds": 0}), "invalid_timeout"),
    ] {
        let (status, problem) = call(&app, "POST", "/api/ec2/instances/web/exec", Some(body)).await;
        assert_eq!((status, problem["code"].as_str()), (400, Some(code)));
    }

    let (_, page) = call(&app, "GET", "/api/audit?action=api.instance.exec&limit=2", None).await;
    let (started, finished) = (&page["records"][0], &page["records"][1]);
    assert_eq!(
        (started["outcome"].as_str(), finished["outcome"].as_str()),
        (Some("started"), Some("success"))
    );
    assert_eq!(started["params"]["command"], "echo hello; echo warn >&2");
    let hash = hex::encode(Sha256::digest(b"hello\n"));
    assert_eq!(finished["params"]["stdout_sha256"].as_str(), Some(hash.as_str()));
    assert_eq!(finished["params"]["exit"], json!({"kind": "code", "value": 0}));
}

#[actix_web::test]
async fn a_batch_runs_over_one_connection_and_stops_on_error() {
    let rig = Rig::start().await;
    let app = support::admin::app(rig.state()).await;
    running(&app, "web").await;
    let batch = json!({"commands": ["echo one > f", "false", "echo never >> f"]});
    let (status, stopped) = call(&app, "POST", "/api/ec2/instances/web/exec-batch", Some(batch)).await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!((stopped["results"].as_array().unwrap().len(), &stopped["stopped_early"]), (2, &json!(true)));
    let batch = json!({"commands": ["false", "cat f"], "stop_on_error": false});
    let (_, all) = call(&app, "POST", "/api/ec2/instances/web/exec-batch", Some(batch)).await;
    assert_eq!(all["results"][1]["stdout"], "one\n");
    assert_eq!(all["stopped_early"], false);
    let (status, problem) =
        call(&app, "POST", "/api/ec2/instances/web/exec-batch", Some(json!({"commands": []}))).await;
    assert_eq!((status, problem["code"].as_str()), (400, Some("invalid_batch")));
}

#[actix_web::test]
async fn the_host_key_is_pinned_on_first_use_and_a_changed_one_is_refused() {
    let rig = Rig::start().await;
    let app = support::admin::app(rig.state()).await;
    running(&app, "web").await;
    let (status, _) =
        call(&app, "POST", "/api/ec2/instances/web/exec", Some(json!({"command": "true"}))).await;
    assert_eq!(status, 200);
    let object = rig.h.api.get("web").await.unwrap();
    let pin = object.status.unwrap().ssh_host_key.expect("pinned in status");
    assert!(pin.public_key.starts_with("ssh-ed25519 "));
    assert_eq!(pin.instance_id, rig.h.fake.live_instances()[0].id);

    // The instance now presents another host key: a fresh pool (as after a restart) refuses it.
    rig.simulator.abort();
    std::fs::remove_file(rig.root.path().join("ssh_host_ed25519_key")).unwrap();
    let port = free_port();
    let _again = Rig::simulate(&rig.h, rig.root.path(), port, free_port());
    let ip = rig.h.fake.live_instances()[0].private_ip.clone().unwrap();
    while tokio::net::TcpStream::connect((ip.as_str(), port)).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut state = rig.state();
    state.ssh = std::sync::Arc::new(dataroom_operator::ssh::Pool::new(
        rig.h.ctx.cloud.clone(),
        SshSettings { port, ..Default::default() },
        &Default::default(),
    ));
    let app = support::admin::app(state).await;
    let (status, problem) =
        call(&app, "POST", "/api/ec2/instances/web/exec", Some(json!({"command": "touch pwned"}))).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("host_key_changed")), "{problem}");
    let id = rig.h.fake.live_instances()[0].id.clone();
    assert!(!rig.root.path().join(id).join("pwned").exists());
    let (_, page) = call(&app, "GET", "/api/audit?action=ssh.host_key.refused", None).await;
    assert_eq!(page["records"][0]["outcome"], "refused");
    let (_, page) = call(&app, "GET", "/api/audit?action=api.instance.exec", None).await;
    let outcomes: Vec<&str> =
        page["records"].as_array().unwrap().iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["started", "success", "refused"], "the refused command never started");
}

/// A pooled connection unused for the idle timeout is closed; the next call dials again and
/// checks the pinned host key without pinning anew.
#[actix_web::test]
async fn idle_connections_are_closed_and_the_next_call_dials_again() {
    let rig = Rig::start().await;
    let mut state = rig.state();
    let settings = SshSettings { port: rig.ssh_port, idle_timeout: Duration::ZERO, ..Default::default() };
    let pool = std::sync::Arc::new(dataroom_operator::ssh::Pool::new(
        rig.h.ctx.cloud.clone(),
        settings,
        &Default::default(),
    ));
    state.ssh = pool.clone();
    let app = support::admin::app(state).await;
    running(&app, "web").await;
    let exec =
        |command: &str| call(&app, "POST", "/api/ec2/instances/web/exec", Some(json!({"command": command})));
    assert_eq!(exec("echo one").await.0, 200);
    assert_eq!(pool.evict_idle(), 0, "the idle connection is closed");
    let (status, two) = exec("echo two").await;
    assert_eq!((status, two["stdout"].as_str()), (200, Some("two\n")), "{two}");
    let (_, pins) = call(&app, "GET", "/api/audit?action=ssh.host_key.pinned", None).await;
    assert_eq!(pins["records"].as_array().unwrap().len(), 1, "pinned once: {pins}");
}
