//! The AWS implementation of the cloud port against moto's AWS server, and the controller on top
//! of it: launch policy read back from EC2, key custody, power transitions, drift detection by
//! the poller, and adoption after a crash.

mod support;

use std::sync::Arc;
use std::time::Duration;

use dataroom_operator::cloud::aws::AwsCloud;
use dataroom_operator::cloud::{Imperative, InstanceState, LaunchRequest, Lifecycle, SecretValue, keys};
use dataroom_operator::controller::poller::Poller;
use serde_json::json;
use support::moto::Moto;
use support::{Fixture, NS, sweep, uid};

async fn cloud(moto: &Moto) -> Arc<AwsCloud> {
    Arc::new(AwsCloud::with_config(&moto.config().await))
}

fn request(name: &str, image: &str, key_name: &str) -> LaunchRequest {
    LaunchRequest {
        owner_uid: uid(name),
        client_token: uid(name),
        namespace: NS.into(),
        name: name.into(),
        data_room: Some("room-1".into()),
        instance_type: "t3.micro".into(),
        image_id: image.into(),
        subnet_id: None,
        security_group_ids: vec![],
        user_data: Some("#!/bin/sh\necho hello\n".into()),
        root_volume_gib: Some(12),
        key_name: key_name.into(),
        extra_tags: [("team".to_string(), "a".to_string())].into(),
    }
}

#[tokio::test]
async fn launch_applies_the_whole_launch_policy() {
    let moto = Moto::start();
    let aws = cloud(&moto).await;
    let image = moto.image().await;
    let (pair, secret) = keys::ensure_key_pair(aws.as_ref(), "kp-web").await.unwrap();
    assert_eq!(pair.name, "kp-web");
    let launched =
        aws.run_instance(&request("web", &image, "kp-web"), &support::reservation("moto")).await.unwrap();

    let ec2 = aws_sdk_ec2::Client::new(&moto.config().await);
    let out = ec2.describe_instances().instance_ids(&launched.id).send().await.unwrap();
    let instance = out.reservations.unwrap()[0].instances.clone().unwrap().remove(0);
    let tags: std::collections::BTreeMap<_, _> =
        instance.tags.unwrap().into_iter().map(|t| (t.key.unwrap(), t.value.unwrap())).collect();
    let owner = uid("web");
    for (key, value) in [
        ("dataroom.dev/managed-by", "dataroom-operator"),
        ("dataroom.dev/owner-uid", owner.as_str()),
        ("dataroom.dev/namespace", NS),
        ("dataroom.dev/name", "web"),
        ("dataroom.dev/data-room", "room-1"),
        ("Name", "team-a/web"),
        ("team", "a"),
    ] {
        assert_eq!(tags.get(key).map(String::as_str), Some(value), "tag {key}");
    }
    let metadata = instance.metadata_options.expect("metadata options");
    assert_eq!(metadata.http_tokens.unwrap().as_str(), "required", "IMDSv2 only");
    assert!(instance.iam_instance_profile.is_none(), "no instance profile");
    assert_eq!(instance.key_name.as_deref(), Some("kp-web"));
    let volume_id =
        instance.block_device_mappings.unwrap()[0].ebs.as_ref().unwrap().volume_id.clone().unwrap();
    let volumes = ec2.describe_volumes().volume_ids(volume_id).send().await.unwrap().volumes.unwrap();
    assert_eq!(volumes[0].encrypted, Some(true), "encrypted root volume");
    assert_eq!(volumes[0].size, Some(12));

    let stored = aws.get_secret(&secret).await.unwrap().expect("private key stored");
    let private = keys::parse_private(stored.expose()).unwrap();
    assert_eq!(private.algorithm(), ssh_key::Algorithm::Ed25519);
    assert_eq!(secret, "dataroom-operator/ssh/kp-web");
}

#[tokio::test]
async fn key_custody_round_trip() {
    let moto = Moto::start();
    let aws = cloud(&moto).await;
    let (_, secret) = keys::ensure_key_pair(aws.as_ref(), "kp").await.unwrap();
    let first = aws.get_secret(&secret).await.unwrap().unwrap();
    // Idempotent: a second ensure keeps the same key.
    keys::ensure_key_pair(aws.as_ref(), "kp").await.unwrap();
    assert_eq!(aws.get_secret(&secret).await.unwrap().unwrap(), first);
    // A key pair whose secret was lost is replaced, so the stored key always matches EC2's.
    aws.delete_secret(&secret).await.unwrap();
    keys::ensure_key_pair(aws.as_ref(), "kp").await.unwrap();
    assert_ne!(aws.get_secret(&secret).await.unwrap().unwrap(), first);
    // put_secret replaces an existing value.
    aws.put_secret("dataroom-operator/ssh/other", &SecretValue::new("v1".into())).await.unwrap();
    aws.put_secret("dataroom-operator/ssh/other", &SecretValue::new("v2".into())).await.unwrap();
    assert_eq!(aws.get_secret("dataroom-operator/ssh/other").await.unwrap().unwrap().expose(), "v2");
    keys::delete_key_pair(aws.as_ref(), "kp").await.unwrap();
    keys::delete_key_pair(aws.as_ref(), "kp").await.unwrap();
    assert!(aws.get_secret(&secret).await.unwrap().is_none());
    assert!(aws.describe_key_pairs(&["kp".into()]).await.unwrap().is_empty());
}

