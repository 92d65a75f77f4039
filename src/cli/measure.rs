//! `esgflow measure`: the release health check (sizes, init time, peak memory).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::Outcome;

/// `esgflow measure` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Directory holding the release esgflow-<function> binaries
    #[arg(long)]
    pub bin_dir: PathBuf,
    /// Directory holding glibc builds of esgflow-audit and esgflow-lookup, measured beside the
    /// shipped ones (`make measure` builds them)
    #[arg(long)]
    pub glibc_dir: Option<PathBuf>,
    /// Directory holding <function>.zip
    #[arg(long, default_value = "dist")]
    pub dist: PathBuf,
    /// Cold starts per median
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Measure one function only (audit, lookup or sync)
    #[arg(long)]
    pub only: Option<String>,
}

/// Measures, prints the table, and fails when a target is missed.
pub async fn run(args: Args) -> Outcome {
    use crate::release::measure;
    let before = measure::Machine::now();
    let rows = measure::measure(
        &args.bin_dir,
        args.glibc_dir.as_deref(),
        &args.dist,
        Path::new("out/measure"),
        args.runs,
        args.only.as_deref(),
    )
    .await?;
    let after = measure::Machine::now();
    let (table, ok) = measure::report(&rows);
    print!("{table}");
    println!("\n{}", measure::Machine::describe(&before, &after));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
