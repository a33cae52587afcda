//! Crash safety. The operator is killed at random points while Ec2Instances are being created and
//! deleted, and started again each time. After the last restart it must converge to: exactly one
//! live instance per Ec2Instance, no object stuck on its finalizer, and no leaked instance.
//! Run twice:
//! - in process over the sandbox's parts (the emulator and the simulated EC2), a crash being the
//!   loss of the operator's whole runtime;
//! - as the real binary against moto, a crash being SIGKILL.
//!
//! `DATAROOM_CRASH_TRIALS` sets the number of kills (default 50).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use dataroom_operator::assembly::Assembly;
use dataroom_operator::cloud::fake::{Delays, FakeCloud};
use dataroom_operator::controller::Settings;
use dataroom_operator::crd::Ec2Instance;
use dataroom_sandbox::{install_crds, write_kubeconfig};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Resource, ResourceExt};
use kube_emulator::{Access, ApiServer, serve};
use rand::Rng;
use support::moto::Moto;

fn trials() -> usize {
    std::env::var("DATAROOM_CRASH_TRIALS").ok().and_then(|n| n.parse().ok()).unwrap_or(50)
}

/// One way of running the operator: started, then killed without warning.
trait Operator {
    fn start(&mut self);
    fn kill(&mut self);
}

/// The operator's whole runtime over the shared emulator and simulated EC2: killing it drops
/// every task and all memory (cache, budget reservations, SSH pool), as a crash would.
struct InProcess {
    server: Arc<ApiServer>,
    cloud: Arc<FakeCloud>,
    audit: PathBuf,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Operator for InProcess {
    fn start(&mut self) {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (server, cloud, audit) = (self.server.clone(), self.cloud.clone(), self.audit.clone());
        runtime.spawn(async move {
            let client = server.client();
            let settings = Settings {
                region: "us-east-1".into(),
                default_image_id: Some(support::IMAGE.into()),
                poll_interval: Duration::from_millis(500),
                orphan_grace: Some(Duration::from_secs(1)),
                ..Default::default()
            };
            let operator = Assembly::new(client, cloud, settings, audit).build().unwrap();
            operator.run(Arc::new(AtomicBool::new(false))).await
        });
        self.runtime = Some(runtime);
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Tasks stop at their next await; a blocking audit write already in the kernel
            // finishes, as it would in a killed process, before the next incarnation opens the log.
            tokio::task::block_in_place(|| runtime.shutdown_timeout(Duration::from_secs(5)));
        }
    }
}

/// The real binary against moto, killed with SIGKILL.
struct Process {
    dir: PathBuf,
    endpoint: String,
    image: String,
    child: Option<Child>,
}