#[tokio::test]
async fn stop_start_terminate_and_classified_errors() {
    let moto = Moto::start();
    let aws = cloud(&moto).await;
    let image = moto.image().await;
    keys::ensure_key_pair(aws.as_ref(), "kp").await.unwrap();
    let id = aws.run_instance(&request("web", &image, "kp"), &support::reservation("moto")).await.unwrap().id;
    let state =
        |aws: Arc<AwsCloud>| async move { aws.describe_by_owner(&uid("web")).await.unwrap()[0].state };
    assert_eq!(state(aws.clone()).await, InstanceState::Running);
    aws.stop_instance(&id).await.unwrap();
    assert_eq!(state(aws.clone()).await, InstanceState::Stopped);
    aws.start_instance(&id, &support::reservation("moto")).await.unwrap();
    assert_eq!(state(aws.clone()).await, InstanceState::Running);
    aws.terminate_instance(&id).await.unwrap();
    assert_eq!(state(aws.clone()).await, InstanceState::Terminated);
    assert_eq!(aws.describe_managed().await.unwrap().len(), 1);

    let missing = aws.stop_instance("i-00000000000000000").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
    let bad_image = aws
        .run_instance(&request("x", "ami-00000000", "kp"), &support::reservation("moto"))
        .await
        .unwrap_err();
    assert_eq!(bad_image.kind, dataroom_operator::cloud::ErrorKind::Terminal, "{bad_image:?}");
}

#[tokio::test]
async fn the_controller_adopts_after_a_crash_and_the_poller_catches_drift() {
    let moto = Moto::start();
    let aws = cloud(&moto).await;
    let image = moto.image().await;
    let f = Fixture::with_cloud(aws.clone(), &image);
    f.object("web", json!({}), true);
    // Crash after RunInstances, before the status write: the instance exists, status does not.
    let key = format!("dataroom-{}", uid("web"));
    keys::ensure_key_pair(aws.as_ref(), &key).await.unwrap();
    let first = aws.run_instance(&request("web", &image, &key), &support::reservation("moto")).await.unwrap();
    f.reconcile("web").await.unwrap();
    f.reconcile("web").await.unwrap();
    let live: Vec<_> = aws
        .describe_by_owner(&uid("web"))
        .await
        .unwrap()
        .into_iter()
        .filter(|i| !i.state.is_gone())
        .collect();
    assert_eq!(live.len(), 1, "moto ignores ClientToken: only the tag lookup prevents a duplicate");
    assert_eq!(f.fetch("web").status.unwrap().instance_id, Some(first.id.clone()));

    // Out-of-band termination: one sweep notices it and names the object to reconcile.
    sweep(&f).await;
    let (trigger, mut triggered) = futures::channel::mpsc::unbounded();
    let poller = Poller {
        cloud: aws.clone(),
        cache: f.ctx.cache.clone(),
        gate: f.ctx.gate.clone(),
        metrics: f.ctx.metrics.clone(),
        clock: f.ctx.clock.clone(),
        trigger,
        interval: Duration::from_secs(15),
        busy_interval: Duration::from_secs(2),
    };
    aws.terminate_instance(&first.id).await.unwrap();
    assert_eq!(poller.sweep().await.unwrap(), 1);
    let object = triggered.try_recv().unwrap();
    assert_eq!((object.name.as_str(), object.namespace.as_deref()), ("web", Some(NS)));
    assert_eq!(poller.sweep().await.unwrap(), 0, "nothing changed since");
    f.reconcile("web").await.unwrap();
    let status = f.fetch("web").status.unwrap();
    assert_ne!(status.instance_id, Some(first.id.clone()), "replaced");
    let live =
        aws.describe_by_owner(&uid("web")).await.unwrap().into_iter().filter(|i| !i.state.is_gone()).count();
    assert_eq!(live, 1);
}
