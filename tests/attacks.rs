//! The attack suite: each test is an attack on a guarantee the product makes (the budget, the
//! audit log, secrets, confinement), written as the attacker would try it, and asserts that it
//! fails. docs/THREAT_MODEL.md lists every attack, the test that tries it and the result; attacks
//! that other suites already make are named there too.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dataroom_operator::clock;
use dataroom_operator::cloud::Lifecycle;
use dataroom_operator::crd::{Ec2Budget, Ec2Instance};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use sha2::Digest;
use support::admin::call;
use support::harness::{Harness, Options};
use support::rig::Rig;
use support::rooms::{create_room, in_phase, patch_room};

async fn set_budget(h: &Harness, spec: serde_json::Value) {
    let budgets: Api<Ec2Budget> = Api::all(h.client.clone());
    let budget: Ec2Budget = serde_json::from_value(json!({
        "apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Budget", "metadata": { "name": "default" }, "spec": spec,
    }))
    .unwrap();
    budgets.patch("default", &PatchParams::apply("attacker").force(), &Patch::Apply(&budget)).await.unwrap();
    // The gate takes the limits from the watch.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while h.ctx.gate.limits().max_instances != spec["maxInstances"].as_u64().unwrap() as u32 {
        assert!(std::time::Instant::now() < deadline, "the budget was never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn refused(o: &Ec2Instance) -> bool {
    o.status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "BudgetAllowed" && c.status == "False"))
}

/// Budget hole 1: create with `deletionPolicy: Retain`, let it run, delete the object, repeat. The
/// retained instance keeps running, so it keeps its slot: the next launch is refused at
/// `maxInstances`, through several sweeps, until the retained instance is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_and_delete_does_not_free_a_budget_slot() {
    let h = Harness::start().await;
    set_budget(&h, json!({ "maxInstances": 1 })).await;
    h.create("first", json!({ "deletionPolicy": "Retain" })).await;
    h.state("first", "running").await;
    h.api.delete("first", &DeleteParams::default()).await.unwrap();
    h.gone("first").await;

    h.create("second", json!({ "deletionPolicy": "Retain" })).await;
    let second = h.until("second", "refused", refused).await;
    assert!(second.status.unwrap().message.unwrap().contains("maxInstances: 1 of 1"));
    // Three sweeps (1 s apart) see the retained instance running: still refused, still one instance.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(h.fake.live_instances().len(), 1, "the budget let a second instance run");
    assert!(refused(&h.api.get("second").await.unwrap()));

    // Stopping the retained instance (outside the operator) gives the slot back.
    let retained = h.fake.live_instances()[0].id.clone();
    h.fake.stop_instance(&retained).await.unwrap();
    h.state("second", "running").await;
}

/// Audit hole 7: a benign first KiB hides the payload after it. The record holds the whole
/// command and its SHA-256.
#[tokio::test]
async fn an_exec_record_holds_the_whole_command() {
    let rig = Rig::start().await;
    rig.h.create("web", json!({})).await;
    rig.h.state("web", "running").await;
    let app = support::admin::app(rig.state()).await;
    let command = format!("true # {}\necho payload", "a".repeat(1100));
    let (code, out) =
        call(&app, "POST", "/api/ec2/instances/web/exec", Some(json!({ "command": command }))).await;
    assert_eq!(code, 200, "{out}");
    let audit = std::fs::read_to_string(rig.h.ctx.audit.path()).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["action"] == "api.instance.exec")
        .collect();
    assert_eq!(records.len(), 2, "started and success: {records:?}");
    let sha = hex::encode(sha2::Sha256::digest(command.as_bytes()));
    let (intent, outcome) = (&records[0], &records[1]);
    assert_eq!(intent["outcome"], "started");
    assert_eq!(intent["params"]["command"], command.as_str(), "the payload is in the record");
    assert_eq!(intent["params"]["command_sha256"], sha.as_str());
    assert_eq!(outcome["params"]["command_sha256"], sha.as_str(), "the outcome pairs with its intent");
}

