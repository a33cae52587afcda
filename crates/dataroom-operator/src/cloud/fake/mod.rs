//! An in-memory EC2 and Secrets Manager with realistic state transitions (pending→running,
//! stopping→stopped, shutting-down→terminated, each after a delay), injectable faults, call
//! counters and a reset. Used by tests, benchmarks and the sandbox.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::cloud::network::SecurityGroup;

use super::{
    CloudError, ErrorKind, Image, Instance, InstanceState, KeyPair, LaunchRequest, Result, SecretValue,
    TAG_MANAGED_BY, TAG_OWNER_UID,
};

mod modify;
pub mod network;
mod ports;

/// DescribeInstances returns at most this many instances per page, as EC2 does with MaxResults.
pub const PAGE_SIZE: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    Throttle,
    InsufficientCapacity,
    ServerError,
    /// A terminal error: the image does not exist.
    ImageNotFound,
    Latency(Duration),
}

#[derive(Clone, Copy, Debug)]
pub struct Delays {
    pub boot: Duration,
    pub stop: Duration,
    pub terminate: Duration,
}

impl Default for Delays {
    fn default() -> Self {
        let d = Duration::from_millis(200);
        Self { boot: d, stop: d, terminate: d }
    }
}

struct FakeInstance {
    instance: Instance,
    /// When the current transitional state began.
    since: Instant,
    client_token: String,
}

struct PendingFault {
    operation: Option<String>,
    fault: Fault,
    remaining: usize,
}

#[derive(Default)]
struct State {
    instances: BTreeMap<String, FakeInstance>,
    images: BTreeMap<String, Image>,
    /// When each pending image becomes available.
    images_ready: HashMap<String, Instant>,
    key_pairs: BTreeMap<String, KeyPair>,
    /// Public key material of each key pair (OpenSSH), for the sandbox's simulated SSH servers.
    public_keys: BTreeMap<String, String>,
    secrets: BTreeMap<String, SecretValue>,
    /// S3 objects by (bucket, key).
    objects: BTreeMap<(String, String), Vec<u8>>,
    security_groups: BTreeMap<String, SecurityGroup>,
    calls: HashMap<String, u64>,
    faults: Vec<PendingFault>,
    next_id: u64,
}

pub struct FakeCloud {
    state: Mutex<State>,
    delays: Delays,
    /// Instances get private addresses 127.BLOCK.x.y.
    block: u8,
    /// How long launches and terminations take to answer after they took effect: a caller that
    /// dies meanwhile has changed EC2 without hearing so.
    reply_delay: Duration,
}

impl Default for FakeCloud {
    fn default() -> Self {
        Self::new(Delays::default())
    }
}

impl FakeCloud {
    pub fn new(delays: Delays) -> Self {
        Self { state: Mutex::new(State::default()), delays, block: 0, reply_delay: Duration::ZERO }
    }

    /// Gives instances private addresses in 127.BLOCK.0.0/16, so that several sandboxes on one
    /// machine can serve SSH on the same port.
    /// RunInstances as the simulated EC2 answers it: EC2 knows nothing of the operator's budget,
    /// so this takes no reservation (the sandbox serves it to an operator in another process).
    pub async fn run_instances(&self, req: &LaunchRequest) -> Result<Instance> {
        self.enter("RunInstances").await?;
        let launched = self.launch(req);
        self.reply(launched).await
    }

    /// StartInstances as the simulated EC2 answers it (no reservation; see `run_instances`).
    pub async fn start_instances(&self, id: &str) -> Result<()> {
        self.enter("StartInstances").await?;
        self.with_instance(id, |f| match f.instance.state {
            InstanceState::Stopped => {
                f.instance.state = InstanceState::Pending;
                f.instance.launch_time = Some(Timestamp::now());
                f.instance.public_ip = f.instance.private_ip.as_deref().map(public_for);
                f.since = Instant::now();
                Ok(())
            }
            InstanceState::Pending | InstanceState::Running => Ok(()),
            other => Err(incorrect_state(id, other)),
        })
    }

