//! Shared test helpers: a controller context over the fake cloud and a mocked API server.
#![allow(dead_code)]

pub mod admin;
pub mod api_tls;
pub mod harness;
pub mod identity;
pub mod mock_api;
pub mod moto;
pub mod rig;
pub mod rooms;
pub mod sandbox;
pub mod sshd;
pub mod wrk;

use std::sync::Arc;
use std::time::Duration;

use dataroom_operator::assembly::Assembly;
use dataroom_operator::budget::Gate;
use dataroom_operator::budget::pricing::PriceTable;
use dataroom_operator::clock;
use dataroom_operator::cloud::Cloud;
use dataroom_operator::cloud::fake::{Delays, FakeCloud};
use dataroom_operator::controller::{Backoff, Context, Settings};
use dataroom_operator::crd::{Ec2BudgetSpec, Ec2Instance};
use serde_json::{Value, json};

pub use mock_api::MockApi;

pub const NS: &str = "team-a";
pub const IMAGE: &str = "ami-0123456789abcdef0";

pub struct Fixture {
    pub api: MockApi,
    pub fake: Arc<FakeCloud>,
    pub ctx: Arc<Context>,
    pub audit_dir: tempfile::TempDir,
}

impl Fixture {
    /// A context over the fake cloud (instant transitions) and the mocked API server.
    pub fn new() -> Self {
        let fake = Arc::new(FakeCloud::new(Delays {
            boot: Duration::ZERO,
            stop: Duration::ZERO,
            terminate: Duration::ZERO,
        }));
        Self::build(fake.clone(), fake, IMAGE)
    }

    /// A context over another cloud (moto); `fake` is then an unused stand-in.
    pub fn with_cloud(cloud: Arc<dyn Cloud>, image: &str) -> Self {
        Self::build(Arc::default(), cloud, image)
    }

    fn build(fake: Arc<FakeCloud>, cloud: Arc<dyn Cloud>, image: &str) -> Self {
        let api = MockApi::default();
        let client = api.client();
        let audit_dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            region: "us-east-1".into(),
            default_image_id: Some(image.into()),
            poll_interval: Duration::from_secs(15),
            ..Default::default()
        };
        let audit = audit_dir.path().join("audit.jsonl");
        let ctx = Assembly::new(client, cloud, settings, audit).build().unwrap().ctx;
        Self { api, fake, ctx, audit_dir }
    }

    pub fn limits(&self, max_instances: u32) {
        self.ctx.gate.set_limits(Ec2BudgetSpec { max_instances, ..Default::default() });
    }

    /// Puts an Ec2Instance into the mocked API server and returns it as the controller would see it.
    pub fn object(&self, name: &str, spec: Value, finalized: bool) -> Ec2Instance {
        let finalizers = if finalized { json!(["dataroom.dev/ec2-instance"]) } else { Value::Null };
        let obj = json!({
            "apiVersion": "dataroom.dev/v1alpha1",
            "kind": "Ec2Instance",
            "metadata": {
                "name": name, "namespace": NS, "uid": uid(name), "generation": 1,
                "resourceVersion": "1", "finalizers": finalizers,
            },
            "spec": spec,
        });
        let obj: Ec2Instance = serde_json::from_value(obj).unwrap();
        self.store(&obj);
        obj
    }

    pub fn store(&self, obj: &Ec2Instance) {
        self.api.put(&path(&obj.metadata.name.clone().unwrap()), serde_json::to_value(obj).unwrap());
    }

    /// The object as the mocked server now holds it.
    pub fn fetch(&self, name: &str) -> Ec2Instance {
        serde_json::from_value(self.api.get(&path(name)).expect("object stored")).unwrap()
    }

    /// Reconciles the stored object once, as the controller would.
    pub async fn reconcile(
        &self,
        name: &str,
    ) -> Result<kube::runtime::controller::Action, dataroom_operator::controller::Error> {
        let obj = Arc::new(self.fetch(name));
        dataroom_operator::controller::ec2instance::reconcile(obj, self.ctx.clone()).await
    }

    pub fn audit_lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.audit_dir.path().join("audit.jsonl")).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// Refreshes the controller's view with a full sweep, as the poller does.
pub async fn sweep(f: &Fixture) {
    let epoch = f.ctx.cache.epoch();
    f.ctx.cache.replace(f.ctx.cloud.describe_managed().await.unwrap(), epoch);
}

/// An instance launched straight in `cloud` as the controller would for `namespace/name`, key pair
/// included: one from before a crash, or an orphan.
pub async fn plant(
    cloud: &dyn dataroom_operator::cloud::Cloud,
    owner_uid: &str,
    namespace: &str,
    name: &str,
) -> dataroom_operator::cloud::Instance {
    let request = launch_request(owner_uid, namespace, name);
    dataroom_operator::cloud::keys::ensure_key_pair(cloud, &request.key_name).await.unwrap();
    cloud.run_instance(&request, &reservation(owner_uid)).await.unwrap()
}

/// A reservation from a gate of its own, for a launch or start made straight in a cloud (the
/// lifecycle port takes one; the controller's gate is not involved in such a test).
pub fn reservation(uid: &str) -> dataroom_operator::budget::Reservation {
    let gate = Gate::new(PriceTable::default(), "us-east-1", clock::system());
    gate.reserve(uid, "t3.micro", gate.launch(None), None).expect("a fresh gate grants one")
}

/// What the controller would ask EC2 for on behalf of `namespace/name` (owned by `owner_uid`).
pub fn launch_request(
    owner_uid: &str,
    namespace: &str,
    name: &str,
) -> dataroom_operator::cloud::LaunchRequest {
    dataroom_operator::cloud::LaunchRequest {
        owner_uid: owner_uid.into(),
        client_token: format!("planted-{name}"),
        namespace: namespace.into(),
        name: name.into(),
        data_room: None,
        instance_type: "t3.micro".into(),
        image_id: IMAGE.into(),
        subnet_id: None,
        security_group_ids: vec![],
        user_data: None,
        root_volume_gib: None,
        key_name: format!("dataroom-{owner_uid}"),
        extra_tags: Default::default(),
    }
}

/// The most reconciles one object failing throughout `window` can start under `backoff`: the
/// first, one after each backoff at its shortest jitter (0.8×), and one woken by its own status
/// write. Fault tests bound the calls made during a fault with it.
pub fn attempts(backoff: Backoff, window: Duration) -> u64 {
    let (mut elapsed, mut n, mut delay) = (Duration::ZERO, 1, backoff.base);
    loop {
        elapsed += delay.min(backoff.max).mul_f64(0.8);
        if elapsed > window {
            return n + 1;
        }
        n += 1;
        delay *= 2;
    }
}

pub fn uid(name: &str) -> String {
    let mut hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    hex.truncate(12);
    format!("00000000-0000-4000-8000-{hex:0>12}")
}

pub fn path(name: &str) -> String {
    format!("/apis/dataroom.dev/v1alpha1/namespaces/{NS}/ec2instances/{name}")
}
