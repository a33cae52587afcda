//! The fake as the cloud's two ports: each call counted, faulted and answered late as configured,
//! then served by the in-memory state.

use std::time::Instant;

use async_trait::async_trait;
use jiff::Timestamp;

use super::{FakeCloud, PAGE_SIZE, incorrect_state, next_id, not_found};
use crate::budget::{Reservation, VolumeGrowth};
use crate::cloud::network::{ManagedGroup, SecurityGroup};
use crate::cloud::{
    CloudError, ErrorKind, Image, Imperative, Instance, InstanceState, KeyPair, LaunchRequest, Lifecycle,
    Modification, RETAINED, Result, SecretValue, TAG_MANAGED_BY, check_object_size,
};

#[async_trait]
impl Lifecycle for FakeCloud {
    async fn run_instance(&self, req: &LaunchRequest, _reservation: &Reservation) -> Result<Instance> {
        self.run_instances(req).await
    }

    async fn describe_managed(&self) -> Result<Vec<Instance>> {
        let total = {
            let mut state = self.state.lock().unwrap();
            self.advance(&mut state);
            state.instances.len()
        };
        // One call per page, as the SDK's paginator would make.
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        for _ in 0..pages {
            self.enter("DescribeInstances").await?;
        }
        let state = self.state.lock().unwrap();
        let managed = state.instances.values().map(|f| &f.instance);
        Ok(managed.filter(|i| i.tag(TAG_MANAGED_BY).is_some()).cloned().collect())
    }

    async fn describe_by_owner(&self, owner_uid: &str) -> Result<Vec<Instance>> {
        self.enter("DescribeInstances").await?;
        let mut state = self.state.lock().unwrap();
        self.advance(&mut state);
        let owned = state
            .instances
            .values()
            .map(|f| &f.instance)
            .filter(|i| i.tag(TAG_MANAGED_BY).is_some() && i.owner_uid() == Some(owner_uid));
        Ok(owned.cloned().collect())
    }

    async fn start_instance(&self, id: &str, _reservation: &Reservation) -> Result<()> {
        self.start_instances(id).await
    }

    async fn stop_instance(&self, id: &str) -> Result<()> {
        self.enter("StopInstances").await?;
        self.with_instance(id, |f| match f.instance.state {
            InstanceState::Pending | InstanceState::Running => {
                f.instance.state = InstanceState::Stopping;
                f.since = Instant::now();
                Ok(())
            }
            InstanceState::Stopping | InstanceState::Stopped => Ok(()),
            other => Err(incorrect_state(id, other)),
        })
    }

    async fn terminate_instance(&self, id: &str) -> Result<()> {
        self.enter("TerminateInstances").await?;
        let done = self.with_instance(id, |f| {
            if !f.instance.state.is_gone() {
                f.instance.state = InstanceState::ShuttingDown;
                f.since = Instant::now();
            }
            Ok(())
        });
        self.reply(done).await
    }

    async fn modify_instance(&self, id: &str, change: &Modification) -> Result<()> {
        self.modify(id, change).await
    }

    async fn grow_root_volume(&self, id: &str, growth: &VolumeGrowth) -> Result<()> {
        self.grow_volume(id, growth.gib()).await
    }

    async fn describe_security_groups(&self, ids: &[String]) -> Result<Vec<SecurityGroup>> {
        self.describe_groups(ids).await
    }

    async fn ensure_security_group(&self, group: &ManagedGroup) -> Result<String> {
        self.ensure_group(group).await
    }

    async fn retain_instance(&self, id: &str) -> Result<()> {
        self.enter("CreateTags").await?;
        self.with_instance(id, |f| {
            f.instance.tags.insert(TAG_MANAGED_BY.into(), RETAINED.into());
            Ok(())
        })
    }
}

#[async_trait]
impl Imperative for FakeCloud {
    async fn console_output(&self, id: &str) -> Result<String> {
        self.enter("GetConsoleOutput").await?;
        self.with_instance(id, |f| Ok(format!("fake console of {}\n", f.instance.id)))
    }

