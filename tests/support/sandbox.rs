//! The real binary in sandbox mode on free loopback ports, driven by the real kubectl.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Sandbox {
    child: Child,
    pub dir: std::sync::Arc<tempfile::TempDir>,
    pub admin: String,
    /// The simulated Route53's DNS port on 127.0.0.1 (UDP and TCP).
    pub dns: u16,
    /// Seconds from spawn to /readyz answering 200.
    pub ready_after: f64,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn kubectl_binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .find(|p| p.exists());
    found.expect("kubectl is not on PATH: the sandbox end-to-end tests need the real client")
}

/// A plain HTTP/1.0 GET: the status code and the body.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    http_get_with(url, "")
}

/// A plain HTTP/1.0 GET with extra header lines (each ending in CRLF).
pub fn http_get_with(url: &str, headers: &str) -> Option<(u16, String)> {
    http_request("GET", url, headers, "")
}

pub fn http_request(method: &str, url: &str, headers: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    // One write: a request in pieces meets Nagle and delayed ACKs, 40 ms a request.
    let request = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n{headers}\r\n{body}");
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, reply.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// A plain HTTP/1.0 POST of a JSON body with extra header lines: the status code and the body.
pub fn http_post_json(url: &str, headers: &str, body: &str) -> Option<(u16, String)> {
    let headers = format!("{headers}Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    http_request("POST", url, &headers, body)
}

/// The real `dig`'s answer for `name` from the sandbox's DNS server on `port`: the status
/// (NOERROR, NXDOMAIN) and the A records.
pub fn dig(port: u16, name: &str) -> (String, Vec<String>) {
    let port = port.to_string();
    let output = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port, "+tries=1", "+time=2", "+noall", "+comments", "+answer", name, "A"])
        .output()
        .expect("dig is not installed: `make test` installs it (Debian's dnsutils)");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "dig failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    let status = text.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or_default();
    // Answer lines: NAME TTL CLASS TYPE DATA.
    let answers = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.len() == 5 && fields[3] == "A" && !fields[0].starts_with(';'))
        .map(|fields| fields[4].to_string())
        .collect();
    (status.to_string(), answers)
}

/// One GET of `/health` at `address:port`: whether it answered 200.
pub fn answers_health(address: &str, port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(address) = format!("{address}:{port}").parse::<std::net::SocketAddr>() else { return false };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let request = format!("GET /health HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let mut reply = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut reply).is_ok()
        && reply.split_whitespace().nth(1) == Some("200")
}

/// What a client of a room saw at one poll: the address its name resolved to, and whether the
/// health endpoint there answered.
pub struct Poll {
    /// Seconds since polling began.
    pub at: f64,
    pub address: Option<String>,
    pub ok: bool,
}

/// A client of a room by name: every 100 ms it resolves the name (the real `dig`) and asks the
/// health endpoint at the address, until stopped.
pub struct NamePoller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Poll>>,
}

impl NamePoller {
    pub fn start(dns: u16, name: &str, port: u16) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, name) = (stop.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut polls = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let (status, answers) = dig(dns, &name);
                let ok = status == "NOERROR" && answers.len() == 1 && answers_health(&answers[0], port);
                let at = start.elapsed().as_secs_f64();
                polls.push(Poll { at, address: answers.first().cloned(), ok });
                std::thread::sleep(Duration::from_millis(100));
            }
            polls
        });
        NamePoller { stop, thread }
    }

    pub fn stop(self) -> Vec<Poll> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

fn http_status(url: &str) -> Option<u16> {
    http_get(url).map(|(status, _)| status)
}

impl Sandbox {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// The sandbox as the user `nobody`, from a copy of the binary in its state directory: for
    /// fuzzing the admin API, whose exec routes run commands on this machine in the sandbox.
    pub fn start_unprivileged() -> Self {
        use std::os::unix::process::CommandExt;
        const NOBODY: u32 = 65534;
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("dataroom-operator");
        std::fs::copy(env!("CARGO_BIN_EXE_dataroom-operator"), &binary).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
        std::os::unix::fs::chown(&binary, Some(NOBODY), Some(NOBODY)).unwrap();
        let mut command = Command::new(&binary);
        command.uid(NOBODY).gid(NOBODY).env("HOME", dir.path());
        // The fuzzer sends far more than a person; the limits are not what it is testing.
        Self::spawn(
            command,
            std::sync::Arc::new(dir),
            None,
            &["--api-rate-per-address", "1000000", "--api-rate-per-key", "1000000"],
        )
    }

    /// The sandbox without its operator, serving its simulated EC2 on the returned port to an
    /// operator started apart (`run --sandbox-cloud`).
    pub fn start_without_operator() -> (Self, u16) {
        let cloud = free_port();
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let sandbox =
            Self::spawn(Command::new(env!("CARGO_BIN_EXE_dataroom-operator")), dir, Some(cloud), &[]);
        (sandbox, cloud)
    }

    /// A sandbox started with these extra arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_dataroom-operator")), dir, None, extra)
    }

    /// Stops this sandbox with Ctrl-C and starts a new one on the same state directory.
    pub fn restart(mut self) -> Self {
        assert!(self.interrupt(), "Ctrl-C stops the sandbox cleanly");
        Self::start_in(self.dir.clone())
    }

    fn start_in(dir: std::sync::Arc<tempfile::TempDir>) -> Self {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_dataroom-operator")), dir, None, &[])
    }

    /// Starts the sandbox and waits until it serves: its operator's `/readyz`, or with
    /// `external_operator` its simulated EC2's port.
    fn spawn(
        mut command: Command,
        dir: std::sync::Arc<tempfile::TempDir>,
        external_operator: Option<u16>,
        extra: &[&str],
    ) -> Self {
        let (api, admin, dns) = (free_port(), free_port(), free_port());
        let started = Instant::now();
        command.args(["sandbox", "--state-dir"]).arg(dir.path());
        command.args(["--api-port", &api.to_string(), "--admin-port", &admin.to_string()]);
        command.args(["--dns-port", &dns.to_string()]).args(extra);
        if let Some(port) = external_operator {
            command.args(["--external-operator", &port.to_string()]);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let admin = format!("http://127.0.0.1:{admin}");
        let serving = || match external_operator {
            Some(port) => std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            None => http_status(&format!("{admin}/readyz")) == Some(200),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !serving() {
            assert!(Instant::now() < deadline, "the sandbox did not become ready within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let ready_after = started.elapsed().as_secs_f64();
        Self { child, dir, admin, dns, ready_after }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_in(args, None)
    }

    pub fn kubectl_in(&self, args: &[&str], cwd: Option<&Path>) -> Output {
        let mut command = Command::new(kubectl_binary());
        command.args(args).env("KUBECONFIG", self.kubeconfig()).env("HOME", self.dir.path());
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        command.output().unwrap()
    }

    /// Runs kubectl and returns stdout, failing the test with stderr if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a shell line with KUBECONFIG set, from the repository root.
    pub fn shell(&self, line: &str) -> Output {
        let path = std::env::var("PATH").unwrap_or_default();
        Command::new("sh")
            .args(["-c", line])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path())
            .env("PATH", path)
            .output()
            .unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the sandbox process, in MiB.
    pub fn rss_mib(&self) -> f64 {
        rss_mib(self.pid())
    }

    /// Stops the sandbox with SIGINT (Ctrl-C) and returns whether it exited cleanly within 10 s.
    pub fn interrupt(&mut self) -> bool {
        let _ = Command::new("kill").args(["-INT", &self.pid().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid`, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}
