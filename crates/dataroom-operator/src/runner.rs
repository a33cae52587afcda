//! `run`: the operator against a cluster and AWS, from validated settings through the one assembly.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;

use crate::admin::{self, HealthState};
use crate::assembly::{Assembly, Operator};
use crate::audit::checkpoint::Signer;
use crate::cloud::Cloud;
use crate::cloud::remote::RemoteCloud;
use crate::config::{CloudSource, Config, RunArgs};
use crate::controller::checkpoint::Publisher;
use crate::leader::{Election, Fence, LeaseSettings};
use crate::metrics::Metrics;
use crate::signal;

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = Config::load(args)?;
    let client = kube::Client::try_default().await.context("connecting to Kubernetes")?;
    let metrics = Arc::new(Metrics::default());
    let home = config.home_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    let mut election = None;
    let mut fence = None;
    if let Some(settings) = &config.election {
        let lease = LeaseSettings {
            namespace: home.clone(),
            name: settings.lease_name.clone(),
            identity: identity(),
            duration_seconds: settings.duration_seconds,
        };
        let listener = admin::Listener { tls: config.tls.clone(), standby: true, ..Default::default() };
        match stand_by(&client, &lease, config.http_addr, listener, metrics.clone()).await? {
            Some(campaign) => election = Some(campaign),
            None => return Ok(()),
        }
        let clock = crate::clock::system();
        fence = Some(Fence::acquired(client.clone(), &lease, clock).await.context("the leader lease")?);
    }
    let cloud = match &config.cloud {
        CloudSource::Sandbox { addr, token } => Arc::new(RemoteCloud::new(*addr, token)) as Arc<dyn Cloud>,
        CloudSource::Aws { region, endpoint_url } => aws_cloud(region, endpoint_url.as_deref()).await?,
    };
    // The audit log is opened here, by the leader only, so that it continues the chain the
    // previous leader left.
    let mut assembly = Assembly::new(client.clone(), cloud, config.settings, config.audit_log);
    if let Some(fence) = fence {
        assembly = assembly.fence(fence);
    }
    let operator = assembly
        .prices(config.prices)
        .metrics(metrics)
        .instance_name(std::env::var("POD_NAME").ok())
        .build()?;
    let ready = Arc::new(AtomicBool::new(false));
    let api = match config.admin {
        Some(settings) => {
            let mut api = operator.admin(settings.keys, &settings.namespace);
            api.limits = settings.limits;
            Some(api)
        }
        None => {
            tracing::warn!("no --admin-keys: the admin API is off");
            None
        }
    };
    let listener = admin::Listener { tls: config.tls, cors_origins: config.cors_origins, standby: false };
    let checkpoints =
        config.checkpoints.map(|c| checkpoints(c.signer, &operator, &home, c.configmap, c.every));
    let (server, bound) = admin::serve(config.http_addr, operator.health(ready.clone()), api, listener)?;
    tracing::info!(%bound, "serving /healthz, /readyz, /metrics and, with admin keys, /api");
    let server_handle = server.handle();
    tokio::spawn(server);
    let result = match &mut election {
        Some(campaign) => tokio::select! {
            result = operator.run(ready) => result,
            () = campaign.lost() => Err(anyhow::anyhow!(
                "lost the leader lease; exiting so that this replica restarts as a standby"
            )),
        },
        None => operator.run(ready).await,
    };
    server_handle.stop(true).await;
    if let Some((publisher, task)) = checkpoints {
        task.abort();
        // The tail as it is on the way out, so that nothing after the last tick goes unprotected.
        if let Err(e) = publisher.publish().await {
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
    operator: &Operator,
    namespace: &str,
    name: String,
    every: std::time::Duration,
) -> (Arc<Publisher>, tokio::task::JoinHandle<()>) {
    tracing::info!(public_key = %signer.public_key(), configmap = %name, "signing audit checkpoints");
    let ctx = &operator.ctx;
    let api = kube::Api::namespaced(ctx.client.clone(), namespace);
    let publisher = Arc::new(Publisher::new(api, name, signer, ctx.audit.clone(), ctx.clock.clone()));
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
        () = signal::shutdown() => None,
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

#[cfg(feature = "aws")]
async fn aws_cloud(region: &str, endpoint_url: Option<&str>) -> anyhow::Result<Arc<dyn Cloud>> {
    Ok(Arc::new(crate::cloud::aws::AwsCloud::new(region, endpoint_url).await))
}

#[cfg(not(feature = "aws"))]
async fn aws_cloud(_region: &str, _endpoint_url: Option<&str>) -> anyhow::Result<Arc<dyn Cloud>> {
    anyhow::bail!(
        "this build has no AWS backend: build it with `cargo build --release --features aws` (the container image is)"
    )
}

/// This replica's name in the lease: the pod's name, or host and process ID outside a cluster.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "dataroom-operator".into());
        format!("{host}-{}", std::process::id())
    })
}
