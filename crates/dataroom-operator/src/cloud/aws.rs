//! The cloud port over aws-sdk-ec2 and aws-sdk-secretsmanager.

mod modify;
mod network;

use async_trait::async_trait;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, ResourceType, Tag, TagSpecification, VolumeType,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use jiff::Timestamp;

use super::{
    CloudError, ErrorKind, Image, Instance, InstanceState, KeyPair, LaunchRequest, Modification, RETAINED,
    Result, SecretValue, TAG_MANAGED_BY, TAG_OWNER_UID, TAG_ROOT_VOLUME_GIB, classify,
};
use super::{Imperative, Lifecycle};
use crate::budget::pricing::ROOT_VOLUME_TYPE;
use crate::budget::{Reservation, VolumeGrowth};

#[derive(Clone, Debug)]
pub struct AwsCloud {
    ec2: aws_sdk_ec2::Client,
    secrets: aws_sdk_secretsmanager::Client,
    s3: aws_sdk_s3::Client,
}

impl AwsCloud {
    /// Loads credentials the standard way (env, profile, IRSA, instance metadata), with an optional
    /// endpoint override (moto, LocalStack, a VPC endpoint).
    pub async fn new(region: &str, endpoint_url: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()));
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        Self::with_config(&loader.load().await)
    }

    /// From an already loaded configuration (tests pass static credentials this way).
    pub fn with_config(shared: &aws_config::SdkConfig) -> Self {
        // Path-style addressing works with every endpoint, moto's included.
        let s3 = aws_sdk_s3::config::Builder::from(shared).force_path_style(true).build();
        Self {
            ec2: aws_sdk_ec2::Client::new(shared),
            secrets: aws_sdk_secretsmanager::Client::new(shared),
            s3: aws_sdk_s3::Client::from_conf(s3),
        }
    }

    async fn describe(&self, filters: Vec<Filter>) -> Result<Vec<Instance>> {
        let pages = self
            .ec2
            .describe_instances()
            .set_filters(Some(filters))
            .max_results(1000)
            .into_paginator()
            .send();
        let pages: Vec<_> = pages.try_collect().await.map_err(sdk_error)?;
        let reservations = pages.into_iter().flat_map(|p| p.reservations.unwrap_or_default());
        let instances = reservations.flat_map(|r| r.instances.unwrap_or_default());
        Ok(instances.filter_map(convert_instance).collect())
    }

    /// The image's root device name and size: the encrypted root volume must name the device,
    /// and keeps the image's size unless the spec asks for more.
    async fn root_device(&self, image_id: &str) -> Result<(String, Option<i32>)> {
        let call = self.ec2.describe_images().image_ids(image_id).send().await;
        let image = call.map_err(sdk_error)?.images.unwrap_or_default().into_iter().next();
        let image = image.ok_or_else(|| {
            let msg = format!("The image id '[{image_id}]' does not exist");
            CloudError::new(ErrorKind::Terminal, "InvalidAMIID.NotFound", msg)
        })?;
        let root = image.root_device_name.unwrap_or_else(|| "/dev/xvda".into());
        let mappings = image.block_device_mappings.unwrap_or_default();
        let size = mappings
            .iter()
            .find(|m| m.device_name.as_deref() == Some(root.as_str()))
            .and_then(|m| m.ebs.as_ref()?.volume_size);
        Ok((root, size))
    }
}

/// Launching with something that does not exist (image, subnet, group) is a terminal error.
fn missing_is_terminal(mut err: CloudError) -> CloudError {
    if err.kind == ErrorKind::NotFound {
        err.kind = ErrorKind::Terminal;
    }
    err
}

fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder().name(format!("tag:{key}")).values(value).build()
}

/// Instances the operator manages, and those it handed over and still counts.
fn managed_filter() -> Filter {
    Filter::builder().name(format!("tag:{TAG_MANAGED_BY}")).values(super::MANAGED_BY).values(RETAINED).build()
}

/// Maps an SDK failure onto the port's classified error.
pub(crate) fn sdk_error<E: ProvideErrorMetadata>(err: SdkError<E, HttpResponse>) -> CloudError {
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let meta = service.err();
            let code = meta.code().unwrap_or("Unknown");
            classify(code, Some(status), meta.message().unwrap_or(""))
        }
        SdkError::ConstructionFailure(_) => {
            CloudError::new(ErrorKind::Terminal, "RequestConstruction", err.to_string())
        }
        _ => CloudError::new(ErrorKind::Retryable, "Transport", err.to_string()),
    }
}

fn timestamp(t: &aws_sdk_ec2::primitives::DateTime) -> Option<Timestamp> {
    Timestamp::from_second(t.secs()).ok()
}