fn idle_room(rig: &Rig) -> serde_json::Value {
    json!({
        "config": { "inline": { "room": 1 } },
        "healthCheck": { "port": rig.health_port, "periodSeconds": 1 },
        "idleTimeoutMinutes": 30,
    })
}

/// Secrets hole 10: `lastActivity` far in the future, in the room's annotation and in its health
/// endpoint's answer, would hold the idle stop off forever. Thirty-one idle minutes later the
/// room is stopped all the same.
#[tokio::test]
async fn a_last_activity_in_the_future_does_not_hold_off_the_idle_stop() {
    let (clock, hands) = clock::manual(jiff::Timestamp::now());
    let rig = Rig::start_with(Options { clock, ..Default::default() }).await;
    let h = &rig.h;
    create_room(h, "alpha", idle_room(&rig)).await;
    in_phase(h, "alpha", "Ready").await;
    let future = "2100-01-01T00:00:00Z";
    patch_room(
        h,
        "alpha",
        json!({ "metadata": { "annotations": { "dataroom.dev/last-activity": future } } }),
    )
    .await;
    let health = json!({ "status": "ok", "lastActivity": future }).to_string();
    std::fs::write(rig.home().join("health.json"), health).unwrap();
    // A few health checks read the future time before the clock moves.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    std::fs::write(rig.home().join("health.json"), json!({ "status": "ok" }).to_string()).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    hands.advance(jiff::SignedDuration::from_mins(31));
    let room = in_phase(h, "alpha", "Stopped").await;
    assert!(room.status.unwrap().reason.unwrap().starts_with("Idle"));
    assert!(h.fake.live_instances().is_empty());
}

