//! `esgflow invoke`: one invocation of a function with an event file, as SCF's Invoke API would.

use std::path::PathBuf;

use super::{exit_code, print_result, Outcome, RunArgs};
use crate::emulator::{functions, Emulator};

/// `esgflow invoke` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// audit, lookup or sync
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(functions::FUNCTIONS))]
    pub function: String,
    /// The event JSON
    #[arg(long)]
    pub event: PathBuf,
    #[command(flatten)]
    run: RunArgs,
}

/// Invokes the function once and prints the response or the error.
pub async fn run(args: Args) -> Outcome {
    let body =
        std::fs::read(&args.event).map_err(|e| format!("reading {}: {e}", args.event.display()))?;
    let mut emulator = Emulator::new(args.run.spec(&args.function)).await?;
    let invocation = emulator.invoke(body).await?;
    print_result(&invocation.result);
    Ok(exit_code(usize::from(!invocation.result.is_response())))
}
