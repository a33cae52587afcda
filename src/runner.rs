//! The subcommands' bodies: assembling the operator from its parts, and `audit verify`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use kube::runtime::events::{Recorder, Reporter};

use crate::admin::auth::AdminKeys;
use crate::admin::{self, AdminState, HealthState};
use crate::audit::{AuditLog, verify_file};
use crate::budget::Gate;
use crate::cli::RunArgs;
use crate::cloud::aws::AwsCloud;
use crate::cloud::metered::Metered;
use crate::cloud::pricing::PriceTable;
use crate::controller::{self, Context, Settings};
use crate::metrics::Metrics;
use crate::ssh::SshSettings;
use crate::{clock, crd};

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let prices = load_prices(args.price_table.as_deref())?;
    let client = kube::Client::try_default().await.context("connecting to Kubernetes")?;
    let audit = AuditLog::open(&args.audit_log)?;
    let metrics = Arc::new(Metrics::default());
    let aws = AwsCloud::new(&args.region, args.endpoint_url.as_deref()).await;
    let cloud = Arc::new(Metered::new(Arc::new(aws), metrics.clone()));
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
        ssh: SshSettings { port: args.ssh_port, user: args.ssh_user.clone(), ..Default::default() },
        health_host_override: None,
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Context::new(client, cloud, gate, audit, recorder, metrics.clone(), settings, clock));
    let ready = Arc::new(AtomicBool::new(false));
    let api = match &args.admin_keys {
        Some(path) => {
            let keys = AdminKeys::load(path)?;
            let mut api = AdminState::new(ctx.clone(), keys, &args.api_namespace);
            api.limits.max_file_bytes = args.max_upload_mib << 20;
            Some(api)
        }
        None => {
            tracing::warn!("no --admin-keys: the admin API is off");
            None
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(admin::tls::server_config(cert, key)?),
        _ => None,
    };
    let listener = admin::Listener { tls, cors_origins: args.cors_origins.clone() };
    let health = HealthState { ready: ready.clone(), metrics };
    let (server, bound) = admin::serve(args.http_addr, health, api, listener)?;
    tracing::info!(%bound, "serving /healthz, /readyz, /metrics and, with admin keys, /api");
    let server_handle = server.handle();
    tokio::spawn(server);
    let result = controller::run(ctx, ready).await;
    server_handle.stop(true).await;
    result
}

pub fn load_prices(overrides: Option<&Path>) -> anyhow::Result<PriceTable> {
    let table = PriceTable::default();
    let Some(path) = overrides else {
        return Ok(table);
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let extra: PriceTable = serde_yaml::from_str(&text).with_context(|| {
        format!("{}: expected {{region: {{instance-type: usd-per-hour}}}}", path.display())
    })?;
    Ok(table.with_overrides(extra))
}

/// `audit verify FILE`: prints the verdict; exit 0 when intact, 1 when not, 2 when unreadable.
pub fn verify(file: &Path) -> ExitCode {
    let report = match verify_file(file) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    for problem in &report.problems {
        println!("line {}: {}", problem.line, problem.message);
    }
    let head = match &report.head {
        Some((seq, hash)) => format!("head record {seq}, hash {hash}"),
        None => "empty".to_string(),
    };
    if report.is_intact() {
        println!("intact: {} records, {head}", report.records);
        ExitCode::SUCCESS
    } else {
        println!("NOT intact: {} problem(s) in {} records, {head}", report.problems.len(), report.records);
        ExitCode::FAILURE
    }
}
