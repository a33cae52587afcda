//! A decorator that asks the leader's fence before every mutation: a replica that cannot prove it
//! still holds the lease changes nothing in EC2. Reads pass straight through.

use std::sync::Arc;

use async_trait::async_trait;

use super::network::{ManagedGroup, SecurityGroup};
use super::{
    Cloud, CloudError, ErrorKind, Image, Instance, KeyPair, LaunchRequest, Modification, Result, SecretValue,
};
use super::{Imperative, Lifecycle};
use crate::budget::{Reservation, VolumeGrowth};
use crate::leader::Fence;

pub struct Fenced {
    inner: Arc<dyn Cloud>,
    fence: Arc<Fence>,
}

impl Fenced {
    pub fn new(inner: Arc<dyn Cloud>, fence: Arc<Fence>) -> Self {
        Self { inner, fence }
    }

    /// Retryable: the replica exits once it sees the lease lost, and its successor does the work.
    async fn leading(&self) -> Result<&dyn Cloud> {
        match self.fence.check().await {
            Ok(()) => Ok(self.inner.as_ref()),
            Err(why) => Err(CloudError::new(ErrorKind::Retryable, "NotLeader", why)),
        }
    }
}

#[async_trait]
impl Lifecycle for Fenced {
    async fn run_instance(&self, req: &LaunchRequest, reservation: &Reservation) -> Result<Instance> {
        self.leading().await?.run_instance(req, reservation).await
    }
    async fn describe_managed(&self) -> Result<Vec<Instance>> {
        self.inner.describe_managed().await
    }
    async fn describe_by_owner(&self, owner_uid: &str) -> Result<Vec<Instance>> {
        self.inner.describe_by_owner(owner_uid).await
    }
    async fn start_instance(&self, id: &str, reservation: &Reservation) -> Result<()> {
        self.leading().await?.start_instance(id, reservation).await
    }
    async fn stop_instance(&self, id: &str) -> Result<()> {
        self.leading().await?.stop_instance(id).await
    }
    async fn terminate_instance(&self, id: &str) -> Result<()> {
        self.leading().await?.terminate_instance(id).await
    }
    async fn modify_instance(&self, id: &str, change: &Modification) -> Result<()> {
        self.leading().await?.modify_instance(id, change).await
    }
    async fn grow_root_volume(&self, id: &str, growth: &VolumeGrowth) -> Result<()> {
        self.leading().await?.grow_root_volume(id, growth).await
    }
    async fn retain_instance(&self, id: &str) -> Result<()> {
        self.leading().await?.retain_instance(id).await
    }
    async fn describe_security_groups(&self, ids: &[String]) -> Result<Vec<SecurityGroup>> {
        self.inner.describe_security_groups(ids).await
    }
    async fn ensure_security_group(&self, group: &ManagedGroup) -> Result<String> {
        self.leading().await?.ensure_security_group(group).await
    }
}

#[async_trait]
impl Imperative for Fenced {
    async fn console_output(&self, id: &str) -> Result<String> {
        self.inner.console_output(id).await
    }
    async fn create_image(&self, instance_id: &str, name: &str) -> Result<String> {
        self.leading().await?.create_image(instance_id, name).await
    }
    async fn describe_images(&self, ids: &[String]) -> Result<Vec<Image>> {
        self.inner.describe_images(ids).await
    }
    async fn deregister_image(&self, id: &str) -> Result<()> {
        self.leading().await?.deregister_image(id).await
    }
    async fn import_key_pair(&self, name: &str, public_key_openssh: &str) -> Result<KeyPair> {
        self.leading().await?.import_key_pair(name, public_key_openssh).await
    }
    async fn describe_key_pairs(&self, names: &[String]) -> Result<Vec<KeyPair>> {
        self.inner.describe_key_pairs(names).await
    }
    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        self.leading().await?.delete_key_pair(name).await
    }
    async fn put_secret(&self, name: &str, value: &SecretValue) -> Result<()> {
        self.leading().await?.put_secret(name, value).await
    }
    async fn get_secret(&self, name: &str) -> Result<Option<SecretValue>> {
        self.inner.get_secret(name).await
    }
    async fn delete_secret(&self, name: &str) -> Result<()> {
        self.leading().await?.delete_secret(name).await
    }
    async fn get_object(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>> {
        self.inner.get_object(bucket, key, max_bytes).await
    }
}