/// The sandbox's API emulator runs on people's own machines. Another user of the machine, or a web
/// page in the browser, tries it: plain HTTP, no token, a guessed token; then, even with the token,
/// a forged `Host` (DNS rebinding), a cross-site form post, an endless body. Each is refused before
/// anything is read or written; kubectl, with the kubeconfig only its user can read, still works.
#[test]
fn the_sandbox_api_admits_only_the_holder_of_its_kubeconfig() {
    use std::os::unix::fs::PermissionsExt;
    use support::api_tls::ApiAccess;
    use support::sandbox::Sandbox;
    let sandbox = Sandbox::start();
    let mode = std::fs::metadata(sandbox.kubeconfig()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the kubeconfig is the user's only");
    let api = ApiAccess::from_kubeconfig(&sandbox.kubeconfig());
    assert!(api.server.starts_with("https://127.0.0.1:"), "{}", api.server);
    assert_eq!(api.token.len(), 64, "a token of 64 hex digits");
    // A namespace of its own: `default` gets the sandbox's audit checkpoint ConfigMap at start.
    sandbox.ok(&["create", "namespace", "quiet"]);
    let path = "/api/v1/namespaces/quiet/configmaps";
    let before = sandbox.ok(&["-n", "quiet", "get", "configmaps", "-o", "name"]);

    // Plain HTTP gets no answer at all: the port speaks TLS only.
    let plain = raw_http(&api.address, &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"));
    assert!(!plain.contains("HTTP/1."), "{plain}");
    // Without the token, or with a guess, nothing is served.
    let json = "Content-Type: application/json\r\nContent-Length: 2\r\n";
    for (what, method, headers) in [
        ("no token", "GET", String::new()),
        ("a guessed token", "GET", "Authorization: Bearer 0000\r\n".to_string()),
        ("the token as Basic", "GET", format!("Authorization: Basic {}\r\n", api.token)),
        ("a write without the token", "POST", json.to_string()),
    ] {
        let body = if method == "POST" { "{}" } else { "" };
        let (code, reply) = api.request(method, path, &headers, body);
        assert_eq!(code, 401, "{what}: {reply}");
    }
    // Even with the token, what only a web page would send is refused.
    let form = "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n";
    let plain_text = "Content-Type: text/plain\r\nContent-Length: 2\r\n";
    // Announced, and refused before a byte of it is read.
    let huge = "Content-Type: application/json\r\nContent-Length: 4194304\r\n";
    for (what, headers, body, refused) in [
        ("a cross-site form post", form, "a=b&c=d", 415),
        ("a text/plain post", plain_text, "{}", 415),
        ("an endless body", huge, "", 413),
    ] {
        let (code, reply) = api.request("POST", path, &(api.bearer() + headers), body);
        assert_eq!(code, refused, "{what}: {reply}");
    }
    // DNS rebinding: a page at attacker.example resolves its own name to 127.0.0.1.
    let rebound = format!("GET {path} HTTP/1.0\r\nHost: attacker.example\r\n{}\r\n", api.bearer());
    let reply = api.raw(&rebound);
    assert!(reply.starts_with("HTTP/1.0 403") || reply.starts_with("HTTP/1.1 403"), "{reply}");
    let (code, reply) = api.request("GET", path, &api.bearer(), "");
    assert_eq!(code, 200, "the holder is served: {reply}");
    assert_eq!(
        sandbox.ok(&["-n", "quiet", "get", "configmaps", "-o", "name"]),
        before,
        "nothing was written"
    );
}

/// The emulator served with a token (as a library user may serve it): no token and a wrong token
/// are refused, the right one is served.
#[tokio::test]
async fn the_emulator_with_a_token_admits_only_its_holder() {
    use kube_emulator::{Access, ApiServer};
    let server = ApiServer::new();
    let access = Access::with_token("s3cret-token");
    let (addr, _serving) =
        kube_emulator::serve(server, "127.0.0.1:0".parse().unwrap(), access).await.unwrap();
    let get = |auth: &str| {
        let request =
            format!("GET /api/v1/namespaces/default/configmaps HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n");
        let address = addr.to_string();
        tokio::task::spawn_blocking(move || raw_http(&address, &request))
    };
    for (auth, status) in [
        ("", "401"),
        ("Authorization: Bearer guess\r\n", "401"),
        ("Authorization: Bearer s3cret-token-and-more\r\n", "401"),
        ("Authorization: Basic czNjcmV0LXRva2Vu\r\n", "401"),
        ("Authorization: Bearer s3cret-token\r\n", "200"),
    ] {
        let reply = get(auth).await.unwrap();
        assert!(reply.split_whitespace().nth(1) == Some(status), "{auth:?}: {reply}");
    }
}

fn raw_http(address: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = Vec::new();
    // A TLS port answers plain HTTP with a closed connection, perhaps after an alert's bytes.
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// Secrets hole 9: a room's author names a Secret of the namespace that was never meant for an
/// instance. It is not pushed until its owner labels it pushable.
#[tokio::test]
async fn a_room_cannot_push_a_secret_that_did_not_opt_in() {
    use k8s_openapi::api::core::v1::Secret;
    let rig = Rig::start().await;
    let h = &rig.h;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), "default");
    let secret = |labels: serde_json::Value| {
        json!({ "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": "aws-credentials", "labels": labels },
                "stringData": { "key": "AKIA-not-for-rooms" } })
    };
    let apply = PatchParams::apply("victim").force();
    secrets.patch("aws-credentials", &apply, &Patch::Apply(secret(json!({})))).await.unwrap();
    let spec = json!({
        "config": { "secretKeyRef": { "name": "aws-credentials", "key": "key" } },
        "healthCheck": { "port": rig.health_port, "periodSeconds": 1 },
    });
    create_room(h, "thief", spec).await;
    let room = in_phase(h, "thief", "Failed").await;
    let reason = room.status.unwrap().reason.unwrap();
    assert!(reason.contains("dataroom.dev/pushable"), "{reason}");
    assert!(h.fake.live_instances().is_empty(), "nothing launched for a room that cannot be configured");

    // Once its owner opts in, the same room is configured.
    let labels = json!({ "dataroom.dev/pushable": "true" });
    secrets.patch("aws-credentials", &apply, &Patch::Apply(secret(labels))).await.unwrap();
    in_phase(h, "thief", "Ready").await;
    let pushed = std::fs::read_to_string(rig.home().join("etc/dataroom/config.json")).unwrap();
    assert_eq!(pushed, "AKIA-not-for-rooms");
}

