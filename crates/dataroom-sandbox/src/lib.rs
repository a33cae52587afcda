//! The embedded default: the whole system on one machine, with no cluster and no AWS account.
//! A Kubernetes API emulator on loopback, the in-memory EC2 and secret store, and the real
//! controller between them.

mod banner;
pub mod dns;
mod health;
pub mod instances;
pub mod remote;
mod sftp;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Api, PostParams};
use kube_emulator::{Access, Secured};

use banner::Banner;
use dataroom_operator::admin::{self, auth::AdminKeys};
use dataroom_operator::assembly::Assembly;
use dataroom_operator::audit::checkpoint::Signer;
use dataroom_operator::cloud::fake::{Delays, FakeCloud};
use dataroom_operator::cloud::network::ManagedGroup;
use dataroom_operator::controller::Settings;
use dataroom_operator::controller::checkpoint::Publisher;
use dataroom_operator::crd;
use dataroom_operator::ssh::SshSettings;

/// The AMI the sandbox launches when an Ec2Instance names none.
pub const SANDBOX_IMAGE: &str = "ami-0000000000000000a";
/// With `--external-operator`: the simulated EC2's token, in the state directory, mode 0600.
pub const CLOUD_TOKEN_FILE: &str = "cloud-token";

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Where the kubeconfig, audit log and state live (default: a fresh temporary directory).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Port of the Kubernetes API emulator on 127.0.0.1.
    #[arg(long, default_value_t = 6443)]
    pub api_port: u16,
    /// Port of the operator's HTTP endpoints (/healthz, /readyz, /metrics) on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub admin_port: u16,
    /// Port of the simulated Route53's DNS server (UDP and TCP) on 127.0.0.1: Ready rooms are
    /// published in the zone `rooms.dataroom.test`.
    #[arg(long, default_value_t = 5354)]
    pub dns_port: u16,
    /// Run everything but the operator, and serve the simulated EC2 on 127.0.0.1:PORT to an
    /// operator in another process (`run --sandbox-cloud 127.0.0.1:PORT`): to measure it alone.
    #[arg(long, value_name = "PORT")]
    pub external_operator: Option<u16>,
    /// Admin API requests a second per source address, bursts of twice that; as `run
    /// --api-rate-per-address`. Higher than `run`'s default: every caller of the sandbox is on
    /// 127.0.0.1 and shares the bucket, and scripts fan out over many rooms at once.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub api_rate_per_address: u32,
    /// Admin API requests a second per key, bursts of twice that; as `run --api-rate-per-key`.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub api_rate_per_key: u32,
    /// Seconds the operator keeps TokenReview and SubjectAccessReview answers for Kubernetes
    /// tokens on /api (a removed RoleBinding stops working within them).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub identity_cache_seconds: u64,
}

fn state_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(dir) => dir,
        None => {
            let stamp = jiff::Timestamp::now().as_second();
            std::env::temp_dir().join(format!("dataroom-sandbox-{stamp}-{}", std::process::id()))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // The state holds simulated instances' SSH keys: keep it private to this user.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(dir.canonicalize()?)
}

/// Writes a kubeconfig for the emulator at `api`, readable by this user only: over TLS with its
/// CA and token when it is `secured`, plain HTTP otherwise (tests that serve it so).
pub fn write_kubeconfig(path: &Path, api: SocketAddr, secured: Option<&Secured>) -> anyhow::Result<()> {
    use base64::Engine as _;
    let (cluster, user) = match secured {
        Some(s) => {
            let ca = base64::engine::general_purpose::STANDARD.encode(&s.ca_pem);
            (
                format!("server: https://{api}\n    certificate-authority-data: {ca}"),
                format!("token: {}", s.token),
            )
        }
        None => (format!("server: http://{api}"), "{}".to_string()),
    };
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sandbox\n  cluster:\n    {cluster}\ncontexts:\n- name: sandbox\n  context:\n    cluster: sandbox\n    user: sandbox\n    namespace: default\ncurrent-context: sandbox\nusers:\n- name: sandbox\n  user:\n    {user}\n"
    );
    write_private(path, &config)
}

/// Writes `contents` to `path` with mode 0600 (also when the file already existed).
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let context = || format!("writing {}", path.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(0o600);
    let mut file = options.open(path).with_context(context)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).with_context(context)?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).with_context(context)
}

/// A fresh random token (256 bits, hex) for the simulated EC2's client.
pub fn new_token() -> String {
    use ssh_key::rand_core::RngCore;
    let mut bytes = [0u8; 32];
    ssh_key::rand_core::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates every CRD through the API, as `kubectl apply -f crds/` would.
pub async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    for doc in crd::crds_yaml().split("---\n") {
        let crd = serde_yaml::from_str(doc)?;
        match api.create(&PostParams::default(), &crd).await {
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            other => drop(other.context("installing a CRD")?),
        }
    }
    Ok(())
}

