//! `esgflow synthetic`: a synthetic rule snapshot and matching flow-log lines.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Outcome;

/// `esgflow synthetic` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Number of rules
    #[arg(long, default_value_t = 1000)]
    pub rules: usize,
    /// Number of flow-log lines
    #[arg(long, default_value_t = 5000)]
    pub flows: usize,
    /// Snapshot file to write
    #[arg(long)]
    pub snapshot: PathBuf,
    /// Flow-log file to write
    #[arg(long)]
    pub flowlog: PathBuf,
}

/// Writes both files.
pub fn run(args: Args) -> Outcome {
    crate::testdata::synthetic::snapshot(args.rules, 64, 42).save(&args.snapshot)?;
    let lines = crate::release::measure::synthetic_lines(args.flows);
    std::fs::write(&args.flowlog, lines.join("\n") + "\n")?;
    eprintln!(
        "wrote {} ({} rules) and {} ({} lines)",
        args.snapshot.display(),
        args.rules,
        args.flowlog.display(),
        args.flows
    );
    Ok(ExitCode::SUCCESS)
}
