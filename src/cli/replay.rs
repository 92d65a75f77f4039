//! `esgflow replay`: a flow-log file cut into CLS events as CLS cuts them and replayed through
//! the real audit function, with a report of the records, the local records store filled, and
//! the alerts a local receiver got.

use std::path::{Path, PathBuf};

use std::cell::{Cell, RefCell};

use super::{absolute, exit_code, print_result, snapshot_location, FeedArgs, Outcome, RunArgs};
use crate::emulator::{clsfeed, Emulator};
use crate::standins::alerts::AlertReceiver;

/// `esgflow replay` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// Flow-log file, one 14-field record per line
    pub flowlog: PathBuf,
    /// Rule snapshot for the audit function: a file, or any location the functions read
    /// (`dir:///path`, `cos://<bucket>-<appid>/<prefix>?region=<region>`; sets ESGFLOW_SNAPSHOT)
    #[arg(long)]
    pub snapshot: Option<String>,
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

/// Events whose one-line summary a replay prints before it shows only failures (and a progress
/// bar, when it runs long).
const EVENTS_SHOWN: usize = 10;

/// Replays every event; fails when any invocation did. The file is read, cut and replayed as a
/// stream, and the records are summed as they are read back: a day of flow logs takes no more
/// memory than an event.
pub async fn run(args: Args) -> Outcome {
    let file = std::fs::File::open(&args.flowlog)
        .map_err(|e| format!("reading {}: {e}", args.flowlog.display()))?;
    let size = file.metadata()?.len();
    let (read, read_error) = (Cell::new(0u64), RefCell::new(None));
    let (lines_read, progress) = (Cell::new(0u64), super::Progress::bytes("read", size));
    let lines = std::io::BufRead::lines(std::io::BufReader::with_capacity(1 << 20, file))
        .map_while(|line| match line {
            Ok(line) => {
                read.set(read.get() + line.len() as u64 + 1);
                lines_read.set(lines_read.get() + 1);
                Some(line)
            }
            Err(err) => {
                *read_error.borrow_mut() = Some(err);
                None
            }
        });
    let options = args.feed.options();
    let events = clsfeed::events(lines, &options);
    let mut spec = args.run.spec("audit");
    if let Some(snapshot) = &args.snapshot {
        spec.env
            .push(("ESGFLOW_SNAPSHOT".into(), snapshot_location(snapshot)?));
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
    let (mut failed, mut count) = (0, 0);
    println!(
        "replaying {} as CLS events through the audit function",
        args.flowlog.display()
    );
    let started = std::time::Instant::now();
    for event in events {
        let event = event?;
        count += 1;
        let size = event.len();
        let invocation = emulator.invoke(event).await?;
        progress.set(
            read.get(),
            &format!("{} lines, {count} events", lines_read.get()),
        );
        let timing = format!(
            "{:?}{}",
            invocation.duration,
            invocation
                .init_duration
                .map(|d| format!(", cold start {d:?}"))
                .unwrap_or_default()
        );
        if args.json || !invocation.result.is_response() {
            progress.suspend(|| {
                println!("event {count} ({size} bytes, {timing}):");
                print_result(&invocation.result);
            });
        } else if count <= EVENTS_SHOWN || args.rss {
            progress.suspend(|| {
                println!(
                    "event {count} ({size} bytes, {timing}): {}",
                    one_line(&invocation.result.json())
                )
            });
        } else if count == EVENTS_SHOWN + 1 {
            progress.suspend(|| println!("… (failures only from here)"));
        }
        if args.rss {
            let peak = emulator
                .peak_rss_kib()
                .map_or("?".to_string(), |k| k.to_string());
            progress.suspend(|| println!("  peak RSS {peak} KiB"));
        }
        failed += usize::from(!invocation.result.is_response());
    }
    progress.finish();
    if let Some(err) = read_error.take() {
        return Err(format!("reading {}: {err}", args.flowlog.display()).into());
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "replayed {} lines as {count} events in {seconds:.1} s ({:.0} lines/s)",
        lines_read.get(),
        lines_read.get() as f64 / seconds.max(1e-9)
    );
    if let Some(records) = &args.records {
        // One read of the records: the report summed as the store takes them in.
        let mut report = super::report::Report::default();
        let imported = match &args.store {
            Some(store) => Some(fill_store(store, records, |record| report.add(record))?),
            None if records.exists() => {
                let file = std::io::BufReader::new(std::fs::File::open(records)?);
                for line in std::io::BufRead::lines(file) {
                    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line?) {
                        report.add(&value);
                    }
                }
                None
            }
            None => None,
        };
        println!("\nrecords written to {}\n", records.display());
        print!("{}", report.render());
        if let (Some(store), Some(imported)) = (&args.store, imported) {
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

/// Replaces the database at `store` with the records of the JSON-lines file `records`, handing
/// each to `each` as it is stored.
fn fill_store(
    store: &Path,
    records: &Path,
    each: impl FnMut(&serde_json::Value),
) -> Result<esgflow::adapters::sqlite::Imported, Box<dyn std::error::Error>> {
    if let Some(parent) = store.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    if store.exists() {
        std::fs::remove_file(store)?;
    }
    let database = esgflow::adapters::sqlite::LocalRecords::create(store)?;
    let lines = std::io::BufReader::new(std::fs::File::open(records)?);
    Ok(database.import_with(lines, each)?)
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
