//! The release health check behind `make measure`: for each function, the zip and binary sizes,
//! process start → `/runtime/init/ready` (median of 20 cold starts under the emulator, without a
//! snapshot and with each account's), the audit function's peak RSS on maximum-size events, the
//! lookup function's peak RSS under the heaviest requests its API accepts, and whole sync runs.
//! Each snapshot-dependent figure is taken on two accounts: the reference account
//! (`testdata::reference`, 20,000 overlapping rules, 60 VPCs) and the older synthetic one
//! (10,000 barely overlapping rules; its sync reads 20,000).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::emulator::clsfeed::{cut_events, FeedOptions};
use crate::emulator::functions::binary_path;
use crate::emulator::{Emulator, FunctionSpec, Output};

/// Targets from the deployment issue.
pub const MAX_ZIP_BYTES: u64 = 6 * 1024 * 1024;
/// Init without a snapshot.
pub const MAX_INIT_MS: f64 = 20.0;
/// Init with the 10,000-rule synthetic snapshot.
pub const MAX_INIT_10K_MS: f64 = 40.0;
/// Init with the reference account's 20,000 rules.
pub const MAX_INIT_20K_MS: f64 = 60.0;
/// The shipped (static musl) audit's time per max-size event against the glibc build's.
pub const MAX_MUSL_RATIO: f64 = 1.15;
/// Rounds of the musl and glibc audit, alternating, for the pair's per-event times (five were
/// too few on a noisy host: the same two builds came out 0.68× and 1.41× in two runs).
const PAIR_ROUNDS: usize = 9;
/// Audit peak RSS on max-size events with the 10,000-rule synthetic snapshot.
pub const MAX_AUDIT_RSS_KIB: u64 = 32 * 1024;
/// Audit peak RSS with the reference account's 20,000 rules: its 64 MB tier.
pub const MAX_TIER_RSS_KIB: u64 = 64 * 1024;
/// Audit peak RSS on the largest legal batches (a 16 MiB-decoded one; a small event of
/// maximally compressible records).
pub const MAX_AUDIT_LARGE_RSS_KIB: u64 = 48 * 1024;
/// Lookup peak RSS under any request the API accepts, the what-if's included: its deployed
/// 128 MB (template.yaml).
pub const MAX_LOOKUP_RSS_KIB: u64 = 128 * 1024;
/// A whole sync run (paging every rule in, hygiene, publishing) over [`SYNC_RULES`] rules.
pub const MAX_SYNC_SECONDS: f64 = 30.0;
/// The sync function's peak RSS over those runs, of its deployed 256 MB (template.yaml).
pub const MAX_SYNC_RSS_KIB: u64 = 200 * 1024;
/// Rules in the synthetic account the sync measurement reads.
const SYNC_RULES: usize = 20_000;
/// The sync function's deployed timeout (template.yaml).
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// Hit records, and as many traffic records, in the store the lookup measurement reads.
const LOOKUP_STORE_RECORDS: u64 = 150_000;

/// One function's figures.
#[derive(Debug, Clone)]
pub struct Row {
    /// Function name.
    pub function: String,
    /// Zip size.
    pub zip_bytes: u64,
    /// Binary size.
    pub binary_bytes: u64,
    /// Median init, ms, without a snapshot.
    pub init_ms: f64,
    /// Figures per account, reference first.
    pub accounts: Vec<AccountFigures>,
    /// Peak RSS on the largest batches, KiB, each in a fresh process with each account's
    /// snapshot (audit only): `(account's index, batch, KiB, whether SCF could deliver it)`;
    /// only deliverable ones have a target.
    pub large_rss_kib: Vec<(usize, String, u64, bool)>,
    /// The shipped build against the glibc build of the same code (with `--glibc-dir`).
    pub pairs: Vec<Pair>,
}

/// One figure of the shipped (static musl) build and of the glibc build, measured back to back.
#[derive(Debug, Clone)]
pub struct Pair {
    /// What was measured.
    pub what: String,
    /// The musl build, ms.
    pub musl_ms: f64,
    /// The glibc build, ms.
    pub glibc_ms: f64,
    /// The median of the rounds' own ratios, where the pair was measured in rounds (each
    /// round's two builds run back to back, so the machine's speed changing between rounds
    /// weighs on both alike); `None`: `musl_ms / glibc_ms`.
    pub rounds_ratio: Option<f64>,
    /// The most musl may take, as a multiple of glibc (`None`: no target).
    pub max_ratio: Option<f64>,
}

/// One function's figures with one account's snapshot.
#[derive(Debug, Clone)]
pub struct AccountFigures {
    /// Which account.
    pub account: &'static str,
    /// Median init, ms, with its snapshot published as the sync function publishes it (the
    /// engine's image read) (`None`: the function loads none at init).
    pub init_ms: Option<f64>,
    /// Median init, ms, from the snapshot file alone (parsed, checked and compiled: a store
    /// without this build's image).
    pub init_compiled_ms: Option<f64>,
    /// Peak RSS on max-size events of its flows, KiB (audit only).
    pub peak_rss_kib: Option<u64>,
    /// Peak RSS, KiB, after the heavy requests (lookup only), and each request's name, status
    /// and answer bytes.
    pub heavy: Option<Heavy>,
    /// Two whole sync runs over its listings (sync only).
    pub sync_runs: Option<SyncRuns>,
}

