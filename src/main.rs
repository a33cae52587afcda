use std::process::ExitCode;

use clap::Parser;
mod cli;

use cli::{AuditCommand, Cli, Command};
use dataroom_operator::{runner, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The AWS SDK and kube each enable a rustls crypto backend; with two, rustls cannot pick one
    // for clients that do not name theirs, so the process names it once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    telemetry::init(cli.log_json);
    let result = match cli.command {
        Command::Run(args) => runner::run(*args).await,
        Command::Sandbox(args) => dataroom_sandbox::run(args).await,
        Command::Crdgen => {
            print!("{}", dataroom_operator::crd::crds_yaml());
            Ok(())
        }
        Command::Openapi => {
            println!("{}", dataroom_operator::admin::openapi::document());
            Ok(())
        }
        Command::AdminKey { name, scopes, namespaces, expires } => {
            let options: Vec<String> = [("scopes", scopes), ("namespaces", namespaces), ("expires", expires)]
                .into_iter()
                .filter_map(|(option, value)| value.map(|v| format!("{option}={v}")))
                .collect();
            dataroom_operator::admin::auth::AdminKeys::generate(&name, &options.join(" "))
                .map(|(key, line)| {
                    eprintln!("key (give it to its holder; it is not stored anywhere):");
                    println!("{key}");
                    eprintln!("line for the admin keys file (--admin-keys):");
                    print!("{line}");
                })
                .map_err(|why| anyhow::anyhow!("{}", why.trim_start_matches("line 1: ")))
        }
        Command::IamPolicy(args) => {
            let scope = dataroom_operator::cloud::iam::Scope {
                partition: args.partition,
                region: args.region,
                account: args.account,
                buckets: args.s3_buckets,
                audit_bucket: args.audit_bucket,
                route53_zone: args.route53_zone,
            };
            let policy = dataroom_operator::cloud::iam::policy(&scope);
            println!("{}", serde_json::to_string_pretty(&policy).expect("JSON"));
            Ok(())
        }
        Command::Audit { command: AuditCommand::Verify { file, checkpoint, archive, public_key, state } } => {
            let (file, state) = (file.as_deref(), state.as_deref());
            return match (archive, public_key) {
                (Some((bucket, prefix)), Some(key)) => {
                    dataroom_operator::audit::verify_s3_archive(&bucket, &prefix, &key, file, state).await
                }
                (_, public_key) => {
                    let checkpoint = checkpoint.as_deref().zip(public_key.as_deref());
                    dataroom_operator::audit::verify(file.expect("clap requires a file"), checkpoint, state)
                }
            };
        }
        Command::Audit { command: AuditCommand::Keygen } => {
            let signer = dataroom_operator::audit::checkpoint::Signer::generate();
            print!("{}", signer.pem());
            eprintln!("public key (for audit verify --public-key): {}", signer.public_key());
            Ok(())
        }
        Command::Audit { command: AuditCommand::PublicKey { signing_key } } => {
            dataroom_operator::audit::checkpoint::Signer::load(&signing_key)
                .map(|s| println!("{}", s.public_key()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