/// Secrets hole 9: the operator's own namespace holds its admin keys, signing key and AWS
/// credentials. A room or an instance created there is refused, and nothing is launched.
#[tokio::test]
async fn the_operators_own_namespace_is_never_reconciled() {
    let options = Options { own_namespace: Some("default".into()), ..Default::default() };
    let h = Harness::start_with(options).await;
    create_room(&h, "inside", json!({ "config": { "inline": { "a": 1 } } })).await;
    let room = in_phase(&h, "inside", "Failed").await;
    assert!(room.status.unwrap().reason.unwrap().contains("operator's own"));
    h.create("direct", json!({})).await;
    let direct = h
        .until("direct", "refused", |o| {
            o.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.reason == "InvalidSpec"))
        })
        .await;
    assert!(format!("{:?}", direct.status).contains("operator's own"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(h.fake.live_instances().is_empty());
}

/// Bounded resources (hole 11, in part): one request must not make the operator hold unbounded
/// output. Binary output comes back base64 (a third larger, not six times as JSON escapes); a
/// batch stops running commands once its output reaches the cap; a configuration over its limit
/// is refused before anything is written.
#[actix_web::test]
async fn one_request_cannot_make_the_operator_hold_unbounded_output() {
    use base64::Engine;
    let rig = Rig::start().await;
    let mut state = rig.state();
    state.limits.max_batch_output_bytes = 3000;
    state.limits.max_config_bytes = 64;
    let app = support::admin::app(state).await;
    support::rig::running(&app, "web").await;

    let body = json!({ "command": "head -c 1000 /dev/zero" });
    let (code, out) = call(&app, "POST", "/api/ec2/instances/web/exec", Some(body)).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["stdout_encoding"], "base64");
    let stdout = base64::engine::general_purpose::STANDARD.decode(out["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(stdout, vec![0u8; 1000], "binary output arrives whole");
    assert!(out["stdout"].as_str().unwrap().len() <= 1336, "not six bytes per NUL");

    let commands = vec!["head -c 2000 /dev/zero | tr '\\0' a"; 10];
    let body = json!({ "commands": commands });
    let (code, batch) = call(&app, "POST", "/api/ec2/instances/web/exec-batch", Some(body)).await;
    assert_eq!(code, 200, "{batch}");
    assert_eq!(batch["results"].as_array().unwrap().len(), 2, "stopped once 3000 bytes were kept");
    assert_eq!((&batch["output_capped"], &batch["stopped_early"]), (&json!(true), &json!(true)));

    let big = json!({ "config_source": { "padding": "x".repeat(100) } });
    let (code, problem) = call(&app, "POST", "/api/ec2/instances/web/push-config", Some(big)).await;
    assert_eq!((code, problem["code"].as_str()), (413, Some("config_too_large")), "{problem}");
}

/// Budget hole 2: disks cost money, stopped or not. A 16 TiB root volume is refused outright. Then,
/// with one instance allowed at a time, the attacker launches instances with large root volumes and
/// stops each to free the slot for the next: the stopped instances' volumes go on counting against
/// the day's cap, so the launches end once their volumes would pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_instances_root_volumes_stay_in_the_budget() {
    // Midnight UTC: a whole day to midnight. 1,000 GiB of gp3 is $2.63 a day; a t3.micro $0.25.
    let (clock, _) = clock::manual("2026-11-22T00:00:00Z".parse().unwrap());
    let h = Harness::start_with(Options { clock, ..Default::default() }).await;
    set_budget(&h, json!({ "maxInstances": 1, "dailySpendUsd": 6.0, "maxRootVolumeGiB": 1000 })).await;

    h.create("huge", json!({ "rootVolumeGiB": 16384 })).await;
    let huge = h.until("huge", "refused", refused).await.status.unwrap().message.unwrap();
    assert!(huge.contains("maxRootVolumeGiB: a 16384 GiB root volume is larger than the 1000 GiB"), "{huge}");

    for disk in ["disk-1", "disk-2"] {
        h.create(disk, json!({ "rootVolumeGiB": 1000 })).await;
        h.state(disk, "running").await;
        h.patch_spec(disk, json!({ "powerState": "Stopped" })).await;
        h.state(disk, "stopped").await;
    }
    assert_eq!(h.ctx.gate.snapshot().root_volume_gib, 2000, "both stopped instances' volumes are counted");
    h.create("disk-3", json!({ "rootVolumeGiB": 1000 })).await;
    let third = h.until("disk-3", "refused", refused).await.status.unwrap().message.unwrap();
    assert!(third.contains("dailySpendUsd"), "{third}");
    // Three sweeps later: still refused, and EC2 holds the two stopped instances only.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(refused(&h.api.get("disk-3").await.unwrap()));
    assert_eq!(h.fake.live_instances().len(), 2, "a launch got past the volumes' cost");
}

/// A filesystem of `size` of its own, so that a test can fill it (CI runs as root; without root
/// the test fails, it does not skip).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = format!("size={size}");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs needs root (CI runs as root)");
        Tmpfs { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a filler file until the filesystem refuses with ENOSPC.
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = [0u8; 4096];
        let error = loop {
            if let Err(e) = filler.write_all(&block) {
                break e;
            }
        };
        assert_eq!(error.raw_os_error(), Some(28), "the disk is full: {error}");
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Audit hole 5: the disk under the audit log fills up. Requests go on until one cannot be
/// recorded. A record cut short never stays in the log (it would break the chain and block the
/// next start), a request refused for want of its record ("nothing was done") did nothing, and
/// every later one is refused the same way while the disk is full. Once there is room again the
/// log takes the next record and the whole chain verifies.
#[actix_web::test]
async fn a_full_disk_under_the_audit_log_stops_mutations_and_leaves_the_log_whole() {
    let disk = Tmpfs::mount("256k");
    let log = disk.path().join("audit.jsonl");
    let h = Harness::start_with(Options { audit_log: Some(log.clone()), ..Default::default() }).await;
    let app = support::admin::app(support::admin::state(&h)).await;
    // What the writer has acknowledged is whole at every step. (The controller appends at the same
    // time, so the file's tail may be a write under way; `settled` below checks the whole file.)
    let intact = |when: &str| {
        let report = h.ctx.audit.verify().unwrap();
        assert!(report.is_intact(), "{when}: {:?}", report.problems);
        report.records
    };
    let app = &app;
    let create = move |name: String| call(app, "POST", "/api/ec2/instances", Some(json!({ "name": name })));
    // Accepted (202): the object is made, the controller launches it.
    let (code, created) = create("before".into()).await;
    assert_eq!(code, 202, "{created}");

    disk.fill();
    let mut refusals = 0;
    for attempt in 0..40 {
        let name = format!("during-{attempt}");
        let (code, answer) = create(name.clone()).await;
        intact(&format!("after {name}"));
        let exists = h.api.get_opt(&name).await.unwrap().is_some();
        match code {
            202 => assert!(exists && refusals == 0, "created while the disk was full: {answer}"),
            503 => {
                assert_eq!(answer["code"], "audit_unavailable", "{answer}");
                let detail = answer["detail"].as_str().unwrap_or_default();
                match detail.contains("nothing was done") {
                    true => assert!(!exists, "{name} was done unrecorded: {detail}"),
                    false => assert!(detail.contains("carried out") && exists, "{detail}"),
                }
                refusals += 1;
            }
            other => panic!("{name}: {other} {answer}"),
        }
        if refusals == 3 {
            break;
        }
    }
    assert_eq!(refusals, 3, "a full disk never refused a request");

    disk.free();
    let before = intact("once the disk has room");
    let (code, created) = create("after".into()).await;
    assert_eq!(code, 202, "{created}");
    assert!(intact("after the disk had room again") >= before + 2, "the intent and outcome of `after`");
    // No record cut short stayed: the whole file verifies (once no write is under way).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dataroom_operator::audit::verify_file(&log).unwrap().is_intact() {
        assert!(std::time::Instant::now() < deadline, "the file keeps a torn record");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dataroom_operator::audit::AuditLog::open(&log).is_ok(), "the log opens for the next start");
}

/// The operator's own client to the emulator, which the test can cut off from it (a partition
/// between one replica and the API server).
fn cuttable_client(server: &std::sync::Arc<kube_emulator::ApiServer>) -> (Arc<AtomicBool>, kube::Client) {
    let cut = Arc::new(AtomicBool::new(false));
    let (inner, cut_off) = (server.client(), cut.clone());
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let (inner, cut_off) = (inner.clone(), cut_off.clone());
        async move {
            if cut_off.load(Ordering::SeqCst) {
                return Err::<http::Response<kube::client::Body>, tower::BoxError>(
                    "cut off from the API server".into(),
                );
            }
            Ok(inner.send(req).await?)
        }
    });
    (cut, kube::Client::new(service, "default"))
}

