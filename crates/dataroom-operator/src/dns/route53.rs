//! The zone in Route53: an A record per published room in one hosted zone, written with
//! ChangeResourceRecordSets (UPSERT; DELETE of the record as it stands, which Route53 requires
//! to match exactly). The IAM policy (`iam-policy --route53-zone`) allows these calls on that
//! hosted zone only.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use aws_sdk_route53::types::{Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType};

use super::Publisher;
use crate::cloud::CloudError;
use crate::cloud::aws::sdk_error;

/// How long resolvers may keep a room's address: short, as a stopped room's name must go soon.
const TTL_SECONDS: i64 = 30;

pub struct Route53 {
    client: aws_sdk_route53::Client,
    hosted_zone_id: String,
    zone: String,
}

impl Route53 {
    pub fn with_config(shared: &aws_config::SdkConfig, hosted_zone_id: &str, zone: &str) -> Self {
        let client = aws_sdk_route53::Client::new(shared);
        Self { client, hosted_zone_id: hosted_zone_id.into(), zone: zone.into() }
    }

    /// Loads credentials as the cloud port does, with an optional endpoint override.
    pub async fn new(region: &str, endpoint_url: Option<&str>, hosted_zone_id: &str, zone: &str) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()));
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        Self::with_config(&loader.load().await, hosted_zone_id, zone)
    }

    async fn change(&self, action: ChangeAction, set: ResourceRecordSet) -> Result<(), CloudError> {
        let change =
            Change::builder().action(action).resource_record_set(set).build().map_err(build_error)?;
        let batch = ChangeBatch::builder().changes(change).build().map_err(build_error)?;
        let call = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(&self.hosted_zone_id)
            .change_batch(batch);
        call.send().await.map(drop).map_err(sdk_error)
    }

    /// The A record set of `name` as Route53 holds it, if there is one.
    async fn current(&self, name: &str) -> Result<Option<ResourceRecordSet>, CloudError> {
        let listed = self
            .client
            .list_resource_record_sets()
            .hosted_zone_id(&self.hosted_zone_id)
            .start_record_name(name)
            .start_record_type(RrType::A)
            .max_items(1)
            .send()
            .await
            .map_err(sdk_error)?;
        let first = listed.resource_record_sets.into_iter().next();
        let same =
            |set: &ResourceRecordSet| set.name.trim_end_matches('.') == name && set.r#type == RrType::A;
        Ok(first.filter(same))
    }
}

fn build_error(e: aws_sdk_route53::error::BuildError) -> CloudError {
    CloudError::new(crate::cloud::ErrorKind::Terminal, "RequestConstruction", e.to_string())
}

#[async_trait]
impl Publisher for Route53 {
    fn zone(&self) -> &str {
        &self.zone
    }

    async fn publish(&self, name: &str, address: Ipv4Addr) -> Result<(), CloudError> {
        let record = ResourceRecord::builder().value(address.to_string()).build().map_err(build_error)?;
        let set = ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::A)
            .ttl(TTL_SECONDS)
            .resource_records(record)
            .build()
            .map_err(build_error)?;
        self.change(ChangeAction::Upsert, set).await
    }

    async fn unpublish(&self, name: &str) -> Result<(), CloudError> {
        match self.current(name).await? {
            Some(set) => self.change(ChangeAction::Delete, set).await,
            None => Ok(()),
        }
    }
}
