use std::process::ExitCode;

use clap::Parser;
use dataroom_operator::cli::{AuditCommand, Cli, Command};
use dataroom_operator::{runner, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_json);
    let result = match cli.command {
        Command::Run(args) => runner::run(*args).await,
        Command::Sandbox(args) => dataroom_operator::sandbox::run(args).await,
        Command::Crdgen => {
            print!("{}", dataroom_operator::crd::crds_yaml());
            Ok(())
        }
        Command::Openapi => {
            println!("{}", dataroom_operator::admin::openapi::document());
            Ok(())
        }
        Command::AdminKey { name } => {
            let (key, line) = dataroom_operator::admin::auth::AdminKeys::generate(&name);
            eprintln!("key (give it to its holder; it is not stored anywhere):");
            println!("{key}");
            eprintln!("line for the admin keys file (--admin-keys):");
            print!("{line}");
            Ok(())
        }
        Command::Audit { command: AuditCommand::Verify { file } } => return runner::verify(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
