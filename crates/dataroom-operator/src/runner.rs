//! The subcommands' bodies: assembling the operator from its parts, and `audit verify`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use kube::runtime::events::{Recorder, Reporter};

use crate::admin::auth::AdminKeys;
use crate::admin::{self, AdminState, HealthState};
use crate::audit::checkpoint::{Checkpoint, Signer};
use crate::audit::{AuditLog, verify_file};
use crate::budget::Gate;
use crate::budget::pricing::PriceTable;
use crate::cloud::Cloud;
use crate::cloud::metered::Metered;
use crate::cloud::remote::RemoteCloud;
use crate::config::RunArgs;
use crate::controller::checkpoint::Publisher;
use crate::controller::{self, Backoff, Context, Settings};
use crate::leader::{Election, LeaseSettings};
use crate::metrics::Metrics;
use crate::ssh::SshSettings;
use crate::{clock, crd};

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let prices = load_prices(args.price_table.as_deref())?;
    let client = kube::Client::try_default().await.context("connecting to Kubernetes")?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(admin::tls::server_config(cert, key)?),
        _ => None,
    };
    let metrics = Arc::new(Metrics::default());
    let home = args.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let signer = args.audit_signing_key.as_deref().map(Signer::load).transpose()?;
    let mut election = None;
    if args.leader_election {
        let lease = LeaseSettings {
            namespace: home.clone(),
            name: args.lease_name.clone(),
            identity: identity(),
            duration_seconds: args.lease_duration,
        };
        let listener = admin::Listener { tls: tls.clone(), standby: true, ..Default::default() };
        match stand_by(&client, &lease, args.http_addr, listener, metrics.clone()).await? {
            Some(campaign) => election = Some(campaign),
            None => return Ok(()),
        }
    }
    // Opened only by the leader, so that it continues the chain the previous leader left.
    let audit = AuditLog::open(&args.audit_log)?;
    let backend: Arc<dyn Cloud> = match args.sandbox_cloud {
        Some(addr) => Arc::new(RemoteCloud::new(addr)),
        None => aws_cloud(&args.region, args.endpoint_url.as_deref()).await?,
    };
    let cloud = Arc::new(Metered::new(backend, metrics.clone()));
    let clock = clock::system();
    let gate = Arc::new(Gate::new(prices, &args.region, clock.clone()));
    let reporter = Reporter { controller: crd::MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
    let settings = Settings {
        region: args.region,
        default_image_id: args.default_image_id,
        default_subnet_id: args.default_subnet_id,
        default_security_group_ids: args.default_security_group_ids,
        poll_interval: args.poll_interval,
        namespace: args.namespace,
        orphan_grace: (!args.orphan_grace.is_zero()).then_some(args.orphan_grace),
        ssh: SshSettings { port: args.ssh_port, user: args.ssh_user.clone(), ..Default::default() },
        health_host_override: None,
        backoff: Backoff { base: args.retry_base, max: args.retry_max.max(args.retry_base) },
        concurrent_reconciles: Some(args.max_concurrent_reconciles),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Context::new(client, cloud, gate, audit, recorder, metrics.clone(), settings, clock));
    let ready = Arc::new(AtomicBool::new(false));
    let api = match &args.admin_keys {
        Some(path) => {
            let keys = AdminKeys::load(path)?;
            let mut api = AdminState::new(ctx.shared(), keys, &args.api_namespace);
            api.limits.max_file_bytes = args.max_upload_mib << 20;
            Some(api)
        }
        None => {
            tracing::warn!("no --admin-keys: the admin API is off");
            None
        }
    };
    let listener = admin::Listener { tls, cors_origins: args.cors_origins.clone(), standby: false };
    let health = HealthState { ready: ready.clone(), metrics };
    let (name, every) = (args.audit_checkpoint_configmap, args.audit_checkpoint_interval);
    let checkpoints = signer.map(|signer| checkpoints(signer, &ctx, &home, name, every));
    let (server, bound) = admin::serve(args.http_addr, health, api, listener)?;
    tracing::info!(%bound, "serving /healthz, /readyz, /metrics and, with admin keys, /api");
    let server_handle = server.handle();
    tokio::spawn(server);
    let result = match &mut election {
        Some(campaign) => tokio::select! {
            result = controller::run(ctx, ready) => result,
            () = campaign.lost() => Err(anyhow::anyhow!(
                "lost the leader lease; exiting so that this replica restarts as a standby"
            )),
        },
        None => controller::run(ctx, ready).await,
    };
    server_handle.stop(true).await;
    if let Some((publisher, task)) = checkpoints {
        task.abort();
        // The tail as it is on the way out, so that nothing after the last tick goes unprotected.
        if let Err(e) = publisher.publish(0).await {
            tracing::warn!(error = %e, "the final audit checkpoint was not stored");
        }
    }
    // Handed over on the way out, so that a standby need not wait for the lease to run out.
    if let Some(campaign) = election {
        campaign.resign().await;
    }
    result
}