/// Budget hole 3: a leader is cut off from the API server while its reconciles go on. Once its
/// lease has passed to another replica, none of its EC2 mutations goes through, whether it can
/// reach the API server to find out or not.
#[tokio::test]
async fn a_deposed_leader_changes_nothing_in_ec2() {
    use dataroom_operator::cloud::Imperative;
    use dataroom_operator::cloud::fake::{Delays, FakeCloud};
    use dataroom_operator::cloud::fenced::Fenced;
    use dataroom_operator::leader::{Election, Fence, LeaseSettings};

    let server = kube_emulator::ApiServer::new();
    let (cut, client) = cuttable_client(&server);
    let lease = |identity: &str| LeaseSettings {
        namespace: "default".into(),
        name: "dataroom-operator".into(),
        identity: identity.into(),
        duration_seconds: 2,
    };
    let mut first = Election::start(client.clone(), &lease("first")).await.unwrap();
    first.acquired().await.unwrap();
    let fence = Fence::acquired(client, &lease("first"), clock::system()).await.unwrap();
    let fake = Arc::new(FakeCloud::new(Delays::default()));
    let leader = Fenced::new(fake.clone(), Arc::new(fence));
    let request = support::launch_request("uid-web", "default", "web");
    dataroom_operator::cloud::keys::ensure_key_pair(fake.as_ref(), &request.key_name).await.unwrap();
    let web = leader.run_instance(&request, &support::reservation("uid-web")).await.unwrap();

    cut.store(true, Ordering::SeqCst);
    let mut second = Election::start(server.client(), &lease("second")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), second.acquired())
        .await
        .expect("the lease passes")
        .unwrap();

    let refused = |what: &str, result: Result<(), dataroom_operator::cloud::CloudError>| match result {
        Err(e) => assert_eq!(e.code, "NotLeader", "{what}: {e}"),
        Ok(()) => panic!("{what} went through from a deposed leader"),
    };
    for reachable in [false, true] {
        cut.store(!reachable, Ordering::SeqCst);
        let other = support::launch_request("uid-db", "default", "db");
        refused("a launch", leader.run_instance(&other, &support::reservation("uid-db")).await.map(drop));
        refused("a stop", leader.stop_instance(&web.id).await);
        refused("a termination", leader.terminate_instance(&web.id).await);
        refused("an image", leader.create_image(&web.id, "snapshot").await.map(drop));
        refused("a key pair deletion", leader.delete_key_pair(&request.key_name).await);
    }
    let live = fake.live_instances();
    assert_eq!(live.len(), 1, "only the launch made while leading");
    assert_eq!(live[0].state.as_str(), "running", "nothing stopped or terminated it");
    assert!(fake.describe_images(&[]).await.unwrap().is_empty(), "no image was made");
}

