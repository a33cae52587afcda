//! The command line of `run`: clap refuses a bad value before anything starts; `Config::load`
//! turns what it took into validated settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// AWS region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// AWS endpoint override (moto, LocalStack, a VPC endpoint).
    #[arg(long, env = "DATAROOM_AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// Test aid: use the simulated EC2 of a `sandbox --external-operator` at this address instead
    /// of AWS (to measure the operator apart from the sandbox).
    #[arg(long, hide = true, requires = "sandbox_cloud_token_file")]
    pub sandbox_cloud: Option<std::net::SocketAddr>,
    /// The token file that sandbox wrote (`<state dir>/cloud-token`), for `--sandbox-cloud`.
    #[arg(long, hide = true)]
    pub sandbox_cloud_token_file: Option<std::path::PathBuf>,
    /// AMI for Ec2Instances that do not name one.
    #[arg(long, env = "DATAROOM_DEFAULT_IMAGE_ID", value_parser = parse_image_id)]
    pub default_image_id: Option<String>,
    /// Subnet for Ec2Instances that do not name one.
    #[arg(long, env = "DATAROOM_DEFAULT_SUBNET_ID")]
    pub default_subnet_id: Option<String>,
    /// Security groups (comma-separated) for Ec2Instances that do not name any.
    #[arg(long, env = "DATAROOM_DEFAULT_SECURITY_GROUP_IDS", value_delimiter = ',')]
    pub default_security_group_ids: Vec<String>,
    /// Manage one security group per VPC for Ec2Instances that name none: it allows only
    /// --managed-security-group-ports over TCP, only from --operator-cidr. Named groups that open
    /// port 22 to the internet are refused either way.
    #[arg(long, env = "DATAROOM_MANAGED_SECURITY_GROUP")]
    pub managed_security_group: bool,
    /// Give each Ready DataRoom a Service of its name without a selector, and an EndpointSlice
    /// pointing it at the room's instance, so that in-cluster clients reach NAME.NAMESPACE.svc.
    #[arg(long, env = "DATAROOM_ROOM_SERVICES")]
    pub room_services: bool,
    /// Where Ready DataRooms are published by name: `route53`, an A record per room in the hosted
    /// zone --route53-hosted-zone-id; `external-dns`, a DNSEndpoint per room in the operator's
    /// namespace for ExternalDNS's CRD source (`--source=crd`). Needs --dns-zone.
    #[arg(long, env = "DATAROOM_DNS_PROVIDER", value_enum)]
    pub dns_provider: Option<DnsProvider>,
    /// The zone rooms are published in (`rooms.example.com`): as NAME.NAMESPACE.ZONE, or as
    /// HOSTNAME.ZONE when the room sets spec.dns.hostname.
    #[arg(long, env = "DATAROOM_DNS_ZONE", value_parser = dns_zone)]
    pub dns_zone: Option<String>,
    /// The Route53 hosted zone (its ID, `Z…`) that holds --dns-zone, for `--dns-provider route53`.
    #[arg(long, env = "DATAROOM_ROUTE53_HOSTED_ZONE_ID")]
    pub route53_hosted_zone_id: Option<String>,
    /// TCP ports the managed group opens: SSH and the rooms' health port.
    #[arg(
        long,
        env = "DATAROOM_MANAGED_SECURITY_GROUP_PORTS",
        value_delimiter = ',',
        default_value = "22,8000"
    )]
    pub managed_security_group_ports: Vec<u16>,
    /// Where the operator connects to instances from (repeatable CIDRs); the managed group admits
    /// only these. Default: the VPC's own ranges.
    #[arg(long = "operator-cidr", env = "DATAROOM_OPERATOR_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub operator_cidrs: Vec<String>,
    /// Audit log file (JSON Lines, append-only).
    #[arg(long, env = "DATAROOM_AUDIT_LOG", default_value = "/var/lib/dataroom-operator/audit.jsonl")]
    pub audit_log: PathBuf,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "DATAROOM_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Seconds between full EC2 sweeps.
    #[arg(long, env = "DATAROOM_POLL_INTERVAL", default_value = "15", value_parser = parse_seconds)]
    pub poll_interval: Duration,
    /// Seconds before a failed reconcile is retried; the wait doubles with each consecutive failure.
    #[arg(long, env = "DATAROOM_RETRY_BASE", default_value = "5", value_parser = parse_seconds)]
    pub retry_base: Duration,
    /// Longest wait between retries of a failing object, in seconds.
    #[arg(long, env = "DATAROOM_RETRY_MAX", default_value = "300", value_parser = parse_seconds)]
    pub retry_max: Duration,
    /// Reconciles of one kind (Ec2Instance, DataRoom) that run at once (1–1000). Each holds at
    /// most one EC2 call or SSH session; more spends memory and EC2's request rate faster.
    #[arg(long, env = "DATAROOM_MAX_CONCURRENT_RECONCILES", default_value = "32",
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_concurrent_reconciles: u16,
    /// YAML price overrides: `{region: {instance-type: usd-per-hour}}`.
    #[arg(long, env = "DATAROOM_PRICE_TABLE")]
    pub price_table: Option<PathBuf>,
    /// Watch only this namespace (all namespaces when absent).
    #[arg(long, env = "DATAROOM_NAMESPACE")]
    pub namespace: Option<String>,
    /// File of admin keys (`NAME sha256:HEX` lines, from `admin-key`); without it there is no
    /// admin API, only /healthz, /readyz and /metrics.
    #[arg(long, env = "DATAROOM_ADMIN_KEYS")]
    pub admin_keys: Option<PathBuf>,
    /// Port of the instances' sshd.
    #[arg(long, env = "DATAROOM_SSH_PORT", default_value_t = 22)]
    pub ssh_port: u16,
    /// User the admin API logs in as on instances.
    #[arg(long, env = "DATAROOM_SSH_USER", default_value = "ec2-user")]
    pub ssh_user: String,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "DATAROOM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "DATAROOM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve the admin API in plain HTTP on an address other than loopback: keys and tokens then
    /// cross the network in the clear. Only behind a proxy that ends TLS for the operator.
    #[arg(long, env = "DATAROOM_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// Let `PUT /api/ec2/budget` change the Ec2Budget (the chart turns this off unless
    /// budget.writableThroughApi); off, the route answers 403 budget_read_only.
    #[arg(long, env = "DATAROOM_API_BUDGET_WRITES", default_value_t = true, action = clap::ArgAction::Set)]
    pub api_budget_writes: bool,
    /// A browser origin allowed to call the admin API (repeatable; none by default).
    #[arg(long = "cors-origin", env = "DATAROOM_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Largest file the admin API accepts in one upload, in MiB.
    #[arg(long, env = "DATAROOM_MAX_UPLOAD_MIB", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=102400))]
    pub max_upload_mib: u64,
    /// Admin API requests a second per key (bursts of twice that); over it is 429 with Retry-After.
    #[arg(long, env = "DATAROOM_API_RATE_PER_KEY", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub api_rate_per_key: u32,
    /// Admin API requests a second per source address, with a key or without (bursts of twice that).
    #[arg(long, env = "DATAROOM_API_RATE_PER_ADDRESS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub api_rate_per_address: u32,
    /// Accept Kubernetes bearer tokens on /api besides admin keys: TokenReview says who a token
    /// is and SubjectAccessReview what it may do (the operator needs `create` on both).
    #[arg(long, env = "DATAROOM_KUBERNETES_IDENTITIES", default_value_t = true, action = clap::ArgAction::Set)]
    pub kubernetes_identities: bool,
    /// Seconds a TokenReview or SubjectAccessReview answer is kept: a revoked binding or a deleted
    /// ServiceAccount stops working within it.
    #[arg(long, env = "DATAROOM_IDENTITY_CACHE_SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub identity_cache_seconds: Duration,
    /// POST a signed JSON notification of chosen audit actions to this URL (http or https).
    #[arg(long, env = "DATAROOM_WEBHOOK_URL", requires = "webhook_secret_file")]
    pub webhook_url: Option<http::Uri>,
    /// File holding the webhook's HMAC-SHA256 secret (the receiver checks `X-Dataroom-Signature`).
    #[arg(long, env = "DATAROOM_WEBHOOK_SECRET_FILE", requires = "webhook_url")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Audit actions notified, by name or prefix (`api.instance.*`), comma-separated.
    #[arg(
        long,
        env = "DATAROOM_WEBHOOK_ACTIONS",
        value_delimiter = ',',
        default_value = "launch,api.instance.exec,api.instance.exec_batch,api.instance.upload,api.instance.download,console.sign_in"
    )]
    pub webhook_actions: Vec<String>,
    /// Ed25519 key (PKCS#8 PEM) that signs audit checkpoints; without it no checkpoints are kept.
    #[arg(long, env = "DATAROOM_AUDIT_SIGNING_KEY")]
    pub audit_signing_key: Option<PathBuf>,
    /// ConfigMap (in the lease namespace) that holds the latest signed checkpoint.
    #[arg(
        long,
        env = "DATAROOM_AUDIT_CHECKPOINT_CONFIGMAP",
        default_value = "dataroom-operator-audit-checkpoint"
    )]
    pub audit_checkpoint_configmap: String,
    /// Seconds between checkpoints (taken whether or not the log grew, so that a quiet interval
    /// is provably quiet).
    #[arg(long, env = "DATAROOM_AUDIT_CHECKPOINT_INTERVAL", default_value = "60", value_parser = parse_seconds)]
    pub audit_checkpoint_interval: Duration,
    /// Copy each checkpoint, and the records it covers, to this S3 bucket and prefix
    /// (`s3://bucket/prefix`), locked in compliance mode: the bucket must have Object Lock on. A
    /// checkpoint reaches the ConfigMap only once it is archived.
    #[arg(long, env = "DATAROOM_AUDIT_ARCHIVE", requires = "audit_signing_key", value_parser = parse_archive)]
    pub audit_archive: Option<(String, String)>,
    /// Days each archived object stays locked (no one can change or delete it before then).
    #[arg(long, env = "DATAROOM_AUDIT_ARCHIVE_RETENTION_DAYS", default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36500))]
    pub audit_archive_retention_days: u64,
    /// Seconds a managed instance whose Ec2Instance is gone may live before it is terminated
    /// (audited as gc.terminate); 0 turns this off. Keep one operator per AWS account and region,
    /// or give each its own namespace scope (--namespace): orphans are judged by this operator's
    /// view only.
    #[arg(long, env = "DATAROOM_ORPHAN_GRACE", default_value = "300", value_parser = parse_grace)]
    pub orphan_grace: Duration,
    /// Elect a leader through a Lease, so that several replicas are safe: only the leader works.
    #[arg(long, env = "DATAROOM_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "DATAROOM_LEASE_NAME", default_value = "dataroom-operator")]
    pub lease_name: String,
    /// Namespace of the Lease and the checkpoint ConfigMap (default: the client's namespace, in a pod its own).
    #[arg(long, env = "DATAROOM_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// The operator's own namespace (the chart sets its release namespace): DataRooms and
    /// Ec2Instances there are never reconciled, as it holds the operator's keys and credentials.
    #[arg(long, env = "DATAROOM_OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,
    /// Seconds a leader keeps the lease without renewing it: how long a standby waits after a crash.
    #[arg(long, env = "DATAROOM_LEASE_DURATION", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_duration: u64,
    /// Namespace of the Ec2Instances the admin API creates.
    #[arg(long, env = "DATAROOM_API_NAMESPACE", default_value = "default")]
    pub api_namespace: String,
}

