//! `esgflow`: the local toolkit. Runs the real function binaries under the SCF emulator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use esgflow_local::cli::explain;
use esgflow_local::emulator::clsfeed::{self, ContentForm, FeedOptions};
use esgflow_local::emulator::functions;
use esgflow_local::emulator::{Emulator, FunctionSpec, InvocationResult, Output};
use esgflow_local::release::package;

#[derive(Parser)]
#[command(
    name = "esgflow",
    version,
    about = "esgflow local toolkit: run the SCF functions on this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Directory holding the esgflow-<function> binaries [default: next to this executable]
    #[arg(long, env = "ESGFLOW_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Function time limit (ms), sent as time_limit_in_ms and enforced
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
    /// Init timeout (ms): process start to /runtime/init/ready
    #[arg(long, default_value_t = 10_000)]
    init_timeout_ms: u64,
    /// Memory limit (MB), sent as memory_limit_in_mb
    #[arg(long, default_value_t = 128)]
    memory_mb: u32,
    /// Function environment variable KEY=VALUE (repeatable)
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Show the function's own log lines
    #[arg(long)]
    logs: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Invoke a function once with an event file, as SCF's Invoke API would
    Invoke {
        /// audit, lookup or sync
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(functions::FUNCTIONS))]
        function: String,
        /// The event JSON
        #[arg(long)]
        event: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Cut a flow-log file into CLS trigger events (gzip+base64, <=128 KB each)
    Feed {
        /// Flow-log file, one 14-field record per line
        flowlog: PathBuf,
        /// Directory to write event-0001.json, ... into
        #[arg(long)]
        out_dir: PathBuf,
        #[command(flatten)]
        feed: FeedArgs,
    },
    /// Serve the lookup function over HTTP on localhost, as API Gateway would (curl, a browser)
    Serve {
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Rule snapshot (sets ESGFLOW_SNAPSHOT)
        #[arg(long)]
        snapshot: PathBuf,
        /// Bearer token clients must send (sets ESGFLOW_LOOKUP_TOKEN)
        #[arg(long, env = "ESGFLOW_LOOKUP_TOKEN")]
        token: String,
        /// Records database to search (filled by `esgflow replay --store`; sets ESGFLOW_RECORDS_DB)
        #[arg(long)]
        store: Option<PathBuf>,
        /// Token that may change the per-VPC monitoring switches, kept beside the snapshot
        /// (sets ESGFLOW_ADMIN_TOKEN)
        #[arg(long, env = "ESGFLOW_ADMIN_TOKEN")]
        admin_token: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Fire Timer trigger events at a function, as SCF's timer trigger does
    Tick {
        /// The function to fire (usually sync)
        #[arg(default_value = "sync", value_parser = clap::builder::PossibleValuesParser::new(functions::FUNCTIONS))]
        function: String,
        /// How many events to fire
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Milliseconds between events
        #[arg(long, default_value_t = 0)]
        every_ms: u64,
        /// The trigger's user message
        #[arg(long, default_value = "")]
        message: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run the sync function under the emulator: with --local, against a local stand-in of the
    /// cfw/vpc APIs that serves an export directory (samples/export by default)
    Sync {
        /// Serve the cfw/vpc APIs locally from --exports instead of calling Tencent Cloud
        #[arg(long)]
        local: bool,
        /// Export directory the local stand-in serves
        #[arg(long, default_value = "samples/export")]
        exports: PathBuf,
        /// Where snapshots are published (ESGFLOW_SNAPSHOT)
        #[arg(long, default_value = "dir://out/snapshots")]
        store: String,
        /// JSONL file for rule_change and rule_hygiene records (when no CLS topic is set)
        #[arg(long, default_value = "out/sync-records.jsonl")]
        records: PathBuf,
        /// How many runs (timer ticks)
        #[arg(long, default_value_t = 1)]
        runs: u32,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Deploy the stack in template.yaml: check the parameters, make the snapshot bucket, the CLS
    /// topics and indexes and the CAM roles, then deploy each function with the serverless CLI
    /// (--dry-run: read only, and print what would be done)
    Deploy {
        #[command(flatten)]
        stack: StackArgs,
    },
    /// Remove what `deploy` made: the functions, the execution roles and their policies; the
    /// topics (with their logs) and the snapshot bucket (with its snapshots) only when asked
    Destroy {
        #[command(flatten)]
        stack: StackArgs,
        /// Also delete the hits and traffic topics deploy created, and their logs
        #[arg(long)]
        delete_logs: bool,
        /// Also empty and delete the snapshot bucket
        #[arg(long)]
        delete_snapshots: bool,
    },
    /// Release health check: zip/binary sizes, init time (median of --runs cold starts, without
    /// and with a 10,000-rule snapshot), audit peak RSS on max-size events
    Measure {
        /// Directory holding the release esgflow-<function> binaries
        #[arg(long)]
        bin_dir: PathBuf,
        /// Directory holding <function>.zip
        #[arg(long, default_value = "dist")]
        dist: PathBuf,
        /// Cold starts per median
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Build or inspect rule snapshots
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Explain offline which ESG rule decides a flow, and why
    Explain {
        /// Snapshot file
        #[arg(long)]
        snapshot: PathBuf,
        /// Source address
        #[arg(long)]
        src: std::net::IpAddr,
        /// Destination address
        #[arg(long)]
        dst: std::net::IpAddr,
        /// Protocol: tcp, udp, icmp, icmpv6 or a number
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// Destination port (TCP and UDP)
        #[arg(long)]
        port: Option<u16>,
        /// The ENI that recorded the flow (for direction)
        #[arg(long)]
        eni: Option<String>,
        /// Print every rule considered, not only the ones that matched
        #[arg(long)]
        verbose: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Write a synthetic rule snapshot and matching flow-log lines (benchmarks, measurements)
    Synthetic {
        /// Number of rules
        #[arg(long, default_value_t = 1000)]
        rules: usize,
        /// Number of flow-log lines
        #[arg(long, default_value_t = 5000)]
        flows: usize,
        /// Snapshot file to write
        #[arg(long)]
        snapshot: PathBuf,
        /// Flow-log file to write
        #[arg(long)]
        flowlog: PathBuf,
    },
    /// Write one deployment zip per function (bootstrap, mode 0755, at the zip root)
    Package {
        /// Directory holding the esgflow-<function> release binaries
        #[arg(long)]
        bin_dir: PathBuf,
        /// Where the zips go
        #[arg(long, default_value = "dist")]
        out_dir: PathBuf,
    },
    /// Replay a flow-log file through the audit function, cut into CLS events as CLS cuts them
    Replay {
        /// Flow-log file, one 14-field record per line
        flowlog: PathBuf,
        /// Rule snapshot for the audit function (sets ESGFLOW_SNAPSHOT)
        #[arg(long)]
        snapshot: Option<PathBuf>,
        /// Write records to this JSONL file (replaced; sets ESGFLOW_JSONL_PATH) and print a report of them
        #[arg(long)]
        records: Option<PathBuf>,
        /// Also load the records into this SQLite database (replaced), which `esgflow serve
        /// --store` searches
        #[arg(long, requires = "records")]
        store: Option<PathBuf>,
        /// Print each invocation's full JSON summary
        #[arg(long)]
        json: bool,
        /// Print the function's peak resident memory (VmHWM) after each invocation
        #[arg(long)]
        rss: bool,
        /// Start a local alert receiver (WeCom, DingTalk, Feishu, webhook; signatures verified),
        /// point the function's alert channels at it, and print what it received
        #[arg(long)]
        alerts: bool,
        #[command(flatten)]
        feed: FeedArgs,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
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

#[derive(clap::Args)]
struct FeedArgs {
    /// Form of each record's content
    #[arg(long, value_enum, default_value_t = ContentForm::Json)]
    content: ContentForm,
    /// Largest event in bytes
    #[arg(long, default_value_t = clsfeed::MAX_ASYNC_EVENT_BYTES)]
    max_event_bytes: usize,
    /// topic_id written into each batch
    #[arg(long, default_value = "00000000-0000-4000-8000-00000000f10w")]
    topic_id: String,
}

impl FeedArgs {
    fn options(&self) -> FeedOptions {
        FeedOptions {
            topic_id: self.topic_id.clone(),
            content: self.content,
            max_event_bytes: self.max_event_bytes,
            ..FeedOptions::default()
        }
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

impl RunArgs {
    fn spec(&self, function: &str) -> FunctionSpec {
        let bin_dir = self
            .bin_dir
            .clone()
            .unwrap_or_else(functions::default_bin_dir);
        let mut spec = FunctionSpec::new(function, functions::binary_path(&bin_dir, function));
        spec.env = self.env.clone();
        spec.timeout = Duration::from_millis(self.timeout_ms);
        spec.init_timeout = Duration::from_millis(self.init_timeout_ms);
        spec.memory_mb = self.memory_mb;
        spec.output = if self.logs {
            Output::Inherit
        } else {
            Output::Discard
        };
        spec
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("esgflow: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Invoke {
            function,
            event,
            run,
        } => {
            let body =
                std::fs::read(&event).map_err(|e| format!("reading {}: {e}", event.display()))?;
            let mut emulator = Emulator::new(run.spec(&function)).await?;
            let invocation = emulator.invoke(body).await?;
            print_result(&invocation.result);
            Ok(if invocation.result.is_response() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Feed {
            flowlog,
            out_dir,
            feed,
        } => {
            let events = cut_file(&flowlog, &feed.options())?;
            std::fs::create_dir_all(&out_dir)?;
            for (i, event) in events.iter().enumerate() {
                std::fs::write(out_dir.join(format!("event-{:04}.json", i + 1)), event)?;
            }
            eprintln!("wrote {} CLS events to {}", events.len(), out_dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Snapshot { command } => snapshot_command(command),
        Command::Measure {
            bin_dir,
            dist,
            runs,
        } => {
            let rows = esgflow_local::release::measure::measure(
                &bin_dir,
                &dist,
                Path::new("out/measure"),
                runs,
            )
            .await?;
            let (table, ok) = esgflow_local::release::measure::report(&rows);
            print!("{table}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Deploy { stack } => {
            let options = stack.options();
            let env = |name: &str| std::env::var(name).ok();
            stopped_code(esgflow_local::release::apply::deploy(&options, &env).await)
        }
        Command::Destroy {
            stack,
            delete_logs,
            delete_snapshots,
        } => {
            let options = stack.options();
            let removal = esgflow_local::release::apply::Removal {
                delete_logs,
                delete_snapshots,
            };
            let env = |name: &str| std::env::var(name).ok();
            stopped_code(esgflow_local::release::apply::destroy(&options, removal, &env).await)
        }
        Command::Sync {
            local,
            exports,
            store,
            records,
            runs,
            mut run,
        } => {
            let stub = if local {
                let items = esgflow_local::standins::cloud::load_exports(&exports)?;
                let stub = esgflow_local::standins::cloud::CloudStub::start(items).await?;
                eprintln!(
                    "local cfw/vpc/COS stand-in at {} serving {}",
                    stub.url,
                    exports.display()
                );
                run.env.extend(stub.env());
                Some(stub)
            } else {
                None
            };
            if let Some(parent) = records.parent() {
                std::fs::create_dir_all(parent)?;
            }
            run.env.push(("ESGFLOW_SNAPSHOT".into(), store));
            run.env
                .push(("ESGFLOW_JSONL_PATH".into(), records.display().to_string()));
            if run.timeout_ms == 3000 {
                run.timeout_ms = 60_000;
            }
            let mut emulator = Emulator::new(run.spec("sync")).await?;
            let mut failed = fire_timers(&mut emulator, "esgflow-sync-local", "", runs, 0).await?;
            if let Some(stub) = &stub {
                for problem in stub.problems() {
                    eprintln!("stand-in saw a problem: {problem}");
                    failed += 1;
                }
            }
            eprintln!("records: {}", records.display());
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Tick {
            function,
            count,
            every_ms,
            message,
            run,
        } => {
            let mut emulator = Emulator::new(run.spec(&function)).await?;
            let failed =
                fire_timers(&mut emulator, "esgflow-local", &message, count, every_ms).await?;
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Serve {
            listen,
            snapshot,
            token,
            store,
            admin_token,
            mut run,
        } => {
            let mut stop = Stop::catch()?;
            // The lookup function's deployed limit (template.yaml), unless one was asked for:
            // a traffic view over a week of a large store needs more than 3 s in a debug build.
            if run.timeout_ms == 3000 {
                run.timeout_ms = 15_000;
            }
            let mut spec = run.spec("lookup");
            spec.env
                .push(("ESGFLOW_SNAPSHOT".into(), absolute(&snapshot)?));
            spec.env.push(("ESGFLOW_LOOKUP_TOKEN".into(), token));
            if let Some(admin) = admin_token {
                spec.env.push(("ESGFLOW_ADMIN_TOKEN".into(), admin));
            }
            if let Some(store) = &store {
                // Opened here first, so a missing or empty database is named before start-up.
                esgflow::adapters::sqlite::LocalRecords::open(store)?;
                spec.env
                    .push(("ESGFLOW_RECORDS_DB".into(), absolute(store)?));
            }
            let mut emulator = Emulator::new(spec).await?;
            emulator.start_instance().await?;
            let gateway =
                esgflow_local::emulator::gateway::Gateway::start(emulator, listen).await?;
            eprintln!(
                "lookup API on http://{} (Authorization: Bearer <token>); Ctrl-C to stop",
                gateway.addr
            );
            stop.requested().await;
            // Dropping the gateway drops the emulator, which kills the function process.
            drop(gateway);
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            snapshot,
            src,
            dst,
            protocol,
            port,
            eni,
            verbose,
            json,
        } => {
            let engine = load_engine(&snapshot)?;
            let protocol = explain::parse_protocol(&protocol)?;
            let flow = esgflow::core::engine::FlowKey::requested(src, dst, protocol, port);
            if matches!(protocol, 6 | 17) && port.is_none() {
                return Err("--port is required for TCP and UDP".into());
            }
            print!(
                "{}",
                explain::render(&engine, &flow, eni.as_deref(), verbose, json)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Synthetic {
            rules,
            flows,
            snapshot,
            flowlog,
        } => {
            esgflow_local::testdata::synthetic::snapshot(rules, 64, 42).save(&snapshot)?;
            let lines = esgflow_local::release::measure::synthetic_lines(flows);
            std::fs::write(&flowlog, lines.join("\n") + "\n")?;
            eprintln!(
                "wrote {} ({rules} rules) and {} ({flows} lines)",
                snapshot.display(),
                flowlog.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Package { bin_dir, out_dir } => {
            for function in functions::FUNCTIONS {
                let zip = package::package(
                    &functions::binary_path(&bin_dir, function),
                    function,
                    &out_dir,
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
        Command::Replay {
            flowlog,
            snapshot,
            records,
            store,
            json,
            rss,
            alerts,
            feed,
            run,
        } => {
            let events = cut_file(&flowlog, &feed.options())?;
            let mut spec = run.spec("audit");
            if let Some(snapshot) = &snapshot {
                spec.env
                    .push(("ESGFLOW_SNAPSHOT".into(), absolute(snapshot)?));
            }
            if let Some(records) = &records {
                if records.exists() {
                    std::fs::remove_file(records)?;
                }
                spec.env
                    .push(("ESGFLOW_JSONL_PATH".into(), absolute(records)?));
            }
            let receiver = match alerts {
                true => Some(esgflow_local::standins::alerts::AlertReceiver::start().await?),
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
                flowlog.display()
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
                if json || !invocation.result.is_response() {
                    println!("event {}/{count} ({size} bytes, {timing}):", i + 1);
                    print_result(&invocation.result);
                } else {
                    println!(
                        "event {}/{count} ({size} bytes, {timing}): {}",
                        i + 1,
                        one_line(&invocation.result.json())
                    );
                }
                if rss {
                    println!(
                        "  peak RSS {} KiB",
                        emulator
                            .peak_rss_kib()
                            .map_or("?".to_string(), |k| k.to_string())
                    );
                }
                failed += usize::from(!invocation.result.is_response());
            }
            if let Some(records) = &records {
                let text = std::fs::read_to_string(records).unwrap_or_default();
                let values: Vec<serde_json::Value> = text
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect();
                println!("\nrecords written to {}\n", records.display());
                print!("{}", esgflow_local::cli::report::render(&values));
                if let Some(store) = &store {
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
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn load_engine(
    path: &std::path::Path,
) -> Result<esgflow::core::engine::Engine, Box<dyn std::error::Error>> {
    let snapshot = esgflow::core::snapshot::Snapshot::load(path)?;
    Ok(esgflow::core::engine::Engine::compile(&snapshot)
        .map_err(|e| format!("{}: {e}", path.display()))?)
}

fn snapshot_command(command: SnapshotCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        SnapshotCommand::Build {
            from,
            out,
            taken_at,
        } => {
            let taken_at = taken_at
                .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
            let snapshot = esgflow::core::snapshot::build_from_dir(&from, &taken_at)?;
            // Compile before writing, so a snapshot the functions could not load is never written.
            esgflow::core::engine::Engine::compile(&snapshot)?;
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
        SnapshotCommand::Show { path } => {
            let engine = load_engine(&path)?;
            let snapshot = esgflow::core::snapshot::Snapshot::load(&path)?;
            print!("{}", explain::summary(&snapshot, &engine));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cut_file(
    path: &PathBuf,
    options: &FeedOptions,
) -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(clsfeed::cut_events(text.lines(), options)?)
}

/// Replaces the database at `store` with the records of the JSON-lines file `records`.
fn fill_store(
    store: &std::path::Path,
    records: &std::path::Path,
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

fn absolute(path: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    Ok(path.display().to_string())
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

/// Fires `count` Timer events, `every_ms` apart, printing each result; returns how many failed.
async fn fire_timers(
    emulator: &mut Emulator,
    trigger: &str,
    message: &str,
    count: u32,
    every_ms: u64,
) -> Result<usize, Box<dyn std::error::Error>> {
    let mut failed = 0;
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(every_ms)).await;
        }
        let invocation = emulator
            .invoke(esgflow_local::emulator::timer_event(trigger, message))
            .await?;
        print_result(&invocation.result);
        failed += usize::from(!invocation.result.is_response());
    }
    Ok(failed)
}

/// What `deploy` and `destroy` share.
#[derive(clap::Args)]
struct StackArgs {
    /// The stack description
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// Where the generated serverless.yml files go
    #[arg(long, default_value = "dist/deploy")]
    out: PathBuf,
    /// Read only, and print what would be done
    #[arg(long)]
    dry_run: bool,
    /// The serverless CLI (`scf` of serverless-cloud-framework, installed by `make setup-deploy`)
    #[arg(long, default_value = "deploy/node_modules/.bin/scf")]
    cli: PathBuf,
    /// Seconds one run of the serverless CLI (one function) may take before it is stopped
    #[arg(long, default_value_t = 1800)]
    cli_timeout: u64,
}

impl StackArgs {
    /// The options; `ESGFLOW_DEPLOY_ENDPOINT` sends the API and COS requests to a stand-in.
    fn options(self) -> esgflow_local::release::apply::Options {
        esgflow_local::release::apply::Options {
            template: self.template,
            out: self.out,
            dry_run: self.dry_run,
            cli: self.cli,
            cli_timeout: std::time::Duration::from_secs(self.cli_timeout),
            endpoint: std::env::var("ESGFLOW_DEPLOY_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty()),
        }
    }
}

/// Exit 0, or the stop's message and 2 (nothing changed) or 1 (failed part way).
fn stopped_code(
    outcome: Result<(), esgflow_local::release::apply::Stopped>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use esgflow_local::release::apply::Stopped;
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(stopped) => {
            eprint!("{stopped}");
            Ok(match stopped {
                Stopped::Refused(_) => ExitCode::from(2),
                Stopped::Failed(_) => ExitCode::FAILURE,
            })
        }
    }
}

fn print_result(result: &InvocationResult) {
    let text = match serde_json::from_slice::<serde_json::Value>(result.body()) {
        Ok(json) => serde_json::to_string_pretty(&json).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(result.body()).into_owned(),
    };
    match result {
        InvocationResult::Response(_) => println!("{text}"),
        InvocationResult::Error(_) => eprintln!("invocation error: {text}"),
    }
}

/// Ctrl-C (SIGINT) and SIGTERM (a service manager, `kill`), caught from the moment this is
/// made, so the caller can stop its function processes instead of leaving them behind: a signal
/// that arrives while they are still starting is kept and answered once start-up ends.
struct Stop {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Stop {
    fn catch() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for either signal (at once if one already came).
    async fn requested(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