/// Bounded resources (hole 11): a caller opens more SSH work than the operator allows at once.
/// The one over the bound is refused at once with 503 `ssh_busy` and `Retry-After`, is audited
/// as refused, and the bound is given back when the work ends.
#[actix_web::test]
async fn ssh_work_beyond_the_bound_is_refused_with_a_time_to_retry() {
    let rig = Rig::start().await;
    let mut state = rig.state();
    state.limits.max_ssh_operations = 1;
    let app = support::admin::app(state).await;
    support::rig::running(&app, "web").await;

    let slow = json!({ "command": "sleep 2" });
    let request = |body: serde_json::Value| {
        actix_web::test::TestRequest::post()
            .uri("/api/ec2/instances/web/exec")
            .insert_header(("Authorization", format!("Bearer {}", support::admin::KEY)))
            .set_json(body)
            .to_request()
    };
    let busy = async {
        // Once the slow command holds the one place.
        tokio::time::sleep(Duration::from_millis(500)).await;
        actix_web::test::call_service(&app, request(json!({ "command": "true" }))).await
    };
    let (slow, busy) = tokio::join!(actix_web::test::call_service(&app, request(slow)), busy);
    assert_eq!(slow.status(), 200);
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers().get("Retry-After").unwrap(), "1");
    let problem: serde_json::Value = actix_web::test::read_body_json(busy).await;
    assert_eq!(problem["code"], "ssh_busy", "{problem}");
    let (code, _) =
        call(&app, "POST", "/api/ec2/instances/web/exec", Some(json!({ "command": "true" }))).await;
    assert_eq!(code, 200, "the place is given back when the work ends");
}

