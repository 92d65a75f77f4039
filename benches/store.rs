//! The local records store at 1,000,000 hit records and 1,000,000 traffic records (or
//! `ESGFLOW_BENCH_RECORDS` of each): latency of one search page (100 records) for each search
//! shape, and of the traffic views (all four) for each view shape, p50 / p95 / max over 200
//! (views: 50) requests with varied parameters.
//!
//! The database is built once under `target/bench-store/` (about 350 MB; rebuilt when the
//! generator's version changes) from synthetic records shaped like audit's: 30 days, 5 VPCs,
//! 50 subnets, 60,000 private addresses and some public ones, 300 rules.
//!
//! First, the import: the records audit writes for the reference account's day (its first
//! 100,000 flow-log lines, or `ESGFLOW_BENCH_IMPORT_LINES`, cut into CLS events as `esgflow
//! replay` cuts them and judged in process as the audit function judges them) stored into a new
//! database, three times: records a second and bytes a record. Then the days after it are added
//! (30 in all, or `ESGFLOW_BENCH_DAYS`), each its own flows of the same conversations, and the
//! traffic views of the ten VPCs with the most traffic are timed over the last 24 hours and
//! over the whole span, each window starting mid-hour as a console's "last 24 hours" does.
//! `ESGFLOW_BENCH_DAY_STORE=<database>` times those views over a store `esgflow replay` made
//! instead (its `ESGFLOW_BENCH_DAYS` days from the reference day), and nothing else.
//!
//! `cargo bench --bench store` (also part of `make bench`).

use std::io::Write as _;
use std::time::{Duration, Instant};

use esgflow::adapters::sqlite::LocalRecords;
use esgflow::core::engine::Scope;
use esgflow::core::search::{AddressMatch, HitFilter, TrafficFilter, HIT_TYPES};
use esgflow_local::testdata::records::{private, END, GENERATOR, SPAN};

/// Hit records, and as many traffic records: `ESGFLOW_BENCH_RECORDS`, 1,000,000 unless set.
fn records() -> u64 {
    std::env::var("ESGFLOW_BENCH_RECORDS")
        .ok()
        .map(|n| {
            n.replace('_', "")
                .parse()
                .expect("ESGFLOW_BENCH_RECORDS is a number")
        })
        .unwrap_or(1_000_000)
}
const SEARCHES: usize = 200;

fn database() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-store");
    std::fs::create_dir_all(&dir).unwrap();
    let count = records();
    let path = dir.join(format!("records-{GENERATOR}-{count}.db"));
    if path.exists() {
        return path;
    }
    let building = dir.join("building.db");
    let started = Instant::now();
    esgflow_local::testdata::records::build(&building, count, |done| {
        eprint!("\rbuilding {count} records: {done}");
        std::io::stderr().flush().ok();
    })
    .unwrap();
    std::fs::rename(&building, &path).unwrap();
    eprintln!(
        "\rbuilt {count} hit and {count} traffic records in {:.0?} ({} MB, {} bytes a record)",
        started.elapsed(),
        std::fs::metadata(&path).unwrap().len() / 1_000_000,
        std::fs::metadata(&path).unwrap().len() / (2 * count)
    );
    path
}