/// Two sync runs over a large account.
#[derive(Debug, Clone)]
pub struct SyncRuns {
    /// Rules in the snapshot.
    pub rules: u64,
    /// The first run (builds, analyses and publishes), seconds.
    pub first_seconds: f64,
    /// Rules the hygiene analysis reached in it.
    pub hygiene_analysed: u64,
    /// Whether it published.
    pub published: bool,
    /// The second run, over the unchanged account, seconds.
    pub second_seconds: f64,
    /// Peak RSS over both runs, KiB.
    pub peak_rss_kib: Option<u64>,
}

/// The lookup function's peak RSS, KiB, after the heavy requests, and each request's name,
/// answer status, answer bytes and the peak RSS after it, KiB (so the request that raised it
/// shows).
pub type Heavy = (u64, Vec<(String, u16, usize, u64)>);

/// What the machine was doing when a measurement started or ended, for the report: figures
/// from the same code differ by up to 2.7× between a quiet and a busy hour on a shared machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// UTC, to the second.
    pub at: String,
    /// The load averages over 1, 5 and 15 minutes (`/proc/loadavg`; `None` where there is none).
    pub load: Option<[f64; 3]>,
    /// CPUs this process may use.
    pub cpus: usize,
    /// The CPU's model, and whether it has AVX-512 (glibc's `memcpy` and `memset` take their
    /// AVX-512 forms there, musl's do not): the shared machine has moved between hosts, and the
    /// musl/glibc pair with it (`/proc/cpuinfo`; `None` where there is none).
    pub cpu: Option<String>,
}

impl Machine {
    /// The machine now.
    pub fn now() -> Self {
        Self {
            at: chrono::Utc::now()
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            load: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|text| Self::load_of(&text)),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|text| Self::cpu_of(&text)),
        }
    }

    /// The first CPU's model in `/proc/cpuinfo`'s text, and ", AVX-512" when its flags have it.
    fn cpu_of(text: &str) -> Option<String> {
        let field = |name: &str| {
            text.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim())
            })
        };
        let model = field("model name")?;
        let avx512 = field("flags").is_some_and(|flags| flags.split(' ').any(|f| f == "avx512f"));
        Some(format!("{model}{}", if avx512 { ", AVX-512" } else { "" }))
    }

    /// "N CPUs" and, when known, their model.
    fn cpus(&self) -> String {
        match &self.cpu {
            Some(cpu) => format!("{} CPUs ({cpu})", self.cpus),
            None => format!("{} CPUs", self.cpus),
        }
    }

    /// The three load averages at the start of `/proc/loadavg`'s text.
    fn load_of(text: &str) -> Option<[f64; 3]> {
        let mut fields = text.split_ascii_whitespace().map(str::parse::<f64>);
        let mut next = || fields.next()?.ok();
        Some([next()?, next()?, next()?])
    }

    /// Prints to stderr what the machine is doing as `what` starts: the benches' first line,
    /// so every figure they give carries its hour and load.
    pub fn announce(what: &str) {
        let now = Self::now();
        eprintln!("{what}: on {}, {now}", now.cpus());
    }

    /// One line for the report: when, on how many CPUs, under what load at the start and end.
    pub fn describe(start: &Self, end: &Self) -> String {
        format!("Measured on {} from {start} to {end}.", start.cpus())
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (load average over 1 / 5 / 15 min ", self.at)?;
        match self.load {
            Some([a, b, c]) => write!(f, "{a:.2} / {b:.2} / {c:.2})"),
            None => write!(f, "unknown)"),
        }
    }
}

/// `count` synthetic flow-log lines over the synthetic address pool (30 % rejected).
pub fn synthetic_lines(count: usize) -> Vec<String> {
    let mut rng = crate::testdata::synthetic::Rng::new(9);
    crate::testdata::synthetic::flows(count, 64, 11)
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let action = if rng.chance(30) { "REJECT" } else { "ACCEPT" };
            let port = f.dst_port.map_or("0".to_string(), |p| p.to_string());
            format!(
                "2 1251762227 eni-{:08x} {} {} {} {port} {} {} {} 1763942400 1763942460 {action} OK",
                i % 500,
                f.src,
                f.dst,
                32768 + rng.below(28000),
                f.protocol,
                1 + rng.below(50),
                60 + rng.below(60000)
            )
        })
        .collect()
}

fn spec(bin_dir: &Path, function: &str, env: &[(&str, String)]) -> FunctionSpec {
    let mut spec = FunctionSpec::new(function, binary_path(bin_dir, function));
    spec.output = Output::Discard;
    spec.timeout = Duration::from_secs(30);
    // Each function's deployed memory (template.yaml), as the platform says it.
    spec.memory_mb = esgflow::app::config::Function::named(function)
        .map_or(spec.memory_mb, |f| f.deployed_memory_mb());
    spec.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    spec
}

fn env_for(function: &str, snapshot: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![("ESGFLOW_SNAPSHOT", snapshot.to_string())];
    match function {
        "lookup" => env.push(("ESGFLOW_LOOKUP_TOKEN", "measure-token-0123456789".into())),
        "sync" => env.push(("TENCENTCLOUD_REGION", "ap-guangzhou".into())),
        _ => {}
    }
    env
}

/// Median of `runs` cold starts, ms.
async fn init_median(spec: FunctionSpec, runs: usize) -> std::io::Result<f64> {
    let [ms] = init_medians([spec], runs).await?;
    Ok(ms)
}

/// Median of `runs` cold starts of each build, ms, the builds taking turns start by start.
async fn init_medians<const N: usize>(
    specs: [FunctionSpec; N],
    runs: usize,
) -> std::io::Result<[f64; N]> {
    let mut times: [Vec<f64>; N] = std::array::from_fn(|_| Vec::with_capacity(runs));
    for _ in 0..runs {
        for (spec, times) in specs.iter().zip(&mut times) {
            times.push(cold_start_ms(spec.clone()).await?);
        }
    }
    Ok(times.map(|mut t| median(&mut t)))
}