/// Creates the chart's ClusterRoles for people (dataroom-viewer, -lifecycle, -exec, -admin), so
/// that `kubectl create rolebinding --clusterrole dataroom-exec` works as on a cluster.
pub async fn install_user_roles(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    for doc in admin::identity::USER_ROLES.split("\n---\n") {
        let role = serde_yaml::from_str(doc).context("the user roles file")?;
        match api.create(&PostParams::default(), &role).await {
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            other => drop(other.context("creating a user ClusterRole")?),
        }
    }
    Ok(())
}

pub async fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let dir = state_dir(args.state_dir)?;
    let (api_state, ec2_state) = (dir.join("apiserver.json"), dir.join("ec2.json"));
    let resumed = api_state.exists();
    let server = match resumed {
        true => kube_emulator::ApiServer::load(&api_state)
            .with_context(|| format!("resuming {}", api_state.display()))?,
        false => kube_emulator::ApiServer::new(),
    };
    let api_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.api_port));
    // TLS and a token, both new at each start and written only into the kubeconfig (mode 0600):
    // other users of this machine cannot read it, so they cannot reach the API.
    let secured = Secured::generate().context("making the API emulator's certificate")?;
    let (api_addr, api_task) = kube_emulator::serve(server.clone(), api_addr, Access::secured(&secured))
        .await
        .with_context(|| format!("binding the API emulator to {api_addr} (try --api-port)"))?;
    let kubeconfig = dir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, api_addr, Some(&secured))?;
    let client = server.client();
    install_crds(&client).await?;
    install_user_roles(&client).await?;

    let fake = simulated_ec2(&ec2_state)?;
    let saver = State { server: server.clone(), fake: fake.clone(), api: api_state, ec2: ec2_state };
    let periodic = tokio::spawn(saver.clone().every(Duration::from_secs(5)));
    let simulator = instances::Simulator {
        fake: fake.clone(),
        root: dir.join("instances"),
        ssh_port: instances::SSH_PORT,
        health_port: instances::HEALTH_PORT,
    };
    let simulated = tokio::spawn(simulator.run());
    if let Some(port) = args.external_operator {
        let cloud_task = serve_external(fake, port, &kubeconfig, &dir.join(CLOUD_TOKEN_FILE)).await?;
        dataroom_operator::signal::shutdown().await;
        for task in [cloud_task, periodic, simulated, api_task] {
            task.abort();
        }
        return saver.save();
    }
    let zone = dns::SandboxZone::new();
    let dns_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.dns_port));
    let (dns_addr, dns_task) = zone.serve(dns_addr).await.with_context(|| {
        format!("binding the simulated Route53's DNS server to {dns_addr} (try --dns-port)")
    })?;
    let audit_path = dir.join("audit.jsonl");
    let settings = Settings {
        region: "us-east-1".into(),
        default_image_id: Some(SANDBOX_IMAGE.into()),
        poll_interval: Duration::from_secs(5),
        orphan_grace: Some(Duration::from_secs(60)),
        room_services: true,
        ssh: SshSettings { port: instances::SSH_PORT, ..Default::default() },
        // As the chart runs it: instances get the operator's own group, which admits SSH and the
        // health port from the simulated VPC (the loopback network) only.
        managed_security_group: Some(ManagedGroup {
            subnet_id: None,
            ports: vec![instances::SSH_PORT, instances::HEALTH_PORT],
            sources: vec![],
        }),
        ..Default::default()
    };
    let checkpoint_api = Api::namespaced(client.clone(), "default");
    let operator = Assembly::new(client, fake, settings, audit_path.clone())
        .instance_name(Some("sandbox".into()))
        .dns(zone)
        .build()?;
    // Signed checkpoints of the audit log, as the chart keeps them: the key beside the log, the
    // latest checkpoint in the ConfigMap `dataroom-operator-audit-checkpoint`.
    let signer = signing_key(&dir.join("audit-signing-key.pem"))?;
    let publisher = Arc::new(Publisher::new(
        checkpoint_api,
        CHECKPOINT_CONFIGMAP.into(),
        signer,
        operator.ctx.audit.clone(),
        operator.ctx.clock.clone(),
        None,
    ));
    let checkpoints = {
        let publisher = publisher.clone();
        tokio::spawn(async move { publisher.run(CHECKPOINT_INTERVAL).await })
    };
    let ready = Arc::new(AtomicBool::new(false));
    let admin_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.admin_port));
    let (key_file, keys_file) = (dir.join("admin-key"), dir.join("admin-keys"));
    let key = admin_key(&key_file)?;
    // The keys file, in the operator's format, read again whenever it changes: add a scoped key
    // or remove one while the sandbox runs.
    if !keys_file.exists() {
        write_private(&keys_file, &AdminKeys::line("sandbox", &key))?;
    }
    let mut api = operator.admin(AdminKeys::load(&keys_file)?, "default");
    let rate = |per_second: u32| admin::rate::Rate { per_second, burst: per_second.saturating_mul(2) };
    let (key_rate, address_rate) = (rate(args.api_rate_per_key), rate(args.api_rate_per_address));
    api.set_limits(admin::ApiLimits { key_rate, address_rate, ..Default::default() });
    api.accept_kubernetes_identities(Duration::from_secs(args.identity_cache_seconds));
    tokio::spawn(admin::keyfile::watch(keys_file, api.keys.clone(), operator.ctx.shared()));
    let (http, admin_addr) =
        admin::serve(admin_addr, operator.health(ready.clone()), Some(api), Default::default())
            .with_context(|| {
                format!("binding the operator's HTTP endpoints to {admin_addr} (try --admin-port)")
            })?;
    let http_handle = http.handle();
    tokio::spawn(http);

    let controller = tokio::spawn(async move { operator.run(ready).await });
    let banner = Banner {
        started,
        resumed,
        dir,
        kubeconfig,
        api_addr,
        admin_addr,
        dns_addr,
        audit: audit_path,
        key_file,
    };
    println!("{banner}");
    let result = controller.await.context("the controller stopped unexpectedly")?;
    checkpoints.abort();
    if let Err(e) = publisher.publish().await {
        tracing::warn!(error = %e, "the final audit checkpoint was not stored");
    }
    periodic.abort();
    simulated.abort();
    saver.save()?;
    http_handle.stop(true).await;
    api_task.abort();
    dns_task.abort();
    result
}

