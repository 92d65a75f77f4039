//! `esgflow`: the local toolkit. Runs the real function binaries under the SCF emulator. This
//! file only parses the command line; each command is a module of `esgflow_local::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use esgflow_local::cli;

#[derive(Parser)]
#[command(
    name = "esgflow",
    version,
    about = "esgflow local toolkit: run the SCF functions on this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Invoke a function once with an event file, as SCF's Invoke API would
    Invoke(cli::invoke::Args),
    /// Cut a flow-log file into CLS trigger events (gzip+base64, <=128 KB each)
    Feed(cli::feed::Args),
    /// Serve the lookup function over HTTP on localhost, as API Gateway would (curl, a browser)
    Serve(cli::serve::Args),
    /// Fire Timer trigger events at a function, as SCF's timer trigger does
    Tick(cli::tick::Args),
    /// Run the sync function under the emulator: with --local, against a local stand-in of the
    /// cfw/vpc APIs that serves an export directory (samples/export by default)
    Sync(cli::sync::Args),
    /// Deploy the stack in template.yaml: check the parameters, make the snapshot bucket, the CLS
    /// topics and indexes and the CAM roles, then deploy each function with the serverless CLI
    /// (--dry-run: read only, and print what would be done)
    Deploy(cli::stack::StackArgs),
    /// Remove what `deploy` made: the functions, the execution roles and their policies; the
    /// topics (with their logs) and the snapshot bucket (with its snapshots) only when asked
    Destroy(cli::stack::DestroyArgs),
    /// Release health check: zip/binary sizes, init time (median of --runs cold starts, without
    /// and with a 10,000-rule snapshot), audit peak RSS on max-size events
    Measure(cli::measure::Args),
    /// Build or inspect rule snapshots
    Snapshot {
        #[command(subcommand)]
        command: cli::snapshot::Command,
    },
    /// Explain offline which ESG rule decides a flow, and why
    Explain(cli::explain::Args),
    /// What a proposed rule change would do to the traffic the local records store holds
    Whatif(cli::whatif::Args),
    /// Write a synthetic rule snapshot and matching flow-log lines (benchmarks, measurements)
    Synthetic(cli::synthetic::Args),
    /// Write one deployment zip per function (bootstrap, mode 0755, at the zip root)
    Package(cli::package::Args),
    /// Replay a flow-log file through the audit function, cut into CLS events as CLS cuts them
    Replay(cli::replay::Args),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::Invoke(args) => cli::invoke::run(args).await,
        Command::Feed(args) => cli::feed::run(args),
        Command::Serve(args) => cli::serve::run(args).await,
        Command::Tick(args) => cli::tick::run(args).await,
        Command::Sync(args) => cli::sync::run(args).await,
        Command::Deploy(stack) => cli::stack::deploy(stack).await,
        Command::Destroy(args) => cli::stack::destroy(args).await,
        Command::Measure(args) => cli::measure::run(args).await,
        Command::Snapshot { command } => cli::snapshot::run(command),
        Command::Explain(args) => cli::explain::run(args),
        Command::Whatif(args) => cli::whatif::run(args),
        Command::Synthetic(args) => cli::synthetic::run(args),
        Command::Package(args) => cli::package::run(args),
        Command::Replay(args) => cli::replay::run(args).await,
    };
    outcome.unwrap_or_else(|err| {
        eprintln!("esgflow: {err}");
        ExitCode::FAILURE
    })
}
