//! `esgflow tick`: Timer trigger events fired at a function, as SCF's timer trigger does.

use super::{exit_code, fire_timers, Outcome, RunArgs};
use crate::emulator::{functions, Emulator};

/// `esgflow tick` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// The function to fire (usually sync)
    #[arg(default_value = "sync", value_parser = clap::builder::PossibleValuesParser::new(functions::FUNCTIONS))]
    pub function: String,
    /// How many events to fire
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Milliseconds between events
    #[arg(long, default_value_t = 0)]
    pub every_ms: u64,
    /// The trigger's user message
    #[arg(long, default_value = "")]
    pub message: String,
    #[command(flatten)]
    run: RunArgs,
}

/// Fires the events; fails when any invocation did.
pub async fn run(args: Args) -> Outcome {
    let mut emulator = Emulator::new(args.run.spec(&args.function)).await?;
    let failed = fire_timers(
        &mut emulator,
        "esgflow-local",
        &args.message,
        args.count,
        args.every_ms,
    )
    .await?;
    Ok(exit_code(failed))
}
