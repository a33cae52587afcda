//! Simulated instances: every running fake instance gets, on its own loopback address
//! (127.0.1.N), an SSH server (port `SSH_PORT`) that accepts only the instance's key pair, runs
//! commands with `sh -c` in a per-instance working directory and serves SFTP rooted there, and
//! a health endpoint (port `HEALTH_PORT`). Commands run as the local user, on the local machine:
//! the sandbox isolates nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::server::{Auth, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use ssh_key::{Algorithm, LineEnding, rand_core::OsRng};

use crate::cloud::fake::FakeCloud;
use crate::cloud::{Instance, InstanceState};

pub use super::health::HEALTH_PORT;

/// Port of the simulated instances' SSH servers (22 would need root).
pub const SSH_PORT: u16 = 2222;

/// Starts and stops SSH servers as fake instances start and stop.
pub struct Simulator {
    pub fake: Arc<FakeCloud>,
    /// Parent of the per-instance working directories.
    pub root: PathBuf,
    pub ssh_port: u16,
    pub health_port: u16,
}

impl Simulator {
    pub async fn run(self) {
        let host_key = host_key();
        let mut servers: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        loop {
            let running: Vec<Instance> =
                self.fake.instances().into_iter().filter(|i| i.state == InstanceState::Running).collect();
            servers.retain(|id, task| {
                let keep = running.iter().any(|i| &i.id == id) && !task.is_finished();
                if !keep {
                    task.abort();
                }
                keep
            });
            for instance in &running {
                if servers.contains_key(&instance.id) {
                    continue;
                }
                let (Some(ip), Some(key_name)) = (&instance.public_ip, &instance.key_name) else { continue };
                let Some(authorized) = self.fake.public_key(key_name) else { continue };
                let home = self.root.join(&instance.id);
                if std::fs::create_dir_all(&home).is_err() {
                    continue;
                }
                let health = super::health::listen(home.clone(), format!("{ip}:{}", self.health_port));
                let server = InstanceServer { authorized, home, host_key: host_key.clone() };
                let ssh = server.listen(format!("{ip}:{}", self.ssh_port));
                let both = async move { tokio::join!(ssh, health).0 };
                servers.insert(instance.id.clone(), tokio::spawn(both));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn host_key() -> russh::keys::PrivateKey {
    let key = ssh_key::PrivateKey::random(&mut OsRng, Algorithm::Ed25519).expect("ed25519 keys generate");
    let pem = key.to_openssh(LineEnding::LF).expect("keys encode");
    russh::keys::PrivateKey::from_openssh(pem.as_bytes()).expect("russh reads OpenSSH keys")
}

/// Binds `address`; when that fails, says so once and waits forever rather than retrying
/// (another sandbox may hold the port).
pub(super) async fn bind(address: &str, what: &str) -> tokio::net::TcpListener {
    match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(%address, error = %e, "simulated instance cannot listen for {what}");
            std::future::pending().await
        }
    }
}

#[derive(Clone)]
struct InstanceServer {
    /// The instance's public key, OpenSSH encoded.
    authorized: String,
    home: PathBuf,
    host_key: russh::keys::PrivateKey,
}

impl InstanceServer {
    async fn listen(self, address: String) {
        let listener = bind(&address, "SSH").await;
        let config = Arc::new(russh::server::Config {
            keys: vec![self.host_key.clone()],
            auth_rejection_time: Duration::from_millis(50),
            inactivity_timeout: Some(Duration::from_secs(600)),
            ..Default::default()
        });
        while let Ok((stream, _)) = listener.accept().await {
            let handler = Connection { server: self.clone(), channels: HashMap::new() };
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(session) = russh::server::run_stream(config, stream, handler).await {
                    let _ = session.await;
                }
            });
        }
    }
}

struct Connection {
    server: InstanceServer,
    /// Session channels not yet claimed by a subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
}

/// The key material of an OpenSSH public key line, without its comment.
fn key_material(openssh: &str) -> String {
    openssh.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey(&mut self, _user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let offered = key.public_key.to_openssh().unwrap_or_default();
        if key_material(&offered) == key_material(&self.server.authorized) {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.remove(&channel) {
            Some(stream) if name == "sftp" => {
                session.channel_success(channel)?;
                let sftp = super::sftp::Sftp::new(self.server.home.clone());
                russh_sftp::server::run(stream.into_stream(), sftp).await;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        session.channel_success(channel)?;
        let command = String::from_utf8_lossy(data).into_owned();
        let handle = session.handle();
        let home = self.server.home.clone();
        tokio::spawn(async move {
            let output = run(&home, &command).await;
            let code = match output {
                Ok(out) => {
                    let _ = handle.data(channel, out.stdout).await;
                    let _ = handle.extended_data(channel, 1, out.stderr).await;
                    out.status.code().unwrap_or(255) as u32
                }
                Err(_) => 127,
            };
            let _ = handle.exit_status_request(channel, code).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}

/// Runs `command` with `sh -c` in the instance's directory, which is also its `HOME`.
async fn run(home: &Path, command: &str) -> std::io::Result<std::process::Output> {
    tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(home)
        .env("HOME", home)
        .stdin(std::process::Stdio::null())
        .output()
        .await
}
