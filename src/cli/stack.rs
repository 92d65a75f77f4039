//! `esgflow deploy` and `esgflow destroy`: the stack in template.yaml made, updated or removed.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Outcome;
use crate::release::apply::{self, Removal, Stopped};

/// What `deploy` and `destroy` share.
#[derive(clap::Args)]
pub struct StackArgs {
    /// The stack description
    #[arg(long, default_value = "template.yaml")]
    pub template: PathBuf,
    /// Where the generated serverless.yml files go
    #[arg(long, default_value = "dist/deploy")]
    pub out: PathBuf,
    /// Read only, and print what would be done
    #[arg(long)]
    pub dry_run: bool,
    /// The serverless CLI (`scf` of serverless-cloud-framework, installed by `make setup-deploy`)
    #[arg(long, default_value = "deploy/node_modules/.bin/scf")]
    pub cli: PathBuf,
    /// Seconds one run of the serverless CLI (one function) may take before it is stopped
    #[arg(long, default_value_t = 1800)]
    pub cli_timeout: u64,
}

impl StackArgs {
    /// The options; `ESGFLOW_DEPLOY_ENDPOINT` sends the API and COS requests to a stand-in.
    fn options(self) -> apply::Options {
        apply::Options {
            template: self.template,
            out: self.out,
            dry_run: self.dry_run,
            cli: self.cli,
            cli_timeout: std::time::Duration::from_secs(self.cli_timeout),
            endpoint: std::env::var("ESGFLOW_DEPLOY_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty()),
        }
    }
}

/// `esgflow destroy` arguments.
#[derive(clap::Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Also delete the hits and traffic topics deploy created, and their logs
    #[arg(long)]
    pub delete_logs: bool,
    /// Also empty and delete the snapshot bucket
    #[arg(long)]
    pub delete_snapshots: bool,
}

/// Deploys the stack.
pub async fn deploy(stack: StackArgs) -> Outcome {
    let env = |name: &str| std::env::var(name).ok();
    stopped_code(apply::deploy(&stack.options(), &env).await)
}

/// Removes the stack.
pub async fn destroy(args: DestroyArgs) -> Outcome {
    let removal = Removal {
        delete_logs: args.delete_logs,
        delete_snapshots: args.delete_snapshots,
    };
    let env = |name: &str| std::env::var(name).ok();
    stopped_code(apply::destroy(&args.stack.options(), removal, &env).await)
}

/// Exit 0, or the stop's message and 2 (nothing changed) or 1 (failed part way).
fn stopped_code(outcome: Result<(), Stopped>) -> Outcome {
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(stopped) => {
            eprint!("{stopped}");
            Ok(match stopped {
                Stopped::Refused(_) => ExitCode::from(2),
                Stopped::Failed(_) => ExitCode::FAILURE,
            })
        }
    }
}