/// One cold start, process start to `/runtime/init/ready`, ms.
async fn cold_start_ms(spec: FunctionSpec) -> std::io::Result<f64> {
    let mut emulator = Emulator::new(spec).await?;
    let started = emulator
        .start_instance()
        .await
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::other("no cold start"))?;
    emulator.stop_instance().await;
    Ok(started.as_secs_f64() * 1000.0)
}

/// The accounts measured: name, snapshot file, the store it is published into (`dir://`, with
/// its engine's image, as the sync function publishes), flow-log lines for its events, and its
/// listings.
struct Account {
    name: &'static str,
    snapshot: PathBuf,
    store: String,
    lines: Vec<String>,
    listings: std::collections::BTreeMap<String, Vec<serde_json::Value>>,
}

/// The reference account and the older synthetic one, their snapshots written under `work`.
async fn accounts(work: &Path) -> std::io::Result<Vec<Account>> {
    use crate::testdata::{reference, synthetic};
    let listings = reference::account(reference::RULES, 42);
    let snapshot = work.join(format!("snapshot-reference-{}.json", reference::RULES));
    if !snapshot.exists() {
        reference::snapshot(&listings)
            .map_err(std::io::Error::other)?
            .save(&snapshot)
            .map_err(std::io::Error::other)?;
    }
    let reference = Account {
        name: "reference account, 20,000 rules",
        store: published(&snapshot).await?,
        snapshot,
        lines: reference::flow_lines(20_000, 7, crate::cli::synthetic::REFERENCE_DAY),
        listings,
    };
    let snapshot = work.join("snapshot-10000.json");
    if !snapshot.exists() {
        synthetic::snapshot(10_000, 64, 42)
            .save(&snapshot)
            .map_err(std::io::Error::other)?;
    }
    let synthetic = Account {
        name: "synthetic, 10,000 rules (sync: 20,000)",
        store: published(&snapshot).await?,
        snapshot,
        lines: synthetic_lines(20_000),
        listings: synthetic::export(SYNC_RULES, 64, 42),
    };
    Ok(vec![reference, synthetic])
}

/// The snapshot file `path` published with its engine's image into a directory store beside
/// it (made again each time: the image's format is this build's): the store's location.
async fn published(path: &Path) -> std::io::Result<String> {
    let snapshot = esgflow::core::snapshot::Snapshot::load(path).map_err(std::io::Error::other)?;
    let engine =
        esgflow::core::engine::Engine::compile(&snapshot).map_err(std::io::Error::other)?;
    let dir = path.with_extension("store");
    let _ = std::fs::remove_dir_all(&dir);
    let location = format!("dir://{}", dir.display());
    let store = esgflow::app::stores::SnapshotLocation::parse(&location)
        .and_then(|l| l.open(None, None, usize::MAX))
        .map_err(std::io::Error::other)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    store
        .publish(&snapshot, &engine, deadline)
        .await
        .map_err(std::io::Error::other)?;
    Ok(location)
}

/// Measures every function. `work` holds the generated snapshots and events.
pub async fn measure(
    bin_dir: &Path,
    glibc_dir: Option<&Path>,
    dist: &Path,
    work: &Path,
    runs: usize,
    only: Option<&str>,
) -> std::io::Result<Vec<Row>> {
    std::fs::create_dir_all(work)?;
    let accounts = accounts(work).await?;
    let missing = format!("file://{}", work.join("no-snapshot.json").display());
    let mut rows = Vec::new();
    for function in crate::emulator::functions::FUNCTIONS
        .iter()
        .filter(|f| only.is_none_or(|only| only == **f))
    {
        let binary: PathBuf = binary_path(bin_dir, function);
        let zip_bytes = std::fs::metadata(dist.join(format!("{function}.zip")))?.len();
        let binary_bytes = std::fs::metadata(&binary)?.len();
        let init_ms =
            init_median(spec(bin_dir, function, &env_for(function, &missing)), runs).await?;
        let mut figures = Vec::new();
        let mut pairs = Vec::new();
        for account in &accounts {
            let with = account.store.clone();
            let env = env_for(function, &with);
            // With a glibc build, its cold starts alternate with the shipped build's, so a
            // change in the machine's state during the run weighs on both alike.
            let (account_init_ms, glibc_init_ms) = match (*function, glibc_dir) {
                ("sync", _) => (None, None),
                (_, Some(glibc_dir)) => {
                    let builds = [
                        spec(bin_dir, function, &env),
                        spec(glibc_dir, function, &env),
                    ];
                    let [musl, glibc] = init_medians(builds, runs).await?;
                    (Some(musl), Some(glibc))
                }
                (_, None) => (
                    Some(init_median(spec(bin_dir, function, &env), runs).await?),
                    None,
                ),
            };
            let file = account.snapshot.display().to_string();
            let init_compiled_ms = match *function {
                "sync" => None,
                _ => Some(
                    init_median(spec(bin_dir, function, &env_for(function, &file)), runs).await?,
                ),
            };
            if let (Some(glibc_dir), Some(musl_ms), Some(glibc_ms)) =
                (glibc_dir, account_init_ms, glibc_init_ms)
            {
                pairs.push(Pair {
                    what: format!("{function} init, {}", account.name),
                    musl_ms,
                    glibc_ms,
                    rounds_ratio: None,
                    max_ratio: None,
                });
                if *function == "audit" {
                    let [musl, glibc] =
                        audit_event_pair(bin_dir, glibc_dir, &env, &account.lines).await?;
                    let (musl_ms, glibc_ms, ratio) = of_rounds(musl, glibc);
                    pairs.push(Pair {
                        what: format!("audit per max-size event, {}", account.name),
                        musl_ms,
                        glibc_ms,
                        rounds_ratio: Some(ratio),
                        max_ratio: Some(MAX_MUSL_RATIO),
                    });
                }
            }
            figures.push(AccountFigures {
                account: account.name,
                init_ms: account_init_ms,
                init_compiled_ms,
                peak_rss_kib: match *function {
                    "audit" => Some(audit_peak(bin_dir, &env, &account.lines).await?),
                    _ => None,
                },
                heavy: match *function {
                    "lookup" => Some(lookup_heavy(bin_dir, &with, &file).await?),
                    _ => None,
                },
                sync_runs: match *function {
                    "sync" => Some(sync_runs(bin_dir, work, account.listings.clone()).await?),
                    _ => None,
                },
            });
        }
        let mut large_rss_kib = Vec::new();
        if *function == "audit" {
            for (n, account) in accounts.iter().enumerate() {
                let with = account.store.clone();
                for (name, event) in largest_batches() {
                    let deliverable = event.len() <= MAX_ASYNC_EVENT_BYTES;
                    let mut emulator =
                        Emulator::new(spec(bin_dir, function, &env_for(function, &with))).await?;
                    emulator
                        .invoke(event)
                        .await
                        .map_err(std::io::Error::other)?;
                    if let Some(kib) = emulator.peak_rss_kib() {
                        large_rss_kib.push((n, name, kib, deliverable));
                    }
                }
            }
        }
        rows.push(Row {
            function: function.to_string(),
            zip_bytes,
            binary_bytes,
            init_ms,
            accounts: figures,
            large_rss_kib,
            pairs,
        });
    }
    Ok(rows)
}

