//! `esgflow replay`: a flow-log file cut into CLS events as CLS cuts them and replayed through
//! the real audit function, with a report of the records, the local records store filled, and
//! the alerts a local receiver got.

use std::path::{Path, PathBuf};

use std::io::BufRead as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{absolute, exit_code, print_result, snapshot_location, FeedArgs, Outcome, RunArgs};
use crate::emulator::{clsfeed, Emulator};
use crate::standins::alerts::AlertReceiver;
use esgflow::adapters::sqlite::RecordLine;

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
    let progress = super::Progress::bytes("read", size);
    // The file is cut into events on a thread of its own while the function runs, and the
    // store takes the records in on another as each invocation writes them: the three share
    // the machine's cores instead of taking turns (docs/performance.md, "Replaying a day").
    let cut = Arc::new(Cut::default());
    let (events_to_run, mut events) = tokio::sync::mpsc::channel(2);
    let cutter = std::thread::Builder::new().name("cut".into()).spawn({
        let (cut, options) = (cut.clone(), args.feed.options());
        move || cut.run(file, &options, events_to_run)
    })?;
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
    // The store's import, and the report summed as it reads, beside the function.
    // Its channel says how far the records file is whole.
    let filling = match (&args.store, &args.records) {
        (Some(store), Some(records)) => {
            let (written, sizes) = std::sync::mpsc::channel();
            let (store, path) = (store.clone(), records.clone());
            let importer = std::thread::Builder::new()
                .name("store".into())
                .spawn(move || {
                    let mut report = super::report::Report::default();
                    let lines = std::io::BufReader::with_capacity(1 << 20, Tail::new(path, sizes));
                    fill_store(&store, lines, |record| report.add(record))
                        .map(|imported| (imported, report))
                        .map_err(|e| e.to_string())
                })?;
            Some((written, importer))
        }
        _ => None,
    };
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
    while let Some(event) = events.recv().await {
        let event = event?;
        count += 1;
        let size = event.len();
        let invocation = emulator.invoke(event).await?;
        if let (Some((written, _)), Some(records)) = (&filling, &args.records) {
            // What this invocation wrote is whole in the file now: the store may read it.
            let _ = written.send(std::fs::metadata(records).map_or(0, |m| m.len()));
        }
        progress.set(
            cut.bytes.load(Ordering::Relaxed),
            &format!(
                "{} lines, {count} events",
                cut.lines.load(Ordering::Relaxed)
            ),
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
    cutter
        .join()
        .map_err(|_| "the thread cutting events failed")?
        .map_err(|err| format!("reading {}: {err}", args.flowlog.display()))?;
    let lines = cut.lines.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "replayed {lines} lines as {count} event{} in {seconds:.1} s ({:.0} lines/s)",
        if count == 1 { "" } else { "s" },
        lines as f64 / seconds.max(1e-9)
    );
    let stored = match filling {
        Some((written, importer)) => {
            // The end of the records: the store reads what is left and sorts its indexes.
            drop(written);
            if !importer.is_finished() {
                println!("the store is taking in the last records and sorting its indexes…");
            }
            Some(
                importer
                    .join()
                    .map_err(|_| "the thread filling the store failed")??,
            )
        }
        None => None,
    };
    if let Some(records) = &args.records {
        let (report, imported) = match stored {
            Some((imported, report)) => {
                let seconds = started.elapsed().as_secs_f64();
                println!(
                    "stored {} records as they were written: {lines} lines in {seconds:.1} s end to end ({:.0} lines/s)",
                    imported.records,
                    lines as f64 / seconds.max(1e-9)
                );
                (report, Some(imported))
            }
            // No store: the report from one read of the records.
            None => {
                let mut report = super::report::Report::default();
                if records.exists() {
                    let file = std::io::BufReader::new(std::fs::File::open(records)?);
                    for line in std::io::BufRead::lines(file) {
                        if let Some(record) = RecordLine::parse(&line?) {
                            report.add(&record);
                        }
                    }
                }
                (report, None)
            }
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
    lines: impl std::io::BufRead + Send,
    each: impl FnMut(&RecordLine<'_>) + Send,
) -> Result<esgflow::adapters::sqlite::Imported, Box<dyn std::error::Error>> {
    if let Some(parent) = store.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    if store.exists() {
        std::fs::remove_file(store)?;
    }
    let database = esgflow::adapters::sqlite::LocalRecords::create(store)?;
    Ok(database.import_with(lines, each)?)
}

/// The cutting of the flow-log file into events, and how far it has read.
#[derive(Default)]
struct Cut {
    bytes: AtomicU64,
    lines: AtomicU64,
}

impl Cut {
    /// Cuts `file` into events, sending each to `events`; stops early when nobody receives.
    fn run(
        &self,
        file: std::fs::File,
        options: &clsfeed::FeedOptions,
        events: tokio::sync::mpsc::Sender<Result<Vec<u8>, clsfeed::FeedError>>,
    ) -> std::io::Result<()> {
        let mut error = None;
        let lines = std::io::BufReader::with_capacity(1 << 20, file)
            .lines()
            .map_while(|line| match line {
                Ok(line) => {
                    self.bytes
                        .fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
                    self.lines.fetch_add(1, Ordering::Relaxed);
                    Some(line)
                }
                Err(err) => {
                    error = Some(err);
                    None
                }
            });
        for event in clsfeed::events(lines, options) {
            if events.blocking_send(event).is_err() {
                break;
            }
        }
        error.map_or(Ok(()), Err)
    }
}

/// The records file as the function writes it: read up to the length last sent, then waiting
/// for the next; it ends when the sender is dropped.
struct Tail {
    path: PathBuf,
    file: Option<std::fs::File>,
    /// Bytes read, and bytes known to be whole in the file.
    read: u64,
    written: u64,
    sizes: std::sync::mpsc::Receiver<u64>,
}

impl Tail {
    fn new(path: PathBuf, sizes: std::sync::mpsc::Receiver<u64>) -> Self {
        Self {
            path,
            file: None,
            read: 0,
            written: 0,
            sizes,
        }
    }
}

impl std::io::Read for Tail {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.read == self.written {
            match self.sizes.recv() {
                Ok(size) => self.written = self.written.max(size),
                Err(_) => return Ok(0),
            }
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(std::fs::File::open(&self.path)?),
        };
        let want = buf.len().min((self.written - self.read) as usize);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ended before its {} bytes",
                    self.path.display(),
                    self.written
                ),
            ));
        }
        self.read += n as u64;
        Ok(n)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The store reads what each invocation wrote as soon as it is said to be whole, waits
    /// for more, and ends when the replay does.
    #[test]
    fn the_tail_reads_each_invocation_as_it_is_written() {
        let dir = std::env::temp_dir().join(format!("esgflow-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("records.jsonl");
        std::fs::write(&path, "").unwrap();
        let (written, sizes) = std::sync::mpsc::channel();
        let (got, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn({
            let path = path.clone();
            move || {
                for line in std::io::BufReader::new(Tail::new(path, sizes)).lines() {
                    got.send(line.unwrap()).unwrap();
                }
            }
        });
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        for batch in [["a", "b"], ["c", "d"]] {
            for line in batch {
                std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes()).unwrap();
            }
            written
                .send(std::fs::metadata(&path).unwrap().len())
                .unwrap();
            for line in batch {
                let read = lines.recv_timeout(std::time::Duration::from_secs(10));
                assert_eq!(read.unwrap(), line);
            }
        }
        std::io::Write::write_all(&mut file, b"e").unwrap();
        assert!(lines
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_err());
        drop(written);
        reader.join().unwrap();
        assert!(
            lines.try_recv().is_err(),
            "the unsaid half line is not read"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
