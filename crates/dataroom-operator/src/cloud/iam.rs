//! The least-privilege IAM policy for exactly the AWS calls in `aws.rs` (a test keeps the two in
//! step). Instance actions are limited to instances tagged `dataroom.dev/managed-by=dataroom-operator`,
//! launches must carry that tag, and secrets are limited to the `dataroom-operator/ssh/` prefix.

use serde_json::{Value, json};

use super::{MANAGED_BY, RETAINED, TAG_MANAGED_BY, TAG_NAME, TAG_NAMESPACE, TAG_OWNER_UID};

/// What to scope the policy to.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub partition: String,
    /// A region, or `*`.
    pub region: String,
    /// The 12-digit account ID, or `*`.
    pub account: String,
    /// Buckets the admin API may read files from (`s3://` sources); none means no S3 access.
    pub buckets: Vec<String>,
    /// The audit archive's bucket (`audit/archive/s3.rs`), if there is one.
    pub audit_bucket: Option<String>,
    /// The Route53 hosted zone ID rooms are published in (`dns/route53.rs`), if they are.
    pub route53_zone: Option<String>,
}

pub fn policy(scope: &Scope) -> Value {
    let ec2 =
        |resource: &str| format!("arn:{}:ec2:{}:{}:{resource}", scope.partition, scope.region, scope.account);
    let image = format!("arn:{}:ec2:{}::image/*", scope.partition, scope.region);
    let managed = json!({ "StringEquals": { format!("aws:ResourceTag/{TAG_MANAGED_BY}"): MANAGED_BY } });
    let mut statements = vec![
        json!({
            "Sid": "ReadInventory",
            "Effect": "Allow",
            // These Describe calls support no resource-level permissions.
            "Action": ["ec2:DescribeInstances", "ec2:DescribeImages", "ec2:DescribeKeyPairs",
                       "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
                       "ec2:DescribeVolumes"],
            "Resource": "*",
        }),
        json!({
            "Sid": "LaunchOnlyTaggedInstances",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": [ec2("instance/*")],
            "Condition": { "StringEquals": { format!("aws:RequestTag/{TAG_MANAGED_BY}"): MANAGED_BY } },
        }),
        json!({
            "Sid": "LaunchWithTheseParts",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": [image.clone(), ec2("subnet/*"), ec2("security-group/*"), ec2("network-interface/*"),
                         ec2("volume/*"), ec2("key-pair/*")],
        }),
        json!({
            "Sid": "TagOnlyAtCreation",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": [ec2("instance/*"), ec2("volume/*"), ec2("security-group/*")],
            "Condition": { "StringEquals": { "ec2:CreateAction": ["RunInstances", "CreateSecurityGroup"] } },
        }),
        json!({
            // The operator's own group per VPC (`--managed-security-group`): created tagged, in any VPC.
            "Sid": "CreateOnlyTaggedSecurityGroups",
            "Effect": "Allow",
            "Action": "ec2:CreateSecurityGroup",
            "Resource": [ec2("security-group/*")],
            "Condition": { "StringEquals": { format!("aws:RequestTag/{TAG_MANAGED_BY}"): MANAGED_BY } },
        }),
        json!({
            "Sid": "CreateSecurityGroupsInVpcs",
            "Effect": "Allow",
            "Action": "ec2:CreateSecurityGroup",
            "Resource": [ec2("vpc/*")],
        }),
        json!({
            // Its ingress rules, and no other group's.
            "Sid": "RulesOfManagedSecurityGroups",
            "Effect": "Allow",
            "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
            "Resource": [ec2("security-group/*")],
            "Condition": managed.clone(),
        }),
        json!({
            "Sid": "OperateManagedInstances",
            "Effect": "Allow",
            "Action": ["ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances",
                       "ec2:GetConsoleOutput", "ec2:CreateImage"],
            "Resource": [ec2("instance/*")],
            "Condition": managed,
        }),
        json!({
            // Declarative updates: a managed instance's type, user data and groups; the groups it
            // is given must be named in the spec, so any group may be attached.
            "Sid": "ModifyManagedInstances",
            "Effect": "Allow",
            "Action": "ec2:ModifyInstanceAttribute",
            "Resource": [ec2("instance/*")],
            "Condition": managed.clone(),
        }),
        json!({
            "Sid": "AttachSecurityGroupsToManagedInstances",
            "Effect": "Allow",
            "Action": "ec2:ModifyInstanceAttribute",
            "Resource": [ec2("security-group/*")],
        }),
        json!({
            // A spec's `rootVolumeGiB` grown; the root volume carries the launch's tags.
            "Sid": "GrowManagedRootVolumes",
            "Effect": "Allow",
            "Action": "ec2:ModifyVolume",
            "Resource": [ec2("volume/*")],
            "Condition": managed.clone(),
        }),
        json!({
            // A spec's `tags`, and the operator's own records (user-data hash, volume size); never
            // the tags that say which object owns the instance.
            "Sid": "TagManagedInstances",
            "Effect": "Allow",
            "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
            "Resource": [ec2("instance/*")],
            "Condition": {
                "StringEquals": { format!("aws:ResourceTag/{TAG_MANAGED_BY}"): MANAGED_BY },
                "ForAllValues:StringNotEquals": { "aws:TagKeys": [TAG_MANAGED_BY, TAG_OWNER_UID, TAG_NAMESPACE, TAG_NAME] },
            },
        }),
        json!({
            // deletionPolicy Retain: the managed-by tag's value becomes `retained`, and nothing else.
            // After that the operator may no longer act on the instance (see OperateManagedInstances).
            "Sid": "RetainManagedInstances",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": [ec2("instance/*")],
            "Condition": {
                "StringEquals": {
                    format!("aws:ResourceTag/{TAG_MANAGED_BY}"): MANAGED_BY,
                    format!("aws:RequestTag/{TAG_MANAGED_BY}"): RETAINED,
                },
                "ForAllValues:StringEquals": { "aws:TagKeys": [TAG_MANAGED_BY] },
            },
        }),
        json!({
            "Sid": "Images",
            "Effect": "Allow",
            "Action": ["ec2:CreateImage", "ec2:DeregisterImage"],
            "Resource": [image, ec2("snapshot/*")],
        }),
        json!({
            "Sid": "KeyPairs",
            "Effect": "Allow",
            "Action": ["ec2:ImportKeyPair", "ec2:DeleteKeyPair"],
            "Resource": [ec2("key-pair/*")],
        }),
        json!({
            "Sid": "PrivateKeysInSecretsManager",
            "Effect": "Allow",
            "Action": ["secretsmanager:CreateSecret", "secretsmanager:GetSecretValue",
                       "secretsmanager:PutSecretValue", "secretsmanager:DeleteSecret"],
            "Resource": [format!(
                "arn:{}:secretsmanager:{}:{}:secret:{}*",
                scope.partition, scope.region, scope.account, super::ssh_secret_name("")
            )],
        }),
    ];
    if !scope.buckets.is_empty() {
        let objects: Vec<String> =
            scope.buckets.iter().map(|b| format!("arn:{}:s3:::{b}/*", scope.partition)).collect();
        statements.push(json!({
            "Sid": "ReadFileSources",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": objects,
        }));
    }
    if let Some(zone) = &scope.route53_zone {
        statements.push(json!({
            // Ready rooms' A records, in this hosted zone only.
            "Sid": "RoomRecords",
            "Effect": "Allow",
            "Action": ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
            "Resource": [format!("arn:{}:route53:::hostedzone/{zone}", scope.partition)],
        }));
    }
    if let Some(bucket) = &scope.audit_bucket {
        let arn = format!("arn:{}:s3:::{bucket}", scope.partition);
        statements.push(json!({
            // Put (only with a compliance-mode lock, which PutObjectRetention covers) and read back;
            // no delete, no governance bypass, no change to the bucket's lock.
            "Sid": "AuditArchive",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:PutObjectRetention", "s3:GetObjectVersion",
                       "s3:ListBucketVersions", "s3:GetBucketObjectLockConfiguration"],
            "Resource": [arn.clone(), format!("{arn}/*")],
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// Every action the policy allows, as `service:Action`.
pub fn actions(policy: &Value) -> Vec<String> {
    let mut out: Vec<String> = policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => vec![],
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK calls made through `client` in `source`, as IAM actions (`service:Call`).
    fn calls(source: &str, client: &str, service: &str) -> Vec<String> {
        let mut called = Vec::new();
        let mut rest = source;
        while let Some(at) = rest.find(client) {
            rest = &rest[at + client.len()..];
            let call = rest.trim_start().strip_prefix('.').unwrap_or_default();
            let name: String = call.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if call[name.len()..].starts_with("()") && !name.is_empty() {
                let pascal: String = name.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect();
                called.push(format!("{service}:{pascal}"));
            }
        }
        called
    }

    /// The SDK calls in `aws.rs` and the audit archive, as IAM actions: a call added there
    /// without its permission here fails this test.
    #[test]
    fn the_policy_allows_exactly_what_the_cloud_layer_calls() {
        let source =
            [include_str!("aws.rs"), include_str!("aws/network.rs"), include_str!("aws/modify.rs")].concat();
        let mut called = Vec::new();
        for (client, service) in [(".ec2", "ec2"), (".secrets", "secretsmanager"), (".s3", "s3")] {
            called.extend(calls(&source, client, service));
        }
        called.extend(calls(include_str!("../dns/route53.rs"), ".client", "route53"));
        // Tags are written by RunInstances' tag specifications, which IAM checks as CreateTags.
        called.push("ec2:CreateTags".into());
        // The archive's calls under the names IAM gives them: it reads versions, and its puts
        // carry a retention date.
        for call in calls(include_str!("../audit/archive/s3.rs"), ".s3", "s3") {
            called.extend(match call.as_str() {
                "s3:PutObject" => vec!["s3:PutObject".to_string(), "s3:PutObjectRetention".into()],
                "s3:GetObject" => vec!["s3:GetObjectVersion".into()],
                "s3:ListObjectVersions" => vec!["s3:ListBucketVersions".into()],
                "s3:GetObjectLockConfiguration" => vec!["s3:GetBucketObjectLockConfiguration".into()],
                other => vec![other.to_string()],
            });
        }
        called.sort();
        called.dedup();
        let scope = Scope {
            buckets: vec!["files".into()],
            audit_bucket: Some("audit".into()),
            route53_zone: Some("Z0123".into()),
            ..Scope::default()
        };
        assert_eq!(actions(&policy(&scope)), called);
        assert!(called.len() > 20, "the scan found the calls: {called:?}");
        assert!(
            !actions(&policy(&Scope::default())).iter().any(|a| a.starts_with("s3:")),
            "no buckets, no S3"
        );
    }

    #[test]
    fn instance_actions_are_scoped_by_the_managed_by_tag() {
        let scope =
            Scope { partition: "aws".into(), region: "*".into(), account: "*".into(), ..Scope::default() };
        let p = policy(&scope);
        for s in p["Statement"].as_array().unwrap() {
            let actions = actions(&json!({"Statement": [s]}));
            let on_instances = s["Resource"].to_string().contains("instance/*");
            let mutates = actions.iter().any(|a| !a.starts_with("ec2:Describe"));
            if on_instances && mutates {
                assert!(s["Condition"].is_object(), "{s} must carry a condition");
            }
            assert_ne!(s["Action"], "*");
        }
        assert!(!actions(&p).iter().any(|a| a.starts_with("s3:")), "no buckets, no S3");
        assert!(p.to_string().contains("secret:dataroom-operator/ssh/*"));
        // Security group rules change only on groups the operator made (tagged at creation).
        for s in p["Statement"].as_array().unwrap() {
            let actions = actions(&json!({"Statement": [s]}));
            if actions.iter().any(|a| a.contains("SecurityGroupIngress") || a == "ec2:CreateSecurityGroup") {
                let tagged = s["Condition"].to_string().contains(TAG_MANAGED_BY);
                assert!(
                    tagged || s["Resource"].to_string().contains(":vpc/*"),
                    "{s} must be limited by the tag"
                );
            }
        }
    }
}