/// The audit function's peak RSS over six max-size events cut from `lines`.
async fn audit_peak(
    bin_dir: &Path,
    env: &[(&str, String)],
    lines: &[String],
) -> std::io::Result<u64> {
    let events = max_size_events(lines, 6)?;
    let (emulator, _) = audit_run(bin_dir, env, &events).await?;
    emulator
        .peak_rss_kib()
        .ok_or_else(|| std::io::Error::other("no audit process to measure"))
}

/// The first `count` max-size events cut from `lines`.
fn max_size_events(lines: &[String], count: usize) -> std::io::Result<Vec<Vec<u8>>> {
    let mut events = cut_events(lines.iter().map(String::as_str), &FeedOptions::default())
        .map_err(std::io::Error::other)?;
    events.truncate(count);
    Ok(events)
}

/// One audit process (from `bin_dir`) handling `events` in turn, each required to succeed: the
/// emulator, and each event's time, ms.
async fn audit_run(
    bin_dir: &Path,
    env: &[(&str, String)],
    events: &[Vec<u8>],
) -> std::io::Result<(Emulator, Vec<f64>)> {
    let mut emulator = Emulator::new(spec(bin_dir, "audit", env)).await?;
    let mut times = Vec::new();
    for event in events {
        let invocation = emulator
            .invoke(event.clone())
            .await
            .map_err(std::io::Error::other)?;
        if !invocation.result.is_response() {
            return Err(std::io::Error::other(format!(
                "audit ({}) failed on a max-size event: {}",
                bin_dir.display(),
                invocation.result.json()
            )));
        }
        times.push(invocation.duration.as_secs_f64() * 1000.0);
    }
    Ok((emulator, times))
}

/// The audit function's time per max-size event cut from `lines`, musl (`bin_dir`) and glibc
/// (`glibc_dir`): in each of [`PAIR_ROUNDS`] rounds, one process of each in turn handles the
/// same seven events and the median of the last six (the first pays the cold start) is kept,
/// round by round ([`of_rounds`] makes the figures).
async fn audit_event_pair(
    bin_dir: &Path,
    glibc_dir: &Path,
    env: &[(&str, String)],
    lines: &[String],
) -> std::io::Result<[Vec<f64>; 2]> {
    let events = max_size_events(lines, 7)?;
    let mut rounds = [Vec::new(), Vec::new()];
    for _ in 0..PAIR_ROUNDS {
        for (dir, times) in [bin_dir, glibc_dir].into_iter().zip(&mut rounds) {
            let (_, mut each) = audit_run(dir, env, &events).await?;
            times.push(median(&mut each[1..]));
        }
    }
    Ok(rounds)
}

/// The figures of a pair measured in rounds (`musl[i]` and `glibc[i]` back to back): each
/// build's median, and the median of the rounds' ratios.
fn of_rounds(mut musl: Vec<f64>, mut glibc: Vec<f64>) -> (f64, f64, f64) {
    let mut ratios: Vec<f64> = musl.iter().zip(&glibc).map(|(m, g)| m / g).collect();
    (median(&mut musl), median(&mut glibc), median(&mut ratios))
}

