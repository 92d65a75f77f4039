//! `esgflow snapshot build|show`: a snapshot built from tccli exports, or summarised.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{explain, Outcome};
use esgflow::core::engine::Engine;
use esgflow::core::snapshot::Snapshot;

/// `esgflow snapshot` subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Build a snapshot from API responses exported with tccli (one JSON file per call or page)
    Build {
        /// Directory of exported JSON files
        #[arg(long)]
        from: PathBuf,
        /// Snapshot file to write
        #[arg(long)]
        out: PathBuf,
        /// taken_at to record [default: now]
        #[arg(long)]
        taken_at: Option<String>,
    },
    /// Summarise a snapshot: version, counts, unresolvable rules, warnings
    Show {
        /// Snapshot file
        path: PathBuf,
    },
}

/// Builds or shows.
pub fn run(command: Command) -> Outcome {
    match command {
        Command::Build {
            from,
            out,
            taken_at,
        } => {
            let taken_at = taken_at
                .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
            let snapshot = esgflow::core::snapshot::build_from_dir(&from, &taken_at)?;
            // Compile before writing, so a snapshot the functions could not load is never written.
            Engine::compile(&snapshot)?;
            snapshot.save(&out)?;
            eprintln!(
                "wrote {} ({} rules, version {}, {} warnings)",
                out.display(),
                snapshot.rules.len(),
                snapshot.version,
                snapshot.warnings.len()
            );
            for warning in &snapshot.warnings {
                eprintln!("warning: {warning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { path } => {
            let engine = explain::load_engine(&path)?;
            let snapshot = Snapshot::load(&path)?;
            print!("{}", explain::summary(&snapshot, &engine));
            Ok(ExitCode::SUCCESS)
        }
    }
}
