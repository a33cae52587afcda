//! Flags and environment into validated settings, once. `RunArgs` is what `run` takes (clap
//! refuses a malformed value); `Config::load` reads every file it names (prices, TLS, admin keys,
//! signing key) before anything connects, and yields what the assembly and the listener are made
//! from.

mod args;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

pub use args::RunArgs;

use crate::admin::ApiLimits;
use crate::admin::auth::AdminKeys;
use crate::admin::rate::Rate;
use crate::audit::checkpoint::Signer;
use crate::budget::pricing::PriceTable;
use crate::controller::{Backoff, Settings};
use crate::seams::Seams;
use crate::ssh::SshSettings;

/// Everything `run` needs, checked.
pub struct Config {
    pub settings: Settings,
    pub prices: PriceTable,
    pub cloud: CloudSource,
    pub audit_log: PathBuf,
    pub http_addr: SocketAddr,
    pub tls: Option<rustls::ServerConfig>,
    pub cors_origins: Vec<String>,
    /// The admin API; `None` serves only health and metrics.
    pub admin: Option<AdminConfig>,
    pub checkpoints: Option<Checkpoints>,
    pub webhook: Option<crate::notify::Webhook>,
    /// Leader election through a Lease; `None` runs as the only replica.
    pub election: Option<Election>,
    /// Namespace of the Lease and the checkpoint ConfigMap (default: the client's).
    pub home_namespace: Option<String>,
    /// Where Ready rooms are published by name, if they are.
    pub dns: Option<DnsConfig>,
}

/// A zone and who holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum DnsConfig {
    Route53 { zone: String, hosted_zone_id: String },
    ExternalDns { zone: String },
}

/// Where EC2 is.
pub enum CloudSource {
    Aws {
        region: String,
        endpoint_url: Option<String>,
    },
    /// The test seam: a sandbox's simulated EC2 in another process, and the token it asks for.
    Sandbox {
        addr: SocketAddr,
        token: String,
    },
}

pub struct AdminConfig {
    pub keys: AdminKeys,
    /// Where the keys came from: read again whenever it changes.
    pub keys_file: PathBuf,
    /// Where objects created through the API live.
    pub namespace: String,
    pub limits: ApiLimits,
    /// How long TokenReview and SubjectAccessReview answers are kept, when Kubernetes tokens
    /// are accepted.
    pub identities: Option<Duration>,
    /// Whether `PUT /api/ec2/budget` may change the budget.
    pub budget_writes: bool,
}

pub struct Checkpoints {
    pub signer: Signer,
    pub configmap: String,
    pub every: Duration,
    pub archive: Option<ArchiveSettings>,
}

/// The S3 bucket checkpoints and the records they cover are copied to.
pub struct ArchiveSettings {
    pub bucket: String,
    pub prefix: String,
    /// How long each object stays locked.
    pub retention: Duration,
}

pub struct Election {
    pub lease_name: String,
    pub duration_seconds: u64,
}

