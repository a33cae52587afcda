//! `run`: the operator against a cluster and AWS, from validated settings through the one assembly.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;

use crate::admin::{self, HealthState};
use crate::assembly::{Assembly, Operator};
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
    if let Some(dns) = &config.dns {
        assembly = assembly.dns(publisher(dns, &client, &home, &config.cloud).await?);
    }
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
            api.set_limits(settings.limits);
            api.budget_writes = settings.budget_writes;
            if let Some(ttl) = settings.identities {
                api.accept_kubernetes_identities(ttl);
            }
            let watching = admin::keyfile::watch(settings.keys_file, api.keys.clone(), operator.ctx.shared());
            tokio::spawn(watching);
            Some(api)
        }
        None => {
            tracing::warn!("no --admin-keys: the admin API is off");
            None
        }
    };
    let listener = admin::Listener { tls: config.tls, cors_origins: config.cors_origins, standby: false };
    let checkpoints = match config.checkpoints {
        Some(c) => Some(checkpoints(c, &operator, &home, &config.cloud).await?),
        None => None,
    };
    if let Some(webhook) = config.webhook {
        tracing::info!(url = %webhook.url, actions = ?webhook.actions, "notifying audit actions by webhook");
        let (notifier, delivering) = crate::notify::Notifier::new(webhook);
        let _ = operator.ctx.webhooks.set(notifier);
        tokio::spawn(delivering);
    }
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

/// Starts signing checkpoints of the audit log's head into the checkpoint ConfigMap, copying
/// them to the archive first when there is one.
async fn checkpoints(
    settings: crate::config::Checkpoints,
    operator: &Operator,
    namespace: &str,
    cloud: &CloudSource,
) -> anyhow::Result<(Arc<Publisher>, tokio::task::JoinHandle<()>)> {
    let crate::config::Checkpoints { signer, configmap, every, archive } = settings;
    tracing::info!(public_key = %signer.public_key(), %configmap, "signing audit checkpoints");
    let ctx = &operator.ctx;
    let copier = match archive {
        Some(archive) => Some(archive_copier(archive, cloud, ctx.audit.path()).await?),
        None => None,
    };
    let api = kube::Api::namespaced(ctx.client.clone(), namespace);
    let publisher =
        Arc::new(Publisher::new(api, configmap, signer, ctx.audit.clone(), ctx.clock.clone(), copier));
    let running = publisher.clone();
    Ok((publisher, tokio::spawn(async move { running.run(every).await })))
}

/// The S3 archive, once its bucket is known to lock what is put in it.
#[cfg(feature = "aws")]
async fn archive_copier(
    archive: crate::config::ArchiveSettings,
    cloud: &CloudSource,
    log: std::path::PathBuf,
) -> anyhow::Result<crate::audit::archive::Copier> {
    use crate::audit::archive::{Copier, Layout, s3::S3Archive};
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let CloudSource::Aws { region, endpoint_url } = cloud {
        loader = loader.region(aws_config::Region::new(region.clone()));
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
    }
    let s3 = S3Archive::new(&loader.load().await, &archive.bucket, archive.retention);
    s3.check_locking().await?;
    tracing::info!(bucket = %archive.bucket, prefix = %archive.prefix, "archiving audit checkpoints and records");
    Ok(Copier::new(Arc::new(s3), Layout::new(&archive.prefix), log))
}

#[cfg(not(feature = "aws"))]
async fn archive_copier(
    _archive: crate::config::ArchiveSettings,
    _cloud: &CloudSource,
    _log: std::path::PathBuf,
) -> anyhow::Result<crate::audit::archive::Copier> {
    anyhow::bail!(
        "this build has no AWS backend, so no S3 archive: build it with `cargo build --release --features aws`"
    )
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

/// The zone rooms are published in.
async fn publisher(
    dns: &crate::config::DnsConfig,
    client: &kube::Client,
    home: &str,
    cloud: &CloudSource,
) -> anyhow::Result<Arc<dyn crate::dns::Publisher>> {
    use crate::config::DnsConfig;
    match dns {
        DnsConfig::ExternalDns { zone } => {
            Ok(Arc::new(crate::dns::external::ExternalDns::new(client.clone(), home, zone)))
        }
        DnsConfig::Route53 { zone, hosted_zone_id } => route53(zone, hosted_zone_id, cloud).await,
    }
}

#[cfg(feature = "aws")]
async fn route53(
    zone: &str,
    hosted_zone_id: &str,
    cloud: &CloudSource,
) -> anyhow::Result<Arc<dyn crate::dns::Publisher>> {
    let CloudSource::Aws { region, endpoint_url } = cloud else {
        anyhow::bail!("--dns-provider route53 needs AWS: the sandbox's cloud has no Route53")
    };
    Ok(Arc::new(
        crate::dns::route53::Route53::new(region, endpoint_url.as_deref(), hosted_zone_id, zone).await,
    ))
}

#[cfg(not(feature = "aws"))]
async fn route53(
    _zone: &str,
    _id: &str,
    _cloud: &CloudSource,
) -> anyhow::Result<Arc<dyn crate::dns::Publisher>> {
    anyhow::bail!(
        "this build has no AWS backend: build it with `cargo build --release --features aws` (the container image is)"
    )
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