fn convert_instance(i: aws_sdk_ec2::types::Instance) -> Option<Instance> {
    let state = i.state.as_ref()?.name.as_ref()?.as_str();
    let tags = i.tags.unwrap_or_default().into_iter();
    let groups = i.security_groups.unwrap_or_default().into_iter();
    Some(Instance {
        id: i.instance_id?,
        state: InstanceState::parse(state)?,
        instance_type: i.instance_type.map(|t| t.as_str().to_string()).unwrap_or_default(),
        image_id: i.image_id.unwrap_or_default(),
        key_name: i.key_name,
        public_ip: i.public_ip_address,
        private_ip: i.private_ip_address,
        launch_time: i.launch_time.as_ref().and_then(timestamp),
        tags: tags.filter_map(|t| Some((t.key?, t.value.unwrap_or_default()))).collect(),
        security_group_ids: groups.filter_map(|g| g.group_id).collect(),
    })
}

#[async_trait]
impl Lifecycle for AwsCloud {
    async fn run_instance(&self, req: &LaunchRequest, _reservation: &Reservation) -> Result<Instance> {
        let (root, image_size) = self.root_device(&req.image_id).await.map_err(missing_is_terminal)?;
        // gp3 by name, whatever the image's default: the budget prices that type.
        let mut ebs = EbsBlockDevice::builder()
            .encrypted(true)
            .delete_on_termination(true)
            .volume_type(VolumeType::from(ROOT_VOLUME_TYPE));
        let mut tags = req.tags();
        if let Some(size) = req.root_volume_gib.or(image_size) {
            ebs = ebs.volume_size(size);
            tags.insert(TAG_ROOT_VOLUME_GIB.into(), size.to_string());
        }
        let tags: Vec<Tag> = tags.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
        let tag_spec =
            |kind| TagSpecification::builder().resource_type(kind).set_tags(Some(tags.clone())).build();
        let metadata = InstanceMetadataOptionsRequest::builder()
            .http_tokens(HttpTokensState::Required)
            .http_endpoint(InstanceMetadataEndpointState::Enabled)
            .http_put_response_hop_limit(1)
            .build();
        let out = self
            .ec2
            .run_instances()
            .image_id(&req.image_id)
            .instance_type(InstanceType::from(req.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .client_token(&req.client_token)
            .key_name(&req.key_name)
            .set_subnet_id(req.subnet_id.clone())
            .set_security_group_ids(
                (!req.security_group_ids.is_empty()).then(|| req.security_group_ids.clone()),
            )
            .set_user_data(req.user_data.as_ref().map(|u| BASE64.encode(u)))
            .metadata_options(metadata)
            .block_device_mappings(BlockDeviceMapping::builder().device_name(root).ebs(ebs.build()).build())
            .tag_specifications(tag_spec(ResourceType::Instance))
            .tag_specifications(tag_spec(ResourceType::Volume))
            .send()
            .await
            .map_err(|e| missing_is_terminal(sdk_error(e)))?;
        let launched = out.instances.unwrap_or_default().into_iter().next();
        launched.and_then(convert_instance).ok_or_else(|| {
            CloudError::new(ErrorKind::Retryable, "EmptyResponse", "RunInstances returned no instance")
        })
    }

    async fn describe_managed(&self) -> Result<Vec<Instance>> {
        self.describe(vec![managed_filter()]).await
    }

    async fn describe_by_owner(&self, owner_uid: &str) -> Result<Vec<Instance>> {
        self.describe(vec![managed_filter(), tag_filter(TAG_OWNER_UID, owner_uid)]).await
    }

    async fn start_instance(&self, id: &str, _reservation: &Reservation) -> Result<()> {
        let call = self.ec2.start_instances().instance_ids(id).send().await;
        call.map(drop).map_err(sdk_error)
    }

    async fn stop_instance(&self, id: &str) -> Result<()> {
        let call = self.ec2.stop_instances().instance_ids(id).send().await;
        call.map(drop).map_err(sdk_error)
    }

    async fn terminate_instance(&self, id: &str) -> Result<()> {
        let call = self.ec2.terminate_instances().instance_ids(id).send().await;
        call.map(drop).map_err(sdk_error)
    }

    async fn retain_instance(&self, id: &str) -> Result<()> {
        let tag = Tag::builder().key(TAG_MANAGED_BY).value(RETAINED).build();
        let call = self.ec2.create_tags().resources(id).tags(tag).send().await;
        call.map(drop).map_err(sdk_error)
    }

    async fn modify_instance(&self, id: &str, change: &Modification) -> Result<()> {
        self.modify(id, change).await
    }

    async fn grow_root_volume(&self, id: &str, growth: &VolumeGrowth) -> Result<()> {
        self.grow_volume(id, growth.gib()).await
    }

    async fn describe_security_groups(&self, ids: &[String]) -> Result<Vec<super::network::SecurityGroup>> {
        self.security_groups(ids).await
    }

    async fn ensure_security_group(&self, group: &super::network::ManagedGroup) -> Result<String> {
        self.managed_group(group).await
    }
}

#[async_trait]
impl Imperative for AwsCloud {
    async fn console_output(&self, id: &str) -> Result<String> {
        let out = self.ec2.get_console_output().instance_id(id).send().await;
        let encoded = out.map_err(sdk_error)?.output.unwrap_or_default();
        let bytes = BASE64.decode(encoded.trim()).unwrap_or_else(|_| encoded.into_bytes());
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn create_image(&self, instance_id: &str, name: &str) -> Result<String> {
        let call = self.ec2.create_image().instance_id(instance_id).name(name).send().await;
        let out = call.map_err(sdk_error)?;
        out.image_id.ok_or_else(|| {
            CloudError::new(ErrorKind::Retryable, "EmptyResponse", "CreateImage returned no image id")
        })
    }

    async fn describe_images(&self, ids: &[String]) -> Result<Vec<Image>> {
        let request = self.ec2.describe_images();
        let request =
            if ids.is_empty() { request.owners("self") } else { request.set_image_ids(Some(ids.to_vec())) };
        let out = request.send().await.map_err(sdk_error)?;
        let images = out.images.unwrap_or_default().into_iter().map(|i| Image {
            id: i.image_id.unwrap_or_default(),
            name: i.name.unwrap_or_default(),
            state: i.state.map(|s| s.as_str().to_string()).unwrap_or_default(),
            root_device_name: i.root_device_name,
            creation_date: i.creation_date,
        });
        Ok(images.collect())
    }

    async fn deregister_image(&self, id: &str) -> Result<()> {
        let call = self.ec2.deregister_image().image_id(id).send().await;
        call.map(drop).map_err(sdk_error)
    }

    async fn import_key_pair(&self, name: &str, public_key_openssh: &str) -> Result<KeyPair> {
        let call = self
            .ec2
            .import_key_pair()
            .key_name(name)
            .public_key_material(Blob::new(public_key_openssh.as_bytes()))
            .send()
            .await;
        let out = call.map_err(sdk_error)?;
        Ok(KeyPair {
            name: out.key_name.unwrap_or_else(|| name.to_string()),
            fingerprint: out.key_fingerprint,
            key_type: Some("ed25519".into()),
        })
    }

    async fn describe_key_pairs(&self, names: &[String]) -> Result<Vec<KeyPair>> {
        let mut request = self.ec2.describe_key_pairs();
        if !names.is_empty() {
            // A filter, unlike KeyNames, does not fail the whole call when one name is missing.
            let filter = Filter::builder().name("key-name").set_values(Some(names.to_vec())).build();
            request = request.filters(filter);
        }
        let out = request.send().await.map_err(sdk_error)?;
        let pairs = out.key_pairs.unwrap_or_default().into_iter().map(|k| KeyPair {
            name: k.key_name.unwrap_or_default(),
            fingerprint: k.key_fingerprint,
            key_type: k.key_type.map(|t| t.as_str().to_string()),
        });
        Ok(pairs.collect())
    }

    async fn delete_key_pair(&self, name: &str) -> Result<()> {
        match self.ec2.delete_key_pair().key_name(name).send().await.map_err(sdk_error) {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    async fn put_secret(&self, name: &str, value: &SecretValue) -> Result<()> {
        let created = self
            .secrets
            .create_secret()
            .name(name)
            .secret_string(value.expose())
            .description("SSH private key of an instance managed by dataroom-operator")
            .tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key(TAG_MANAGED_BY)
                    .value(super::MANAGED_BY)
                    .build(),
            )
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_exists_exception()) => {
                let put = self.secrets.put_secret_value().secret_id(name).secret_string(value.expose());
                put.send().await.map(drop).map_err(sdk_error)
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn get_secret(&self, name: &str) -> Result<Option<SecretValue>> {
        match self.secrets.get_secret_value().secret_id(name).send().await.map_err(sdk_error) {
            Ok(out) => Ok(out.secret_string.map(SecretValue::new)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get_object(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let object = self.s3.get_object().bucket(bucket).key(key).send().await.map_err(sdk_error)?;
        let size = object.content_length.unwrap_or(0).max(0) as u64;
        super::check_object_size(bucket, key, size, max_bytes)?;
        let body = object.body.collect().await.map_err(|e| {
            CloudError::new(ErrorKind::Retryable, "ReadBody", format!("reading s3://{bucket}/{key}: {e}"))
        })?;
        let bytes = body.into_bytes();
        super::check_object_size(bucket, key, bytes.len() as u64, max_bytes)?;
        Ok(bytes.to_vec())
    }

    async fn delete_secret(&self, name: &str) -> Result<()> {
        let call =
            self.secrets.delete_secret().secret_id(name).force_delete_without_recovery(true).send().await;
        match call.map_err(sdk_error) {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }
}