fn main() {
    // `cargo test --benches` runs benches once as tests: build nothing that large there.
    if std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench") {
        println!("store: run with `cargo bench --bench store`");
        return;
    }
    esgflow_local::release::measure::Machine::announce("store bench");
    let days: i64 = std::env::var("ESGFLOW_BENCH_DAYS")
        .map(|n| n.parse().expect("a number of days"))
        .unwrap_or(30);
    match std::env::var_os("ESGFLOW_BENCH_DAY_STORE") {
        Some(path) => {
            reference_views(&LocalRecords::open(path.as_ref()).unwrap(), days);
            return;
        }
        None => {
            let path = import_rate(days);
            reference_views(&LocalRecords::open(&path).unwrap(), days);
            std::fs::remove_file(&path).ok();
        }
    }
    let path = database();
    let store = LocalRecords::open(&path).unwrap();
    let mut rng = fastrand::Rng::with_seed(11);
    let month = HitFilter::new(END - SPAN, END);
    let at = |t: String| Some(AddressMatch::parse(&t).unwrap());
    // Job 1 asks for connections that were blocked: drawn from block hits the store holds, so
    // every search has records to find.
    let blocked: Vec<serde_json::Value> = store
        .search_hits(
            &HitFilter {
                types: vec!["block_hit"],
                ..month.clone()
            },
            1000,
            None,
        )
        .unwrap()
        .hits;
    assert!(!blocked.is_empty(), "the store holds block hits");
    let field = |hit: &serde_json::Value, key: &str| match &hit[key] {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    type Shape<'a> = Box<dyn Fn(&mut fastrand::Rng) -> HitFilter + 'a>;
    let shapes: Vec<(&str, Shape<'_>)> = vec![
        (
            "job 1: src + dst + port + TCP, block hits, 30 days",
            Box::new(|rng: &mut fastrand::Rng| {
                let hit = &blocked[rng.usize(0..blocked.len())];
                HitFilter {
                    types: vec!["block_hit"],
                    src: at(field(hit, "src_ip")),
                    dst: at(field(hit, "dst_ip")),
                    port: field(hit, "dst_port").parse().ok(),
                    protocol: field(hit, "protocol").parse().ok(),
                    ..month.clone()
                }
            }),
        ),
        (
            "source /24, 30 days",
            Box::new(|rng: &mut fastrand::Rng| HitFilter {
                src: at(format!("10.{}.{}.0/24", rng.u8(0..50), rng.u8(0..5))),
                ..month.clone()
            }),
        ),
        (
            "either end, one address, 30 days",
            Box::new(|rng: &mut fastrand::Rng| HitFilter {
                either: at(private(rng.u64(0..60_000))),
                ..month.clone()
            }),
        ),
        (
            "either end, a /24, 30 days",
            Box::new(|rng: &mut fastrand::Rng| HitFilter {
                either: at(format!("10.{}.{}.0/24", rng.u8(0..50), rng.u8(0..5))),
                ..month.clone()
            }),
        ),
        (
            "one rule, 30 days",
            Box::new(|rng: &mut fastrand::Rng| HitFilter {
                rule: Some(rng.u32(0..300).to_string()),
                ..month.clone()
            }),
        ),
        (
            "one subnet, every type, 1 day",
            Box::new(|rng: &mut fastrand::Rng| {
                let since = END - rng.i64(1..30) * 86_400;
                HitFilter {
                    types: HIT_TYPES.to_vec(),
                    subnet: Some(format!("subnet-{:06}", rng.u8(0..50))),
                    since,
                    until: since + 86_400,
                    ..month.clone()
                }
            }),
        ),
        (
            "one VPC, REJECT, 30 days",
            Box::new(|rng: &mut fastrand::Rng| HitFilter {
                vpc: Some(format!("vpc-{:08}", rng.u8(0..5))),
                fl_action: Some("REJECT"),
                ..month.clone()
            }),
        ),
        (
            "everything, 1 hour",
            Box::new(|rng: &mut fastrand::Rng| {
                let until = END - rng.i64(0..SPAN - 3600);
                HitFilter::new(until - 3600, until)
            }),
        ),
        (
            "a destination /16 with nothing to find (port 1), 30 days",
            Box::new(|rng: &mut fastrand::Rng| HitFilter {
                dst: at(format!("10.{}.0.0/16", rng.u8(0..50))),
                port: Some(1),
                ..month.clone()
            }),
        ),
        (
            "a protocol with nothing to find (GRE), 30 days",
            Box::new(|_: &mut fastrand::Rng| HitFilter {
                protocol: Some(47),
                ..month.clone()
            }),
        ),
        (
            "either end, a /16 with nothing to find (port 1), 30 days",
            Box::new(|rng: &mut fastrand::Rng| HitFilter {
                either: at(format!("10.{}.0.0/16", rng.u8(0..50))),
                port: Some(1),
                ..month.clone()
            }),
        ),
    ];
    println!(
        "local records store, {} hit and as many traffic records: one page of 100, {SEARCHES} searches each",
        records()
    );
    println!(
        "{:<58} {:>8} {:>8} {:>8} {:>6}",
        "search", "p50 ms", "p95 ms", "max ms", "found"
    );
    for (name, shape) in &shapes {
        let mut times: Vec<Duration> = Vec::with_capacity(SEARCHES);
        let mut found = 0;
        let mut empty = 0;
        for _ in 0..SEARCHES {
            let filter = shape(&mut rng);
            let started = Instant::now();
            let page = store.search_hits(&filter, 100, None).unwrap();
            times.push(started.elapsed());
            found += page.hits.len();
            empty += usize::from(page.hits.is_empty());
        }
        // A figure times what its name says: a search that should find records found some, and
        // the one meant to find nothing found nothing.
        if name.contains("nothing to find") {
            assert_eq!(found, 0, "{name}: found {found} records");
        } else if name.starts_with("job 1") {
            assert_eq!(empty, 0, "{name}: {empty} of {SEARCHES} found nothing");
        } else {
            assert!(
                empty < SEARCHES / 2,
                "{name}: {empty} of {SEARCHES} found nothing"
            );
        }
        let [p50, p95, max] = quantiles(&mut times);
        println!(
            "{name:<58} {p50:>8.2} {p95:>8.2} {max:>8.2} {:>6}",
            found / SEARCHES
        );
    }
    traffic_views(&store, &mut rng);
    // The next page of a broad search continues from the cursor.
    let broad = HitFilter::new(END - SPAN, END);
    let first = store.search_hits(&broad, 100, None).unwrap();
    let mut times = Vec::new();
    let mut context = first.context;
    for _ in 0..SEARCHES {
        let started = Instant::now();
        let page = store.search_hits(&broad, 100, context.as_deref()).unwrap();
        times.push(started.elapsed());
        context = page.context;
    }
    let [p50, p95, max] = quantiles(&mut times);
    println!(
        "{:<58} {p50:>8.2} {p95:>8.2} {max:>8.2} {:>6}",
        "everything, 30 days, pages 2 to 201 by cursor", 100
    );
}