/// The simulated EC2, resumed from `state` when it exists. Instances of different sandboxes get
/// different addresses (127.B.x.y, B from the process ID), so that each can serve SSH on port 2222.
fn simulated_ec2(state: &Path) -> anyhow::Result<Arc<FakeCloud>> {
    let block = 2 + (std::process::id() % 253) as u8;
    let delays = Delays {
        boot: Duration::from_secs(2),
        stop: Duration::from_secs(1),
        terminate: Duration::from_secs(1),
    };
    let fake = Arc::new(FakeCloud::new(delays).with_address_block(block));
    if state.exists() {
        let snapshot = serde_json::from_slice(&std::fs::read(state)?)?;
        fake.restore(&snapshot).with_context(|| format!("resuming {}", state.display()))?;
    }
    Ok(fake)
}

/// Serves the simulated EC2 to an operator in another process (`--external-operator PORT`).
async fn serve_external(
    fake: Arc<FakeCloud>,
    port: u16,
    kubeconfig: &Path,
    token_file: &Path,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let token = new_token();
    write_private(token_file, &token)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (addr, task) = remote::serve(fake, addr, &token)
        .await
        .with_context(|| format!("binding the simulated EC2 to {addr}"))?;
    println!(
        "dataroom-operator sandbox without its operator\n  kubeconfig:  {}\n  EC2:         run --sandbox-cloud {addr} --sandbox-cloud-token-file {}",
        kubeconfig.display(),
        token_file.display()
    );
    Ok(task)
}

/// The ConfigMap (in `default`) that holds the sandbox's latest signed checkpoint.
pub const CHECKPOINT_CONFIGMAP: &str = "dataroom-operator-audit-checkpoint";

/// How often the sandbox signs a checkpoint.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// The sandbox's checkpoint signing key: the one in `path`, or a new one written there (mode 0600).
fn signing_key(path: &Path) -> anyhow::Result<Signer> {
    if path.exists() {
        return Signer::load(path);
    }
    let signer = Signer::generate();
    write_private(path, &signer.pem())?;
    Ok(signer)
}

/// The sandbox's admin key: the one in `path`, or a new one written there (mode 0600).
fn admin_key(path: &Path) -> anyhow::Result<String> {
    if let Ok(key) = std::fs::read_to_string(path) {
        return Ok(key.trim().to_string());
    }
    let (key, _) = AdminKeys::generate("sandbox", "").expect("no options to refuse");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{key}\n").as_bytes())?;
    Ok(key)
}

/// Where the sandbox keeps its state, so that `--state-dir` resumes it.
#[derive(Clone)]
struct State {
    server: Arc<kube_emulator::ApiServer>,
    fake: Arc<FakeCloud>,
    api: PathBuf,
    ec2: PathBuf,
}

impl State {
    fn save(&self) -> anyhow::Result<()> {
        self.server.save(&self.api).with_context(|| format!("saving {}", self.api.display()))?;
        let partial = self.ec2.with_extension("partial");
        std::fs::write(&partial, serde_json::to_vec(&self.fake.snapshot())?)?;
        std::fs::set_permissions(&partial, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        std::fs::rename(&partial, &self.ec2).with_context(|| format!("saving {}", self.ec2.display()))
    }

    async fn every(self, period: Duration) {
        loop {
            tokio::time::sleep(period).await;
            if let Err(e) = self.save() {
                tracing::warn!(error = %e, "could not save the sandbox state");
            }
        }
    }
}
