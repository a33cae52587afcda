//! The sandbox's simulated instances: SSH on the instance's own loopback address, only for its
//! own key pair, commands run with `sh -c` in the instance's working directory, SFTP rooted
//! there, and a health endpoint.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dataroom_operator::cloud::fake::{Delays, FakeCloud};
use dataroom_operator::cloud::{Imperative, LaunchRequest, Lifecycle, keys};
use dataroom_sandbox::instances::Simulator;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, client};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use support::rig::free_port;
use support::sandbox::http_get;

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
    let request =
        LaunchRequest { key_name, ..support::launch_request(&format!("uid-{name}"), "default", name) };
    let ip = fake.run_instance(&request, &support::reservation("sim")).await.unwrap().private_ip.unwrap();
    (ip, fake.get_secret(&secret).await.unwrap().unwrap().expose().to_string())
}

/// Connects with `pem`: the session, or None if the key is refused.
async fn connect(ip: &str, port: u16, pem: &str) -> Option<client::Handle<AnyHost>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut session = loop {
        match client::connect(Arc::new(client::Config::default()), (ip, port), AnyHost).await {
            Ok(session) => break session,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no SSH server on {ip}:{port}: {e}"),
        }
    };
    let key = PrivateKeyWithHashAlg::new(Arc::new(PrivateKey::from_openssh(pem).unwrap()), None);
    let accepted = session.authenticate_publickey("ec2-user", key).await.unwrap().success();
    accepted.then_some(session)
}

/// Runs `command` as the owner of `pem`: (stdout, stderr, exit status), or None if refused.
async fn exec(ip: &str, port: u16, pem: &str, command: &str) -> Option<(String, String, u32)> {
    let session = connect(ip, port, pem).await?;
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

fn simulate(fake: &Arc<FakeCloud>, root: &std::path::Path) -> (Simulator, u16, u16) {
    let (ssh_port, health_port) = (free_port(), free_port());
    let simulator = Simulator { fake: fake.clone(), root: root.to_path_buf(), ssh_port, health_port };
    (simulator, ssh_port, health_port)
}

fn instant_cloud() -> Arc<FakeCloud> {
    Arc::new(FakeCloud::new(Delays { boot: Duration::ZERO, stop: Duration::ZERO, terminate: Duration::ZERO }))
}

#[tokio::test]
async fn each_instance_answers_ssh_for_its_own_key_only() {
    let fake = instant_cloud();
    let (ip_a, key_a) = launch(&fake, "a").await;
    let (ip_b, key_b) = launch(&fake, "b").await;
    assert_ne!(ip_a, ip_b);
    let root = tempfile::tempdir().unwrap();
    let (simulator, port, _) = simulate(&fake, root.path());
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

#[tokio::test]
async fn sftp_is_rooted_in_the_instance_directory() {
    let fake = instant_cloud();
    let (ip, key) = launch(&fake, "files").await;
    let root = tempfile::tempdir().unwrap();
    let (simulator, port, _) = simulate(&fake, root.path());
    let task = tokio::spawn(simulator.run());
    let session = connect(&ip, port, &key).await.expect("the instance's key is accepted");
    let channel = session.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "sftp").await.unwrap();
    let sftp = SftpSession::new(channel.into_stream()).await.unwrap();

    sftp.create_dir("/etc").await.unwrap();
    sftp.create_dir("/etc/dataroom").await.unwrap();
    let flags = OpenFlags::CREATE | OpenFlags::WRITE | OpenFlags::TRUNCATE;
    let attrs = FileAttributes { permissions: Some(0o600), ..Default::default() };
    let mut file =
        sftp.open_with_flags_and_attributes("/etc/dataroom/config.json", flags, attrs).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut file, b"{\"rooms\":1}").await.unwrap();
    file.close().await.unwrap();

    let metadata = sftp.metadata("/etc/dataroom/config.json").await.unwrap();
    assert_eq!((metadata.permissions.unwrap() & 0o777, metadata.size), (0o600, Some(11)));
    assert_eq!(sftp.read("/etc/dataroom/config.json").await.unwrap(), b"{\"rooms\":1}");
    let (cat, _, _) = exec(&ip, port, &key, "cat etc/dataroom/config.json").await.unwrap();
    assert_eq!(cat, "{\"rooms\":1}", "commands see the pushed file under their working directory");
    let names: Vec<String> = sftp.read_dir("/etc/dataroom").await.unwrap().map(|e| e.file_name()).collect();
    assert_eq!(names, ["config.json"]);

    assert!(sftp.write("/missing", b"x").await.is_err(), "opening without CREATE needs the file");
    let mut file = sftp.create("/../../escape").await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut file, b"x").await.unwrap();
    file.close().await.unwrap();
    let home = root.path().join(&fake.live_instances()[0].id);
    assert!(home.join("escape").exists() && !root.path().join("escape").exists(), "`..` stops at the root");

    sftp.create("/etc/dataroom/next.json").await.unwrap().close().await.unwrap();
    assert!(
        sftp.rename("/etc/dataroom/next.json", "/etc/dataroom/config.json").await.is_err(),
        "plain rename never replaces a file, as with OpenSSH"
    );
    assert!(!sftp.try_exists("/nowhere").await.unwrap(), "a missing file is NoSuchFile");
    task.abort();
}

#[tokio::test]
async fn health_endpoint_follows_the_instance_health_file() {
    let fake = instant_cloud();
    let (ip, key) = launch(&fake, "web").await;
    let root = tempfile::tempdir().unwrap();
    let (simulator, ssh_port, health_port) = simulate(&fake, root.path());
    let task = tokio::spawn(simulator.run());
    let url = format!("http://{ip}:{health_port}/health");
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        match tokio::task::spawn_blocking({
            let url = url.clone();
            move || http_get(&url)
        })
        .await
        .unwrap()
        {
            Some(reply) => break reply,
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            None => panic!("no health endpoint at {url}"),
        }
    };
    assert_eq!(first, (200, r#"{"status":"ok"}"#.to_string()));

    let failing = r#"{"status":"failing","lastActivity":"2026-11-22T10:00:00Z"}"#;
    exec(&ip, ssh_port, &key, &format!("echo '{failing}' > health.json")).await.unwrap();
    let (status, body) = tokio::task::spawn_blocking(move || http_get(&url).unwrap()).await.unwrap();
    assert_eq!((status, body.trim()), (503, failing));
    task.abort();
}