/// The records audit writes for `lines` lines of the reference account's day `day` (0: the
/// reference day), as JSON lines.
fn reference_records(lines: usize, day: i64) -> String {
    use esgflow::app::audit::parse_batch;
    use esgflow::core::classify::{judge, Monitored};
    use esgflow::events::{ClsTriggerEvent, DecodeLimits};
    use esgflow_local::emulator::clsfeed;
    use esgflow_local::testdata::reference;
    static ENGINE: std::sync::OnceLock<esgflow::core::engine::Engine> = std::sync::OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        esgflow::core::engine::Engine::compile(
            &reference::snapshot(&reference::account(reference::RULES, 42)).unwrap(),
        )
        .unwrap()
    });
    let start = esgflow_local::cli::synthetic::REFERENCE_DAY + day as u64 * 86_400;
    let options = clsfeed::FeedOptions::default();
    let mut records = String::new();
    for event in clsfeed::events(reference::day_lines(lines, 7, start), &options) {
        let event: ClsTriggerEvent = serde_json::from_slice(&event.unwrap()).unwrap();
        let (_, flows) = parse_batch(&event, &DecodeLimits::default()).unwrap();
        for record in judge(engine, flows, &Monitored::All).records {
            records.push_str(&serde_json::to_string(&record).unwrap());
            records.push('\n');
        }
    }
    records
}

/// The import of the reference day's records, then its `days - 1` next days' (see the top of
/// the file): the database.
fn import_rate(days: i64) -> std::path::PathBuf {
    let lines: usize = std::env::var("ESGFLOW_BENCH_IMPORT_LINES")
        .map(|n| n.replace('_', "").parse().expect("a number of lines"))
        .unwrap_or(100_000);
    let records = reference_records(lines, 0);
    let count = records.lines().count();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-store");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("import.db");
    let mut times = Vec::new();
    for _ in 0..3 {
        std::fs::remove_file(&path).ok();
        let store = LocalRecords::create(&path).unwrap();
        let started = Instant::now();
        let imported = store.import(records.as_bytes()).unwrap();
        times.push(started.elapsed().as_secs_f64());
        assert_eq!(imported.records as usize, count, "every record is stored");
    }
    times.sort_by(f64::total_cmp);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "import: {count} records of the reference day's first {lines} lines in {:.3} / {:.3} / {:.3} s (min / median / max): {:.0} records/s at the median, {} bytes a record",
        times[0],
        times[1],
        times[2],
        count as f64 / times[1],
        size / count as u64
    );
    drop(records);
    let store = LocalRecords::create(&path).unwrap();
    let (started, mut all) = (Instant::now(), count);
    for day in 1..days {
        let records = reference_records(lines, day);
        let imported = store.import(records.as_bytes()).unwrap();
        assert_eq!(imported.records as usize, records.lines().count());
        all += imported.records as usize;
        eprint!("\rjudged and stored day {}", day + 1);
    }
    if days > 1 {
        println!(
            "\r{days} days of {lines} lines judged and stored in {:.0?}: {all} records, {} bytes a record",
            started.elapsed(),
            std::fs::metadata(&path).unwrap().len() / all as u64
        );
    }
    path
}

