//! A `Cloud` in another process: forwards every call to a sandbox serving its simulated EC2
//! (`sandbox --external-operator` and `run --sandbox-cloud`), so that the operator's own memory can
//! be measured apart from the emulator and the simulated instances. One JSON call per HTTP/1.1
//! request on loopback, each with the bearer token the sandbox wrote to a 0600 file; a test and
//! benchmark aid, never a production path. Secrets (the instances' SSH private keys) never
//! cross: this process keeps those it puts, and the sandbox serves none.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::network::{ManagedGroup, SecurityGroup};
use super::{
    CloudError, ErrorKind, Image, Instance, KeyPair, LaunchRequest, Modification, Result, SecretValue,
};
use super::{Imperative, Lifecycle};
use crate::budget::{Reservation, VolumeGrowth};

/// One `Cloud` call, as sent over the wire.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Call {
    RunInstance { req: Box<LaunchRequest> },
    DescribeManaged,
    DescribeByOwner { owner_uid: String },
    StartInstance { id: String },
    StopInstance { id: String },
    TerminateInstance { id: String },
    RetainInstance { id: String },
    ModifyInstance { id: String, change: Modification },
    GrowRootVolume { id: String, gib: u32 },
    DescribeSecurityGroups { ids: Vec<String> },
    EnsureSecurityGroup { group: ManagedGroup },
    ConsoleOutput { id: String },
    CreateImage { instance_id: String, name: String },
    DescribeImages { ids: Vec<String> },
    DeregisterImage { id: String },
    ImportKeyPair { name: String, public_key: String },
    DescribeKeyPairs { names: Vec<String> },
    DeleteKeyPair { name: String },
    GetObject { bucket: String, key: String, max_bytes: u64 },
}

/// A failure to carry a call, not an answer from the cloud.
pub fn transport(message: String) -> CloudError {
    CloudError::new(ErrorKind::Retryable, "Transport", message)
}

/// The header that carries the token.
pub const AUTHORIZATION: &str = "authorization";

/// A `Cloud` that forwards every call to a sandbox serving its simulated EC2 at `addr`.
pub struct RemoteCloud {
    addr: SocketAddr,
    token: String,
    /// The secrets this process put, kept here: none crosses the wire.
    secrets: Mutex<HashMap<String, SecretValue>>,
}

impl RemoteCloud {
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        Self { addr, token: token.to_string(), secrets: Mutex::default() }
    }

    async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let stream = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| transport(e.to_string()))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(io).await.map_err(|e| transport(e.to_string()))?;
        tokio::spawn(connection);
        let body = serde_json::to_vec(&call).map_err(|e| transport(e.to_string()))?;
        let request = hyper::Request::post("/")
            .header("host", self.addr.to_string())
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body)));
        let response = sender
            .send_request(request.expect("a valid request"))
            .await
            .map_err(|e| transport(e.to_string()))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(transport(format!("the sandbox refused the call: HTTP {}", response.status())));
        }
        let bytes = response.into_body().collect().await.map_err(|e| transport(e.to_string()))?.to_bytes();
        let reply: std::result::Result<Value, CloudError> =
            serde_json::from_slice(&bytes).map_err(|e| transport(e.to_string()))?;
        serde_json::from_value(reply?).map_err(|e| transport(e.to_string()))
    }
}

#[async_trait]
impl Lifecycle for RemoteCloud {
    async fn run_instance(&self, req: &LaunchRequest, _reservation: &Reservation) -> Result<Instance> {
        self.call(Call::RunInstance { req: Box::new(req.clone()) }).await
    }
    async fn describe_managed(&self) -> Result<Vec<Instance>> {
        self.call(Call::DescribeManaged).await
    }
    async fn describe_by_owner(&self, owner_uid: &str) -> Result<Vec<Instance>> {
        self.call(Call::DescribeByOwner { owner_uid: owner_uid.into() }).await
    }
    async fn start_instance(&self, id: &str, _reservation: &Reservation) -> Result<()> {
        self.call(Call::StartInstance { id: id.into() }).await
    }
    async fn stop_instance(&self, id: &str) -> Result<()> {
        self.call(Call::StopInstance { id: id.into() }).await
    }
    async fn terminate_instance(&self, id: &str) -> Result<()> {
        self.call(Call::TerminateInstance { id: id.into() }).await
    }
    async fn retain_instance(&self, id: &str) -> Result<()> {
        self.call(Call::RetainInstance { id: id.into() }).await
    }
    async fn modify_instance(&self, id: &str, change: &Modification) -> Result<()> {
        self.call(Call::ModifyInstance { id: id.into(), change: change.clone() }).await
    }
    async fn grow_root_volume(&self, id: &str, growth: &VolumeGrowth) -> Result<()> {
        self.call(Call::GrowRootVolume { id: id.into(), gib: growth.gib() }).await
    }
    async fn describe_security_groups(&self, ids: &[String]) -> Result<Vec<SecurityGroup>> {
        self.call(Call::DescribeSecurityGroups { ids: ids.to_vec() }).await
    }
    async fn ensure_security_group(&self, group: &ManagedGroup) -> Result<String> {
        self.call(Call::EnsureSecurityGroup { group: group.clone() }).await
    }
}

#[async_trait]
impl Imperative for RemoteCloud {
    async fn console_output(&self, id: &str) -> Result<String> {
        self.call(Call::ConsoleOutput { id: id.into() }).await
    }
    async fn create_image(&self, instance_id: &str, name: &str) -> Result<String> {
        self.call(Call::CreateImage { instance_id: instance_id.into(), name: name.into() }).await
    }
    async fn describe_images(&self, ids: &[String]) -> Result<Vec<Image>> {
        self.call(Call::DescribeImages { ids: ids.to_vec() }).await
    }
    async fn deregister_image(&self, id: &str) -> Result<()> {
        self.call(Call::DeregisterImage { id: id.into() }).await
    }
    async fn import_key_pair(&self, name: &str, public_key_openssh: &str) -> Result<KeyPair> {
        self.call(Call::ImportKeyPair { name: name.into(), public_key: public_key_openssh.into() }).await
    }
    async fn describe_key_pairs(&self, names: &[String]) -> Result<Vec<KeyPair>> {
        self.call(Call::DescribeKeyPairs { names: names.to_vec() }).await
    }
    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        self.call(Call::DeleteKeyPair { name: name.into() }).await
    }
    async fn put_secret(&self, name: &str, value: &SecretValue) -> Result<()> {
        self.secrets.lock().unwrap().insert(name.into(), value.clone());
        Ok(())
    }
    async fn get_secret(&self, name: &str) -> Result<Option<SecretValue>> {
        Ok(self.secrets.lock().unwrap().get(name).cloned())
    }
    async fn delete_secret(&self, name: &str) -> Result<()> {
        self.secrets.lock().unwrap().remove(name);
        Ok(())
    }
    async fn get_object(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>> {
        self.call(Call::GetObject { bucket: bucket.into(), key: key.into(), max_bytes }).await
    }
}
