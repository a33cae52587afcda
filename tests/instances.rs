//! The sandbox's simulated instances: SSH on the instance's own loopback address, only for its
//! own key pair, commands run with `sh -c` in the instance's working directory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dataroom_operator::cloud::fake::{Delays, FakeCloud};
use dataroom_operator::cloud::{Cloud, LaunchRequest, keys};
use dataroom_operator::sandbox::instances::Simulator;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, client};

struct AnyHost;

impl client::Handler for AnyHost {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

async fn launch(fake: &FakeCloud, name: &str) -> (String, String) {
    let key_name = format!("kp-{name}");
    let (_, secret) = keys::ensure_key_pair(fake, &key_name).await.unwrap();
    let request = LaunchRequest {
        owner_uid: format!("uid-{name}"),
        client_token: format!("uid-{name}"),
        namespace: "default".into(),
        name: name.into(),
        data_room: None,
        instance_type: "t3.micro".into(),
        image_id: "ami-0000000000000000a".into(),
        subnet_id: None,
        security_group_ids: vec![],
        user_data: None,
        root_volume_gib: None,
        key_name,
        extra_tags: Default::default(),
    };
    let ip = fake.run_instance(&request).await.unwrap().public_ip.unwrap();
    (ip, fake.get_secret(&secret).await.unwrap().unwrap().expose().to_string())
}

/// Connects with `pem` and runs `command`: (stdout, stderr, exit status), or None if refused.
async fn exec(ip: &str, port: u16, pem: &str, command: &str) -> Option<(String, String, u32)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut session = loop {
        match client::connect(Arc::new(client::Config::default()), (ip, port), AnyHost).await {
            Ok(session) => break session,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no SSH server on {ip}:{port}: {e}"),
        }
    };
    let key = PrivateKeyWithHashAlg::new(Arc::new(PrivateKey::from_openssh(pem).unwrap()), None);
    if !session.authenticate_publickey("ec2-user", key).await.unwrap().success() {
        return None;
    }
    let mut channel = session.channel_open_session().await.unwrap();
    channel.exec(true, command).await.unwrap();
    let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
    while let Some(message) = channel.wait().await {
        match message {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
            _ => {}
        }
    }
    Some((String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap(), code.expect("an exit status")))
}

#[tokio::test]
async fn each_instance_answers_ssh_for_its_own_key_only() {
    let fake = Arc::new(FakeCloud::new(Delays {
        boot: Duration::ZERO,
        stop: Duration::ZERO,
        terminate: Duration::ZERO,
    }));
    let (ip_a, key_a) = launch(&fake, "a").await;
    let (ip_b, key_b) = launch(&fake, "b").await;
    assert_ne!(ip_a, ip_b);
    let root = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let simulator = Simulator { fake: fake.clone(), root: root.path().to_path_buf(), port };
    let task = tokio::spawn(simulator.run());

    let (out, err, code) =
        exec(&ip_a, port, &key_a, "echo hello > greeting; cat greeting; echo oops >&2; exit 3")
            .await
            .unwrap();
    assert_eq!((out.as_str(), err.as_str(), code), ("hello\n", "oops\n", 3));
    let (pwd, _, _) = exec(&ip_a, port, &key_a, "pwd").await.unwrap();
    assert!(
        pwd.trim().ends_with(&fake.live_instances()[0].id),
        "runs in the instance's own directory: {pwd}"
    );
    assert!(exec(&ip_a, port, &key_b, "true").await.is_none(), "another instance's key is refused");
    assert_eq!(
        exec(&ip_b, port, &key_b, "cat greeting 2>/dev/null || echo separate").await.unwrap().0,
        "separate\n"
    );
    task.abort();
}
