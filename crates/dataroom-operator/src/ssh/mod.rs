//! SSH to managed instances: the private key comes from Secrets Manager (cached briefly, never
//! logged), the host key is trusted on first use and then pinned by the caller, connections are
//! pooled per instance and kept alive with keepalives.

mod exec;
mod files;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use thiserror::Error;

pub use exec::{Captured, ExecOutput, Exit, Limits, Stream};
pub use files::TransferError;

use crate::cloud::{CloudError, Imperative};
use crate::seams::Seams;

/// How long a private key read from Secrets Manager is reused.
const KEY_TTL: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct SshSettings {
    /// Port of the instances' sshd (22; the sandbox's simulated instances use 2222).
    pub port: u16,
    pub user: String,
    pub connect_timeout: Duration,
    /// A pooled connection unused this long is closed, so that a large fleet does not keep one
    /// open (with keepalives) per instance it ever configured.
    pub idle_timeout: Duration,
    /// How long after an instance is first seen running its SSH may go unanswered before that
    /// counts as a failure: sshd starts some time after the instance does.
    pub boot_grace: Duration,
}

impl Default for SshSettings {
    fn default() -> Self {
        SshSettings {
            port: 22,
            user: "ec2-user".into(),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            boot_grace: Duration::from_secs(120),
        }
    }
}

/// Which instance to reach, and how.
#[derive(Clone, Debug)]
pub struct Target {
    pub instance_id: String,
    pub ip: String,
    /// Secrets Manager name of the instance's private key.
    pub secret: String,
    /// The host key pinned for this instance (OpenSSH public key), if any.
    pub pinned: Option<String>,
}

#[derive(Debug, Error)]
pub enum SshError {
    #[error("the instance's host key changed (pinned {pinned}, offered {offered}); refusing to connect")]
    HostKeyChanged { pinned: String, offered: String },
    #[error("cannot reach {address}: {why}")]
    Unreachable { address: String, why: String },
    #[error("the instance refused its own key")]
    AuthRejected,
    #[error("the instance's private key is not in Secrets Manager ({0})")]
    NoKey(String),
    #[error("reading the instance's key: {0}")]
    Cloud(#[from] CloudError),
    #[error("ssh: {0}")]
    Protocol(String),
}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        SshError::Protocol(e.to_string())
    }
}

/// Accepts an absolute, normalised remote path: `/` then non-empty components, none `.` or `..`,
/// no NUL, at most 4096 bytes. Says what is wrong otherwise.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must be absolute");
    }
    if path.len() > 4096 || path.contains('\0') {
        return Err("must be at most 4096 bytes without NUL");
    }
    if path[1..].split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err("must be normalised: no empty, `.` or `..` components, no trailing `/`");
    }
    Ok(())
}

/// The key material of an OpenSSH public key line, without its comment.
pub fn key_material(openssh: &str) -> String {
    openssh.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

struct Verifier {
    pinned: Option<String>,
    offered: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else { return Ok(false) };
        let offered = key_material(&key.to_openssh().unwrap_or_default());
        let accepted = self.pinned.as_deref().is_none_or(|p| key_material(p) == offered);
        *self.offered.lock().unwrap() = Some(offered);
        Ok(accepted)
    }
}

/// One authenticated connection, shared by successive calls.
pub struct Connection {
    handle: client::Handle<Verifier>,
    /// The host key the server presented.
    pub host_key: String,
}

