//! OpenSSH's sshd (Debian `openssh-server`) on a free loopback port with a generated host key and
//! one authorized key, killed on drop. A missing sshd is a failure, never a skip.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ssh_key::{Algorithm, LineEnding, PrivateKey, rand_core::OsRng};

const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    child: Child,
    pub port: u16,
    /// The host's public key (OpenSSH).
    pub host_key: String,
    pub dir: tempfile::TempDir,
}

/// Who the tests log in as: the local user, or, when that is root, an ordinary user made for the
/// purpose (instances are logged into as `ec2-user`, and OpenSSH honours signal requests, which
/// kill timed-out commands, only in sessions of ordinary users).
pub fn user() -> String {
    let id = |args: &[&str]| Command::new("id").args(args).output().expect("`id` runs");
    let me = String::from_utf8(id(&["-un"]).stdout).unwrap().trim().to_string();
    if me != "root" {
        return me;
    }
    // `*`, unlike useradd's `!`, is no password without being a locked account (which sshd refuses).
    let _ = Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", TEST_USER]).output();
    let _ = Command::new("usermod").args(["--password", "*", TEST_USER]).output();
    assert!(id(&[TEST_USER]).status.success(), "could not create the test user {TEST_USER}");
    TEST_USER.to_string()
}

/// The ordinary user the tests log in as when they run as root.
pub const TEST_USER: &str = "dataroom-test";

/// A temporary directory the login user can write to.
pub fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn write_private(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Sshd {
    /// Starts sshd accepting `authorized` (an OpenSSH public key line).
    pub fn start(authorized: &str) -> Self {
        assert!(
            std::path::Path::new(SSHD).exists(),
            "{SSHD} not found: `make test` installs openssh-server (apt-get install -y openssh-server)"
        );
        let dir = tempfile::tempdir().unwrap();
        let host = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        write_private(&dir.path().join("host_key"), &host.to_openssh(LineEnding::LF).unwrap());
        // Read with the login user's rights: readable by all (it holds a public key).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("authorized_keys"), format!("{authorized}\n")).unwrap();
        // Privilege separation needs this directory when sshd runs as root.
        std::fs::create_dir_all("/run/sshd").ok();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.path().display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPermitRootLogin yes\nSubsystem sftp internal-sftp\nLogLevel FATAL\nMaxSessions 100\n\
             MaxStartups 100\n"
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sshd starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let host_key = host.public_key().to_openssh().unwrap();
        Sshd { child, port, host_key, dir }
    }

    pub fn address(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