/// The median of `values` (0 for none).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The sync function against the cloud stand-in serving a synthetic account of [`SYNC_RULES`]
/// rules, under its deployed timeout: a first run that builds, analyses and publishes, then a
/// second over the unchanged account.
async fn sync_runs(
    bin_dir: &Path,
    work: &Path,
    listings: std::collections::BTreeMap<String, Vec<serde_json::Value>>,
) -> std::io::Result<SyncRuns> {
    use crate::standins::cloud::CloudStub;
    let stub = CloudStub::start(listings).await?;
    let store = work.join("sync-snapshots");
    let _ = std::fs::remove_dir_all(&store);
    let mut env: Vec<(&str, String)> = vec![
        ("ESGFLOW_SNAPSHOT", format!("dir://{}", store.display())),
        (
            "ESGFLOW_JSONL_PATH",
            work.join("sync-records.jsonl").display().to_string(),
        ),
    ];
    let stub_env = stub.env();
    env.extend(stub_env.iter().map(|(k, v)| (k.as_str(), v.clone())));
    let mut spec = spec(bin_dir, "sync", &env);
    spec.timeout = SYNC_TIMEOUT;
    let mut emulator = Emulator::new(spec).await?;
    let (first_seconds, first) = sync_once(&mut emulator).await?;
    let (second_seconds, _) = sync_once(&mut emulator).await?;
    let number = |key: &str| first[key].as_u64().unwrap_or(0);
    Ok(SyncRuns {
        rules: number("rules"),
        first_seconds,
        hygiene_analysed: number("hygiene_analysed"),
        published: first["published"] == true,
        second_seconds,
        peak_rss_kib: emulator.peak_rss_kib(),
    })
}

/// One timer invocation: its wall time, seconds, and its summary.
async fn sync_once(emulator: &mut Emulator) -> std::io::Result<(f64, serde_json::Value)> {
    let started = std::time::Instant::now();
    let invocation = emulator
        .invoke(crate::emulator::timer_event("esgflow-measure", ""))
        .await
        .map_err(std::io::Error::other)?;
    let seconds = started.elapsed().as_secs_f64();
    if !invocation.result.is_response() {
        return Err(std::io::Error::other(format!(
            "sync failed: {}",
            invocation.result.json()
        )));
    }
    Ok((seconds, invocation.result.json()))
}

/// The lookup function as shipped (it reads records from CLS only), with the snapshot `store` (its file `snapshot`) and the
/// CLS stand-in holding [`LOOKUP_STORE_RECORDS`] hit and traffic records, answering the heaviest
/// requests its API accepts one after the other in one process: its peak RSS, and each answer's
/// status and size.
async fn lookup_heavy(bin_dir: &Path, store: &str, snapshot: &str) -> std::io::Result<Heavy> {
    use crate::testdata::records::{END, SPAN};
    let cls = crate::standins::cls::ClsStub::start(vec![]).await;
    for (topic, log) in crate::testdata::records::as_logs(LOOKUP_STORE_RECORDS) {
        cls.keep(topic, [log]);
    }
    let mut spec = spec(bin_dir, "lookup", &env_for("lookup", store));
    spec.env.extend(cls.env("topic-hits", "topic-traffic"));
    let mut emulator = Emulator::new(spec).await?;
    let flows = |verbose: bool| {
        let flows: Vec<serde_json::Value> = (0..1000)
            .map(|i| {
                serde_json::json!({"src": format!("192.0.2.{}", i % 250 + 1), "dst": format!("198.51.100.{}", i % 200 + 1),
                       "protocol": "tcp", "port": 1 + i % 60000, "verbose": verbose})
            })
            .collect();
        serde_json::json!({"flows": flows}).to_string()
    };
    let month = serde_json::json!({"since": (END - SPAN).to_string(), "until": END.to_string()});
    let with = |extra: serde_json::Value| {
        let mut query = month.clone();
        for (k, v) in extra.as_object().into_iter().flatten() {
            query[k] = v.clone();
        }
        query
    };
    let requests = [
        (
            "batch explain, 1,000 flows, verbose",
            "POST",
            "/v1/explain",
            serde_json::json!({}),
            Some(flows(true)),
        ),
        (
            "batch explain, 1,000 flows",
            "POST",
            "/v1/explain",
            serde_json::json!({}),
            Some(flows(false)),
        ),
        (
            "export, 30 days, JSON lines",
            "GET",
            "/v1/hits/export",
            month.clone(),
            None,
        ),
        (
            "export, 30 days, CSV",
            "GET",
            "/v1/hits/export",
            with(serde_json::json!({"format": "csv"})),
            None,
        ),
        (
            "hits, 30 days, a page of 1,000",
            "GET",
            "/v1/hits",
            with(serde_json::json!({"limit": "1000"})),
            None,
        ),
        (
            "traffic, every VPC, 30 days",
            "GET",
            "/v1/traffic",
            month.clone(),
            None,
        ),
        (
            "traffic, one VPC, 30 days",
            "GET",
            "/v1/traffic",
            with(serde_json::json!({"vpc": "vpc-00000001"})),
            None,
        ),
        (
            "rules, a page of 2,000",
            "GET",
            "/v1/rules",
            serde_json::json!({"limit": "2000"}),
            None,
        ),
        ("VPCs", "GET", "/v1/vpcs", serde_json::json!({}), None),
        (
            "what-if, one rule to drop, 30 days",
            "POST",
            "/v1/whatif",
            with(serde_json::json!({"limit": "1000"})),
            Some(
                serde_json::json!({"edits": [{"op": "set", "rule": first_rule(snapshot)?, "action": "drop"}]})
                    .to_string(),
            ),
        ),
        (
            "observe rules as drop rules, 30 days",
            "GET",
            "/v1/whatif/observe",
            month.clone(),
            None,
        ),
    ];
    let mut answers = Vec::new();
    for (name, method, path, query, body) in requests {
        let event = serde_json::json!({
            "httpMethod": method, "path": path, "queryString": query, "body": body,
            "headers": {"authorization": "Bearer measure-token-0123456789"},
        });
        let invocation = emulator
            .invoke(event.to_string().into_bytes())
            .await
            .map_err(std::io::Error::other)?;
        let answer = invocation.result.json();
        let status = answer["statusCode"].as_u64().unwrap_or(0) as u16;
        if !invocation.result.is_response() || status >= 500 || status == 0 {
            return Err(std::io::Error::other(format!(
                "lookup failed on {name}: {}",
                String::from_utf8_lossy(invocation.result.body())
            )));
        }
        let size = answer["body"].as_str().map_or(0, str::len);
        answers.push((
            name.to_string(),
            status,
            size,
            emulator.peak_rss_kib().unwrap_or(0),
        ));
    }
    let peak = emulator
        .peak_rss_kib()
        .ok_or_else(|| std::io::Error::other("no lookup process to measure"))?;
    Ok((peak, answers))
}

