//! `esgflow sync`: the sync function under the emulator; with `--local`, against the local
//! stand-in of the cfw/vpc APIs and COS serving an export directory.

use std::path::PathBuf;
use std::time::Duration;

use super::{exit_code, fire_timers, Outcome, RunArgs};
use crate::emulator::Emulator;
use crate::standins::cloud::{load_exports, CloudStub};

/// `esgflow sync` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Serve the cfw/vpc APIs locally from --exports instead of calling Tencent Cloud
    #[arg(long)]
    pub local: bool,
    /// Export directory the local stand-in serves
    #[arg(long, default_value = "samples/export")]
    pub exports: PathBuf,
    /// Where snapshots are published (ESGFLOW_SNAPSHOT)
    #[arg(long, default_value = "dir://out/snapshots")]
    pub store: String,
    /// JSONL file for rule_change and rule_hygiene records (when no CLS topic is set)
    #[arg(long, default_value = "out/sync-records.jsonl")]
    pub records: PathBuf,
    /// How many runs (timer ticks)
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    #[command(flatten)]
    run: RunArgs,
}

/// Runs sync `runs` times; fails when a run failed or the stand-in saw a bad request.
pub async fn run(args: Args) -> Outcome {
    let mut run = args.run.with_default_timeout(Duration::from_secs(60));
    let stub = if args.local {
        let stub = CloudStub::start(load_exports(&args.exports)?).await?;
        eprintln!(
            "local cfw/vpc/COS stand-in at {} serving {}",
            stub.url,
            args.exports.display()
        );
        run.env.extend(stub.env());
        Some(stub)
    } else {
        None
    };
    if let Some(parent) = args.records.parent() {
        std::fs::create_dir_all(parent)?;
    }
    run.env.push(("ESGFLOW_SNAPSHOT".into(), args.store));
    run.env.push((
        "ESGFLOW_JSONL_PATH".into(),
        args.records.display().to_string(),
    ));
    let mut emulator = Emulator::new(run.spec("sync")).await?;
    let mut failed = fire_timers(&mut emulator, "esgflow-sync-local", "", args.runs, 0).await?;
    if let Some(stub) = &stub {
        for problem in stub.problems() {
            eprintln!("stand-in saw a problem: {problem}");
            failed += 1;
        }
    }
    eprintln!("records: {}", args.records.display());
    Ok(exit_code(failed))
}
