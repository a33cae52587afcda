//! Changes to an existing instance over aws-sdk-ec2: ModifyInstanceAttribute (type, user data,
//! security groups), CreateTags/DeleteTags, and ModifyVolume of the root volume. Which change may
//! be made when is the controller's decision; EC2 refuses a type or user data change of an
//! instance that is not stopped (`IncorrectInstanceState`).

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{AttributeValue, Filter, SecureBlobAttributeValue, Tag};

use super::{AwsCloud, sdk_error};
use crate::cloud::{
    CloudError, ErrorKind, Modification, Result, TAG_ROOT_VOLUME_GIB, TAG_USER_DATA_SHA256, user_data_sha256,
};

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

impl AwsCloud {
    pub(super) async fn modify(&self, id: &str, change: &Modification) -> Result<()> {
        let attribute = self.ec2.modify_instance_attribute().instance_id(id);
        match change {
            Modification::InstanceType { instance_type } => {
                let value = AttributeValue::builder().value(instance_type).build();
                attribute.instance_type(value).send().await.map(drop).map_err(sdk_error)
            }
            Modification::UserData { user_data } => {
                // The SDK base64-encodes the blob itself.
                let bytes = user_data.clone().unwrap_or_default().into_bytes();
                let value = SecureBlobAttributeValue::builder().value(Blob::new(bytes)).build();
                attribute.user_data(value).send().await.map_err(sdk_error)?;
                let hash = user_data_sha256(user_data.as_deref());
                self.tag(id, vec![tag(TAG_USER_DATA_SHA256, &hash)]).await
            }
            Modification::SecurityGroups { ids } => {
                attribute.set_groups(Some(ids.clone())).send().await.map(drop).map_err(sdk_error)
            }
            Modification::Tags { set, remove } => {
                if !remove.is_empty() {
                    let keys = remove.iter().map(|k| Tag::builder().key(k).build()).collect();
                    let call = self.ec2.delete_tags().resources(id).set_tags(Some(keys)).send().await;
                    call.map_err(sdk_error)?;
                }
                if set.is_empty() {
                    return Ok(());
                }
                self.tag(id, set.iter().map(|(k, v)| tag(k, v)).collect()).await
            }
        }
    }

    async fn tag(&self, id: &str, tags: Vec<Tag>) -> Result<()> {
        let call = self.ec2.create_tags().resources(id).set_tags(Some(tags)).send().await;
        call.map(drop).map_err(sdk_error)
    }

    /// Finds the root volume by its attachment, grows it, and re-tags the instance with its size.
    pub(super) async fn grow_volume(&self, id: &str, gib: u32) -> Result<()> {
        let attached = Filter::builder().name("attachment.instance-id").values(id).build();
        let out = self.ec2.describe_volumes().filters(attached).send().await.map_err(sdk_error)?;
        let volumes = out.volumes.unwrap_or_default();
        // The root volume is the one the launch made; the operator attaches no other.
        let volume = volumes.first().and_then(|v| v.volume_id.clone()).ok_or_else(|| {
            let message = format!("instance {id} has no attached volume");
            CloudError::new(ErrorKind::NotFound, "InvalidVolume.NotFound", message)
        })?;
        let size = i32::try_from(gib).unwrap_or(i32::MAX);
        let call = self.ec2.modify_volume().volume_id(volume).size(size).send().await;
        call.map_err(sdk_error)?;
        self.tag(id, vec![tag(TAG_ROOT_VOLUME_GIB, &gib.to_string())]).await
    }
}
