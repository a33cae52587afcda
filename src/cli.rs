//! Command line: `run`, `sandbox`, `crdgen`, `openapi`, `admin-key NAME`, `iam-policy`, `audit verify FILE`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dataroom-operator",
    version,
    about = "EC2 instances and data rooms from Kubernetes resources, behind a budget gate and a hash-chained audit log"
)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "DATAROOM_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller against the cluster in the current kubeconfig (or in-cluster config).
    Run(Box<dataroom_operator::config::RunArgs>),
    /// Run the whole system on this machine: a Kubernetes API emulator, simulated EC2, the controller.
    Sandbox(dataroom_sandbox::SandboxArgs),
    /// Print every CRD as YAML (what is committed under crds/).
    Crdgen,
    /// Print the admin API's OpenAPI document (JSON).
    Openapi,
    /// Make a new admin key: prints the key (give it to its holder) and the line for the keys file.
    AdminKey {
        /// The key's name, shown in audit records (e.g. `alice` or `ci-2026-11`).
        #[arg(value_parser = parse_key_name)]
        name: String,
        /// What the key may do: read, lifecycle, exec, files, images, keypairs, budget, audit, or
        /// all (the default), comma-separated.
        #[arg(long)]
        scopes: Option<String>,
        /// The only namespaces whose objects the key reaches, comma-separated (default: all).
        #[arg(long)]
        namespaces: Option<String>,
        /// When the key stops working (RFC 3339, e.g. 2027-01-31T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Print the least-privilege IAM policy (JSON) for the operator's AWS role.
    IamPolicy(IamPolicyArgs),
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of an audit log, or of its archive; exits 1 and names every break
    /// when it is not intact, 2 when something cannot be read.
    #[command(group = clap::ArgGroup::new("against").args(["checkpoint", "archive"]))]
    Verify {
        /// The log; with --archive, optional: it must then still hold what was archived.
        #[arg(required_unless_present = "archive")]
        file: Option<PathBuf>,
        /// A signed checkpoint (the `checkpoint.json` of the operator's checkpoint ConfigMap): the
        /// log must still hold the record it covers, unchanged.
        #[arg(long, requires = "public_key")]
        checkpoint: Option<PathBuf>,
        /// The audit archive (`s3://bucket/prefix`, as given to `run --audit-archive`): reads the
        /// whole chain of checkpoints and every record back from there. AWS credentials, region
        /// and endpoint come the standard way (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, …).
        #[arg(long, requires = "public_key", value_parser = parse_archive)]
        archive: Option<(String, String)>,
        /// The signing key's public half (base64, from `audit keygen` or `audit public-key`).
        #[arg(long, requires = "against")]
        public_key: Option<String>,
        /// Where this verifier remembers the highest checkpoint it has accepted (created if
        /// absent): an older checkpoint put back, or one that does not follow it, is refused.
        #[arg(long, requires = "against")]
        state: Option<PathBuf>,
    },
    /// Make a checkpoint signing key: the PKCS#8 PEM private key on stdout (put it in a Secret),
    /// its public key on stderr (keep it where the log's verifiers can trust it).
    Keygen,
    /// Print the public key of a signing key file.
    PublicKey { signing_key: PathBuf },
}

#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    /// AWS partition.
    #[arg(long, default_value = "aws", value_parser = ["aws", "aws-cn", "aws-us-gov"])]
    pub partition: String,
    /// Region the operator works in (`*` for any).
    #[arg(long, default_value = "*")]
    pub region: String,
    /// Account ID (`*` for any).
    #[arg(long, default_value = "*", value_parser = parse_account)]
    pub account: String,
    /// A bucket the admin API may read `s3://` file sources from (repeatable; none: no S3 access).
    #[arg(long = "s3-bucket")]
    pub s3_buckets: Vec<String>,
    /// The bucket of the audit archive (`run --audit-archive s3://BUCKET/…`): the operator may put
    /// locked objects there and read them back, never delete them or shorten their lock.
    #[arg(long)]
    pub audit_bucket: Option<String>,
    /// The Route53 hosted zone rooms are published in (`run --dns-provider route53`): the
    /// operator may change and list its records, and no other zone's.
    #[arg(long)]
    pub route53_zone: Option<String>,
}

fn parse_account(s: &str) -> Result<String, String> {
    let ok = s == "*" || (s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()));
    if ok { Ok(s.to_string()) } else { Err("expected a 12-digit account ID or *".into()) }
}

fn parse_key_name(s: &str) -> Result<String, String> {
    let ok =
        (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok { Ok(s.to_string()) } else { Err("letters, digits and - _ . @ only, at most 64".into()) }
}

fn parse_archive(url: &str) -> Result<(String, String), String> {
    dataroom_operator::audit::archive::parse_s3_url(url)
}
