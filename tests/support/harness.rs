//! The whole controller (`controller::run`) in-process against the API emulator and the fake EC2.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use dataroom_operator::assembly::Assembly;
use dataroom_operator::clock::{self, Clock};
use dataroom_operator::cloud::Cloud;
use dataroom_operator::cloud::fake::{Delays, FakeCloud};
use dataroom_operator::controller::{self, Backoff, Context, Settings};
use dataroom_operator::crd::Ec2Instance;
use dataroom_operator::seams::Seams;
use dataroom_operator::ssh::SshSettings;
use dataroom_sandbox::install_crds;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_emulator::ApiServer;
use serde_json::json;

pub struct Harness {
    pub api: Api<Ec2Instance>,
    pub client: kube::Client,
    pub server: Arc<ApiServer>,
    /// The cloud, when it is the fake (`start`); an unused fake with `start_on`.
    pub fake: Arc<FakeCloud>,
    pub ctx: Arc<Context>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub audit_dir: tempfile::TempDir,
}

/// What a test may change in the controller's set-up.
pub struct Options {
    pub ssh: SshSettings,
    pub seams: Seams,
    pub clock: Clock,
    pub backoff: Backoff,
    pub poll_interval: Duration,
    /// The operator's own namespace, never reconciled.
    pub own_namespace: Option<String>,
    /// Where the audit log is written (a file in `audit_dir` when absent).
    pub audit_log: Option<std::path::PathBuf>,
    /// The operator's own security group per VPC, if it manages one.
    pub managed_security_group: Option<dataroom_operator::cloud::network::ManagedGroup>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ssh: SshSettings::default(),
            seams: Seams::default(),
            clock: clock::system(),
            backoff: Backoff::default(),
            poll_interval: Duration::from_secs(1),
            own_namespace: None,
            audit_log: None,
            managed_security_group: None,
        }
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let delay = Duration::from_millis(100);
        let fake = Arc::new(FakeCloud::new(Delays { boot: delay, stop: delay, terminate: delay }));
        Self::run(fake.clone(), fake, super::IMAGE, options).await
    }

    /// The controller on another cloud (moto), launching `image` by default.
    pub async fn start_on(cloud: Arc<dyn Cloud>, image: &str) -> Self {
        Self::start_on_with(cloud, image, Options::default()).await
    }

    pub async fn start_on_with(cloud: Arc<dyn Cloud>, image: &str, options: Options) -> Self {
        Self::run(cloud, Arc::new(FakeCloud::new(Delays::default())), image, options).await
    }

    async fn run(cloud: Arc<dyn Cloud>, fake: Arc<FakeCloud>, image: &str, options: Options) -> Self {
        let server = ApiServer::new();
        let client = server.client();
        install_crds(&client).await.unwrap();
        let audit_dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            region: "us-east-1".into(),
            default_image_id: Some(image.into()),
            poll_interval: options.poll_interval,
            ssh: options.ssh,
            seams: options.seams,
            backoff: options.backoff,
            own_namespace: options.own_namespace,
            managed_security_group: options.managed_security_group,
            ..Default::default()
        };
        let audit = options.audit_log.unwrap_or_else(|| audit_dir.path().join("audit.jsonl"));
        let operator =
            Assembly::new(client.clone(), cloud, settings, audit).clock(options.clock).build().unwrap();
        let ctx = operator.ctx;
        let task = tokio::spawn(controller::run(ctx.clone(), Arc::new(AtomicBool::new(false))));
        let api = Api::namespaced(client.clone(), "default");
        Self { api, client, server, fake, ctx, task, audit_dir }
    }

    pub async fn create(&self, name: &str, spec: serde_json::Value) {
        let obj: Ec2Instance = serde_json::from_value(json!({
            "apiVersion": "dataroom.dev/v1alpha1", "kind": "Ec2Instance", "metadata": { "name": name }, "spec": spec,
        }))
        .unwrap();
        self.api.create(&PostParams::default(), &obj).await.unwrap();
    }

    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.api.patch(name, &PatchParams::default(), &Patch::Merge(json!({ "spec": spec }))).await.unwrap();
    }

    /// Polls the object until `check` holds (panics after 20 s with the last status).
    pub async fn until(&self, name: &str, what: &str, check: impl Fn(&Ec2Instance) -> bool) -> Ec2Instance {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let obj = self.api.get_opt(name).await.unwrap();
            if let Some(obj) = obj.filter(|o| check(o)) {
                return obj;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: never {what}; last status {:?}",
                self.api.get_opt(name).await.unwrap().and_then(|o| o.status)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn state(&self, name: &str, state: &str) -> Ec2Instance {
        self.until(name, state, |o| o.status.as_ref().and_then(|s| s.state.as_deref()) == Some(state)).await
    }

    /// The audit log's records so far.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.audit_dir.path().join("audit.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    pub async fn gone(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.api.get_opt(name).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "{name} was never deleted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The object's condition of `type_`, if it has one.
pub fn condition(
    obj: &Ec2Instance,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    obj.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).cloned()
}

/// Whether the object's condition `type_` has this status and reason.
pub fn has_condition(obj: &Ec2Instance, type_: &str, status: &str, reason: &str) -> bool {
    condition(obj, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.task.abort();
    }
}
