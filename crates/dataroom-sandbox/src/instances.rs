//! Simulated instances: every running fake instance gets, on its own loopback address
//! (127.0.1.N), an SSH server (port `SSH_PORT`) that accepts only the instance's key pair, runs
//! commands with `sh -c` in a per-instance working directory and serves SFTP rooted there, and
//! a health endpoint (port `HEALTH_PORT`). Commands run as the local user, on the local machine:
//! the sandbox isolates nothing.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::server::{Auth, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Sig};
use ssh_key::{Algorithm, LineEnding, rand_core::OsRng};

use dataroom_operator::cloud::fake::FakeCloud;
use dataroom_operator::cloud::{Instance, InstanceState};

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
        let host_key = match host_key(&self.root) {
            Ok(key) => key,
            Err(e) => return tracing::error!(error = %e, "simulated instances have no host key; no SSH"),
        };
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
                let (Some(ip), Some(key_name)) = (&instance.private_ip, &instance.key_name) else { continue };
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

/// The simulated instances' host key, kept under `root` so that pins survive a restart.
fn host_key(root: &Path) -> anyhow::Result<russh::keys::PrivateKey> {
    let path = root.join("ssh_host_ed25519_key");
    if let Ok(pem) = std::fs::read_to_string(&path) {
        return Ok(russh::keys::PrivateKey::from_openssh(pem.as_bytes())?);
    }
    std::fs::create_dir_all(root)?;
    let key = ssh_key::PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    let pem = key.to_openssh(LineEnding::LF)?;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    std::io::Write::write_all(&mut file, pem.as_bytes())?;
    Ok(russh::keys::PrivateKey::from_openssh(pem.as_bytes())?)
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
            // `run_stream` does not apply `Config::nodelay`: without this, every exec reply met
            // Nagle and a delayed ACK, 40 ms a command.
            let _ = stream.set_nodelay(true);
            let handler =
                Connection { server: self.clone(), channels: HashMap::new(), running: HashMap::new() };
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
    /// Running commands, by channel: send to kill.
    running: HashMap<ChannelId, tokio::sync::oneshot::Sender<()>>,
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
            Some(stream) if name == "sftp" => match super::sftp::Sftp::new(&self.server.home) {
                Ok(sftp) => {
                    session.channel_success(channel)?;
                    russh_sftp::server::run(stream.into_stream(), sftp).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sftp: the instance directory cannot be opened");
                    session.channel_failure(channel)?;
                }
            },
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
        let (kill, killed) = tokio::sync::oneshot::channel();
        self.running.insert(channel, kill);
        tokio::spawn(async move {
            // Dropping the running command (on a signal or a closed channel) kills it.
            let (output, outputs) = tokio::sync::mpsc::channel(16);
            let forwarding = tokio::spawn(forward(outputs, handle.clone(), channel));
            let ended = tokio::select! {
                status = run(&home, &command, output) => status,
                _ = killed => Err(std::io::Error::other("killed")),
            };
            // `run` is gone either way, and its sender with it: the output is all sent once
            // the forwarder ends, and only then the exit.
            let _ = forwarding.await;
            match ended {
                Ok(status) => match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                    (Some(code), _) => drop(handle.exit_status_request(channel, code as u32).await),
                    (None, signal) => {
                        let name = Sig::Custom(signal.map_or("UNKNOWN".into(), |s| s.to_string()));
                        let _ = handle
                            .exit_signal_request(channel, name, false, String::new(), String::new())
                            .await;
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::Other => {
                    let _ = handle
                        .exit_signal_request(channel, Sig::KILL, false, String::new(), String::new())
                        .await;
                }
                Err(_) => drop(handle.exit_status_request(channel, 127).await),
            }
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }

    async fn signal(&mut self, channel: ChannelId, _signal: Sig, _: &mut Session) -> Result<(), Self::Error> {
        self.kill(channel);
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _: &mut Session) -> Result<(), Self::Error> {
        self.kill(channel);
        Ok(())
    }
}

impl Connection {
    /// Kills the command running on `channel`, if one is.
    fn kill(&mut self, channel: ChannelId) {
        if let Some(kill) = self.running.remove(&channel) {
            let _ = kill.send(());
        }
    }
}

/// A piece of a command's output: `None` for stdout, `Some(1)` for stderr (SSH's extended data).
type Output = (Option<u32>, bytes::Bytes);

/// Runs `command` with `sh -c` in the instance's directory, which is also its `HOME`, in a
/// process group of its own, handing its output to `output` as it writes it (as sshd sends it):
/// a command killed before it ends (a timeout, a signal, a closed channel) takes everything it
/// started with it, not only `sh`.
async fn run(
    home: &Path,
    command: &str,
    output: tokio::sync::mpsc::Sender<Output>,
) -> std::io::Result<std::process::ExitStatus> {
    use std::process::Stdio;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(home)
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let mut group = GroupKill(child.id());
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    tokio::join!(read(stdout, None, &output), read(stderr, Some(1), &output));
    let status = child.wait().await;
    // Ended on its own: what it left running in the background is the user's.
    group.0 = None;
    status
}

/// Reads `pipe` to its end, each piece to `output` (dropped if no one takes them any more: the
/// command must not block on a full pipe).
async fn read(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    ext: Option<u32>,
    output: &tokio::sync::mpsc::Sender<Output>,
) {
    use tokio::io::AsyncReadExt;
    let Some(mut pipe) = pipe else { return };
    let mut buffer = vec![0u8; 32 * 1024];
    while let Ok(n @ 1..) = pipe.read(&mut buffer).await {
        let _ = output.send((ext, bytes::Bytes::copy_from_slice(&buffer[..n]))).await;
    }
}

/// Sends each piece of output on `channel`, in order, until there is no more.
async fn forward(
    mut outputs: tokio::sync::mpsc::Receiver<Output>,
    handle: russh::server::Handle,
    channel: ChannelId,
) {
    while let Some((ext, data)) = outputs.recv().await {
        let sent = match ext {
            None => handle.data(channel, data).await,
            Some(ext) => handle.extended_data(channel, ext, data).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Kills a process group when dropped while still armed.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        let group = self.0.and_then(|id| rustix::process::Pid::from_raw(id as i32));
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alive and not a zombie left for init to reap.
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
    }

    /// A command killed at its timeout takes what it started with it: a background job does not
    /// outlive the exec that started it.
    #[tokio::test]
    async fn a_killed_command_takes_its_children_with_it() {
        let home = tempfile::tempdir().unwrap();
        let command = "sleep 300 & echo $! > child.pid; wait";
        let (output, _outputs) = tokio::sync::mpsc::channel(16);
        let timed_out =
            tokio::time::timeout(Duration::from_millis(500), run(home.path(), command, output)).await;
        assert!(timed_out.is_err(), "the command ran past its timeout");
        let pid = std::fs::read_to_string(home.path().join("child.pid")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid.trim()) {
            assert!(std::time::Instant::now() < deadline, "the background job {pid} outlived the kill");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