    pub fn with_address_block(mut self, block: u8) -> Self {
        self.block = block;
        self
    }

    fn launch(&self, req: &LaunchRequest) -> Result<Instance> {
        let mut state = self.state.lock().unwrap();
        if let Some(f) = state.instances.values().find(|f| f.client_token == req.client_token) {
            return Ok(f.instance.clone());
        }
        if !req.image_id.starts_with("ami-") {
            return Err(CloudError::new(ErrorKind::Terminal, "InvalidAMIID.Malformed", "Invalid id"));
        }
        if !state.key_pairs.contains_key(&req.key_name) {
            let message = format!("The key pair '{}' does not exist", req.key_name);
            return Err(CloudError::new(ErrorKind::NotFound, "InvalidKeyPair.NotFound", message));
        }
        let id = next_id(&mut state, "i");
        let n = state.next_id;
        let instance = Instance {
            id: id.clone(),
            state: InstanceState::Pending,
            instance_type: req.instance_type.clone(),
            image_id: req.image_id.clone(),
            key_name: Some(req.key_name.clone()),
            public_ip: Some(public_ip(n)),
            private_ip: Some(loopback_ip(self.block, n)),
            launch_time: Some(Timestamp::now()),
            tags: req.tags(),
            security_group_ids: req.security_group_ids.clone(),
        };
        let fake = FakeInstance {
            instance: instance.clone(),
            since: Instant::now(),
            client_token: req.client_token.clone(),
        };
        state.instances.insert(id, fake);
        Ok(instance)
    }

    /// Answers launches and terminations `delay` after they took effect.
    pub fn with_reply_delay(mut self, delay: Duration) -> Self {
        self.reply_delay = delay;
        self
    }

    async fn reply<T>(&self, answer: T) -> T {
        if !self.reply_delay.is_zero() {
            tokio::time::sleep(self.reply_delay).await;
        }
        answer
    }

    /// Makes the next `times` calls of `operation` (any operation when `None`) fail or slow down.
    pub fn inject(&self, operation: Option<&str>, fault: Fault, times: usize) {
        self.state.lock().unwrap().faults.push(PendingFault {
            operation: operation.map(str::to_string),
            fault,
            remaining: times,
        });
    }

    /// Ends every injected fault (an outage injected with `times = usize::MAX`, say).
    pub fn heal(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// Stores an S3 object (the fake has no PutObject in the port: only tests and the sandbox write).
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        self.state.lock().unwrap().objects.insert((bucket.to_string(), key.to_string()), body.to_vec());
    }

    /// Calls made to `operation` (AWS operation names: "RunInstances", "DescribeInstances", …).
    pub fn calls(&self, operation: &str) -> u64 {
        self.state.lock().unwrap().calls.get(operation).copied().unwrap_or(0)
    }

