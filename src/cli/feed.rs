//! `esgflow feed`: a flow-log file cut into CLS trigger events, written as files.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{cut_file, FeedArgs, Outcome};

/// `esgflow feed` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Flow-log file, one 14-field record per line
    pub flowlog: PathBuf,
    /// Directory to write event-0001.json, ... into
    #[arg(long)]
    pub out_dir: PathBuf,
    #[command(flatten)]
    feed: FeedArgs,
}

/// Writes one file per event.
pub fn run(args: Args) -> Outcome {
    let events = cut_file(&args.flowlog, &args.feed.options())?;
    std::fs::create_dir_all(&args.out_dir)?;
    for (i, event) in events.iter().enumerate() {
        std::fs::write(args.out_dir.join(format!("event-{:04}.json", i + 1)), event)?;
    }
    eprintln!(
        "wrote {} CLS events to {}",
        events.len(),
        args.out_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