    async fn create_image(&self, instance_id: &str, name: &str) -> Result<String> {
        self.enter("CreateImage").await?;
        self.with_instance(instance_id, |_| Ok(()))?;
        let mut state = self.state.lock().unwrap();
        if state.images.values().any(|i| i.name == name) {
            let msg = format!("AMI name '{name}' is already in use");
            return Err(CloudError::new(ErrorKind::Terminal, "InvalidAMIName.Duplicate", msg));
        }
        let id = next_id(&mut state, "ami");
        let image = Image {
            id: id.clone(),
            name: name.to_string(),
            state: "pending".into(),
            root_device_name: Some("/dev/xvda".into()),
            creation_date: Some(Timestamp::now().to_string()),
        };
        state.images.insert(id.clone(), image);
        state.images_ready.insert(id.clone(), Instant::now() + self.delays.boot);
        Ok(id)
    }

    async fn describe_images(&self, ids: &[String]) -> Result<Vec<Image>> {
        self.enter("DescribeImages").await?;
        let mut state = self.state.lock().unwrap();
        self.advance(&mut state);
        if ids.is_empty() {
            return Ok(state.images.values().cloned().collect());
        }
        // Any well-formed AMI id the fake has not made stands for a public image.
        let found = ids.iter().map(|id| {
            state.images.get(id).cloned().unwrap_or_else(|| Image {
                id: id.clone(),
                name: format!("public {id}"),
                state: "available".into(),
                root_device_name: Some("/dev/xvda".into()),
                creation_date: None,
            })
        });
        Ok(found.collect())
    }

    async fn deregister_image(&self, id: &str) -> Result<()> {
        self.enter("DeregisterImage").await?;
        match self.state.lock().unwrap().images.remove(id) {
            Some(_) => Ok(()),
            None => Err(not_found("InvalidAMIID.NotFound", id)),
        }
    }

    async fn import_key_pair(&self, name: &str, public_key_openssh: &str) -> Result<KeyPair> {
        self.enter("ImportKeyPair").await?;
        let mut state = self.state.lock().unwrap();
        if state.key_pairs.contains_key(name) {
            let msg = format!("The keypair '{name}' already exists.");
            return Err(CloudError::new(ErrorKind::Terminal, "InvalidKeyPair.Duplicate", msg));
        }
        let pair = KeyPair {
            name: name.to_string(),
            fingerprint: Some(format!("fake:{}", public_key_openssh.len())),
            key_type: Some("ed25519".into()),
        };
        state.key_pairs.insert(name.to_string(), pair.clone());
        state.public_keys.insert(name.to_string(), public_key_openssh.to_string());
        Ok(pair)
    }

    async fn describe_key_pairs(&self, names: &[String]) -> Result<Vec<KeyPair>> {
        self.enter("DescribeKeyPairs").await?;
        let state = self.state.lock().unwrap();
        let all = state.key_pairs.values();
        Ok(all.filter(|k| names.is_empty() || names.contains(&k.name)).cloned().collect())
    }

    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        self.enter("DeleteKeyPair").await?;
        let mut state = self.state.lock().unwrap();
        state.key_pairs.remove(name);
        state.public_keys.remove(name);
        Ok(())
    }

    async fn put_secret(&self, name: &str, value: &SecretValue) -> Result<()> {
        self.enter("PutSecretValue").await?;
        self.state.lock().unwrap().secrets.insert(name.to_string(), value.clone());
        Ok(())
    }

    async fn get_secret(&self, name: &str) -> Result<Option<SecretValue>> {
        self.enter("GetSecretValue").await?;
        Ok(self.state.lock().unwrap().secrets.get(name).cloned())
    }

    async fn delete_secret(&self, name: &str) -> Result<()> {
        self.enter("DeleteSecret").await?;
        self.state.lock().unwrap().secrets.remove(name);
        Ok(())
    }

    async fn get_object(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>> {
        self.enter("GetObject").await?;
        let state = self.state.lock().unwrap();
        let object = state.objects.get(&(bucket.to_string(), key.to_string())).ok_or_else(|| {
            CloudError::new(ErrorKind::NotFound, "NoSuchKey", format!("s3://{bucket}/{key} does not exist"))
        })?;
        check_object_size(bucket, key, object.len() as u64, max_bytes)?;
        Ok(object.clone())
    }
}