/// Starts signing checkpoints of the audit log's head into the checkpoint ConfigMap.
fn checkpoints(
    signer: Signer,
    ctx: &Context,
    namespace: &str,
    name: String,
    every: std::time::Duration,
) -> (Arc<Publisher>, tokio::task::JoinHandle<()>) {
    tracing::info!(public_key = %signer.public_key(), configmap = %name, "signing audit checkpoints");
    let api = kube::Api::namespaced(ctx.client.clone(), namespace);
    let publisher =
        Arc::new(Publisher { api, name, signer, audit: ctx.audit.clone(), clock: ctx.clock.clone() });
    let running = publisher.clone();
    (publisher, tokio::spawn(async move { running.run(every).await }))
}

/// Serves health (not ready) and 503 `not_leader` on `addr` until this replica holds the lease;
/// `None` if it was told to stop first.
async fn stand_by(
    client: &kube::Client,
    lease: &LeaseSettings,
    addr: std::net::SocketAddr,
    listener: admin::Listener,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Option<Election>> {
    let mut campaign = Election::start(client.clone(), lease).await?;
    tracing::info!(lease = %lease.name, identity = %lease.identity, "standby until this replica holds the lease");
    let health = HealthState { ready: Arc::new(AtomicBool::new(false)), metrics };
    let (standby, _) = admin::serve(addr, health, None, listener)?;
    let handle = standby.handle();
    tokio::spawn(standby);
    let acquired = tokio::select! {
        acquired = campaign.acquired() => Some(acquired),
        () = shutdown_signal() => None,
    };
    handle.stop(true).await;
    match acquired {
        Some(acquired) => {
            acquired?;
            tracing::info!(identity = %lease.identity, "this replica holds the lease: leading");
            Ok(Some(campaign))
        }
        None => {
            campaign.resign().await;
            Ok(None)
        }
    }
}

/// Ctrl-C or SIGTERM (what Kubernetes sends to stop a pod).
/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(feature = "aws")]
async fn aws_cloud(region: &str, endpoint_url: Option<&str>) -> anyhow::Result<Arc<dyn Cloud>> {
    Ok(Arc::new(crate::cloud::aws::AwsCloud::new(region, endpoint_url).await))
}

#[cfg(not(feature = "aws"))]
async fn aws_cloud(_region: &str, _endpoint_url: Option<&str>) -> anyhow::Result<Arc<dyn Cloud>> {
    anyhow::bail!("this build has no AWS backend (built without the `aws` feature)")
}

/// This replica's name in the lease: the pod's name, or host and process ID outside a cluster.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "dataroom-operator".into());
        format!("{host}-{}", std::process::id())
    })
}

pub fn load_prices(overrides: Option<&Path>) -> anyhow::Result<PriceTable> {
    let table = PriceTable::default();
    let Some(path) = overrides else {
        return Ok(table);
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let extra = PriceTable::parse(&text).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
    Ok(table.with_overrides(extra))
}

/// `audit verify FILE [--checkpoint C --public-key K]`: prints the verdict; exit 0 when intact,
/// 1 when not, 2 when unreadable.
pub fn verify(file: &Path, checkpoint: Option<(&Path, &str)>) -> ExitCode {
    let report = match verify_file(file) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let mut problems: Vec<String> =
        report.problems.iter().map(|p| format!("line {}: {}", p.line, p.message)).collect();
    let mut covered = String::new();
    if let Some((path, public_key)) = checkpoint {
        match checked(file, path, public_key) {
            Ok((seq, time)) => covered = format!("; checkpoint of {time} (record {seq}) holds"),
            Err(Some(problem)) => problems.push(problem),
            Err(None) => return ExitCode::from(2),
        }
    }
    for problem in &problems {
        println!("{problem}");
    }
    let head = match &report.head {
        Some((seq, hash)) => format!("head record {seq}, hash {hash}"),
        None => "empty".to_string(),
    };
    if problems.is_empty() {
        println!("intact: {} records, {head}{covered}", report.records);
        ExitCode::SUCCESS
    } else {
        println!("NOT intact: {} problem(s) in {} records, {head}", problems.len(), report.records);
        ExitCode::FAILURE
    }
}

/// The checkpoint's record and time when it is genuine and the log still holds that record; the
/// problem otherwise, or `None` (already reported) when a file cannot be read.
fn checked(log: &Path, path: &Path, public_key: &str) -> Result<(u64, String), Option<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| eprintln!("error: cannot read {}: {e}", path.display()))
        .map_err(|()| None)?;
    let checkpoint: Checkpoint = serde_json::from_str(&text)
        .map_err(|e| format!("checkpoint {}: not a checkpoint ({e})", path.display()))?;
    checkpoint.verify_signature(public_key).map_err(|why| format!("checkpoint {}: {why}", path.display()))?;
    match checkpoint.check_log(log) {
        Ok(None) => Ok((checkpoint.seq, checkpoint.time)),
        Ok(Some(problem)) => Err(Some(problem)),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", log.display());
            Err(None)
        }
    }
}
