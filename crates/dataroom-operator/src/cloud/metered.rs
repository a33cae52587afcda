//! A decorator that counts every cloud call by operation and outcome in the metrics registry.

use std::sync::Arc;

use async_trait::async_trait;

use super::network::{ManagedGroup, SecurityGroup};
use super::{Cloud, Image, Instance, KeyPair, LaunchRequest, Modification, Result, SecretValue};
use super::{Imperative, Lifecycle};
use crate::budget::{Reservation, VolumeGrowth};
use crate::metrics::Metrics;

pub struct Metered {
    inner: Arc<dyn Cloud>,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub fn new(inner: Arc<dyn Cloud>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn count<T>(&self, operation: &str, result: Result<T>) -> Result<T> {
        let outcome = match &result {
            Ok(_) => "ok",
            // Apart, so that a dashboard shows EC2 pushing back.
            Err(e) if e.code.contains("Throttl") || e.code == "RequestLimitExceeded" => "throttled",
            Err(_) => "error",
        };
        self.metrics.cloud_call(operation, outcome);
        result
    }
}

#[async_trait]
impl Lifecycle for Metered {
    async fn run_instance(&self, req: &LaunchRequest, reservation: &Reservation) -> Result<Instance> {
        self.count("RunInstances", self.inner.run_instance(req, reservation).await)
    }
    async fn describe_managed(&self) -> Result<Vec<Instance>> {
        self.count("DescribeInstances", self.inner.describe_managed().await)
    }
    async fn describe_by_owner(&self, owner_uid: &str) -> Result<Vec<Instance>> {
        self.count("DescribeInstances", self.inner.describe_by_owner(owner_uid).await)
    }
    async fn start_instance(&self, id: &str, reservation: &Reservation) -> Result<()> {
        self.count("StartInstances", self.inner.start_instance(id, reservation).await)
    }
    async fn stop_instance(&self, id: &str) -> Result<()> {
        self.count("StopInstances", self.inner.stop_instance(id).await)
    }
    async fn terminate_instance(&self, id: &str) -> Result<()> {
        self.count("TerminateInstances", self.inner.terminate_instance(id).await)
    }
    async fn retain_instance(&self, id: &str) -> Result<()> {
        self.count("CreateTags", self.inner.retain_instance(id).await)
    }
    async fn modify_instance(&self, id: &str, change: &Modification) -> Result<()> {
        self.count("ModifyInstance", self.inner.modify_instance(id, change).await)
    }
    async fn grow_root_volume(&self, id: &str, growth: &VolumeGrowth) -> Result<()> {
        self.count("ModifyVolume", self.inner.grow_root_volume(id, growth).await)
    }
    async fn describe_security_groups(&self, ids: &[String]) -> Result<Vec<SecurityGroup>> {
        self.count("DescribeSecurityGroups", self.inner.describe_security_groups(ids).await)
    }
    async fn ensure_security_group(&self, group: &ManagedGroup) -> Result<String> {
        self.count("EnsureSecurityGroup", self.inner.ensure_security_group(group).await)
    }
}

#[async_trait]
impl Imperative for Metered {
    async fn console_output(&self, id: &str) -> Result<String> {
        self.count("GetConsoleOutput", self.inner.console_output(id).await)
    }
    async fn create_image(&self, instance_id: &str, name: &str) -> Result<String> {
        self.count("CreateImage", self.inner.create_image(instance_id, name).await)
    }
    async fn describe_images(&self, ids: &[String]) -> Result<Vec<Image>> {
        self.count("DescribeImages", self.inner.describe_images(ids).await)
    }
    async fn deregister_image(&self, id: &str) -> Result<()> {
        self.count("DeregisterImage", self.inner.deregister_image(id).await)
    }
    async fn import_key_pair(&self, name: &str, public_key_openssh: &str) -> Result<KeyPair> {
        self.count("ImportKeyPair", self.inner.import_key_pair(name, public_key_openssh).await)
    }
    async fn describe_key_pairs(&self, names: &[String]) -> Result<Vec<KeyPair>> {
        self.count("DescribeKeyPairs", self.inner.describe_key_pairs(names).await)
    }
    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        self.count("DeleteKeyPair", self.inner.delete_key_pair(name).await)
    }
    async fn put_secret(&self, name: &str, value: &SecretValue) -> Result<()> {
        self.count("PutSecretValue", self.inner.put_secret(name, value).await)
    }
    async fn get_secret(&self, name: &str) -> Result<Option<SecretValue>> {
        self.count("GetSecretValue", self.inner.get_secret(name).await)
    }
    async fn delete_secret(&self, name: &str) -> Result<()> {
        self.count("DeleteSecret", self.inner.delete_secret(name).await)
    }
    async fn get_object(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>> {
        self.count("GetObject", self.inner.get_object(bucket, key, max_bytes).await)
    }
}