impl Config {
    pub fn load(args: RunArgs) -> anyhow::Result<Self> {
        let prices = load_prices(args.price_table.as_deref())?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(crate::admin::tls::server_config(cert, key)?),
            _ => None,
        };
        if args.admin_keys.is_some()
            && tls.is_none()
            && !args.http_addr.ip().is_loopback()
            && !args.insecure_http
        {
            anyhow::bail!(
                "refusing to serve the admin API in plain HTTP on {}: admin keys and Kubernetes tokens would \
                 cross the network in the clear. Give --tls-cert and --tls-key, bind a loopback address, or \
                 say --insecure-http if a proxy in front ends TLS",
                args.http_addr
            );
        }
        let admin = match &args.admin_keys {
            Some(path) => Some(AdminConfig {
                keys: AdminKeys::load(path)?,
                keys_file: path.clone(),
                namespace: args.api_namespace.clone(),
                limits: ApiLimits {
                    max_file_bytes: args.max_upload_mib << 20,
                    key_rate: Rate {
                        per_second: args.api_rate_per_key,
                        burst: args.api_rate_per_key.saturating_mul(2),
                    },
                    address_rate: Rate {
                        per_second: args.api_rate_per_address,
                        burst: args.api_rate_per_address.saturating_mul(2),
                    },
                    ..Default::default()
                },
                identities: args.kubernetes_identities.then_some(args.identity_cache_seconds),
                budget_writes: args.api_budget_writes,
            }),
            None => None,
        };
        let checkpoints = match &args.audit_signing_key {
            Some(path) => Some(Checkpoints {
                signer: Signer::load(path)?,
                configmap: args.audit_checkpoint_configmap.clone(),
                every: args.audit_checkpoint_interval,
                archive: args.audit_archive.clone().map(|(bucket, prefix)| ArchiveSettings {
                    bucket,
                    prefix,
                    retention: Duration::from_secs(args.audit_archive_retention_days * 86_400),
                }),
            }),
            None => None,
        };
        let webhook = match (&args.webhook_url, &args.webhook_secret_file) {
            (Some(url), Some(file)) => {
                let secret = std::fs::read_to_string(file)
                    .map_err(|e| anyhow::anyhow!("reading the webhook secret {}: {e}", file.display()))?;
                anyhow::ensure!(!secret.trim().is_empty(), "the webhook secret {} is empty", file.display());
                Some(crate::notify::Webhook {
                    url: url.clone(),
                    secret: secret.trim().as_bytes().to_vec(),
                    actions: args.webhook_actions.clone(),
                    attempts: 5,
                    backoff: Duration::from_secs(1),
                })
            }
            _ => None,
        };
        let election = args
            .leader_election
            .then(|| Election { lease_name: args.lease_name.clone(), duration_seconds: args.lease_duration });
        let cloud = match (args.sandbox_cloud, &args.sandbox_cloud_token_file) {
            (Some(addr), Some(file)) => {
                let token = std::fs::read_to_string(file).map_err(|e| {
                    anyhow::anyhow!("reading the sandbox cloud token {}: {e}", file.display())
                })?;
                CloudSource::Sandbox { addr, token: token.trim().to_string() }
            }
            _ => CloudSource::Aws { region: args.region.clone(), endpoint_url: args.endpoint_url.clone() },
        };
        let seams = Seams { sandbox_cloud: args.sandbox_cloud, ..Default::default() };
        let settings = Settings {
            region: args.region,
            default_image_id: args.default_image_id,
            default_subnet_id: args.default_subnet_id,
            default_security_group_ids: args.default_security_group_ids,
            managed_security_group: args.managed_security_group.then(|| {
                crate::cloud::network::ManagedGroup {
                    subnet_id: None,
                    ports: args.managed_security_group_ports.clone(),
                    sources: args.operator_cidrs.clone(),
                }
            }),
            room_services: args.room_services,
            poll_interval: args.poll_interval,
            namespace: args.namespace,
            orphan_grace: (!args.orphan_grace.is_zero()).then_some(args.orphan_grace),
            ssh: SshSettings { port: args.ssh_port, user: args.ssh_user, ..Default::default() },
            seams,
            backoff: Backoff { base: args.retry_base, max: args.retry_max.max(args.retry_base) },
            concurrent_reconciles: Some(args.max_concurrent_reconciles),
            own_namespace: args.operator_namespace.clone(),
        };
        Ok(Config {
            settings,
            prices,
            cloud,
            audit_log: args.audit_log,
            http_addr: args.http_addr,
            tls,
            cors_origins: args.cors_origins,
            admin,
            checkpoints,
            webhook,
            election,
            home_namespace: args.lease_namespace,
            dns: dns(args.dns_provider, args.dns_zone, args.route53_hosted_zone_id)?,
        })
    }
}

/// The built-in price table with the overrides in `overrides`, if given.
pub fn load_prices(overrides: Option<&Path>) -> anyhow::Result<PriceTable> {
    let table = PriceTable::default();
    let Some(path) = overrides else {
        return Ok(table);
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let extra = PriceTable::parse(&text).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))?;
    Ok(table.with_overrides(extra))
}

/// Where rooms are published, from the three DNS flags, or which one is missing.
fn dns(
    provider: Option<args::DnsProvider>,
    zone: Option<String>,
    hosted_zone_id: Option<String>,
) -> anyhow::Result<Option<DnsConfig>> {
    use args::DnsProvider::{ExternalDns, Route53};
    Ok(match (provider, zone, hosted_zone_id) {
        (Some(ExternalDns), Some(zone), _) => Some(DnsConfig::ExternalDns { zone }),
        (Some(Route53), Some(zone), Some(hosted_zone_id)) => {
            Some(DnsConfig::Route53 { zone, hosted_zone_id })
        }
        (Some(Route53), Some(_), None) => {
            anyhow::bail!(
                "--dns-provider route53 needs --route53-hosted-zone-id: the hosted zone that holds --dns-zone"
            )
        }
        (Some(_), None, _) => {
            anyhow::bail!("--dns-provider needs --dns-zone: the zone rooms are published in")
        }
        (None, Some(_), _) => anyhow::bail!("--dns-zone needs --dns-provider (route53 or external-dns)"),
        (None, None, _) => None,
    })
}
