//! Network defaults against moto's EC2: the operator's own security group per VPC admits SSH and
//! the health port from the VPC's range only (a rule added by hand is taken away again), instances
//! that name no group get it, and an instance naming a group that opens port 22 to the internet is
//! refused with a condition and an event naming the rule, and launches nothing.

mod support;

use std::sync::Arc;

use dataroom_operator::cloud::Lifecycle;
use dataroom_operator::cloud::aws::AwsCloud;
use dataroom_operator::cloud::network::{ManagedGroup, Permission};
use serde_json::json;
use support::harness::{Harness, Options};
use support::moto::Moto;

fn managed() -> ManagedGroup {
    ManagedGroup { subnet_id: None, ports: vec![22, 8000], sources: vec![] }
}

/// The default VPC's ID and IPv4 range, as moto made them.
async fn default_vpc(ec2: &aws_sdk_ec2::Client) -> (String, String) {
    let vpcs = ec2.describe_vpcs().send().await.unwrap().vpcs.unwrap();
    let vpc = vpcs.into_iter().find(|v| v.is_default == Some(true)).expect("moto has a default VPC");
    (vpc.vpc_id.unwrap(), vpc.cidr_block.unwrap())
}

#[tokio::test]
async fn the_managed_group_admits_only_the_operator_and_comes_back_when_widened() {
    let moto = Moto::start();
    let config = moto.config().await;
    let (ec2, aws) = (aws_sdk_ec2::Client::new(&config), AwsCloud::with_config(&config));
    let (vpc, range) = default_vpc(&ec2).await;

    let id = aws.ensure_security_group(&managed()).await.unwrap();
    let group = aws.describe_security_groups(std::slice::from_ref(&id)).await.unwrap().remove(0);
    assert_eq!(
        (group.vpc_id.as_deref(), group.name.as_str()),
        (Some(vpc.as_str()), format!("dataroom-operator-{vpc}").as_str())
    );
    let mut ingress = group.ingress.clone();
    ingress.sort();
    assert_eq!(ingress, [Permission::tcp(22, &range), Permission::tcp(8000, &range)]);
    let described = ec2.describe_security_groups().group_ids(&id).send().await.unwrap();
    let tags = described.security_groups.unwrap()[0].tags.clone().unwrap_or_default();
    assert!(
        tags.iter()
            .any(|t| t.key() == Some("dataroom.dev/managed-by") && t.value() == Some("dataroom-operator"))
    );

    // Someone opens SSH to the internet by hand: the next ensure takes it away and finds the same group.
    let world = aws_sdk_ec2::types::IpRange::builder().cidr_ip("0.0.0.0/0").build();
    let open = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(world)
        .build();
    ec2.authorize_security_group_ingress().group_id(&id).ip_permissions(open).send().await.unwrap();
    let sources = ManagedGroup { sources: vec!["10.9.0.0/16".into()], ..managed() };
    assert_eq!(aws.ensure_security_group(&sources).await.unwrap(), id);
    let mut ingress =
        aws.describe_security_groups(std::slice::from_ref(&id)).await.unwrap().remove(0).ingress;
    ingress.sort();
    assert_eq!(ingress, [Permission::tcp(22, "10.9.0.0/16"), Permission::tcp(8000, "10.9.0.0/16")]);
    let missing = aws.describe_security_groups(&["sg-00000000000000000".into()]).await.unwrap_err();
    assert!(
        missing.is_not_found() || missing.kind == dataroom_operator::cloud::ErrorKind::Terminal,
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_group_open_to_the_internet_on_port_22_is_refused_and_others_get_the_managed_group() {
    let moto = Moto::start();
    let config = moto.config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let (vpc, _) = default_vpc(&ec2).await;
    let created =
        ec2.create_security_group().group_name("wide-open").description("test").vpc_id(&vpc).send().await;
    let open_id = created.unwrap().group_id.unwrap();
    let world = aws_sdk_ec2::types::Ipv6Range::builder().cidr_ipv6("::/0").build();
    let open = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(0)
        .to_port(65535)
        .ipv6_ranges(world)
        .build();
    ec2.authorize_security_group_ingress().group_id(&open_id).ip_permissions(open).send().await.unwrap();

    let cloud = Arc::new(AwsCloud::with_config(&config));
    let options = Options { managed_security_group: Some(managed()), ..Options::default() };
    let h = Harness::start_on_with(cloud.clone(), &moto.image().await, options).await;
    h.create("exposed", json!({ "securityGroupIds": [open_id] })).await;
    let refused = h
        .until("exposed", "refused", |o| {
            let conditions = o.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
            conditions.iter().any(|c| c.type_ == "Synced" && c.reason == "SecurityGroupOpenToWorld")
        })
        .await;
    let status = refused.status.unwrap();
    let synced = status.conditions.iter().find(|c| c.type_ == "Synced").unwrap();
    assert!(
        synced.message.contains(&open_id) && synced.message.contains("tcp ports 0-65535 from ::/0"),
        "{}",
        synced.message
    );
    assert!(status.instance_id.is_none());

    h.create("private", json!({})).await;
    let running = h.state("private", "running").await;
    let instance_id = running.status.unwrap().instance_id.unwrap();
    let described = ec2.describe_instances().instance_ids(&instance_id).send().await.unwrap();
    let instance = described.reservations.unwrap()[0].instances.clone().unwrap().remove(0);
    let groups: Vec<String> =
        instance.security_groups().iter().filter_map(|g| g.group_name().map(String::from)).collect();
    assert_eq!(groups, [format!("dataroom-operator-{vpc}")], "the instance got the operator's group");
    assert!(
        cloud.describe_managed().await.unwrap().iter().all(|i| i.id == instance_id),
        "the refused one launched nothing"
    );

    let audit = std::fs::read_to_string(h.audit_dir.path().join("audit.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let refusals = records.iter().filter(|r| r["action"] == "launch" && r["outcome"] == "refused").count();
    assert_eq!(refusals, 1, "the refusal is recorded once, not at every look:\n{audit}");
    assert!(records.iter().any(|r| r["action"] == "security-group.ensure"), "{audit}");
}