/// The traffic views of the ten VPCs with the most traffic in `store` over the last 24 hours of
/// its `days` days from the reference day and over all of them (see the top of the file),
/// each view asserted to find traffic.
fn reference_views(store: &LocalRecords, days: i64) {
    let first = esgflow_local::cli::synthetic::REFERENCE_DAY as i64;
    // "The last 24 hours" as a console asks, a while after the last record.
    let until = first + days * 86_400 + 1_234;
    let vpcs: Vec<String> = (0..esgflow_local::testdata::reference::VPCS)
        .map(|v| format!("vpc-{v:08x}"))
        .collect();
    let flows = |vpc: &str| {
        let view = store
            .traffic(&TrafficFilter {
                vpc: Some(vpc.to_string()),
                talkers: 0,
                ..TrafficFilter::new(first, until)
            })
            .unwrap();
        view.totals.iter().map(|t| t.sums.flows).sum::<u64>()
    };
    let mut largest: Vec<(u64, &String)> = vpcs.iter().map(|vpc| (flows(vpc), vpc)).collect();
    largest.sort_unstable_by(|a, b| b.cmp(a));
    largest.truncate(10);
    assert!(largest.iter().all(|(flows, _)| *flows > 0), "{largest:?}");
    let scopes = [
        ("all scopes", None),
        ("between subnets", Some(Scope::InterSubnet)),
        ("inbound", Some(Scope::VpcInbound)),
        ("outbound", Some(Scope::VpcOutbound)),
        ("cross-VPC", Some(Scope::CrossVpc)),
    ];
    for (span, since) in [
        ("24 h", until - 86_400),
        ("all days", until - days * 86_400),
    ] {
        if span == "all days" && days == 1 {
            continue;
        }
        for (name, scope) in scopes {
            let mut times = Vec::new();
            for (_, vpc) in &largest {
                for _ in 0..2 {
                    let filter = TrafficFilter {
                        vpc: Some(vpc.to_string()),
                        scope,
                        ..TrafficFilter::new(since, until)
                    };
                    let started = Instant::now();
                    let view = store.traffic(&filter).unwrap();
                    times.push(started.elapsed());
                    assert!(!view.totals.is_empty(), "{name}, {vpc}: traffic");
                    assert!(!view.talkers.is_empty(), "{name}, {vpc}: talkers");
                }
            }
            let [p50, p95, max] = quantiles(&mut times);
            println!(
                "reference views, ten largest VPCs, {span} ({days} days), {name}: p50 {p50:.1} / p95 {p95:.1} / max {max:.1} ms"
            );
        }
    }
    reference_networks(store, first, until);
    for (name, protocol, finds) in [
        ("protocol ICMPv6", 58, true),
        ("protocol GRE, which no record has", 47, false),
    ] {
        let filter = HitFilter {
            protocol: Some(protocol),
            ..HitFilter::new(first, until)
        };
        reference_searches(store, name, &vec![filter; 20], finds);
    }
}

/// Searches by a /24 at either end over the replayed store: the networks of the sources of 100
/// hits spread over it (each finds records), and 100 networks no record has.
fn reference_networks(store: &LocalRecords, since: i64, until: i64) {
    let networks: Vec<String> = (0..100)
        .filter_map(|i| {
            let at = since + (until - since) * i / 100;
            let page = store
                .search_hits(&HitFilter::new(at, at + 600), 1, None)
                .unwrap();
            let src: std::net::Ipv4Addr = page.hits.first()?["src_ip"].as_str()?.parse().ok()?;
            let [a, b, c, _] = src.octets();
            Some(format!("{a}.{b}.{c}.0/24"))
        })
        .collect();
    assert!(networks.len() >= 50, "{} networks", networks.len());
    let empty: Vec<String> = (0..100).map(|i| format!("10.250.{i}.0/24")).collect();
    for (name, networks, finds) in [
        ("with records", &networks, true),
        ("no record has", &empty, false),
    ] {
        let filters: Vec<HitFilter> = networks
            .iter()
            .map(|network| HitFilter {
                either: Some(AddressMatch::parse(network).unwrap()),
                ..HitFilter::new(since, until)
            })
            .collect();
        let name = format!("either end, {} /24s {name}", networks.len());
        reference_searches(store, &name, &filters, finds);
    }
}