/// The uuid of the first rule of the snapshot file `path`.
fn first_rule(path: &str) -> std::io::Result<String> {
    let snapshot = esgflow::core::snapshot::Snapshot::load(Path::new(path))
        .map_err(|e| std::io::Error::other(format!("{path}: {e}")))?;
    snapshot
        .rules
        .first()
        .map(|rule| rule.uuid.clone())
        .ok_or_else(|| std::io::Error::other(format!("{path}: no rules")))
}

/// The largest batches the decode limits let through: one whose decoded JSON is just under the
/// 16 MiB cap (about 118,000 distinct flow records), and one small event of the most
/// compressible records there are (empty objects, up to the cap), which the record cap must
/// refuse before they are collected.
fn largest_batches() -> Vec<(String, Vec<u8>)> {
    let cap = esgflow::events::DecodeLimits::default().max_decoded_bytes;
    let mut json = String::with_capacity(cap);
    json.push_str(r#"{"topic_id":"measure","records":["#);
    for (i, line) in synthetic_lines(130_000).iter().enumerate() {
        let record = format!(
            r#"{{"timestamp":"{}","content":"{line}"}}"#,
            1_763_942_400_000_000u64 + i as u64
        );
        if json.len() + record.len() + 3 > cap {
            break;
        }
        if i > 0 {
            json.push(',');
        }
        json.push_str(&record);
    }
    json.push_str("]}");
    let mut empty = String::from(r#"{"records":["#);
    while empty.len() + 5 < cap {
        empty.push_str("{},");
    }
    empty.push_str("{}]}");
    let (flows, densest) = densest_legal_event(cap, false);
    let (padded_flows, padded) = densest_legal_event(cap, true);
    let sixteen = crate::emulator::clsfeed::encode_batch_json(json.as_bytes());
    vec![
        (
            format!("128 KB event, {flows} distinct flows, the most one legal event holds"),
            densest,
        ),
        (
            format!(
                "128 KB event, 16 MiB decoded: {padded_flows} distinct flows and empty records"
            ),
            padded,
        ),
        (
            format!(
                "16 MiB decoded, a {} KB event: over SCF's 128 KB async event limit",
                sixteen.len() / 1024
            ),
            sixteen,
        ),
        (
            "empty records, 16 MiB decoded".to_string(),
            crate::emulator::clsfeed::encode_batch_json(empty.as_bytes()),
        ),
    ]
}

/// SCF's limit on an asynchronous event (CLS trigger events included), after gzip and base64:
/// https://www.tencentcloud.com/document/product/583/11637 ("Quota Limits").
const MAX_ASYNC_EVENT_BYTES: usize = 128 * 1024;

/// The legal event with the most distinct flows: records that differ only in the source address
/// and port (as compressible as distinct flows get), as many as fit in 128 KB and the decode
/// cap. Answers the flow count and the event.
fn densest_legal_event(cap: usize, padded: bool) -> (usize, Vec<u8>) {
    let batch = |n: usize| {
        let mut json = String::from(r#"{"topic_id":"measure","records":["#);
        if padded {
            // Empty records (each a bad record, counted) up to the decode cap, less room for
            // the flows: 16 MiB decoded and as many distinct flows as still fit the event.
            let room = cap.saturating_sub(n * 160 + 64);
            while json.len() + 3 < room {
                json.push_str("{},");
            }
        }
        for i in 0..n {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&format!(
                r#"{{"timestamp":"1763942460000000","content":"2 1251762227 eni-measure0 10.{}.{}.{} 10.200.0.9 {} 443 6 1 60 1763942400 1763942460 ACCEPT OK"}}"#,
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255,
                1024 + i % 60_000
            ));
        }
        json.push_str("]}");
        json
    };
    let fits = |n: usize| {
        let json = batch(n);
        json.len() <= cap
            && crate::emulator::clsfeed::encode_batch_json(json.as_bytes()).len()
                <= MAX_ASYNC_EVENT_BYTES
    };
    let (mut lo, mut hi) = (1, 2);
    while fits(hi) {
        (lo, hi) = (hi, hi * 2);
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid) {
            lo = mid
        } else {
            hi = mid
        }
    }
    (
        lo,
        crate::emulator::clsfeed::encode_batch_json(batch(lo).as_bytes()),
    )
}

/// The table, and whether every target is met.
pub fn report(rows: &[Row]) -> (String, bool) {
    let mut ok = true;
    let mut check = |pass: bool| {
        ok &= pass;
        if pass {
            "ok"
        } else {
            "OVER TARGET"
        }
    };
    let mb = |kib: u64| kib as f64 / 1024.0;
    let mut text =
        String::from("| function | zip | binary | init, no snapshot |\n|---|---|---|---|\n");
    for row in rows {
        let zip = check(row.zip_bytes <= MAX_ZIP_BYTES);
        let init = check(row.init_ms <= MAX_INIT_MS);
        text.push_str(&format!(
            "| {} | {:.2} MB ({zip}) | {:.2} MB | {:.1} ms ({init}) |\n",
            row.function,
            row.zip_bytes as f64 / 1_048_576.0,
            row.binary_bytes as f64 / 1_048_576.0,
            row.init_ms,
        ));
    }
    let accounts: Vec<&str> = rows
        .iter()
        .flat_map(|r| r.accounts.iter().map(|a| a.account))
        .fold(Vec::new(), |mut seen, a| {
            if !seen.contains(&a) {
                seen.push(a);
            }
            seen
        });
    for (n, account) in accounts.iter().enumerate() {
        // The reference account (first) is held to the tiers; the synthetic one to the older,
        // tighter targets.
        let reference = n == 0;
        text.push_str(&format!("\n### {account}\n"));
        for row in rows {
            let Some(figures) = row.accounts.iter().find(|a| a.account == *account) else {
                continue;
            };
            if let Some(ms) = figures.init_ms {
                let pass = check(
                    ms <= if reference {
                        MAX_INIT_20K_MS
                    } else {
                        MAX_INIT_10K_MS
                    },
                );
                text.push_str(&format!(
                    "\n{} init with the snapshot: {ms:.1} ms ({pass}), its engine's image read",
                    row.function
                ));
                if let Some(compiled) = figures.init_compiled_ms {
                    text.push_str(&format!(
                        "; {compiled:.1} ms from the snapshot file alone (compiled)"
                    ));
                }
            }
            if let Some(kib) = figures.peak_rss_kib {
                let target = if reference {
                    MAX_TIER_RSS_KIB
                } else {
                    MAX_AUDIT_RSS_KIB
                };
                text.push_str(&format!(
                    "\n{} peak RSS on max-size events: {:.1} MB ({})",
                    row.function,
                    mb(kib),
                    check(kib <= target)
                ));
            }
            if let Some((kib, answers)) = &figures.heavy {
                text.push_str(&format!(
                    "\n{} peak RSS after the heavy requests below: {:.1} MB ({})",
                    row.function,
                    mb(*kib),
                    check(*kib <= MAX_LOOKUP_RSS_KIB)
                ));
                for (name, status, size, peak) in answers {
                    text.push_str(&format!(
                        "\n  {name}: {status}, {:.2} MB (peak so far {:.1} MB)",
                        *size as f64 / 1_048_576.0,
                        mb(*peak)
                    ));
                }
            }
            if let Some(runs) = &figures.sync_runs {
                let pass = check(
                    runs.first_seconds <= MAX_SYNC_SECONDS
                        && runs.published
                        && runs.hygiene_analysed == runs.rules,
                );
                let rss = match runs.peak_rss_kib {
                    Some(kib) => format!("{:.1} MB ({})", mb(kib), check(kib <= MAX_SYNC_RSS_KIB)),
                    None => "not measured".to_string(),
                };
                text.push_str(&format!(
                    "\n{} over {} rules: first run {:.1} s, hygiene reached {} rules, published: {} ({pass}); unchanged account {:.1} s; peak RSS {rss}",
                    row.function,
                    runs.rules,
                    runs.first_seconds,
                    runs.hygiene_analysed,
                    runs.published,
                    runs.second_seconds,
                ));
            }
        }
        text.push('\n');
    }
    for row in rows {
        for (account, batch, kib, deliverable) in &row.large_rss_kib {
            // The reference account is held to the 64 MB tier, the synthetic one to 48 MB.
            let target = if *account == 0 {
                MAX_TIER_RSS_KIB
            } else {
                MAX_AUDIT_LARGE_RSS_KIB
            };
            let pass = if *deliverable {
                check(*kib <= target)
            } else {
                "no target: SCF cannot deliver it"
            };
            text.push_str(&format!(
                "\n{} peak RSS, large batch, {} ({batch}): {:.1} MB ({pass})",
                row.function,
                accounts.get(*account).copied().unwrap_or("?"),
                mb(*kib)
            ));
        }
    }
    let pairs: Vec<&Pair> = rows.iter().flat_map(|row| &row.pairs).collect();
    if !pairs.is_empty() {
        text.push_str("\n\n### The shipped build (static musl) against glibc, back to back\n");
    }
    for pair in pairs {
        let ratio = pair.rounds_ratio.unwrap_or(pair.musl_ms / pair.glibc_ms);
        let pass = match pair.max_ratio {
            Some(max) => check(ratio <= max),
            None => "no target",
        };
        text.push_str(&format!(
            "\n{}: musl {:.2} ms, glibc {:.2} ms, {ratio:.2}× ({pass})",
            pair.what, pair.musl_ms, pair.glibc_ms
        ));
    }
    text.push_str(&format!(
        "\n\nTargets: zip ≤ 6 MB; init ≤ {MAX_INIT_MS} ms without a snapshot, ≤ {MAX_INIT_10K_MS} ms with the 10,000 synthetic rules and ≤ {MAX_INIT_20K_MS} ms with the reference account's 20,000; the shipped audit within {MAX_MUSL_RATIO}× the glibc build's time per max-size event; audit peak RSS ≤ {} MB on max-size events and the largest legal batches with the reference account (≤ {} and ≤ {} MB with the synthetic 10,000 rules); lookup peak RSS ≤ {} MB under any request the API accepts; a sync run ≤ {MAX_SYNC_SECONDS} s with hygiene complete and published, its peak RSS ≤ {} MB.\n",
        MAX_TIER_RSS_KIB / 1024,
        MAX_AUDIT_RSS_KIB / 1024,
        MAX_AUDIT_LARGE_RSS_KIB / 1024,
        MAX_LOOKUP_RSS_KIB / 1024,
        MAX_SYNC_RSS_KIB / 1024
    ));
    (text, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(pair_musl_ms: f64, reference_init_ms: f64) -> Row {
        Row {
            function: "audit".into(),
            zip_bytes: 1 << 20,
            binary_bytes: 2 << 20,
            init_ms: 1.0,
            accounts: vec![AccountFigures {
                account: "reference account, 20,000 rules",
                init_ms: Some(reference_init_ms),
                init_compiled_ms: Some(90.0),
                peak_rss_kib: Some(30 * 1024),
                heavy: None,
                sync_runs: None,
            }],
            large_rss_kib: Vec::new(),
            pairs: vec![
                Pair {
                    what: "audit init, reference account, 20,000 rules".into(),
                    musl_ms: 90.0,
                    glibc_ms: 60.0,
                    rounds_ratio: None,
                    max_ratio: None,
                },
                Pair {
                    what: "audit per max-size event, reference account, 20,000 rules".into(),
                    musl_ms: pair_musl_ms,
                    glibc_ms: 10.0,
                    rounds_ratio: None,
                    max_ratio: Some(MAX_MUSL_RATIO),
                },
            ],
        }
    }

    /// A pair measured in rounds is judged by the median of its rounds' ratios: the machine
    /// slowing for one build's median round does not make the pair pass or fail.
    #[test]
    fn a_pair_in_rounds_is_judged_round_by_round() {
        let (musl, glibc, ratio) = of_rounds(vec![11.0, 30.0, 31.5], vec![10.0, 30.0, 30.0]);
        assert_eq!((musl, glibc), (30.0, 30.0));
        assert!((ratio - 1.05).abs() < 1e-9, "{ratio}");
        // The machine's speed changing from round to round: the medians of the two builds
        // come from different rounds and say 1.6×; the rounds' own ratios 0.5, 3.3 and 1.07.
        let (musl, glibc, ratio) = of_rounds(vec![10.0, 33.0, 32.0], vec![20.0, 10.0, 30.0]);
        assert_eq!((musl, glibc), (32.0, 20.0));
        assert!((ratio - 32.0 / 30.0).abs() < 1e-9, "{ratio}");
        let mut row = audit(20.0, 50.0);
        row.pairs[1].rounds_ratio = Some(32.0 / 30.0);
        let (text, ok) = report(&[row]);
        assert!(ok, "{text}");
        assert!(
            text.contains("musl 20.00 ms, glibc 10.00 ms, 1.07× (ok)"),
            "{text}"
        );
    }

    /// The report's last line: when, on how many CPUs, and the load at both ends (a text that
    /// is not `/proc/loadavg`'s gives "unknown", not a wrong load).
    #[test]
    fn the_machine_line_gives_the_load_at_both_ends() {
        assert_eq!(
            Machine::load_of("1.75 1.96 1.88 3/412 31778\n"),
            Some([1.75, 1.96, 1.88])
        );
        assert_eq!(Machine::load_of("1.75 oops 1.88"), None);
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f\n";
        let at = |at: &str, load| Machine {
            at: at.into(),
            load,
            cpus: 2,
            cpu: Machine::cpu_of(cpuinfo),
        };
        assert_eq!(
            Machine::describe(
                &at("2026-12-07 13:30:02 UTC", Some([1.75, 1.96, 1.88])),
                &at("2026-12-07 13:40:56 UTC", None)
            ),
            "Measured on 2 CPUs (AMD EPYC, AVX-512) from 2026-12-07 13:30:02 UTC \
             (load average over 1 / 5 / 15 min 1.75 / 1.96 / 1.88) to 2026-12-07 13:40:56 UTC \
             (load average over 1 / 5 / 15 min unknown)."
        );
        assert_eq!(
            Machine::cpu_of("model name\t: Intel(R) Xeon(R)\nflags\t\t: fpu avx2 avx512_vnni\n")
                .as_deref(),
            Some("Intel(R) Xeon(R)")
        );
        assert_eq!(Machine::cpu_of("flags\t: avx512f\n"), None);
    }

    /// The musl/glibc pair is printed and held to its ratio; the init with 20,000 rules to its
    /// target; an init pair without a target never fails the check.
    #[test]
    fn the_shipped_build_is_held_to_the_glibc_build() {
        let (text, ok) = report(&[audit(11.0, 55.0)]);
        assert!(ok, "{text}");
        assert!(
            text.contains("audit per max-size event, reference account, 20,000 rules: musl 11.00 ms, glibc 10.00 ms, 1.10× (ok)"),
            "{text}"
        );
        assert!(
            text.contains("musl 90.00 ms, glibc 60.00 ms, 1.50× (no target)"),
            "{text}"
        );
        let (text, ok) = report(&[audit(12.0, 55.0)]);
        assert!(!ok && text.contains("1.20× (OVER TARGET)"), "{text}");
        let (text, ok) = report(&[audit(11.0, 61.0)]);
        assert!(
            !ok && text.contains("init with the snapshot: 61.0 ms (OVER TARGET)"),
            "{text}"
        );
    }
}
