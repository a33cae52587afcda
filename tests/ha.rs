//! High availability: two `run` replicas against the API emulator and one moto server. Exactly
//! one leads (reconciles, writes the audit log, is ready); when it is killed the standby takes
//! over within the lease duration and continues the same audit chain; a graceful stop hands the
//! lease over; the signed checkpoint catches records cut from the end of the log.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dataroom_operator::audit::checkpoint::Signer;
use dataroom_operator::crd::Ec2Instance;
use dataroom_sandbox::{install_crds, write_kubeconfig};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use kube_emulator::{Access, ApiServer, serve};
use support::moto::Moto;
use support::sandbox::http_get;

const LEASE_SECONDS: u64 = 3;

struct Replica {
    name: &'static str,
    child: Child,
    http: String,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(name: &'static str, dir: &Path, moto: &Moto, image: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_dataroom-operator"))
            .args(["run", "--leader-election", "--lease-namespace", "default"])
            .args(["--lease-duration", &LEASE_SECONDS.to_string(), "--poll-interval", "1"])
            .args(["--endpoint-url", &moto.endpoint, "--default-image-id", image])
            .arg("--audit-log")
            .arg(dir.join("audit.jsonl"))
            .arg("--audit-signing-key")
            .arg(dir.join("signing.pem"))
            .args(["--audit-checkpoint-interval", "1", "--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--audit-archive", ARCHIVE])
            .env("KUBECONFIG", dir.join("kubeconfig"))
            .env("POD_NAME", name)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        let log = dir.join(format!("{name}.log"));
        Replica { name, child, http: format!("http://127.0.0.1:{port}"), log }
    }

    fn ready(&self) -> Option<bool> {
        http_get(&format!("{}/readyz", self.http)).map(|(code, _)| code == 200)
    }

    fn reconciles(&self) -> u64 {
        let (_, body) = http_get(&format!("{}/metrics", self.http)).unwrap();
        body.lines()
            .filter(|l| l.starts_with("dataroom_reconciles_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} log ---\n{log}", self.name);
        }
    }
}

async fn until<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn running(api: &Api<Ec2Instance>, name: &str) {
    let spec = serde_json::json!({"apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Instance",
        "metadata": {"name": name}, "spec": {"instanceType": "t3.micro"}});
    api.create(&PostParams::default(), &serde_json::from_value(spec).unwrap()).await.unwrap();
    until(&format!("{name} running"), Duration::from_secs(60), async || {
        let o = api.get(name).await.ok()?;
        (o.status?.state.as_deref() == Some("running")).then_some(())
    })
    .await;
}

/// Where both replicas archive checkpoints and records (a bucket with Object Lock, in moto).
const ARCHIVE: &str = "s3://audit/ha";