fn parse_image_id(s: &str) -> Result<String, String> {
    let ok = crate::crd::is_image_id(s);
    if ok { Ok(s.to_string()) } else { Err("expected an AMI id like ami-0123456789abcdef0".into()) }
}

fn parse_archive(url: &str) -> Result<(String, String), String> {
    crate::audit::archive::parse_s3_url(url)
}

/// An IPv4 or IPv6 range narrower than the whole internet.
fn parse_cidr(s: &str) -> Result<String, String> {
    let (address, prefix) = s.split_once('/').ok_or("expected a CIDR such as 10.0.0.0/16")?;
    let address: std::net::IpAddr = address.parse().map_err(|_| format!("{address} is not an IP address"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(0) => Err("a /0 range is the whole internet: name the operator's own range".into()),
        Ok(n) if n <= max => Ok(s.to_string()),
        _ => Err(format!("the prefix length must be 1 to {max}")),
    }
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(n) if n <= 86_400 => Ok(Duration::from_secs(n)),
        _ => Err("expected whole seconds between 0 (off) and 86400".into()),
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=3600).contains(&n) => Ok(Duration::from_secs(n)),
        _ => Err("expected whole seconds between 1 and 3600".into()),
    }
}

/// How rooms are published in DNS.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsProvider {
    /// An A record per room in a Route53 hosted zone.
    Route53,
    /// A `DNSEndpoint` object per room, which ExternalDNS publishes.
    ExternalDns,
}

/// A DNS zone: lower-case labels of letters, digits and inner hyphens, dot-separated.
fn dns_zone(text: &str) -> Result<String, String> {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let zone = text.trim_end_matches('.');
    match zone.len() <= 200 && zone.split('.').all(label) {
        true => Ok(zone.to_string()),
        false => Err(format!("{text:?} is not a DNS zone (lower-case labels such as rooms.example.com)")),
    }
}