impl Operator for Process {
    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_dataroom-operator"))
            .args(["run", "--poll-interval", "1", "--orphan-grace", "1", "--http-addr", "127.0.0.1:0"])
            .args(["--endpoint-url", &self.endpoint, "--default-image-id", &self.image])
            .arg("--audit-log")
            .arg(self.dir.join("audit.jsonl"))
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills the operator `trials` times while objects come and go, then checks what it converges to.
/// `live` lists the live (not shutting down or terminated) managed instances as (ID, owner UID).
async fn crash_and_converge<F>(
    operator: &mut dyn Operator,
    api: &Api<Ec2Instance>,
    live: impl Fn() -> F,
    pace: Duration,
) where
    F: std::future::Future<Output = Vec<(String, String)>>,
{
    let mut names: Vec<String> = Vec::new();
    let (mut created, mut deleted) = (0, 0);
    for trial in 0..trials() {
        operator.start();
        let (creates, delete, after) = {
            let mut rng = rand::thread_rng();
            (rng.gen_range(0..=2), rng.gen_bool(0.5), rng.gen_range(Duration::ZERO..pace))
        };
        for n in 0..creates {
            let name = format!("web-{trial}-{n}");
            let object = serde_json::json!({"apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Instance",
                "metadata": {"name": name}, "spec": {"instanceType": "t3.micro"}});
            api.create(&PostParams::default(), &serde_json::from_value(object).unwrap()).await.unwrap();
            names.push(name);
            created += 1;
        }
        if delete && names.len() > 2 {
            let at = rand::thread_rng().gen_range(0..names.len());
            let name = names.swap_remove(at);
            api.delete(&name, &DeleteParams::default()).await.unwrap();
            deleted += 1;
        }
        tokio::time::sleep(after).await;
        operator.kill();
    }
    operator.start();
    let started = Instant::now();
    let (objects, instances) = loop {
        let objects = api.list(&Default::default()).await.unwrap().items;
        let instances = live().await;
        let running =
            objects.iter().all(|o| o.status.as_ref().and_then(|s| s.state.as_deref()) == Some("running"));
        if running && objects.len() == names.len() && instances.len() == objects.len() {
            break (objects, instances);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not converged after 120 s: {} objects (want {}), {} live instances",
            objects.len(),
            names.len(),
            instances.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    operator.kill();
    for object in &objects {
        let uid = object.uid().unwrap();
        let owned = instances.iter().filter(|(_, owner)| *owner == uid).count();
        assert_eq!(owned, 1, "{} has {owned} live instances", object.name_any());
        assert!(
            object.meta().deletion_timestamp.is_none(),
            "{} is stuck on its finalizer",
            object.name_any()
        );
    }
    println!(
        "{} kills, {created} created, {deleted} deleted: converged in {:.1} s to {} objects and as many instances",
        trials(),
        started.elapsed().as_secs_f64(),
        objects.len()
    );
}

async fn emulator(dir: &Path) -> (Arc<ApiServer>, Api<Ec2Instance>, tokio::task::JoinHandle<()>) {
    let server = ApiServer::new();
    let (addr, serving) =
        serve(server.clone(), "127.0.0.1:0".parse().unwrap(), Access::default()).await.unwrap();
    install_crds(&server.client()).await.unwrap();
    let budget = serde_json::json!({"apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Budget",
        "metadata": {"name": "default"}, "spec": {"maxInstances": 500, "dailySpendUsd": 1000}});
    let budgets: Api<dataroom_operator::crd::Ec2Budget> = Api::all(server.client());
    budgets.create(&PostParams::default(), &serde_json::from_value(budget).unwrap()).await.unwrap();
    write_kubeconfig(&dir.join("kubeconfig"), addr, None).unwrap();
    let api = Api::namespaced(server.client(), "default");
    (server, api, serving)
}

/// Checks the chain and prints the recoveries it records: the crash windows the kills hit.
fn audit_intact(dir: &Path) {
    let path = dir.join("audit.jsonl");
    let report = dataroom_operator::audit::verify_file(&path).unwrap();
    assert!(report.is_intact(), "the audit chain survives the kills: {:?}", report.problems);
    let text = std::fs::read_to_string(&path).unwrap();
    let count = |action: &str| {
        let done = |l: &&str| {
            l.contains(&format!(r#""action":"{action}""#)) && !l.contains(r#""outcome":"started""#)
        };
        text.lines().filter(done).count()
    };
    println!(
        "audit: {} records intact; launches asked {}, answered {}, adopted after a crash {}, duplicates terminated {}, orphans collected {}",
        report.records,
        text.lines()
            .filter(|l| l.contains(r#""action":"launch""#) && l.contains(r#""outcome":"started""#))
            .count(),
        count("launch"),
        count("adopt"),
        count("terminate-duplicate"),
        count("gc.terminate")
    );
}

#[test]
fn killed_at_random_points_in_process_it_converges_without_duplicates_or_leaks() {
    let driver = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, api, _serving) = driver.block_on(emulator(dir.path()));
    let delay = Duration::from_millis(300);
    // Launches and terminations answer late, so kills land between an effect and its answer.
    let cloud = Arc::new(
        FakeCloud::new(Delays { boot: delay, stop: delay, terminate: delay })
            .with_reply_delay(Duration::from_millis(200)),
    );
    let audit = dir.path().join("audit.jsonl");
    let mut operator = InProcess { server, cloud: cloud.clone(), audit, runtime: None };
    let live = || {
        let cloud = cloud.clone();
        async move {
            let all = cloud.instances().into_iter().filter(|i| !i.state.is_gone());
            all.map(|i| (i.id.clone(), i.owner_uid().unwrap_or_default().to_string())).collect()
        }
    };
    driver.block_on(crash_and_converge(&mut operator, &api, live, Duration::from_millis(800)));
    audit_intact(dir.path());
    let launched = cloud.instances().len();
    println!(
        "EC2: {} RunInstances calls made {launched} instances ({:.2} calls per instance): a call repeated after a kill reuses its client token",
        cloud.calls("RunInstances"),
        cloud.calls("RunInstances") as f64 / launched as f64
    );
}

#[test]
fn killed_with_sigkill_against_moto_it_converges_without_duplicates_or_leaks() {
    let driver = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let (_server, api, _serving) = driver.block_on(emulator(dir.path()));
    let image = driver.block_on(moto.image());
    let ec2 = aws_sdk_ec2::Client::new(&driver.block_on(moto.config()));
    let mut operator =
        Process { dir: dir.path().to_path_buf(), endpoint: moto.endpoint.clone(), image, child: None };
    let live = || {
        let ec2 = ec2.clone();
        async move {
            let out = ec2.describe_instances().send().await.unwrap();
            let instances = out.reservations().iter().flat_map(|r| r.instances().iter());
            let live = instances.filter(|i| {
                let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string());
                !matches!(state.as_deref(), Some("terminated" | "shutting-down"))
            });
            live.map(|i| {
                let owner = i.tags().iter().find(|t| t.key() == Some("dataroom.dev/owner-uid"));
                (
                    i.instance_id().unwrap_or_default().to_string(),
                    owner.and_then(|t| t.value()).unwrap_or_default().to_string(),
                )
            })
            .collect()
        }
    };
    // A process needs longer than the runtime to get going: kill it across its first second or two.
    driver.block_on(crash_and_converge(&mut operator, &api, live, Duration::from_millis(2500)));
    audit_intact(dir.path());
}
