//! Security groups over aws-sdk-ec2: describing named groups, and the operator's own group per VPC
//! (found by name and the managed-by tag, created with that tag, its ingress made exactly what
//! `network::wanted` says). The decisions are `cloud::network`'s.

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Ipv6Range, ResourceType, Tag, TagSpecification};

use super::{AwsCloud, sdk_error};
use crate::cloud::network::{ManagedGroup, Permission, SecurityGroup, changes, managed_group_name, wanted};
use crate::cloud::{CloudError, ErrorKind, MANAGED_BY, Result, TAG_MANAGED_BY};

fn flatten(permission: &IpPermission) -> Vec<Permission> {
    let rule = |cidr: &str| Permission {
        protocol: permission.ip_protocol.clone().unwrap_or_else(|| "-1".into()),
        from_port: permission.from_port.unwrap_or(-1),
        to_port: permission.to_port.unwrap_or(-1),
        cidr: cidr.to_string(),
    };
    let v4 = permission.ip_ranges().iter().filter_map(|r| r.cidr_ip()).map(rule);
    let v6 = permission.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()).map(rule);
    v4.chain(v6).collect()
}

fn permission(p: &Permission) -> IpPermission {
    let builder = IpPermission::builder().ip_protocol(&p.protocol).from_port(p.from_port).to_port(p.to_port);
    match p.cidr.contains(':') {
        true => builder.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(&p.cidr).build()),
        false => builder.ip_ranges(IpRange::builder().cidr_ip(&p.cidr).build()),
    }
    .build()
}

fn convert(group: aws_sdk_ec2::types::SecurityGroup) -> SecurityGroup {
    SecurityGroup {
        id: group.group_id().unwrap_or_default().to_string(),
        name: group.group_name().unwrap_or_default().to_string(),
        vpc_id: group.vpc_id().map(String::from),
        ingress: group.ip_permissions().iter().flat_map(flatten).collect(),
    }
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

impl AwsCloud {
    pub(super) async fn security_groups(&self, ids: &[String]) -> Result<Vec<SecurityGroup>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let call = self.ec2.describe_security_groups().set_group_ids(Some(ids.to_vec())).send().await;
        Ok(call.map_err(sdk_error)?.security_groups.unwrap_or_default().into_iter().map(convert).collect())
    }

    /// The VPC of `subnet_id`, or the default VPC, with its IPv4 and IPv6 ranges.
    async fn vpc(&self, subnet_id: Option<&str>) -> Result<(String, Vec<String>)> {
        let call = match subnet_id {
            Some(subnet) => {
                let out = self.ec2.describe_subnets().subnet_ids(subnet).send().await.map_err(sdk_error)?;
                let vpc = out.subnets.unwrap_or_default().into_iter().find_map(|s| s.vpc_id);
                let vpc = vpc.ok_or_else(|| {
                    CloudError::new(ErrorKind::Terminal, "InvalidSubnetID.NotFound", subnet)
                })?;
                self.ec2.describe_vpcs().vpc_ids(vpc)
            }
            None => self.ec2.describe_vpcs().filters(filter("is-default", "true")),
        };
        let vpcs = call.send().await.map_err(sdk_error)?.vpcs.unwrap_or_default();
        let Some(vpc) = vpcs.into_iter().next() else {
            let why = "this region has no default VPC: name a subnet (spec.subnetId or --default-subnet-id)";
            return Err(CloudError::new(ErrorKind::Terminal, "NoDefaultVpc", why));
        };
        let v4 = vpc.cidr_block_association_set().iter().filter_map(|a| a.cidr_block().map(String::from));
        let v6 = vpc
            .ipv6_cidr_block_association_set()
            .iter()
            .filter_map(|a| a.ipv6_cidr_block().map(String::from));
        let ranges = v4.chain(v6).collect();
        Ok((vpc.vpc_id.clone().unwrap_or_default(), ranges))
    }

    pub(super) async fn managed_group(&self, group: &ManagedGroup) -> Result<String> {
        let (vpc, ranges) = self.vpc(group.subnet_id.as_deref()).await?;
        let name = managed_group_name(&vpc);
        let found = self
            .ec2
            .describe_security_groups()
            .filters(filter("vpc-id", &vpc))
            .filters(filter("group-name", &name))
            .filters(filter(&format!("tag:{TAG_MANAGED_BY}"), MANAGED_BY))
            .send()
            .await
            .map_err(sdk_error)?;
        let existing = found.security_groups.unwrap_or_default().into_iter().next().map(convert);
        let (id, current) = match existing {
            Some(existing) => (existing.id, existing.ingress),
            None => {
                let tags = TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .tags(Tag::builder().key(TAG_MANAGED_BY).value(MANAGED_BY).build())
                    .build();
                let description = "dataroom-operator: SSH and health checks from the operator only";
                let call =
                    self.ec2.create_security_group().group_name(&name).description(description).vpc_id(&vpc);
                let created = call.tag_specifications(tags).send().await.map_err(sdk_error)?;
                (created.group_id.unwrap_or_default(), vec![])
            }
        };
        let sources = if group.sources.is_empty() { ranges } else { group.sources.clone() };
        let (add, remove) = changes(&current, &wanted(group, &sources));
        if !add.is_empty() {
            let add: Vec<IpPermission> = add.iter().map(permission).collect();
            let call =
                self.ec2.authorize_security_group_ingress().group_id(&id).set_ip_permissions(Some(add));
            call.send().await.map_err(sdk_error)?;
        }
        if !remove.is_empty() {
            let remove: Vec<IpPermission> = remove.iter().map(permission).collect();
            let call =
                self.ec2.revoke_security_group_ingress().group_id(&id).set_ip_permissions(Some(remove));
            call.send().await.map_err(sdk_error)?;
        }
        Ok(id)
    }
}