    /// Calls made so far, by operation.
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        self.state.lock().unwrap().calls.iter().map(|(op, n)| (op.clone(), *n)).collect()
    }

    pub fn total_calls(&self) -> u64 {
        self.state.lock().unwrap().calls.values().sum()
    }

    /// Forgets counters and faults (not resources).
    pub fn reset_counters(&self) {
        let mut state = self.state.lock().unwrap();
        state.calls.clear();
        state.faults.clear();
    }

    /// Every instance, terminated ones included, with transitions applied.
    pub fn instances(&self) -> Vec<Instance> {
        let mut state = self.state.lock().unwrap();
        self.advance(&mut state);
        state.instances.values().map(|f| f.instance.clone()).collect()
    }

    /// Instances that exist and are not terminated or terminating.
    pub fn live_instances(&self) -> Vec<Instance> {
        let mut all = self.instances();
        all.retain(|i| !i.state.is_gone());
        all
    }

    /// The imported public key of key pair `name`.
    pub fn public_key(&self, name: &str) -> Option<String> {
        self.state.lock().unwrap().public_keys.get(name).cloned()
    }

    pub fn secret_names(&self) -> Vec<String> {
        self.state.lock().unwrap().secrets.keys().cloned().collect()
    }

    /// Everything the fake holds, secrets included (the sandbox keeps it in its 0700 state directory).
    pub fn snapshot(&self) -> serde_json::Value {
        let mut state = self.state.lock().unwrap();
        self.advance(&mut state);
        let instances: Vec<_> = state.instances.values().map(|f| (&f.instance, &f.client_token)).collect();
        let secrets: BTreeMap<&String, &str> = state.secrets.iter().map(|(k, v)| (k, v.expose())).collect();
        serde_json::json!({
            "instances": instances, "images": state.images, "keyPairs": state.key_pairs,
            "publicKeys": state.public_keys, "securityGroups": state.security_groups,
            "secrets": secrets, "nextId": state.next_id,
        })
    }

    /// Restores a snapshot; instances between states finish their transition from now.
    pub fn restore(&self, snapshot: &serde_json::Value) -> serde_json::Result<()> {
        let instances: Vec<(Instance, String)> = serde_json::from_value(snapshot["instances"].clone())?;
        let secrets: BTreeMap<String, String> = serde_json::from_value(snapshot["secrets"].clone())?;
        let mut state = self.state.lock().unwrap();
        state.instances = instances
            .into_iter()
            .map(|(instance, client_token)| {
                (instance.id.clone(), FakeInstance { instance, since: Instant::now(), client_token })
            })
            .collect();
        state.images = serde_json::from_value(snapshot["images"].clone())?;
        let pending =
            state.images.values().filter(|i| i.state == "pending").map(|i| i.id.clone()).collect::<Vec<_>>();
        state.images_ready = pending.into_iter().map(|id| (id, Instant::now() + self.delays.boot)).collect();
        state.key_pairs = serde_json::from_value(snapshot["keyPairs"].clone())?;
        state.public_keys = serde_json::from_value(snapshot["publicKeys"].clone()).unwrap_or_default();
        state.security_groups =
            serde_json::from_value(snapshot["securityGroups"].clone()).unwrap_or_default();
        state.secrets = secrets.into_iter().map(|(k, v)| (k, SecretValue::new(v))).collect();
        state.next_id = snapshot["nextId"].as_u64().unwrap_or(0);
        Ok(())
    }

    /// Adds a managed-looking instance directly (for benchmarks and GC tests); returns its id.
    pub fn seed_running(&self, owner_uid: &str, namespace: &str, name: &str) -> String {
        let mut state = self.state.lock().unwrap();
        let id = next_id(&mut state, "i");
        let mut tags = BTreeMap::new();
        tags.insert(TAG_MANAGED_BY.to_string(), super::MANAGED_BY.to_string());
        tags.insert(TAG_OWNER_UID.to_string(), owner_uid.to_string());
        tags.insert(super::TAG_NAMESPACE.to_string(), namespace.to_string());
        tags.insert(super::TAG_NAME.to_string(), name.to_string());
        let n = state.next_id;
        let instance = Instance {
            id: id.clone(),
            state: InstanceState::Running,
            instance_type: "t3.micro".into(),
            image_id: "ami-00000000".into(),
            key_name: None,
            public_ip: Some(public_ip(n)),
            private_ip: Some(loopback_ip(self.block, n)),
            launch_time: Some(Timestamp::now()),
            tags,
            security_group_ids: vec![],
        };
        let since = Instant::now();
        let client_token = String::new();
        state.instances.insert(id.clone(), FakeInstance { instance, since, client_token });
        id
    }

    /// Counts the call and applies any pending fault for it.
    async fn enter(&self, operation: &str) -> Result<()> {
        let fault = {
            let mut state = self.state.lock().unwrap();
            *state.calls.entry(operation.to_string()).or_default() += 1;
            let hit = state
                .faults
                .iter_mut()
                .find(|f| f.remaining > 0 && f.operation.as_deref().is_none_or(|op| op == operation));
            hit.map(|f| {
                f.remaining -= 1;
                f.fault
            })
        };
        match fault {
            None => Ok(()),
            Some(Fault::Latency(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(Fault::Throttle) => Err(retryable("RequestLimitExceeded", "Request limit exceeded.")),
            Some(Fault::InsufficientCapacity) => Err(retryable(
                "InsufficientInstanceCapacity",
                "We currently do not have sufficient capacity in the Availability Zone you requested.",
            )),
            Some(Fault::ServerError) => Err(retryable("InternalError", "An internal error has occurred.")),
            Some(Fault::ImageNotFound) => Err(CloudError::new(
                ErrorKind::Terminal,
                "InvalidAMIID.NotFound",
                "The image id does not exist",
            )),
        }
    }

    fn advance(&self, state: &mut State) {
        let now = Instant::now();
        let ready: Vec<String> =
            state.images_ready.iter().filter(|(_, at)| **at <= now).map(|(id, _)| id.clone()).collect();
        for id in ready {
            state.images_ready.remove(&id);
            if let Some(image) = state.images.get_mut(&id) {
                image.state = "available".into();
            }
        }
        for f in state.instances.values_mut() {
            let elapsed = now.duration_since(f.since);
            let next = match f.instance.state {
                InstanceState::Pending if elapsed >= self.delays.boot => InstanceState::Running,
                InstanceState::Stopping if elapsed >= self.delays.stop => InstanceState::Stopped,
                InstanceState::ShuttingDown if elapsed >= self.delays.terminate => InstanceState::Terminated,
                _ => continue,
            };
            f.instance.state = next;
            f.since = now;
            if next == InstanceState::Stopped || next == InstanceState::Terminated {
                f.instance.public_ip = None;
            }
        }
    }

    /// Applies `change` to instance `id` after transitions, or fails with EC2's not-found error.
    fn with_instance<T>(&self, id: &str, change: impl FnOnce(&mut FakeInstance) -> Result<T>) -> Result<T> {
        let mut state = self.state.lock().unwrap();
        self.advance(&mut state);
        match state.instances.get_mut(id) {
            Some(f) => change(f),
            None => Err(not_found("InvalidInstanceID.NotFound", id)),
        }
    }
}

fn next_id(state: &mut State, prefix: &str) -> String {
    state.next_id += 1;
    format!("{prefix}-{:017x}", state.next_id)
}

/// Each fake instance's private address is a loopback address of its own (the simulated VPC is
/// the loopback network), so the sandbox can serve SSH on it.
fn loopback_ip(block: u8, n: u64) -> String {
    format!("127.{block}.{}.{}", 1 + (n / 254) % 254, 1 + n % 254)
}

/// A public address in 198.18.0.0/15 (reserved, routed nowhere): shown, never used.
fn public_ip(n: u64) -> String {
    format!("198.18.{}.{}", 1 + (n / 254) % 254, 1 + n % 254)
}

/// The public address given again at a start, from the private one.
fn public_for(private: &str) -> String {
    let mut octets = private.rsplit('.');
    let (last, third) = (octets.next().unwrap_or("1"), octets.next().unwrap_or("1"));
    format!("198.18.{third}.{last}")
}

fn retryable(code: &str, message: &str) -> CloudError {
    CloudError::new(ErrorKind::Retryable, code, message)
}

fn not_found(code: &str, what: &str) -> CloudError {
    CloudError::new(ErrorKind::NotFound, code, format!("'{what}' does not exist"))
}

fn incorrect_state(id: &str, state: InstanceState) -> CloudError {
    CloudError::new(
        ErrorKind::Retryable,
        "IncorrectInstanceState",
        format!(
            "The instance '{id}' is not in a state from which it can be started or stopped ({}).",
            state.as_str()
        ),
    )
}