impl Connection {
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    pub async fn open_session(&self) -> Result<russh::Channel<client::Msg>, SshError> {
        Ok(self.handle.channel_open_session().await?)
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

pub struct Pool {
    cloud: Arc<dyn Imperative>,
    settings: SshSettings,
    /// The test seam's SSH address, dialled instead of every instance's.
    redirect: Option<SocketAddr>,
    /// One slot per instance, so that a slow dial to one instance never holds up another.
    connections: Mutex<HashMap<String, Slot>>,
    /// When each pooled connection was last handed out.
    used: Mutex<HashMap<String, Instant>>,
    /// Private keys by secret name, each kept `KEY_TTL` (dropped by `evict_idle`, or at once
    /// when its instance is deleted).
    keys: Mutex<HashMap<String, (Instant, Arc<PrivateKey>)>>,
}

#[cfg(test)]
impl Pool {
    pub(crate) fn cached_keys(&self) -> usize {
        self.keys.lock().unwrap().len()
    }
}

impl Pool {
    pub fn new(cloud: Arc<dyn Imperative>, settings: SshSettings, seams: &Seams) -> Self {
        Pool {
            cloud,
            settings,
            redirect: seams.ssh_address,
            connections: Default::default(),
            used: Default::default(),
            keys: Default::default(),
        }
    }

    /// A live connection to `target`, reused when one is open. The second value is the host key
    /// when this connection trusted it on first use (the caller keeps the pin).
    pub async fn connect(&self, target: &Target) -> Result<(Arc<Connection>, Option<String>), SshError> {
        let pinned = target.pinned.clone();
        let slot = self.connections.lock().unwrap().entry(target.instance_id.clone()).or_default().clone();
        self.used.lock().unwrap().insert(target.instance_id.clone(), Instant::now());
        let mut slot = slot.lock().await;
        if let Some(open) = slot.as_ref().filter(|c| !c.is_closed())
            && pinned.as_deref().is_none_or(|p| key_material(p) == key_material(&open.host_key))
        {
            return Ok((open.clone(), None));
        }
        let connection = Arc::new(self.dial(target, pinned.clone()).await?);
        *slot = Some(connection.clone());
        if pinned.is_some() {
            return Ok((connection, None));
        }
        let trusted = connection.host_key.clone();
        Ok((connection, Some(trusted)))
    }

    /// Drops the pooled connection to an instance (after a failure, or when it stops).
    pub fn forget(&self, instance_id: &str) {
        self.connections.lock().unwrap().remove(instance_id);
        self.used.lock().unwrap().remove(instance_id);
    }

    /// Drops the cached private key held in `secret` (its instance is gone).
    pub fn forget_key(&self, secret: &str) {
        self.keys.lock().unwrap().remove(secret);
    }

    /// Closes the pooled connections unused for `idle_timeout` (calls still holding one finish
    /// on it) and drops cached private keys past their time to live; returns how many
    /// connections are left open.
    pub fn evict_idle(&self) -> usize {
        self.keys.lock().unwrap().retain(|_, (at, _)| at.elapsed() < KEY_TTL);
        let idle: Vec<String> = {
            let used = self.used.lock().unwrap();
            used.iter()
                .filter(|(_, at)| at.elapsed() >= self.settings.idle_timeout)
                .map(|(id, _)| id.clone())
                .collect()
        };
        idle.iter().for_each(|id| self.forget(id));
        self.connections.lock().unwrap().len()
    }

    async fn dial(&self, target: &Target, pinned: Option<String>) -> Result<Connection, SshError> {
        let address = match self.redirect {
            Some(address) => address.to_string(),
            None => format!("{}:{}", target.ip, self.settings.port),
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 3,
            inactivity_timeout: None,
            // Small request/reply exchanges must not wait on Nagle and delayed ACKs.
            nodelay: true,
            ..Default::default()
        });
        let offered = Arc::new(Mutex::new(None));
        let verifier = Verifier { pinned: pinned.clone(), offered: offered.clone() };
        let unreachable = |why: String| SshError::Unreachable { address: address.clone(), why };
        let connecting = client::connect(config, address.as_str(), verifier);
        let connected = tokio::time::timeout(self.settings.connect_timeout, connecting)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.settings.connect_timeout)))?;
        let offered = offered.lock().unwrap().clone();
        let (mut handle, host_key) = match (connected, &pinned, offered) {
            (Ok(handle), _, Some(offered)) => (handle, offered),
            (Err(russh::Error::UnknownKey), Some(pinned), Some(offered)) => {
                return Err(SshError::HostKeyChanged { pinned: key_material(pinned), offered });
            }
            (Ok(_), _, None) => return Err(SshError::Protocol("the server presented no host key".into())),
            (Err(e), _, _) => return Err(unreachable(e.to_string())),
        };
        let key = PrivateKeyWithHashAlg::new(self.private_key(&target.secret).await?, None);
        let auth = handle.authenticate_publickey(&self.settings.user, key).await?;
        if !auth.success() {
            return Err(SshError::AuthRejected);
        }
        Ok(Connection { handle, host_key })
    }

    async fn private_key(&self, secret: &str) -> Result<Arc<PrivateKey>, SshError> {
        if let Some((at, key)) = self.keys.lock().unwrap().get(secret)
            && at.elapsed() < KEY_TTL
        {
            return Ok(key.clone());
        }
        let value =
            self.cloud.get_secret(secret).await?.ok_or_else(|| SshError::NoKey(secret.to_string()))?;
        let key = PrivateKey::from_openssh(value.expose())
            .map_err(|_| SshError::NoKey(format!("{secret} does not hold an OpenSSH private key")))?;
        let key = Arc::new(key);
        self.keys.lock().unwrap().insert(secret.to_string(), (Instant::now(), key.clone()));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::fake::{Delays, FakeCloud};
    use crate::cloud::{keys, ssh_secret_name};

    /// A deleted instance's private key does not stay in memory: cleanup forgets it, and the
    /// periodic eviction drops keys past their time to live.
    #[tokio::test]
    async fn a_private_key_leaves_the_cache_when_its_instance_goes() {
        let cloud = Arc::new(FakeCloud::new(Delays::default()));
        keys::ensure_key_pair(cloud.as_ref(), "dataroom-a").await.unwrap();
        let pool = Pool::new(cloud, SshSettings::default(), &Seams::default());
        let secret = ssh_secret_name("dataroom-a");
        pool.private_key(&secret).await.unwrap();
        assert_eq!(pool.cached_keys(), 1);
        pool.evict_idle();
        assert_eq!(pool.cached_keys(), 1, "a fresh key is kept");
        pool.forget_key(&secret);
        assert_eq!(pool.cached_keys(), 0);
    }
}