/// Times a page of 100 of each of `filters`, each finding records or, unless `finds`, none.
fn reference_searches(store: &LocalRecords, name: &str, filters: &[HitFilter], finds: bool) {
    let mut times = Vec::new();
    for filter in filters {
        let started = Instant::now();
        let page = store.search_hits(filter, 100, None).unwrap();
        times.push(started.elapsed());
        assert_eq!(!page.hits.is_empty(), finds, "{name}: {filter:?}");
    }
    let [p50, p95, max] = quantiles(&mut times);
    println!("reference searches, {name}: p50 {p50:.1} / p95 {p95:.1} / max {max:.1} ms");
}

/// The median, 95th percentile and largest of `times`, in milliseconds.
fn quantiles(times: &mut [Duration]) -> [f64; 3] {
    times.sort();
    let n = times.len();
    [times[n / 2], times[n * 95 / 100], times[n - 1]].map(|d| d.as_secs_f64() * 1000.0)
}

/// The traffic views (`/v1/traffic`: totals, talkers, matrix, series) of typical requests.
fn traffic_views(store: &LocalRecords, rng: &mut fastrand::Rng) {
    const VIEWS: usize = 50;
    let vpc = |rng: &mut fastrand::Rng| Some(format!("vpc-{:08}", rng.u8(0..5)));
    let day = |rng: &mut fastrand::Rng| {
        let until = END - rng.i64(0..29) * 86_400;
        (until - 86_400, until)
    };
    type Shape = Box<dyn Fn(&mut fastrand::Rng) -> TrafficFilter>;
    let shapes: Vec<(&str, Shape)> = vec![
        (
            "traffic: one VPC, 1 day",
            Box::new(move |rng: &mut fastrand::Rng| {
                let (since, until) = day(rng);
                TrafficFilter {
                    vpc: vpc(rng),
                    ..TrafficFilter::new(since, until)
                }
            }),
        ),
        (
            "traffic: one VPC, between subnets, 1 day",
            Box::new(move |rng: &mut fastrand::Rng| {
                let (since, until) = day(rng);
                TrafficFilter {
                    vpc: vpc(rng),
                    scope: Some(Scope::InterSubnet),
                    ..TrafficFilter::new(since, until)
                }
            }),
        ),
        (
            "traffic: one VPC, inbound, 7 days",
            Box::new(move |rng: &mut fastrand::Rng| {
                let until = END - rng.i64(0..23) * 86_400;
                TrafficFilter {
                    vpc: vpc(rng),
                    scope: Some(Scope::VpcInbound),
                    ..TrafficFilter::new(until - 7 * 86_400, until)
                }
            }),
        ),
        (
            "traffic: one subnet, 1 day",
            Box::new(move |rng: &mut fastrand::Rng| {
                let (since, until) = day(rng);
                TrafficFilter {
                    subnet: Some(format!("subnet-{:06}", rng.u8(0..50))),
                    ..TrafficFilter::new(since, until)
                }
            }),
        ),
        (
            "traffic: everything, 1 hour",
            Box::new(|rng: &mut fastrand::Rng| {
                let until = END - rng.i64(0..SPAN - 3600);
                TrafficFilter::new(until - 3600, until)
            }),
        ),
        (
            "traffic: one VPC, 30 days",
            Box::new(move |rng: &mut fastrand::Rng| TrafficFilter {
                vpc: vpc(rng),
                ..TrafficFilter::new(END - SPAN, END)
            }),
        ),
    ];
    println!(
        "{:<58} {:>8} {:>8} {:>8} {:>6}",
        "traffic views (4 queries)", "p50 ms", "p95 ms", "max ms", "talkers"
    );
    for (name, shape) in &shapes {
        let mut times: Vec<Duration> = Vec::with_capacity(VIEWS);
        let mut talkers = 0;
        for _ in 0..VIEWS {
            let filter = shape(rng);
            let started = Instant::now();
            let view = store.traffic(&filter).unwrap();
            times.push(started.elapsed());
            assert!(
                !view.totals.is_empty(),
                "{name}: {filter:?} found no traffic"
            );
            talkers += view.talkers.len();
        }
        let [p50, p95, max] = quantiles(&mut times);
        println!(
            "{name:<58} {p50:>8.2} {p95:>8.2} {max:>8.2} {:>6}",
            talkers / VIEWS
        );
    }
}