/// `audit verify LOG --archive`: the chain both leaders archived, and the log still holding it.
fn verify_archive(dir: &Path, moto: &Moto, public_key: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dataroom-operator"))
        .args(["audit", "verify"])
        .arg(dir.join("audit.jsonl"))
        .args(["--archive", ARCHIVE, "--public-key", public_key])
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn verify(dir: &Path, public_key: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dataroom-operator"))
        .args(["audit", "verify"])
        .arg(dir.join("audit.jsonl"))
        .arg("--checkpoint")
        .arg(dir.join("checkpoint.json"))
        .args(["--public-key", public_key])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_standby_takes_over() {
    let moto = Moto::start();
    let image = moto.image().await;
    let server = ApiServer::new();
    let (addr, _serving) =
        serve(server.clone(), "127.0.0.1:0".parse().unwrap(), Access::default()).await.unwrap();
    let client = server.client();
    install_crds(&client).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_kubeconfig(&dir.path().join("kubeconfig"), addr, None).unwrap();
    let signer = Signer::generate();
    std::fs::write(dir.path().join("signing.pem"), signer.pem()).unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.config().await).force_path_style(true).build(),
    );
    s3.create_bucket().bucket("audit").object_lock_enabled_for_bucket(true).send().await.unwrap();

    let mut replicas = [
        Replica::start("replica-a", dir.path(), &moto, &image),
        Replica::start("replica-b", dir.path(), &moto, &image),
    ];
    let leader = until("one replica ready", Duration::from_secs(60), async || {
        let ready: Vec<bool> = replicas.iter().map(|r| r.ready().unwrap_or(false)).collect();
        ready.iter().position(|r| *r)
    })
    .await;
    let standby = 1 - leader;
    let (code, body) = http_get(&format!("{}/readyz", replicas[standby].http)).unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("standby"), "{body}");
    let (code, body) = http_get(&format!("{}/api/ec2/instances", replicas[standby].http)).unwrap();
    assert_eq!(code, 503, "the standby serves no admin API: {body}");
    assert!(body.contains("not_leader"), "{body}");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let holder = leases.get("dataroom-operator").await.unwrap().spec.unwrap().holder_identity;
    assert_eq!(holder.as_deref(), Some(replicas[leader].name));

    let api: Api<Ec2Instance> = Api::namespaced(client.clone(), "default");
    running(&api, "web-1").await;
    assert!(replicas[leader].reconciles() > 0);
    assert_eq!(replicas[standby].reconciles(), 0, "the standby reconciles nothing");

    // Killed without a chance to hand over: the standby waits out the lease.
    replicas[leader].child.kill().unwrap();
    replicas[leader].child.wait().unwrap();
    let killed = Instant::now();
    // The lease, plus the new leader's first EC2 sweep before it reports ready.
    let limit = Duration::from_secs(LEASE_SECONDS + 5);
    until("the standby takes over", limit, async || replicas[standby].ready().unwrap_or(false).then_some(()))
        .await;
    let takeover = killed.elapsed();
    println!(
        "takeover after SIGKILL of the leader: {:.2} s (lease {LEASE_SECONDS} s)",
        takeover.as_secs_f64()
    );
    running(&api, "web-2").await;
    let ec2 = aws_sdk_ec2::Client::new(&moto.config().await);
    let reservations = ec2.describe_instances().send().await.unwrap().reservations.unwrap_or_default();
    let live = reservations
        .iter()
        .flat_map(|r| r.instances().iter())
        .filter(|i| i.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() != "terminated"))
        .count();
    assert_eq!(live, 2, "one instance per Ec2Instance, across the takeover");

    // A graceful stop hands the lease over and leaves a final checkpoint.
    let new_leader = &mut replicas[standby];
    let pid = new_leader.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    new_leader.child.wait().unwrap();
    let lease = leases.get("dataroom-operator").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity, None, "the lease was handed over on SIGTERM");

    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let map = maps.get("dataroom-operator-audit-checkpoint").await.unwrap();
    let checkpoint = map.data.unwrap().remove("checkpoint.json").unwrap();
    std::fs::write(dir.path().join("checkpoint.json"), &checkpoint).unwrap();
    let (intact, report) = verify(dir.path(), &signer.public_key());
    assert!(intact, "one chain across both leaders, covered by the checkpoint: {report}");
    let (intact, report) = verify_archive(dir.path(), &moto, &signer.public_key());
    assert!(intact, "the archive holds the same chain, both leaders' checkpoints in one: {report}");
    let text = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let launched = |l: &&str| l.contains(r#""action":"launch""#) && l.contains(r#""outcome":"success""#);
    assert_eq!(text.lines().filter(launched).count(), 2, "{text}");

    // Cutting the newest records leaves a consistent chain, which the checkpoint exposes.
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(dir.path().join("audit.jsonl"), kept[..kept.len() - 2].join("\n") + "\n").unwrap();
    let (intact, report) = verify(dir.path(), &signer.public_key());
    assert!(!intact, "{report}");
    assert!(report.contains("cut from its end"), "{report}");
    let (intact, report) = verify_archive(dir.path(), &moto, &signer.public_key());
    assert!(!intact && report.contains("the log ends at record"), "the archive keeps what was cut: {report}");
}
