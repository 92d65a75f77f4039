//! `esgflow replay`: a flow-log file cut into CLS events as CLS cuts them and replayed through
//! the real audit function, with a report of the records, the local records store filled, and
//! the alerts a local receiver got.

use std::path::{Path, PathBuf};

use super::{absolute, cut_file, exit_code, print_result, FeedArgs, Outcome, RunArgs};
use crate::emulator::Emulator;
use crate::standins::alerts::AlertReceiver;

/// `esgflow replay` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Flow-log file, one 14-field record per line
    pub flowlog: PathBuf,
    /// Rule snapshot for the audit function (sets ESGFLOW_SNAPSHOT)
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Write records to this JSONL file (replaced; sets ESGFLOW_JSONL_PATH) and print a report of them
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Also load the records into this SQLite database (replaced), which `esgflow serve
    /// --store` searches
    #[arg(long, requires = "records")]
    pub store: Option<PathBuf>,
    /// Print each invocation's full JSON summary
    #[arg(long)]
    pub json: bool,
    /// Print the function's peak resident memory (VmHWM) after each invocation
    #[arg(long)]
    pub rss: bool,
    /// Start a local alert receiver (WeCom, DingTalk, Feishu, webhook; signatures verified),
    /// point the function's alert channels at it, and print what it received
    #[arg(long)]
    pub alerts: bool,
    #[command(flatten)]
    feed: FeedArgs,
    #[command(flatten)]
    run: RunArgs,
}

/// Replays every event; fails when any invocation did.
pub async fn run(args: Args) -> Outcome {
    let events = cut_file(&args.flowlog, &args.feed.options())?;
    let mut spec = args.run.spec("audit");
    if let Some(snapshot) = &args.snapshot {
        spec.env
            .push(("ESGFLOW_SNAPSHOT".into(), absolute(snapshot)?));
    }
    if let Some(records) = &args.records {
        if records.exists() {
            std::fs::remove_file(records)?;
        }
        spec.env
            .push(("ESGFLOW_JSONL_PATH".into(), absolute(records)?));
    }
    let receiver = match args.alerts {
        true => Some(AlertReceiver::start().await?),
        false => None,
    };
    if let Some(receiver) = &receiver {
        spec.env.extend(receiver.settings());
    }
    let mut emulator = Emulator::new(spec).await?;
    let mut failed = 0;
    let count = events.len();
    println!(
        "replaying {} as {count} CLS events through the audit function",
        args.flowlog.display()
    );
    for (i, event) in events.into_iter().enumerate() {
        let size = event.len();
        let invocation = emulator.invoke(event).await?;
        let timing = format!(
            "{:?}{}",
            invocation.duration,
            invocation
                .init_duration
                .map(|d| format!(", cold start {d:?}"))
                .unwrap_or_default()
        );
        if args.json || !invocation.result.is_response() {
            println!("event {}/{count} ({size} bytes, {timing}):", i + 1);
            print_result(&invocation.result);
        } else {
            println!(
                "event {}/{count} ({size} bytes, {timing}): {}",
                i + 1,
                one_line(&invocation.result.json())
            );
        }
        if args.rss {
            println!(
                "  peak RSS {} KiB",
                emulator
                    .peak_rss_kib()
                    .map_or("?".to_string(), |k| k.to_string())
            );
        }
        failed += usize::from(!invocation.result.is_response());
    }
    if let Some(records) = &args.records {
        let text = std::fs::read_to_string(records).unwrap_or_default();
        let values: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        println!("\nrecords written to {}\n", records.display());
        print!("{}", super::report::render(&values));
        if let Some(store) = &args.store {
            let imported = fill_store(store, records)?;
            println!(
                "\n{} records loaded into {}{}; search them with `esgflow serve --store {}`",
                imported.records,
                store.display(),
                match imported.skipped {
                    0 => String::new(),
                    n => format!(" ({n} lines skipped: not records)"),
                },
                store.display()
            );
        }
    }
    if let Some(receiver) = &receiver {
        println!();
        print!("{}", receiver.render());
    }
    Ok(exit_code(failed))
}

/// Replaces the database at `store` with the records of the JSON-lines file `records`.
fn fill_store(
    store: &Path,
    records: &Path,
) -> Result<esgflow::adapters::sqlite::Imported, Box<dyn std::error::Error>> {
    if let Some(parent) = store.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    if store.exists() {
        std::fs::remove_file(store)?;
    }
    let database = esgflow::adapters::sqlite::LocalRecords::create(store)?;
    let lines = std::io::BufReader::new(std::fs::File::open(records)?);
    Ok(database.import(lines)?)
}

/// One line out of an audit summary.
fn one_line(summary: &serde_json::Value) -> String {
    let n = |key: &str| summary[key].as_u64().unwrap_or(0);
    let map = |key: &str| {
        summary[key]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    format!(
        "{} records, {} parsed, {} nodata/skipdata, skipped [{}], {} flows ({} duplicates merged, {} replies) → [{}]",
        n("records_in"),
        n("parsed"),
        n("nodata") + n("skipdata"),
        map("skipped"),
        n("flows"),
        n("duplicates"),
        n("replies"),
        map("records")
    )
}
