//! `esgflow package`: one deployment zip per function.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Outcome;
use crate::emulator::functions;
use crate::release::package;

/// `esgflow package` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Directory holding the esgflow-<function> release binaries
    #[arg(long)]
    pub bin_dir: PathBuf,
    /// Where the zips go
    #[arg(long, default_value = "dist")]
    pub out_dir: PathBuf,
}

/// Writes the zips and prints what each holds.
pub fn run(args: Args) -> Outcome {
    for function in functions::FUNCTIONS {
        let zip = package::package(
            &functions::binary_path(&args.bin_dir, function),
            function,
            &args.out_dir,
        )?;
        let info = package::inspect(&zip)?;
        println!(
            "{}: {} bytes zipped, bootstrap {} bytes, mode {:o}, {}",
            zip.display(),
            info.zip_size,
            info.bootstrap_size,
            info.bootstrap_mode.unwrap_or(0),
            if info.is_static_elf {
                "static"
            } else {
                "DYNAMIC (needs a loader)"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