/// Audit hole 8: whoever can write the audit volume and the checkpoint ConfigMap puts back an
/// older checkpoint and cuts the log to match. The checkpoint alone cannot tell (it is genuine and
/// the log holds its record); a verifier that remembers the highest checkpoint it accepted
/// (`--state`) refuses it. Checkpoints come every interval, so a quiet one shows nothing was logged.
#[tokio::test]
async fn a_checkpoint_put_back_with_the_log_cut_to_match_is_refused() {
    use dataroom_operator::audit::checkpoint::Signer;
    use dataroom_operator::audit::{AuditLog, Entry, Outcome};
    use std::process::ExitCode;

    let dir = tempfile::tempdir().unwrap();
    let (log_path, checkpoint, state) = (
        dir.path().join("audit.jsonl"),
        dir.path().join("checkpoint.json"),
        dir.path().join("verifier.state"),
    );
    let log = AuditLog::open(&log_path).unwrap();
    let signer = Signer::generate();
    let key = signer.public_key();
    let append = async |n: usize| {
        for _ in 0..n {
            log.append(Entry::new("controller", "launch", "ec2instance/default/web", Outcome::Success))
                .await
                .unwrap();
        }
        log.head()
    };
    let store = |c: &dataroom_operator::audit::checkpoint::Checkpoint| {
        std::fs::write(&checkpoint, serde_json::to_string(c).unwrap()).unwrap()
    };
    let verify = |remember: bool| {
        dataroom_operator::audit::verify(
            &log_path,
            Some((&checkpoint, &key)),
            remember.then_some(state.as_path()),
        )
    };

    let (seq, hash) = append(10).await;
    let old = signer.sign(None, seq, &hash, jiff::Timestamp::now());
    store(&old);
    assert_eq!(verify(true), ExitCode::SUCCESS);
    let cut_at = std::fs::read(&log_path).unwrap().len();
    let (seq, hash) = append(2).await;
    let newer = signer.sign(Some(&old), seq, &hash, jiff::Timestamp::now());
    store(&newer);
    assert_eq!(verify(true), ExitCode::SUCCESS, "the verifier now remembers checkpoint 2");
    let quiet = signer.sign(Some(&newer), seq, &hash, jiff::Timestamp::now());
    store(&quiet);
    assert_eq!(verify(true), ExitCode::SUCCESS, "a quiet interval's checkpoint follows");

    // The attack: the last two records cut off, the first checkpoint put back.
    std::fs::OpenOptions::new().write(true).open(&log_path).unwrap().set_len(cut_at as u64).unwrap();
    store(&old);
    assert_eq!(verify(false), ExitCode::SUCCESS, "without memory the rollback is undetectable");
    assert_eq!(verify(true), ExitCode::FAILURE, "a verifier that remembers refuses it");
    // Nor can a checkpoint of a rewritten chain take checkpoint 3's place.
    let forged = signer.sign(Some(&old), 10, &old.hash, jiff::Timestamp::now());
    let forged_next = signer.sign(Some(&forged), 10, &old.hash, jiff::Timestamp::now());
    store(&forged_next);
    assert_eq!(verify(true), ExitCode::FAILURE, "a chain forked from an older checkpoint");
}
