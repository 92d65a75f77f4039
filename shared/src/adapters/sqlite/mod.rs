//! The records store on one machine: an SQLite database (rusqlite, SQLite bundled) that
//! `esgflow replay` fills from the records audit wrote and a local lookup reads. It answers the
//! same searches as the hits topic in CLS (`crate::adapters::tencent::cls_query`), with the same
//! meaning for every condition; `tests/records_store.rs` runs each against both.
//!
//! Compact by design (docs/records.md, "The records store"): every id, name and IPv6 address
//! is kept once in table `names` and referred to by number; table `records` holds every record
//! but traffic as the numbers searches filter on, its body deflated with up to 127 others in
//! table `bodies` ([`blocks`]); table `traffic` holds the numbers the traffic views group and
//! sum. Records are keyed by type and `record_id`, so importing a retried batch twice keeps
//! one copy (the first).

mod blocks;
mod import;
mod line;

pub use line::RecordLine;

use compact_str::CompactString;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, OpenFlags, OptionalExtension};
use serde_json::Value;

use crate::core::ports::{RecordsStore, SearchFuture, StoreFailure};
use crate::core::search::{
    AddressMatch, Conversations, HitFilter, HitsPage, MatrixCell, RuleCounters, SeriesPoint,
    Talker, TrafficFilter, TrafficSums, TrafficTotal, TrafficView, MAX_MATRIX_CELLS,
};

/// A failure of the local store, naming the database.
#[derive(Debug, thiserror::Error)]
#[error("records database {path}: {message}")]
pub struct LocalStoreError {
    path: String,
    message: String,
}

/// What an import read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Records stored.
    pub records: u64,
    /// Lines that were not a record (not JSON, or without `record_type`, `record_id` or
    /// `time`), each skipped.
    pub skipped: u64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS records (
    type INTEGER NOT NULL, rid NOT NULL, time INTEGER NOT NULL,
    src INTEGER, dst INTEGER, dst_port INTEGER, protocol INTEGER, rule INTEGER,
    src_vpc INTEGER, dst_vpc INTEGER, src_subnet INTEGER, dst_subnet INTEGER, fl_action INTEGER,
    moved INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS records_by_id ON records (rid, type);
CREATE TABLE IF NOT EXISTS bodies (first INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    id INTEGER PRIMARY KEY,
    hits INTEGER, block_hits INTEGER, observe_hits INTEGER, first_hit INTEGER, last_hit INTEGER
);
CREATE TABLE IF NOT EXISTS traffic (
    vpc INTEGER NOT NULL, copy INTEGER NOT NULL,
    rid NOT NULL, time INTEGER NOT NULL, last_seen INTEGER,
    scope INTEGER, peer INTEGER, src_subnet INTEGER, dst_subnet INTEGER, src INTEGER,
    dst INTEGER, dst_port INTEGER, protocol_name INTEGER, fl_action INTEGER, flows INTEGER,
    packets INTEGER, bytes INTEGER, enis INTEGER,
    PRIMARY KEY (vpc, time, rid, copy)
) WITHOUT ROWID;
PRAGMA user_version = 9;
";

/// The VPCs a traffic table (`traffic` or a rollup) files records under, found by seeking from one to the next (one
/// index step each): read VPC by VPC, a window over every VPC is a range of each (3.3 million
/// records in 0.6 s, against 2.9 s through an index on time; docs/records.md).
fn every_vpc(table: &str) -> String {
    format!("WITH RECURSIVE v(vpc) AS (SELECT min(vpc) FROM {table} UNION ALL SELECT (SELECT min(vpc) FROM {table} WHERE vpc > v.vpc) FROM v WHERE v.vpc IS NOT NULL) SELECT vpc FROM v WHERE vpc IS NOT NULL")
}

/// The worker threads SQLite's sorter gets to build the search indexes of a table of `rows`
/// records on a machine of `cores`: one, when the table's index entries outgrow the sort's
/// 16 MiB cache and are sorted in runs on disk and merged — over the reference day's 2.66
/// million (its records but traffic) the five sorts took 10.0-12.1 s with one or two workers
/// against 13.2-15.0 s without, on 2 cores — and none when they are sorted in memory, where a
/// worker only costs (267,000: 1.41-1.70 s against 1.35-1.47 s; docs/performance.md).
fn sort_workers(rows: i64, cores: usize) -> usize {
    const SORTED_IN_MEMORY: i64 = 1_000_000;
    usize::from(rows > SORTED_IN_MEMORY && cores > 1)
}

/// The indexes searches read, made at the end of an import that finds them missing (a new
/// database): SQLite sorts each once instead of inserting every record into each (the import
/// about a fifth faster, the store 4 % smaller; docs/performance.md). `records_by_id` is made
/// with the tables: an import skips a record it already holds through it. The port, protocol
/// and address indexes leave out the records without one (`rule_hits`, a fifth of the
/// reference day's): a search names the value it wants, which SQLite reads as `IS NOT NULL`.
const SEARCH_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS records_by_time ON records (time);
CREATE INDEX IF NOT EXISTS records_by_rule ON records (rule, time);
CREATE INDEX IF NOT EXISTS records_by_port ON records (dst_port, time) WHERE dst_port IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_protocol ON records (protocol, time) WHERE protocol IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_src ON records (src, time, type, dst_port, protocol, dst) WHERE src IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_dst ON records (dst, time, type, dst_port, protocol, src) WHERE dst IS NOT NULL;
";

/// The schema's version (`PRAGMA user_version`): a database made by another version is
/// refused, with how to fill it again.
const SCHEMA_VERSION: i64 = 9;

/// The columns of table `records` an import writes, in order.
const RECORD_COLUMNS: [&str; 14] = [
    "type",
    "rid",
    "time",
    "src",
    "dst",
    "dst_port",
    "protocol",
    "rule",
    "src_vpc",
    "dst_vpc",
    "src_subnet",
    "dst_subnet",
    "fl_action",
    "moved",
];

/// The fields a record keeps only in a column of table `records` when the column gives them
/// back as they were (a bit of column `moved` for each): with them out of the body, a
/// reference-account hit record's block share falls from 79 to 52 bytes.
const MOVED: [&str; 12] = [
    "src_ip",
    "dst_ip",
    "src_ip_num",
    "dst_ip_num",
    "dst_port",
    "protocol",
    "rule_uuid",
    "src_vpc",
    "dst_vpc",
    "src_subnet",
    "dst_subnet",
    "fl_action",
];

/// The columns of table `records` that give back [`MOVED`]'s fields, in its order (an
/// address's number is its address column's).
const MOVED_FROM: [usize; 12] = [0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

/// What a search reads of a record's row to give the record back: [`Stored`].
const STORED: &str = "rowid, type, rid, time, moved, src, dst, dst_port, protocol, rule, src_vpc, dst_vpc, src_subnet, dst_subnet, fl_action";

/// A record's row, as [`STORED`] reads it.
struct Stored {
    rowid: i64,
    kind: i64,
    rid: Sql,
    time: i64,
    moved: i64,
    /// src, dst, dst_port, protocol, rule, src_vpc, dst_vpc, src_subnet, dst_subnet, fl_action.
    columns: [Option<i64>; 10],
}

impl Stored {
    /// Reads [`STORED`]'s columns from `at` on.
    fn read(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Self> {
        let mut columns = [None; 10];
        for (i, column) in columns.iter_mut().enumerate() {
            *column = row.get(at + 5 + i)?;
        }
        Ok(Self {
            rowid: row.get(at)?,
            kind: row.get(at + 1)?,
            rid: row.get(at + 2)?,
            time: row.get(at + 3)?,
            moved: row.get(at + 4)?,
            columns,
        })
    }
}

/// A search's `WHERE` conditions and their values.
type Conditions = (Vec<String>, Vec<Sql>);

/// A conversation among the top talkers, as numbers: initiator, service end, service port,
/// protocol, scope.
type Conversation = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// Most conversations a traffic view sums in memory (about 130 bytes each at their peak, so
/// 64 MB); a window with more has SQLite group them, on disk.
const TALKERS_IN_MEMORY: usize = 500_000;

/// Most names a store keeps once read (about 60 bytes each).
const NAMES_KEPT: usize = 100_000;

/// The columns of table `traffic` an import writes, in order.
const TRAFFIC_COLUMNS: [&str; 18] = [
    "vpc",
    "copy",
    "rid",
    "time",
    "last_seen",
    "scope",
    "peer",
    "src_subnet",
    "dst_subnet",
    "src",
    "dst",
    "dst_port",
    "protocol_name",
    "fl_action",
    "flows",
    "packets",
    "bytes",
    "enis",
];

const QUARTER: i64 = 900;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// A rollup of table `traffic`, summed as records are imported, so that a view reads a
/// window's whole days, hours and quarter hours from the rollups and only its ragged edges
/// from the records. Each is clustered as `traffic` is (VPC filing, then time).
struct Rollup {
    /// Its table.
    table: &'static str,
    /// The time it sums over, seconds.
    step: i64,
    /// Per conversation (both ends, port, protocol, scope, verdict, peer, subnets: the top
    /// talkers), or else per scope, peer, verdict, subnet pair and step of `last_seen` (the
    /// totals, the matrix and the series).
    conversations: bool,
}

/// The rollups, coarsest first of each kind.
const ROLLUPS: [Rollup; 5] = [
    Rollup {
        table: "sums_day",
        step: DAY,
        conversations: false,
    },
    Rollup {
        table: "sums_hour",
        step: HOUR,
        conversations: false,
    },
    Rollup {
        table: "sums_quarter",
        step: QUARTER,
        conversations: false,
    },
    Rollup {
        table: "conversations_day",
        step: DAY,
        conversations: true,
    },
    Rollup {
        table: "conversations_hour",
        step: HOUR,
        conversations: true,
    },
];

/// The key columns of a rollup of sums, in order (`series`: the step of `last_seen`, less the
/// row's time — 0 but for a record last seen in a later step than its time).
const SUMS_KEY: [&str; 9] = [
    "vpc",
    "time",
    "copy",
    "series",
    "scope",
    "peer",
    "fl_action",
    "src_subnet",
    "dst_subnet",
];

/// The key columns of a rollup of conversations, in order.
const CONVERSATIONS_KEY: [&str; 12] = [
    "vpc",
    "time",
    "copy",
    "scope",
    "src",
    "dst",
    "dst_port",
    "protocol_name",
    "fl_action",
    "peer",
    "src_subnet",
    "dst_subnet",
];

impl Rollup {
    fn key(&self) -> &'static [&'static str] {
        if self.conversations {
            &CONVERSATIONS_KEY
        } else {
            &SUMS_KEY
        }
    }
}

/// The rollups' tables (their key is NOT NULL, as a `WITHOUT ROWID` table's must be: a missing
/// value is [`NONE`]).
fn rollup_tables() -> String {
    ROLLUPS
        .iter()
        .map(|rollup| {
            let key = rollup.key();
            format!(
                "CREATE TABLE IF NOT EXISTS {} ({}, flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY ({})) WITHOUT ROWID;\n",
                rollup.table,
                key.iter()
                    .map(|column| format!("{column} INTEGER NOT NULL"))
                    .collect::<Vec<_>>()
                    .join(", "),
                key.join(", ")
            )
        })
        .collect()
}

/// A rollup's key column without a value: no name id, address or port is this.
const NONE: i64 = -(1 << 62);

/// Rollup rows of each kind the writer collects before handing them to be summed (120 bytes
/// each).
const ROLLUP_ROWS_A_SET: usize = if cfg!(test) { 16 } else { 1 << 16 };

/// Most rows of one kind an import sums in memory before adding them to the rollups (120
/// bytes each). The unit tests add them every 64, so that their imports write many sets.
const ROLLUP_ROWS_IN_MEMORY: usize = if cfg!(test) { 64 } else { 300_000 };

/// Rollup rows added by one statement: SQLite's cost of a statement's run (bind, step, reset)
/// paid once for 64 rows instead of for each (a day of a million lines' import 5-11 % faster;
/// docs/performance.md, "The store's import").
const UPSERT_ROWS: usize = 64;

/// A rollup row: its key columns (as [`Rollup::key`], the unused ones 0), and flows, packets and
/// bytes.
type RollupRow = ([i64; 12], [i64; 3]);

/// The rollup rows of the traffic an import has stored, not yet summed: a row of the finest
/// rollup of each kind per record (`rows[0]` sums, `rows[1]` conversations; the coarser ones are
/// summed from them), each record's flows, packets and bytes counted as the views count them
/// (missing or negative as 0). The writer only appends them; [`Rollups::sum`], on another
/// thread, sums and sorts them.
struct Rollups {
    rows: [Vec<RollupRow>; 2],
}

impl Rollups {
    fn new() -> Self {
        Self {
            rows: Default::default(),
        }
    }

    /// The finest rollup of each kind: the one records are added to.
    fn finest(conversations: bool) -> &'static Rollup {
        ROLLUPS
            .iter()
            .rev()
            .find(|rollup| rollup.conversations == conversations)
            .expect("a rollup of each kind")
    }

    /// Adds a traffic row newly stored under `vpc` (`copy`), its columns as
    /// [`TRAFFIC_COLUMNS`] from `rid` on.
    fn add(&mut self, vpc: i64, copy: i64, row: &[Sql]) {
        let n = |at: usize| match row[at] {
            Sql::Integer(n) => Some(n),
            _ => None,
        };
        let key = |at: usize| n(at).unwrap_or(NONE);
        let sums = [12, 13, 14].map(|at| n(at).unwrap_or(0).max(0));
        let time = n(1).unwrap_or(0);
        let last_seen = n(2).unwrap_or(time);
        for conversations in [false, true] {
            let step = Self::finest(conversations).step;
            let start = floor(time, step);
            let row = if conversations {
                [
                    vpc,
                    start,
                    copy,
                    key(3),
                    key(7),
                    key(8),
                    key(9),
                    key(10),
                    key(11),
                    key(4),
                    key(5),
                    key(6),
                ]
            } else {
                [
                    vpc,
                    start,
                    copy,
                    floor(last_seen, step) - start,
                    key(3),
                    key(4),
                    key(11),
                    key(5),
                    key(6),
                    0,
                    0,
                    0,
                ]
            };
            self.rows[usize::from(conversations)].push((row, sums));
        }
    }

    fn full(&self) -> bool {
        self.rows[0].len() >= ROLLUP_ROWS_A_SET
    }

    /// The rows collected so far, forgotten here.
    fn take(&mut self) -> [Vec<RollupRow>; 2] {
        std::mem::take(&mut self.rows)
    }

    /// Sums each set of rows `sets` gives (as [`Rollups::take`] gives them) into those before
    /// it, and hands them to `write` as [`Rollups::summed`] whenever [`ROLLUP_ROWS_IN_MEMORY`]
    /// of one kind are summed, and at the end: SQLite adds to the rollups the rows of a
    /// quarter of a million records or more at a time, however many each record repeats (a
    /// day of ten million lines repeats most conversations within the hour). Runs until
    /// `sets` ends or `write` is gone.
    fn sum(
        sets: impl IntoIterator<Item = [Vec<RollupRow>; 2]>,
        write: &std::sync::mpsc::Sender<Vec<Vec<RollupRow>>>,
    ) {
        let mut summed: [Vec<RollupRow>; 2] = Default::default();
        for set in sets {
            for (summed, mut rows) in summed.iter_mut().zip(set) {
                sum_sorted(&mut rows);
                *summed = merge_sorted(std::mem::take(summed), rows);
            }
            if summed
                .iter()
                .any(|rows| rows.len() >= ROLLUP_ROWS_IN_MEMORY)
                && write
                    .send(Self::summed(std::mem::take(&mut summed)))
                    .is_err()
            {
                return;
            }
        }
        if summed.iter().any(|rows| !rows.is_empty()) {
            let _ = write.send(Self::summed(summed));
        }
    }

    /// Each of [`ROLLUPS`]'s rows of `finest` (the finest rollup's of each kind, summed and in
    /// key order as [`Rollups::sum`] keeps them), summed and in key order, so each lands next to
    /// the last.
    fn summed(finest: [Vec<RollupRow>; 2]) -> Vec<Vec<RollupRow>> {
        let mut finest = finest.map(Some);
        // Each kind's finest comes last of its kind: the coarser are summed from it first.
        ROLLUPS
            .iter()
            .map(|rollup| {
                let kind = &mut finest[usize::from(rollup.conversations)];
                if rollup.step == Self::finest(rollup.conversations).step {
                    return kind.take().expect("one finest rollup of each kind");
                }
                let mut coarser: Vec<RollupRow> = kind
                    .as_ref()
                    .expect("the finest rollup last of its kind")
                    .iter()
                    .map(|(row, sums)| {
                        let mut row = *row;
                        let start = floor(row[1], rollup.step);
                        if !rollup.conversations {
                            // The step of `last_seen` (a multiple of the finer one's), less the
                            // start.
                            row[3] = floor(row[1] + row[3], rollup.step) - start;
                        }
                        row[1] = start;
                        (row, *sums)
                    })
                    .collect();
                sum_sorted(&mut coarser);
                coarser
            })
            .collect()
    }

    /// Adds [`Rollups::summed`]'s rows to each of [`ROLLUPS`]; `upserts` as [`ROLLUPS`].
    fn write(
        summed: &[Vec<RollupRow>],
        upserts: &mut [(rusqlite::Statement<'_>, rusqlite::Statement<'_>)],
    ) -> rusqlite::Result<()> {
        for ((rollup, (one, many)), rows) in ROLLUPS.iter().zip(upserts).zip(summed) {
            let key = rollup.key().len();
            // Each value bound where it goes (no list of them made for each run).
            let run = |statement: &mut rusqlite::Statement<'_>,
                       rows: &[RollupRow]|
             -> rusqlite::Result<usize> {
                let values = rows
                    .iter()
                    .flat_map(|(row, sums)| row[..key].iter().chain(sums));
                for (at, value) in values.enumerate() {
                    statement.raw_bind_parameter(at + 1, *value)?;
                }
                statement.raw_execute()
            };
            let mut chunks = rows.chunks_exact(UPSERT_ROWS);
            for chunk in &mut chunks {
                run(many, chunk)?;
            }
            for row in chunks.remainder() {
                run(one, std::slice::from_ref(row))?;
            }
        }
        Ok(())
    }
}

/// Sorts `rows` by key, each key's sums added into one row.
fn sum_sorted(rows: &mut Vec<RollupRow>) {
    rows.sort_unstable_by_key(|row| row.0);
    rows.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            add_sums(&mut kept.1, &later.1);
        }
        same
    });
}

/// Two lists of rows in key order as one, each key's sums added into one row.
fn merge_sorted(a: Vec<RollupRow>, b: Vec<RollupRow>) -> Vec<RollupRow> {
    if a.is_empty() {
        return b;
    }
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.0.cmp(&y.0) {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                std::cmp::Ordering::Equal => {
                    let (mut x, y) = (a.next().expect("peeked"), b.next().expect("peeked"));
                    add_sums(&mut x.1, &y.1);
                    Some(x)
                }
            },
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(row) => merged.push(row),
            None => return merged,
        }
    }
}

/// The start of the step of `time`.
fn floor(time: i64, step: i64) -> i64 {
    time - time.rem_euclid(step)
}

/// Adds `more` to `sums`.
fn add_sums(sums: &mut [i64; 3], more: &[i64; 3]) {
    for (sum, more) in sums.iter_mut().zip(more) {
        *sum = sum.saturating_add(*more);
    }
}

/// The statement that adds a row to `rollup`, or its sums to the row of the same key.
fn rollup_upsert(rollup: &Rollup, rows: usize) -> String {
    let key = rollup.key();
    let row = format!("({})", vec!["?"; key.len() + 3].join(", "));
    format!(
        "INSERT INTO {} ({}, flows, packets, bytes) VALUES {} ON CONFLICT DO UPDATE SET flows = flows + excluded.flows, packets = packets + excluded.packets, bytes = bytes + excluded.bytes",
        rollup.table,
        key.join(", "),
        vec![row; rows].join(", ")
    )
}

/// Where a traffic view reads a window from: the rollups' rows of its whole days, hours and
/// quarter hours (each rollup the part of the window the coarser ones leave), the records for
/// the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    /// The rollups read: an index into [`ROLLUPS`] and a window of it.
    reads: Vec<(usize, (i64, i64))>,
    /// The part of the window whose sums (totals, matrix, series) the rollups give.
    sums: Option<(i64, i64)>,
    /// The part whose conversations they give.
    conversations: Option<(i64, i64)>,
}

impl Plan {
    /// The plan of `filter`'s views, from the rollups unless `rollups` is false; `sums` false:
    /// of its conversations alone.
    fn of(filter: &TrafficFilter, rollups: bool, sums: bool) -> Self {
        let whole = |step: i64| {
            let first = filter
                .since
                .saturating_add((step - filter.since.rem_euclid(step)) % step);
            let end = floor(filter.until.saturating_add(1), step);
            (first < end).then_some((first, end - 1))
        };
        let mut plan = Plan {
            reads: Vec::new(),
            sums: None,
            conversations: None,
        };
        if !rollups {
            return plan;
        }
        // Coarsest first: each rollup reads the part of its whole steps the coarser ones left.
        let mut levels = |conversations: bool| {
            let mut covered = None;
            for (at, rollup) in ROLLUPS.iter().enumerate() {
                // A series' step must be whole steps of a rollup of sums.
                if rollup.conversations != conversations
                    || (!conversations && i64::from(filter.bucket) % rollup.step != 0)
                {
                    continue;
                }
                if let Some(span) = whole(rollup.step) {
                    plan.reads
                        .extend(minus(span, covered).into_iter().map(|part| (at, part)));
                    covered = Some(span);
                }
            }
            covered
        };
        if sums {
            let covered = levels(false);
            // With the sums, the conversations' rollups save reading only where theirs do.
            if covered.is_none() {
                return plan;
            }
            plan.sums = covered;
        }
        if filter.talkers > 0 || !sums {
            plan.conversations = levels(true);
        }
        plan
    }

    /// The windows of table `traffic` a view reads: the part of `filter`'s window the rollups
    /// give whole is left out, and so, when the view has no talkers, is the part of the sums.
    fn records(&self, filter: &TrafficFilter) -> Vec<(i64, i64)> {
        let covered = match (self.sums, self.conversations) {
            (Some(sums), _) if filter.talkers == 0 => Some(sums),
            (Some(sums), Some(conversations)) => {
                Some((sums.0.max(conversations.0), sums.1.min(conversations.1)))
            }
            (None, conversations) => conversations,
            (Some(_), None) => None,
        };
        minus((filter.since, filter.until), covered)
    }
}

/// Whether `time` is in `span`.
fn within(span: Option<(i64, i64)>, time: i64) -> bool {
    span.is_some_and(|(first, last)| (first..=last).contains(&time))
}

/// `window` but `covered` (which it holds): up to two windows.
fn minus(window: (i64, i64), covered: Option<(i64, i64)>) -> Vec<(i64, i64)> {
    match covered {
        None => vec![window],
        Some((first, last)) => [(window.0, first - 1), (last + 1, window.1)]
            .into_iter()
            .filter(|(since, until)| since <= until)
            .collect(),
    }
}

/// The traffic views being summed, from records and rollup rows alike.
struct Summed {
    reject: i64,
    step: i64,
    in_memory: usize,
    // Summed per row read: foldhash, not SipHash.
    totals: foldhash::HashMap<(Option<i64>, Option<i64>), TrafficSums>,
    matrix: foldhash::HashMap<(Option<i64>, Option<i64>), TrafficSums>,
    series: foldhash::HashMap<i64, TrafficSums>,
    /// The conversations' sums: none when no talkers are asked for, or when there are more
    /// than `in_memory` (then SQLite groups them).
    conversations: Option<foldhash::HashMap<Conversation, TrafficSums>>,
}

impl Summed {
    fn new(filter: &TrafficFilter, in_memory: usize, reject: i64) -> Self {
        Self {
            reject,
            step: i64::from(filter.bucket.max(1)),
            in_memory,
            totals: Default::default(),
            matrix: Default::default(),
            series: Default::default(),
            conversations: (filter.talkers > 0).then(Default::default),
        }
    }

    /// The sums of a row of verdict `fl_action` and counters flows, packets and bytes (missing
    /// or negative counted as 0).
    fn counted(
        &self,
        fl_action: Option<i64>,
        [flows, packets, bytes]: [Option<i64>; 3],
    ) -> TrafficSums {
        let count = |n: Option<i64>| n.unwrap_or(0).max(0) as u64;
        let flows = count(flows);
        TrafficSums {
            flows,
            rejected_flows: if fl_action == Some(self.reject) {
                flows
            } else {
                0
            },
            packets: count(packets),
            bytes: count(bytes),
        }
    }

    /// Adds `sums` of scope, verdict, source and destination subnet `[..]` at `time` (its
    /// series' time) to the totals, the matrix and the series.
    fn aggregate(
        &mut self,
        [scope, fl_action, src, dst]: [Option<i64>; 4],
        time: i64,
        sums: &TrafficSums,
    ) {
        self.totals.entry((scope, fl_action)).or_default().add(sums);
        self.matrix.entry((src, dst)).or_default().add(sums);
        self.series
            .entry(floor(time, self.step))
            .or_default()
            .add(sums);
    }

    /// Adds `sums` to conversation `key`'s.
    fn talk(&mut self, key: Conversation, sums: &TrafficSums) {
        let Some(sums_of) = self.conversations.as_mut() else {
            return;
        };
        let full = sums_of.len() >= self.in_memory;
        match sums_of.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut sum) => sum.get_mut().add(sums),
            std::collections::hash_map::Entry::Vacant(new) if !full => {
                new.insert(sums.clone());
            }
            // Too many to hold: SQLite groups them after this pass.
            std::collections::hash_map::Entry::Vacant(_) => self.conversations = None,
        }
    }
}

/// The `names` ids a conversation refers to: an IPv6 (or other named) address at either end,
/// its protocol and its scope.
fn names_in((src, dst, _, protocol, scope): &Conversation) -> impl Iterator<Item = i64> + use<> {
    let named = |key: &Option<i64>| key.and_then(address_name);
    [named(src), named(dst), *protocol, *scope]
        .into_iter()
        .flatten()
}

/// A conversation as a top talker, its names from `names` (which holds [`names_in`] it).
fn talker(
    (src, dst, port, protocol, scope): Conversation,
    sums: TrafficSums,
    names: &HashMap<i64, String>,
) -> Talker {
    let address = |key: Option<i64>| {
        key.map_or_else(CompactString::default, |n| {
            CompactString::new(address_text(n, names))
        })
    };
    let name = |id: Option<i64>| {
        id.map(|id| CompactString::new(&names[&id]))
            .unwrap_or_default()
    };
    Talker {
        src_ip: address(src),
        dst_ip: address(dst),
        dst_port: port.and_then(|p| u16::try_from(p).ok()),
        protocol_name: name(protocol),
        scope: name(scope),
        sums,
    }
}

/// `talkers` as the `n` top talkers, in [`Talker::order`] (as [`TrafficView::sort`] orders
/// them).
fn ordered(mut talkers: Vec<Talker>, n: usize) -> Vec<Talker> {
    talkers.sort_by(Talker::order);
    talkers.truncate(n);
    talkers
}

/// A talker ordered by [`Talker::order`] (a heap's greatest: the last placed).
struct Placed(Talker);

impl PartialEq for Placed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Placed {}

impl PartialOrd for Placed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Placed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        Talker::order(&self.0, &other.0)
    }
}

/// The name of an id of `names`.
const NAME_OF_ID: &str = "SELECT name FROM names WHERE id = ?";

/// The failure of a name id no row of `names` has.
fn damaged(path: &Path, id: i64) -> LocalStoreError {
    LocalRecords::error(
        path,
        format!("name {id} is missing: the database is damaged"),
    )
}

/// The embedded records store.
pub struct LocalRecords {
    path: PathBuf,
    connection: Mutex<Connection>,
    /// Names read, by id.
    names: Mutex<HashMap<i64, String>>,
}

impl std::fmt::Debug for LocalRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRecords")
            .field("path", &self.path)
            .finish()
    }
}

/// A `record_id` as stored: the 16 hex digits audit writes as the 64-bit number they spell
/// (8 bytes instead of 17), anything else as its text.
fn record_id(id: &str) -> Sql {
    match u64::from_str_radix(id, 16) {
        Ok(n) if id.len() == 16 && !id.bytes().any(|b| b.is_ascii_uppercase()) => {
            Sql::Integer(n as i64)
        }
        _ => Sql::Text(id.to_string()),
    }
}

/// A stored `record_id` as the record had it.
fn record_id_text(id: Sql) -> Option<String> {
    match id {
        Sql::Integer(n) => Some(format!("{:016x}", n as u64)),
        Sql::Text(text) => Some(text),
        _ => None,
    }
}

/// The number an address is stored as: an IPv4 address (or an IPv4-mapped one) as itself, 0
/// to 2^32 - 1, so a network is a range; anything else (an IPv6 address, as Rust writes it)
/// as minus its id in `names`, so an IPv4 range never reaches it.
enum AddressKey<'a> {
    V4(u32),
    Named(std::borrow::Cow<'a, str>),
}

fn address_key(text: &str) -> Option<AddressKey<'_>> {
    if text.is_empty() {
        return None;
    }
    Some(
        match text.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(std::net::IpAddr::V4(v4)) => AddressKey::V4(u32::from(v4)),
            Ok(ip) => AddressKey::Named(ip.to_string().into()),
            Err(_) => AddressKey::Named(text.into()),
        },
    )
}

/// The `names` id an address column's number refers to: an IPv6 address (or other text) is
/// stored as minus its id; an IPv4 address, as itself, refers to none.
fn address_name(key: i64) -> Option<i64> {
    (key < 0).then_some(-key)
}

/// An address column's number as text, its name (if any) from `names`.
fn address_text(key: i64, names: &HashMap<i64, String>) -> String {
    match address_name(key) {
        Some(id) => names[&id].clone(),
        None => std::net::Ipv4Addr::from(key as u32).to_string(),
    }
}

impl LocalRecords {
    fn error(path: &Path, message: impl std::fmt::Display) -> LocalStoreError {
        LocalStoreError {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }

    /// Opens (creating it if needed) the database at `path` for writing.
    pub fn create(path: &Path) -> Result<Self, LocalStoreError> {
        let connection = Connection::open(path).map_err(|e| Self::error(path, e))?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| Self::error(path, e))?;
        if version != 0 && version != SCHEMA_VERSION {
            return Err(Self::error(
                path,
                format!("made by another version of esgflow (schema {version}, not {SCHEMA_VERSION}): remove it, or store into another file"),
            ));
        }
        connection
            .execute_batch(&format!("{SCHEMA}{}", rollup_tables()))
            .map_err(|e| Self::error(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
            names: Mutex::default(),
        })
    }

    /// Opens the database at `path` read-only; it must exist, hold the records table and be of
    /// this version's schema.
    pub fn open(path: &Path) -> Result<Self, LocalStoreError> {
        let fill = format!("fill it with `esgflow replay … --store {}`", path.display());
        if !path.is_file() {
            return Err(Self::error(path, format!("no such file ({fill})")));
        }
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Self::error(path, e))?;
        connection
            .query_row("SELECT count(*) FROM records LIMIT 1", [], |_| Ok(()))
            .map_err(|e| Self::error(path, format!("{e} ({fill})")))?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| Self::error(path, e))?;
        if version != SCHEMA_VERSION {
            return Err(Self::error(
                path,
                format!(
                    "made by another version of esgflow (schema {version}, not {SCHEMA_VERSION}): {fill}"
                ),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
            names: Mutex::default(),
        })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores every record of a JSON-lines text (what audit writes with `ESGFLOW_JSONL_PATH`),
    /// in one transaction; a line that is not a record is counted and skipped.
    pub fn import(&self, lines: impl std::io::BufRead + Send) -> Result<Imported, LocalStoreError> {
        self.import_with(lines, |_| {})
    }

    /// [`Self::import`], handing each record stored to `each` as it is read (`esgflow replay`
    /// sums its report in the same pass).
    pub fn import_with(
        &self,
        lines: impl std::io::BufRead + Send,
        each: impl FnMut(&RecordLine<'_>) + Send,
    ) -> Result<Imported, LocalStoreError> {
        let path = &self.path;
        let failed = |e: rusqlite::Error| Self::error(path, e);
        let mut connection = self.connection();
        // A larger page cache while the indexes grow (64 MiB): the import's own memory.
        connection
            .execute_batch("PRAGMA cache_size = -65536")
            .map_err(failed)?;
        let transaction = connection.transaction().map_err(failed)?;
        let imported = import::import(&transaction, lines, each).map_err(|e| match e {
            import::Failure::Read(e) => Self::error(path, e),
            import::Failure::Sql(e) => failed(e),
        })?;
        let rows: i64 = transaction
            .query_row("SELECT coalesce(max(rowid), 0) FROM records", [], |r| {
                r.get(0)
            })
            .map_err(failed)?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        // The indexes sort in a smaller cache than the import's (SQLite's sorter works in
        // chunks of the cache's size): over the reference day's 5.9 million records the five
        // sorts took 13.5-15.9 s with 16 MiB against 15.6-20.0 s with 64 MiB and 20.3-21.6 s
        // with 256; no different at 591,000 (docs/performance.md, "The store's import"). A
        // large table's sort gets a worker thread ([`sort_workers`]), given back after.
        transaction
            .execute_batch(&format!(
                "PRAGMA cache_size = -16384; PRAGMA threads = {}",
                sort_workers(rows, cores)
            ))
            .map_err(failed)?;
        transaction.execute_batch(SEARCH_INDEXES).map_err(failed)?;
        transaction
            .execute_batch("PRAGMA threads = 0")
            .map_err(failed)?;
        transaction.commit().map_err(failed)?;
        // Statistics for the query planner (which index narrows a search most), from a sample
        // of each index so they take a moment at any size.
        connection
            .execute_batch("PRAGMA analysis_limit = 1000; ANALYZE")
            .map_err(failed)?;
        Ok(imported)
    }

    /// The id of `name` in `names`, if any record has it.
    fn id_of(&self, name: &str) -> Result<Option<i64>, LocalStoreError> {
        self.run("SELECT id FROM names WHERE name = ?", |statement| {
            statement.query_row([name], |r| r.get(0)).optional()
        })
    }

    /// The names of `ids` (kept once read: an id never changes its name).
    fn names_of(
        &self,
        ids: impl IntoIterator<Item = i64>,
    ) -> Result<HashMap<i64, String>, LocalStoreError> {
        let mut names = HashMap::new();
        for id in ids {
            if names.contains_key(&id) {
                continue;
            }
            let known = self
                .names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&id)
                .cloned();
            let name = match known {
                Some(name) => name,
                None => {
                    let name: String = self
                        .run(NAME_OF_ID, |statement| {
                            statement.query_row([id], |r| r.get(0)).optional()
                        })?
                        .ok_or_else(|| damaged(&self.path, id))?;
                    let mut kept = self
                        .names
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if kept.len() >= NAMES_KEPT {
                        kept.clear();
                    }
                    kept.insert(id, name.clone());
                    name
                }
            };
            names.insert(id, name);
        }
        Ok(names)
    }

    /// The records of `rows`, their bodies read from their blocks (each block once) and their
    /// moved fields from their columns.
    fn bodies(&self, rows: &[Stored]) -> Result<Vec<Value>, LocalStoreError> {
        let damaged = |what: String| Self::error(&self.path, what);
        let names = self.names_of(rows.iter().flat_map(|row| {
            let named = row.columns[4..].iter().flatten().copied();
            let addresses = row.columns[..2]
                .iter()
                .flatten()
                .filter_map(|n| address_name(*n));
            std::iter::once(row.kind).chain(named).chain(addresses)
        }))?;
        let mut read: BTreeMap<i64, blocks::Block> = BTreeMap::new();
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let rowid = row.rowid;
            let first = match read.range(..=rowid).next_back() {
                Some((first, block)) if block.holds((rowid - first) as usize) => *first,
                _ => {
                    let (first, data): (i64, Vec<u8>) = self
                        .run(
                            "SELECT first, data FROM bodies WHERE first <= ? ORDER BY first DESC LIMIT 1",
                            |statement| statement.query_row([rowid], |r| Ok((r.get(0)?, r.get(1)?))).optional(),
                        )?
                        .ok_or_else(|| damaged(format!("record {rowid} has no body")))?;
                    read.insert(first, blocks::Block::decode(&data).map_err(damaged)?);
                    first
                }
            };
            let mut record = read[&first]
                .record((rowid - first) as usize)
                .map_err(damaged)?;
            record.insert(
                "record_type".into(),
                Value::String(names[&row.kind].clone()),
            );
            let id = record_id_text(row.rid.clone())
                .ok_or_else(|| damaged(format!("record {rowid} has no id")))?;
            record.insert("record_id".into(), Value::String(id));
            record.insert("time".into(), Value::from(row.time));
            for (bit, key) in MOVED.iter().enumerate() {
                if row.moved & (1 << bit) == 0 {
                    continue;
                }
                let column = row.columns[MOVED_FROM[bit]]
                    .ok_or_else(|| damaged(format!("record {rowid} lost its {key}")))?;
                let value = match bit {
                    0 | 1 => Value::String(address_text(column, &names)),
                    2..=5 => Value::from(column),
                    _ => Value::String(names[&column].clone()),
                };
                record.insert((*key).to_string(), value);
            }
            records.push(Value::Object(record));
        }
        Ok(records)
    }

    /// One page of `filter`, newest first (ties by the order they were stored, last first);
    /// `context` continues after the page that returned it.
    pub fn search_hits(
        &self,
        filter: &HitFilter,
        limit: u32,
        context: Option<&str>,
    ) -> Result<HitsPage, LocalStoreError> {
        let after = context
            .map(|context| {
                context
                    .split_once('-')
                    .and_then(|(t, id)| Some((t.parse::<i64>().ok()?, id.parse::<i64>().ok()?)))
                    .ok_or_else(|| Self::error(&self.path, "the cursor is not this store's"))
            })
            .transpose()?;
        let Some((sql, values)) = self.hits_query(filter, limit, after)? else {
            // A name no record has: nothing to find.
            return Ok(HitsPage {
                hits: Vec::new(),
                context: None,
            });
        };
        let mut rows: Vec<Stored> = self.run(&sql, |statement| {
            statement
                .query_map(params_from_iter(values), |r| Stored::read(r, 0))
                .and_then(Iterator::collect)
        })?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let context = more
            .then(|| rows.last().map(|row| format!("{}-{}", row.time, row.rowid)))
            .flatten();
        Ok(HitsPage {
            hits: self.bodies(&rows)?,
            context,
        })
    }

    /// The query of a page of `filter` after `after` (its last record's time and rowid), and
    /// its values; `None` when a name it asks for is in no record.
    ///
    /// Two steps: the page's keys from an index (an address index holds every column an address
    /// search filters on, so it reads no record it will not return), then those records. A
    /// search by address (IPv4 or IPv6) or IPv4 network is led by its address index; the
    /// planner would otherwise walk the time index and read every record of the window
    /// (measured at 1,000,000 records: 0.4-15 s instead of 5-20 ms; benches/store.rs). A search
    /// by either end is two, one led by each end's index, their keys merged: as one `OR`, the
    /// planner walked the time index for a network (a /24 no record has: 1.07 s over the
    /// reference day's records, against 5 ms for its source alone).
    fn hits_query(
        &self,
        filter: &HitFilter,
        limit: u32,
        after: Option<(i64, i64)>,
    ) -> Result<Option<(String, Vec<Sql>)>, LocalStoreError> {
        // The end an address at either end is looked for at, one query each (no such address:
        // one query, the end unused).
        let ends: &[&str] = match filter.either {
            Some(_) => &["src", "dst"],
            None => &["src"],
        };
        let limit = Sql::Integer(i64::from(limit) + 1);
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for either_end in ends {
            let Some((mut conditions, half)) =
                self.hits_conditions(filter, after.map(|(time, _)| time), either_end)?
            else {
                return Ok(None);
            };
            values.extend(half);
            if let Some((time, id)) = after {
                // The window's end is already the cursor's time: only its ties need the id.
                conditions.push("(time < ? OR rowid < ?)".to_string());
                values.extend([Sql::Integer(time), Sql::Integer(id)]);
            }
            values.push(limit.clone());
            let lead = match (&filter.src, &filter.dst, &filter.either) {
                (Some(_), _, _) => Some("src"),
                (_, Some(_), _) => Some("dst"),
                (_, _, Some(_)) => Some(*either_end),
                _ => None,
            };
            let led_by = lead.map_or(String::new(), |end| format!("INDEXED BY records_by_{end}"));
            keys.push(format!(
                "SELECT rowid, time FROM records {led_by} WHERE {} ORDER BY time DESC, rowid DESC LIMIT ?",
                conditions.join(" AND ")
            ));
        }
        let keys = match keys.as_slice() {
            [one] => one.clone(),
            both => {
                values.push(limit);
                format!(
                    "SELECT rowid, time FROM ({}) ORDER BY time DESC, rowid DESC LIMIT ?",
                    both.iter()
                        .map(|keys| format!("SELECT * FROM ({keys})"))
                        .collect::<Vec<_>>()
                        .join(" UNION ")
                )
            }
        };
        Ok(Some((
            format!(
                "SELECT {STORED} FROM records WHERE rowid IN (SELECT rowid FROM ({keys})) ORDER BY time DESC, rowid DESC"
            ),
            values,
        )))
    }

    /// The rules with the most block hits between `since` and `until` (Unix seconds), most first
    /// (ties by uuid).
    pub fn top_block_rules(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<(String, u64)>, LocalStoreError> {
        let Some(block_hit) = self.id_of("block_hit")? else {
            return Ok(Vec::new());
        };
        self.run(
            "SELECT n.name, h.hits FROM (SELECT rule, count(*) AS hits FROM records WHERE type = ? AND time BETWEEN ? AND ? AND rule IS NOT NULL GROUP BY rule) AS h JOIN names AS n ON n.id = h.rule ORDER BY h.hits DESC, n.name ASC LIMIT ?",
            |statement| {
                statement
                    .query_map((block_hit, since, until, limit), |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                    })
                    .and_then(Iterator::collect)
            },
        )
    }

    /// Runs `sql` (prepared once per connection) through `query`, naming the database in an
    /// error.
    fn run<T>(
        &self,
        sql: &str,
        query: impl FnOnce(&mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, LocalStoreError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(sql)
            .map_err(|e| Self::error(&self.path, e))?;
        query(&mut statement).map_err(|e| Self::error(&self.path, e))
    }

    /// The traffic views of `filter`: a window's whole days, hours and quarter hours summed from
    /// the rollups, its edges from the traffic records (a VPC's, one range of the table). The top
    /// talkers are summed in the same pass, up to [`TALKERS_IN_MEMORY`] conversations; past
    /// that, SQLite groups them in a second pass, sorting on disk, so no window is too large.
    pub fn traffic(&self, filter: &TrafficFilter) -> Result<TrafficView, LocalStoreError> {
        self.traffic_within(filter, TALKERS_IN_MEMORY, true)
    }

    /// The conversations `filter` covers, most bytes first, at most `limit`: the top talkers
    /// ranked by SQLite (from the day and hour rollups and the window's edges), asked for one
    /// more than `limit` to know whether there are more.
    pub fn conversations(
        &self,
        filter: &TrafficFilter,
        limit: usize,
    ) -> Result<Conversations, LocalStoreError> {
        let plan = Plan::of(filter, true, false);
        let reject = self.id_of("REJECT")?.unwrap_or(0);
        let wanted = limit.saturating_add(1);
        // SQLite groups and orders them: nothing else of the traffic views is summed.
        let Some(ranked) = self.ranked_by_sqlite(filter, &plan, wanted, reject)? else {
            return Ok(Conversations::of(Vec::new(), limit));
        };
        Ok(Conversations::of(ordered(ranked, wanted), limit))
    }

    /// [`Self::traffic`], summing at most `in_memory` conversations in memory, from the rollups
    /// or (`rollups` false) from the traffic records alone.
    fn traffic_within(
        &self,
        filter: &TrafficFilter,
        in_memory: usize,
        rollups: bool,
    ) -> Result<TrafficView, LocalStoreError> {
        let plan = Plan::of(filter, rollups, true);
        let reject = self.id_of("REJECT")?.unwrap_or(0);
        let mut sums = Summed::new(filter, in_memory, reject);
        // The records the rollups do not give whole: each summed into the views the rollups
        // leave to them.
        for window in plan.records(filter) {
            let Some((conditions, values)) = self.traffic_conditions(filter, "traffic", window)?
            else {
                return Ok(TrafficView::default());
            };
            let sql = format!(
                "SELECT scope, fl_action, src_subnet, dst_subnet, flows, packets, bytes, last_seen, src, dst, dst_port, protocol_name, time FROM traffic WHERE {conditions}"
            );
            self.run(&sql, |statement| {
                let mut rows = statement.query(params_from_iter(values.iter()))?;
                while let Some(r) = rows.next()? {
                    // Every column is a number or null (the import writes no other): read once
                    // each, without a conversion per read (the largest cost after SQLite's own).
                    let c: [Option<i64>; 13] = std::array::from_fn(|i| match r.get_ref_unwrap(i) {
                        rusqlite::types::ValueRef::Integer(n) => Some(n),
                        _ => None,
                    });
                    let time = c[12].unwrap_or(0);
                    let counted = sums.counted(c[1], [c[4], c[5], c[6]]);
                    if !within(plan.sums, time) {
                        sums.aggregate([c[0], c[1], c[2], c[3]], c[7].unwrap_or(time), &counted);
                    }
                    if !within(plan.conversations, time) {
                        sums.talk((c[8], c[9], c[10], c[11], c[0]), &counted);
                    }
                }
                Ok(())
            })?;
        }
        for (at, window) in &plan.reads {
            let rollup = &ROLLUPS[*at];
            let Some((conditions, values)) =
                self.traffic_conditions(filter, rollup.table, *window)?
            else {
                return Ok(TrafficView::default());
            };
            let columns = if rollup.conversations {
                "src, dst, dst_port, protocol_name, scope, fl_action, flows, packets, bytes"
            } else {
                "scope, fl_action, src_subnet, dst_subnet, flows, packets, bytes, time + series"
            };
            let sql = format!("SELECT {columns} FROM {} WHERE {conditions}", rollup.table);
            self.run(&sql, |statement| {
                let mut rows = statement.query(params_from_iter(values.iter()))?;
                let key = |n: i64| (n != NONE).then_some(n);
                while let Some(r) = rows.next()? {
                    if rollup.conversations {
                        let c: [i64; 9] = std::array::from_fn(|i| r.get_unwrap(i));
                        let counted = sums.counted(key(c[5]), [c[6], c[7], c[8]].map(Some));
                        sums.talk(
                            (key(c[0]), key(c[1]), key(c[2]), key(c[3]), key(c[4])),
                            &counted,
                        );
                    } else {
                        let c: [i64; 8] = std::array::from_fn(|i| r.get_unwrap(i));
                        let counted = sums.counted(key(c[1]), [c[4], c[5], c[6]].map(Some));
                        sums.aggregate([c[0], c[1], c[2], c[3]].map(key), c[7], &counted);
                    }
                }
                Ok(())
            })?;
        }
        let n = filter.talkers as usize;
        let Summed {
            totals,
            matrix,
            series,
            conversations,
            ..
        } = sums;
        let talkers = match conversations {
            Some(sums_of) => {
                let mut ranked: Vec<(Conversation, TrafficSums)> = sums_of.into_iter().collect();
                let most = |a: &(Conversation, TrafficSums), b: &(Conversation, TrafficSums)| {
                    (b.1.bytes, b.1.flows).cmp(&(a.1.bytes, a.1.flows))
                };
                if ranked.len() > n && n > 0 {
                    let (_, last, _) = ranked.select_nth_unstable_by(n - 1, most);
                    let last = (last.1.bytes, last.1.flows);
                    ranked.retain(|(_, sums)| (sums.bytes, sums.flows) >= last);
                }
                self.talkers(ranked, n)?
            }
            None if n == 0 => Vec::new(),
            None => ordered(
                self.ranked_by_sqlite(filter, &plan, n, reject)?
                    .unwrap_or_default(),
                n,
            ),
        };
        let names = self.names_of(
            totals
                .keys()
                .chain(matrix.keys())
                .flat_map(|(a, b)| [*a, *b])
                .flatten(),
        )?;
        let name = |id: &Option<i64>| id.map(|id| names[&id].clone());
        let mut view = TrafficView {
            totals: totals
                .into_iter()
                .map(|((scope, fl_action), sums)| TrafficTotal {
                    scope: name(&scope).unwrap_or_default(),
                    fl_action: name(&fl_action).unwrap_or_default(),
                    sums,
                })
                .collect(),
            talkers,
            matrix: matrix
                .into_iter()
                .map(|((src, dst), sums)| MatrixCell {
                    src_subnet: name(&src),
                    dst_subnet: name(&dst),
                    sums,
                })
                .collect(),
            series: series
                .into_iter()
                .map(|(time, sums)| SeriesPoint { time, sums })
                .collect(),
        };
        view.sort();
        view.matrix.truncate(MAX_MATRIX_CELLS as usize);
        Ok(view)
    }

    /// The conversations of `filter` with the `n` most bytes (then flows), with every tie of
    /// the last place, named, in no order: SQLite sums each conversation over the rollups `plan`
    /// reads and the records outside them, and hands them over most first; each is named as it
    /// comes (200,000 conversations as numbers and then as names would both be whole in memory
    /// at once). `None` when a name the filter asks for is in no record.
    fn ranked_by_sqlite(
        &self,
        filter: &TrafficFilter,
        plan: &Plan,
        n: usize,
        reject: i64,
    ) -> Result<Option<Vec<Talker>>, LocalStoreError> {
        if n == 0 {
            return Ok(Some(Vec::new()));
        }
        let mut parts = Vec::new();
        let mut all = vec![Sql::Integer(reject)];
        let sources = minus((filter.since, filter.until), plan.conversations)
            .into_iter()
            .map(|window| ("traffic", window))
            .chain(
                plan.reads
                    .iter()
                    .filter(|(at, _)| ROLLUPS[*at].conversations)
                    .map(|(at, window)| (ROLLUPS[*at].table, *window)),
            );
        for (table, window) in sources {
            let Some((conditions, values)) = self.traffic_conditions(filter, table, window)? else {
                return Ok(None);
            };
            let column = |name: &str| match table {
                "traffic" => name.to_string(),
                _ => format!("nullif({name}, {NONE}) AS {name}"),
            };
            parts.push(format!(
                "SELECT {}, flows, packets, bytes FROM {table} WHERE {conditions}",
                [
                    "src",
                    "dst",
                    "dst_port",
                    "protocol_name",
                    "scope",
                    "fl_action"
                ]
                .map(column)
                .join(", ")
            ));
            all.extend(values);
        }
        let sql = format!(
            "SELECT src, dst, dst_port, protocol_name, scope, sum(max(ifnull(flows, 0), 0)) AS f, sum(CASE WHEN fl_action = ? THEN max(ifnull(flows, 0), 0) ELSE 0 END), sum(max(ifnull(packets, 0), 0)), sum(max(ifnull(bytes, 0), 0)) AS b FROM ({}) GROUP BY src, dst, dst_port, protocol_name, scope ORDER BY b DESC, f DESC",
            parts.join(" UNION ALL ")
        );
        let failed = |e: rusqlite::Error| Self::error(&self.path, e);
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&sql).map_err(failed)?;
        let mut name_of = connection.prepare_cached(NAME_OF_ID).map_err(failed)?;
        let mut names: HashMap<i64, String> = HashMap::new();
        // Room for the `n` asked for at once (up to 2^18): grown by doubling, the last copy would
        // hold a list and a half beside the new one.
        let mut ranked: Vec<Talker> = Vec::with_capacity(n.min(1 << 18));
        // Past the `n`-th, the rows tied with it (SQLite orders by bytes and flows only): the best
        // of them by the talkers' order, as many as the `n`-th's ties fill, the worst on top — so
        // never more than `n` in all, however many tie (one more row was enough to double the
        // list's room; small conversations can tie by the thousand).
        let mut ties: std::collections::BinaryHeap<Placed> = Default::default();
        let mut rows = statement.query(params_from_iter(all)).map_err(failed)?;
        while let Some(r) = rows.next().map_err(failed)? {
            let sums = TrafficSums {
                flows: r.get::<_, i64>(5).map_err(failed)? as u64,
                rejected_flows: r.get::<_, i64>(6).map_err(failed)? as u64,
                packets: r.get::<_, i64>(7).map_err(failed)? as u64,
                bytes: r.get::<_, i64>(8).map_err(failed)? as u64,
            };
            if ranked.len() + ties.len() >= n {
                if ties.is_empty() {
                    let last = (ranked[n - 1].sums.bytes, ranked[n - 1].sums.flows);
                    let tied = ranked.partition_point(|t| (t.sums.bytes, t.sums.flows) != last);
                    ties.extend(ranked.drain(tied..).map(Placed));
                }
                let last = &ties.peek().expect("the n-th is tied with itself").0.sums;
                if (last.bytes, last.flows) != (sums.bytes, sums.flows) {
                    break;
                }
            }
            let key: Conversation = (
                r.get(0).map_err(failed)?,
                r.get(1).map_err(failed)?,
                r.get(2).map_err(failed)?,
                r.get(3).map_err(failed)?,
                r.get(4).map_err(failed)?,
            );
            for id in names_in(&key) {
                if let std::collections::hash_map::Entry::Vacant(entry) = names.entry(id) {
                    let name: String = name_of
                        .query_row([id], |r| r.get(0))
                        .optional()
                        .map_err(failed)?
                        .ok_or_else(|| damaged(&self.path, id))?;
                    entry.insert(name);
                }
            }
            let talker = talker(key, sums, &names);
            match ties.peek_mut() {
                None => ranked.push(talker),
                Some(mut worst) => {
                    if Talker::order(&talker, &worst.0).is_lt() {
                        *worst = Placed(talker);
                    }
                }
            }
        }
        ranked.extend(ties.into_vec().into_iter().map(|placed| placed.0));
        Ok(Some(ranked))
    }

    /// `ranked` conversations as the `n` top talkers, ordered as [`TrafficView::sort`] orders
    /// them (ties by their addresses, port, protocol and scope).
    fn talkers(
        &self,
        ranked: Vec<(Conversation, TrafficSums)>,
        n: usize,
    ) -> Result<Vec<Talker>, LocalStoreError> {
        let names = self.names_of(ranked.iter().flat_map(|(key, _)| names_in(key)))?;
        let talkers = ranked
            .into_iter()
            .map(|(key, sums)| talker(key, sums, &names))
            .collect();
        Ok(ordered(talkers, n))
    }

    /// The `WHERE` conditions of a traffic view and their values, or `None` when a name it
    /// asks for is in no record.
    fn traffic_conditions(
        &self,
        filter: &TrafficFilter,
        table: &str,
        (since, until): (i64, i64),
    ) -> Result<Option<(String, Vec<Sql>)>, LocalStoreError> {
        let window = [Sql::Integer(since), Sql::Integer(until)];
        let mut values = Vec::new();
        let mut conditions = Vec::new();
        match &filter.vpc {
            // The VPC's range of the table: every record with it at either end, once.
            Some(vpc) => {
                let Some(vpc) = self.id_of(vpc)? else {
                    return Ok(None);
                };
                conditions.push("vpc = ? AND time BETWEEN ? AND ?".to_string());
                values.push(Sql::Integer(vpc));
                values.extend(window);
            }
            // Every record once (its first filing), VPC by VPC.
            None => {
                conditions.push(format!(
                    "vpc IN ({}) AND time BETWEEN ? AND ? AND copy = 0",
                    every_vpc(table)
                ));
                values.extend(window);
            }
        }
        if let Some(subnet) = &filter.subnet {
            let Some(subnet) = self.id_of(subnet)? else {
                return Ok(None);
            };
            conditions.push("(src_subnet = ? OR dst_subnet = ?)".to_string());
            values.extend([Sql::Integer(subnet), Sql::Integer(subnet)]);
        }
        for (column, subnet) in [
            ("src_subnet", &filter.src_subnet),
            ("dst_subnet", &filter.dst_subnet),
        ] {
            if let Some(subnet) = subnet {
                let Some(id) = self.id_of(subnet)? else {
                    return Ok(None);
                };
                conditions.push(format!("{column} = ?"));
                values.push(Sql::Integer(id));
            }
        }
        for (column, value) in [
            ("scope", filter.scope.map(|s| s.as_str())),
            ("peer", filter.peer.map(|p| p.as_str())),
            ("fl_action", filter.fl_action),
        ] {
            if let Some(value) = value {
                let Some(id) = self.id_of(value)? else {
                    return Ok(None);
                };
                conditions.push(format!("{column} = ?"));
                values.push(Sql::Integer(id));
            }
        }
        Ok(Some((conditions.join(" AND "), values)))
    }

    /// The hit record `id` written between `since` and `until` (Unix seconds), if any.
    pub fn hit_by_id(
        &self,
        id: &str,
        since: i64,
        until: i64,
    ) -> Result<Option<Value>, LocalStoreError> {
        let mut types = Vec::new();
        for kind in crate::core::search::HIT_TYPES {
            types.extend(self.id_of(kind)?);
        }
        if types.is_empty() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT {STORED} FROM records WHERE rid = ? AND type IN ({}) AND time BETWEEN ? AND ? LIMIT 1",
            vec!["?"; types.len()].join(", ")
        );
        let mut values = vec![record_id(id)];
        values.extend(types.into_iter().map(Sql::Integer));
        values.extend([Sql::Integer(since), Sql::Integer(until)]);
        let row = self.run(&sql, |statement| {
            statement
                .query_row(params_from_iter(values), |r| Stored::read(r, 0))
                .optional()
        })?;
        Ok(match row {
            Some(row) => self.bodies(&[row])?.pop(),
            None => None,
        })
    }

    /// The ENIs that recorded traffic between `since` and `until` (Unix seconds).
    pub fn recording_enis(
        &self,
        since: i64,
        until: i64,
    ) -> Result<BTreeSet<String>, LocalStoreError> {
        let lists: Vec<i64> = self.run(
            &format!("SELECT DISTINCT enis FROM traffic WHERE vpc IN ({}) AND time BETWEEN ? AND ? AND copy = 0 AND enis IS NOT NULL", every_vpc("traffic")),
            |statement| {
                statement
                    .query_map((since, until), |r| r.get(0))
                    .and_then(Iterator::collect)
            },
        )?;
        let names = self.names_of(lists)?;
        Ok(crate::core::search::split_enis(
            names.values().map(String::as_str),
        ))
    }

    /// `uuid`'s `rule_hits` counters summed between `since` and `until` (Unix seconds).
    pub fn rule_counters(
        &self,
        uuid: &str,
        since: i64,
        until: i64,
    ) -> Result<RuleCounters, LocalStoreError> {
        Ok(self
            .counters_by_rule(Some(uuid), since, until)?
            .remove(uuid)
            .unwrap_or_default())
    }

    /// Every rule's `rule_hits` counters summed between `since` and `until`, by uuid.
    pub fn rule_totals(
        &self,
        since: i64,
        until: i64,
    ) -> Result<BTreeMap<String, RuleCounters>, LocalStoreError> {
        self.counters_by_rule(None, since, until)
    }

    fn counters_by_rule(
        &self,
        uuid: Option<&str>,
        since: i64,
        until: i64,
    ) -> Result<BTreeMap<String, RuleCounters>, LocalStoreError> {
        let Some(rule_hits) = self.id_of("rule_hits")? else {
            return Ok(BTreeMap::new());
        };
        let mut values = vec![
            Sql::Integer(rule_hits),
            Sql::Integer(since),
            Sql::Integer(until),
        ];
        if let Some(uuid) = uuid {
            let Some(rule) = self.id_of(uuid)? else {
                return Ok(BTreeMap::new());
            };
            values.push(Sql::Integer(rule));
        }
        let sql = format!(
            "SELECT n.name, s.* FROM (SELECT r.rule, sum(c.hits), sum(c.block_hits), sum(c.observe_hits), min(c.first_hit), max(c.last_hit) FROM records AS r JOIN counters AS c ON c.id = r.rowid WHERE r.type = ? AND r.time BETWEEN ? AND ? AND r.rule IS NOT NULL {} GROUP BY r.rule) AS s JOIN names AS n ON n.id = s.rule",
            if uuid.is_some() { "AND r.rule = ?" } else { "" }
        );
        self.run(&sql, |statement| {
            statement
                .query_map(params_from_iter(values), |r| {
                    let count = |i: usize| -> rusqlite::Result<Option<u64>> {
                        Ok(r.get::<_, Option<i64>>(i)?.map(|n| n.max(0) as u64))
                    };
                    Ok((
                        r.get::<_, String>(0)?,
                        RuleCounters {
                            hits: count(2)?.unwrap_or(0),
                            block_hits: count(3)?.unwrap_or(0),
                            observe_hits: count(4)?.unwrap_or(0),
                            first_hit: count(5)?,
                            last_hit: count(6)?,
                        },
                    ))
                })
                .and_then(Iterator::collect)
        })
    }

    /// `side` matching `address`, with its values; `None` when it is an address no record
    /// has.
    fn address(
        &self,
        side: &str,
        address: &AddressMatch,
        values: &mut Vec<Sql>,
    ) -> Result<Option<String>, LocalStoreError> {
        Ok(Some(match address {
            AddressMatch::Exact(ip) => {
                let key = match address_key(&ip.to_string()) {
                    Some(AddressKey::V4(n)) => i64::from(n),
                    Some(AddressKey::Named(name)) => match self.id_of(&name)? {
                        Some(id) => -id,
                        None => return Ok(None),
                    },
                    None => return Ok(None),
                };
                values.push(Sql::Integer(key));
                format!("{side} = ?")
            }
            AddressMatch::V4Range { first, last } => {
                values.extend([
                    Sql::Integer(i64::from(*first)),
                    Sql::Integer(i64::from(*last)),
                ]);
                format!("{side} BETWEEN ? AND ?")
            }
        }))
    }

    /// The `WHERE` conditions of `filter` and their values, condition by condition as
    /// `cls_query::hits_query` writes them, or `None` when a name or address it asks for is in
    /// no record; `until` (a cursor's time) narrows the window's end. An address at either end
    /// is looked for at `either_end` (`src` or `dst`): [`Self::hits_query`] asks for each.
    fn hits_conditions(
        &self,
        filter: &HitFilter,
        until: Option<i64>,
        either_end: &str,
    ) -> Result<Option<Conditions>, LocalStoreError> {
        let mut values = Vec::new();
        for kind in &filter.types {
            values.extend(self.id_of(kind)?.map(Sql::Integer));
        }
        if values.is_empty() {
            return Ok(None);
        }
        let mut conditions = vec![format!("type IN ({})", vec!["?"; values.len()].join(", "))];
        conditions.push("time BETWEEN ? AND ?".to_string());
        let until = until.map_or(filter.until, |t| t.min(filter.until));
        values.extend([Sql::Integer(filter.since), Sql::Integer(until)]);
        for (side, address) in [("src", &filter.src), ("dst", &filter.dst)] {
            if let Some(address) = address {
                let Some(condition) = self.address(side, address, &mut values)? else {
                    return Ok(None);
                };
                conditions.push(condition);
            }
        }
        if let Some(either) = &filter.either {
            let Some(condition) = self.address(either_end, either, &mut values)? else {
                return Ok(None);
            };
            conditions.push(condition);
        }
        if let Some(port) = filter.port {
            conditions.push("dst_port = ?".to_string());
            values.push(Sql::Integer(i64::from(port)));
        }
        if let Some(protocol) = filter.protocol {
            conditions.push("protocol = ?".to_string());
            values.push(Sql::Integer(i64::from(protocol)));
        }
        for (column, name) in [("vpc", &filter.vpc), ("subnet", &filter.subnet)] {
            if let Some(name) = name {
                let Some(id) = self.id_of(name)? else {
                    return Ok(None);
                };
                conditions.push(format!("(src_{column} = ? OR dst_{column} = ?)"));
                values.extend([Sql::Integer(id), Sql::Integer(id)]);
            }
        }
        for (column, name) in [
            ("rule", filter.rule.as_deref()),
            ("fl_action", filter.fl_action),
        ] {
            if let Some(name) = name {
                let Some(id) = self.id_of(name)? else {
                    return Ok(None);
                };
                conditions.push(format!("{column} = ?"));
                values.push(Sql::Integer(id));
            }
        }
        Ok(Some((conditions, values)))
    }
}

impl From<LocalStoreError> for StoreFailure {
    fn from(err: LocalStoreError) -> Self {
        StoreFailure::Failed {
            code: "local_store".to_string(),
            message: err.to_string(),
        }
    }
}

/// The port over the embedded database: SQLite answers at once, so each future is ready when
/// first polled (the deadline is not consulted).
impl RecordsStore for LocalRecords {
    fn search_hits<'a>(
        &'a self,
        filter: &'a HitFilter,
        limit: u32,
        context: Option<&'a str>,
        _deadline: std::time::Instant,
    ) -> SearchFuture<'a, HitsPage> {
        Box::pin(async move { Ok(self.search_hits(filter, limit, context)?) })
    }

    fn top_block_rules(
        &self,
        since: i64,
        until: i64,
        limit: u32,
        _deadline: std::time::Instant,
    ) -> SearchFuture<'_, Vec<(String, u64)>> {
        Box::pin(async move { Ok(self.top_block_rules(since, until, limit)?) })
    }

    fn rule_counters<'a>(
        &'a self,
        uuid: &'a str,
        since: i64,
        until: i64,
        _deadline: std::time::Instant,
    ) -> SearchFuture<'a, RuleCounters> {
        Box::pin(async move { Ok(self.rule_counters(uuid, since, until)?) })
    }

    fn rule_totals(
        &self,
        since: i64,
        until: i64,
        _deadline: std::time::Instant,
    ) -> SearchFuture<'_, std::collections::BTreeMap<String, RuleCounters>> {
        Box::pin(async move { Ok(self.rule_totals(since, until)?) })
    }

    fn traffic<'a>(
        &'a self,
        filter: &'a TrafficFilter,
        _deadline: std::time::Instant,
    ) -> SearchFuture<'a, TrafficView> {
        Box::pin(async move { Ok(self.traffic(filter)?) })
    }

    fn conversations<'a>(
        &'a self,
        filter: &'a TrafficFilter,
        limit: usize,
        _deadline: std::time::Instant,
    ) -> SearchFuture<'a, Conversations> {
        Box::pin(async move { Ok(self.conversations(filter, limit)?) })
    }

    fn recording_enis(
        &self,
        since: i64,
        until: i64,
        _deadline: std::time::Instant,
    ) -> SearchFuture<'_, std::collections::BTreeSet<String>> {
        Box::pin(async move { Ok(self.recording_enis(since, until)?) })
    }

    fn hit_by_id<'a>(
        &'a self,
        id: &'a str,
        since: i64,
        until: i64,
        _deadline: std::time::Instant,
    ) -> SearchFuture<'a, Option<Value>> {
        Box::pin(async move { Ok(self.hit_by_id(id, since, until)?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(lines: &str) -> (LocalRecords, Imported) {
        let dir = std::env::temp_dir().join(format!(
            "esgflow-sqlite-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = LocalRecords::create(&dir.join("records.db")).unwrap();
        let imported = store.import(lines.as_bytes()).unwrap();
        (store, imported)
    }

    /// The steps of SQLite's plan for `sql` with `values`.
    fn plan(store: &LocalRecords, sql: &str, values: Vec<Sql>) -> Vec<String> {
        store
            .run(&format!("EXPLAIN QUERY PLAN {sql}"), |statement| {
                statement
                    .query_map(params_from_iter(values), |r| r.get::<_, String>(3))
                    .and_then(Iterator::collect)
            })
            .unwrap()
    }

    /// The plan of the query of a page of `filter`'s hits.
    fn search_plan(store: &LocalRecords, filter: &HitFilter) -> Vec<String> {
        let (sql, values) = store.hits_query(filter, 10, None).unwrap().unwrap();
        plan(store, &sql, values)
    }

    /// An IPv6 address is found through the address index, as an IPv4 one is (before, the
    /// search read every record of its window), and never matches an IPv4 range.
    #[test]
    fn an_ipv6_address_is_searched_through_its_index() {
        let line = |id: &str, src: &str, dst: &str| {
            format!(
                r#"{{"record_type":"block_hit","record_id":"{id}","time":100,"src_ip":"{src}","dst_ip":"{dst}","dst_port":443,"protocol":6}}"#
            )
        };
        let lines = [
            line("v6a", "2402:4e00:1013:101::a", "2402:4e00:1013:202::b"),
            line("v6b", "2402:4e00:1013:202::b", "2402:4e00:1013:101::a"),
            line("v4", "10.0.1.11", "10.0.3.10"),
        ]
        .join("\n");
        let (store, imported) = store(&lines);
        assert_eq!(imported.records, 3);
        let ids = |filter: HitFilter| -> Vec<String> {
            let mut ids: Vec<String> = store
                .search_hits(&filter, 10, None)
                .unwrap()
                .hits
                .iter()
                .map(|h| h["record_id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            ids
        };
        let at = |t: &str| Some(AddressMatch::parse(t).unwrap());
        let window = HitFilter::new(0, 200);
        assert_eq!(
            ids(HitFilter {
                src: at("2402:4e00:1013:101::a"),
                ..window.clone()
            }),
            ["v6a"]
        );
        assert_eq!(
            ids(HitFilter {
                dst: at("2402:4e00:1013:101::a"),
                ..window.clone()
            }),
            ["v6b"]
        );
        assert_eq!(
            ids(HitFilter {
                either: at("2402:4e00:1013:202::b"),
                ..window.clone()
            }),
            ["v6a", "v6b"]
        );
        assert_eq!(
            ids(HitFilter {
                src: at("0.0.0.0/0"),
                ..window.clone()
            }),
            ["v4"]
        );
        // The plan reads the address index, not the table.
        let plan = search_plan(
            &store,
            &HitFilter {
                src: at("2402:4e00:1013:101::a"),
                ..window
            },
        );
        assert!(
            plan.iter()
                .any(|step| step.contains("records_by_src (src=?")),
            "{plan:?}"
        );
    }

    /// An address at either end is found through both address indexes, which leave out the
    /// records without an address (`rule_hits`).
    #[test]
    fn an_address_at_either_end_is_searched_through_both_address_indexes() {
        let lines: Vec<String> = (0..3_000)
            .map(|i| match i % 5 {
                0 => format!(r#"{{"record_type":"rule_hits","record_id":"h{i}","time":{},"rule_uuid":"r{}","hits":1}}"#, 100 + i, i % 7),
                _ => {
                    let (src, dst) = match i {
                        1_001 => ("10.9.9.9".to_string(), "10.1.0.1".to_string()),
                        2_002 => ("10.0.0.1".to_string(), "10.9.9.9".to_string()),
                        _ => (format!("10.0.{}.{}", i / 250, i % 250), format!("10.1.{}.{}", i % 40, i / 40)),
                    };
                    format!(r#"{{"record_type":"block_hit","record_id":"r{i}","time":{},"src_ip":"{src}","dst_ip":"{dst}","dst_port":443,"protocol":6}}"#, 100 + i)
                }
            })
            .collect();
        let (store, _) = store(&lines.join("\n"));
        let filter = HitFilter {
            either: Some(AddressMatch::parse("10.9.9.9").unwrap()),
            ..HitFilter::new(0, 10_000)
        };
        let page = store.search_hits(&filter, 10, None).unwrap();
        let ids: Vec<_> = page
            .hits
            .iter()
            .map(|hit| hit["record_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["r2002", "r1001"]);
        let plan = search_plan(&store, &filter);
        for index in ["records_by_src (src=?", "records_by_dst (dst=?"] {
            assert!(plan.iter().any(|step| step.contains(index)), "{plan:?}");
        }
        // A network at either end too (as one `OR`, the planner walked the time index instead).
        let network = HitFilter {
            either: Some(AddressMatch::parse("10.9.9.0/24").unwrap()),
            ..filter
        };
        let page = store.search_hits(&network, 10, None).unwrap();
        assert_eq!(page.hits.len(), 2);
        let plan = search_plan(&store, &network);
        for index in [
            "records_by_src (src>? AND src<?)",
            "records_by_dst (dst>? AND dst<?)",
        ] {
            assert!(plan.iter().any(|step| step.contains(index)), "{plan:?}");
        }
        assert!(
            !plan.iter().any(|step| step.contains("records_by_time")),
            "{plan:?}"
        );
    }

    /// Of 3,000 block hits to port 443 over TCP, the one `rare` makes other is found by
    /// `filter` through `index`.
    fn a_rare_value_is_searched_through(
        index: &str,
        rare: fn(&mut serde_json::Value),
        filter: HitFilter,
    ) {
        let lines: Vec<String> = (0..3_000)
            .map(|i| {
                let mut hit = serde_json::json!({"record_type": "block_hit", "record_id": format!("r{i}"), "time": 100 + i, "src_ip": "10.0.1.11", "dst_ip": "10.0.3.10", "dst_port": 443, "protocol": 6});
                if i == 1_234 {
                    rare(&mut hit);
                }
                hit.to_string()
            })
            .collect();
        let (store, _) = store(&lines.join("\n"));
        let page = store.search_hits(&filter, 10, None).unwrap();
        assert_eq!(page.hits.len(), 1);
        let plan = search_plan(&store, &filter);
        assert!(plan.iter().any(|step| step.contains(index)), "{plan:?}");
    }

    /// A rare port is found through the port index (before, its search read the whole window:
    /// 4.1 s at 591,000 records).
    #[test]
    fn a_rare_port_is_searched_through_its_index() {
        a_rare_value_is_searched_through(
            "records_by_port",
            |hit| hit["dst_port"] = 9_999.into(),
            HitFilter {
                port: Some(9_999),
                ..HitFilter::new(0, 10_000)
            },
        );
    }

    /// A rare protocol is found through its index (before, its search read the whole window:
    /// 0.5 s over the reference day's records for one no record has).
    #[test]
    fn a_rare_protocol_is_searched_through_its_index() {
        a_rare_value_is_searched_through(
            "records_by_protocol",
            |hit| hit["protocol"] = 47.into(),
            HitFilter {
                protocol: Some(47),
                ..HitFilter::new(0, 10_000)
            },
        );
    }

    /// A record comes back exactly as written, whichever of its fields the columns could give
    /// back and whichever the body had to keep.
    #[test]
    fn every_record_reads_back_as_it_was_written() {
        let lines = [
            r#"{"record_type":"block_hit","record_id":"43ba8e708353e496","time":100,"src_ip":"10.0.1.11","src_ip_num":167772427,"dst_ip":"2402:4e00:1013:101::a","dst_port":443,"protocol":6,"rule_uuid":"7000","src_vpc":"vpc-1","dst_vpc":"vpc-2","src_subnet":"subnet-1","dst_subnet":"subnet-2","fl_action":"REJECT","bytes":1204}"#,
            r#"{"record_type":"observe_hit","record_id":"43BA8E708353E496","time":101,"src_ip":"::ffff:10.0.1.11","src_ip_num":5,"dst_ip":"2402:4E00:1013:101::A","dst_port":"443","protocol":6.0,"rule_uuid":7000,"fl_action":null}"#,
            r#"{"record_type":"observe_hit","record_id":"0000000000000001","time":102,"src_ip":"unknown","src_ip_num":167772427,"dst_ip_num":-1,"dst_port":-3,"nested":{"a":[1,"x"]}}"#,
            r#"{"record_type":"unattributed_block","record_id":"id with spaces","time":103}"#,
            r#"{"record_type":"snapshot_drift","record_id":"0x","time":104,"src_ip":"","dst_ip":"10.0.3.010"}"#,
        ];
        let (store, imported) = store(&lines.join("\n"));
        assert_eq!(imported.records, lines.len() as u64);
        let filter = HitFilter {
            types: crate::core::search::HIT_TYPES.to_vec(),
            ..HitFilter::new(0, 200)
        };
        let mut hits = store.search_hits(&filter, 10, None).unwrap().hits;
        hits.reverse();
        let written: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(hits, written);
        for record in &written {
            let id = record["record_id"].as_str().unwrap();
            assert_eq!(store.hit_by_id(id, 0, 200).unwrap().as_ref(), Some(record));
        }
    }

    /// The top talkers are summed per conversation and cut at the last place with its ties
    /// ordered by their keys, as the CLS views order them, whether summed in memory or by
    /// SQLite; an IPv6 talker keeps its address.
    #[test]
    fn top_talkers_are_cut_after_their_ties_are_ordered() {
        let traffic = |id: u32, src: &str, bytes: u64| {
            format!(
                r#"{{"record_type":"traffic","record_id":"t{id}","time":{},"last_seen":{},"scope":"inter_subnet","src_vpc":"vpc-1","dst_vpc":"vpc-1","src_ip":"{src}","dst_ip":"10.0.3.10","dst_port":443,"protocol_name":"TCP","fl_action":"ACCEPT","flows":1,"packets":2,"bytes":{bytes}}}"#,
                100 + id,
                100 + id
            )
        };
        // 10.0.1.9 sums to 300 over two records; four addresses tie at 100 for second place.
        let lines = [
            traffic(1, "10.0.1.9", 150),
            traffic(2, "10.0.1.9", 150),
            traffic(3, "10.0.1.4", 100),
            traffic(4, "2402:4e00::1", 100),
            traffic(5, "10.0.1.2", 100),
            traffic(6, "10.0.1.3", 100),
            traffic(7, "10.0.1.1", 50),
        ];
        let (store, _) = store(&lines.join("\n"));
        let filter = TrafficFilter {
            vpc: Some("vpc-1".into()),
            talkers: 3,
            ..TrafficFilter::new(0, 1_000)
        };
        let view = store.traffic(&filter).unwrap();
        // Past the conversations summed in memory, SQLite's grouping gives the same views.
        assert_eq!(store.traffic_within(&filter, 2, true).unwrap(), view);
        let talkers: Vec<(&str, u64, u64)> = view
            .talkers
            .iter()
            .map(|t| (t.src_ip.as_str(), t.sums.bytes, t.sums.flows))
            .collect();
        assert_eq!(
            talkers,
            [
                ("10.0.1.9", 300, 2),
                ("10.0.1.2", 100, 1),
                ("10.0.1.3", 100, 1)
            ]
        );
        assert_eq!(view.totals[0].sums.bytes, 750);
        // However many tie at the cut, SQLite's ranking keeps no more than the places (before,
        // every tied row: here 5 for 3 places).
        let ranked = store
            .ranked_by_sqlite(&filter, &Plan::of(&filter, true, false), 3, 0)
            .unwrap()
            .unwrap();
        assert_eq!(ranked.len(), 3);
        assert_eq!(ordered(ranked, 3), view.talkers);
        let all = store
            .traffic(&TrafficFilter {
                talkers: 10,
                ..TrafficFilter::new(0, 1_000)
            })
            .unwrap();
        assert!(all.talkers.iter().any(|t| t.src_ip == "2402:4e00::1"));
        assert_eq!(all.talkers.len(), 6);
    }

    #[test]
    fn the_index_sort_gets_a_worker_for_a_large_table_on_more_than_one_core() {
        assert_eq!(sort_workers(2_600_000, 2), 1);
        assert_eq!(sort_workers(2_600_000, 8), 1);
        assert_eq!(sort_workers(2_600_000, 1), 0);
        assert_eq!(sort_workers(267_000, 2), 0);
        assert_eq!(sort_workers(0, 2), 0);
    }

    /// The views summed from the rollups are the views summed from the records: over windows
    /// whole, ragged, shorter than a quarter hour and of days, every filter and series step, with
    /// records imported in parts (a rollup row summed across imports) and imported twice,
    /// counters missing or negative, a `last_seen` apart from `time`, records of no VPC and of
    /// two; whether the talkers are summed in memory or by SQLite.
    #[test]
    fn rollups_give_the_views_the_records_give() {
        use crate::core::engine::Scope;
        use crate::core::records::Peer;
        const START: i64 = 1_767_225_600;
        let mut rng = fastrand::Rng::with_seed(33);
        let lines: Vec<String> = (0..4_000)
            .map(|i| {
                // Most in five hours, the rest over three days.
                let time = START
                    + match rng.u8(..3) {
                        0 => rng.i64(0..3 * 86_400),
                        _ => rng.i64(0..5 * 3_600),
                    };
                let vpc = |rng: &mut fastrand::Rng| ["vpc-a", "vpc-b", ""][rng.usize(..3)];
                let (src_vpc, dst_vpc) = (vpc(&mut rng), vpc(&mut rng));
                let subnet = |rng: &mut fastrand::Rng, vpc: &str| {
                    (!vpc.is_empty()).then(|| format!("subnet-{vpc}-{}", rng.u8(..3)))
                };
                let address = |rng: &mut fastrand::Rng| match rng.u8(..5) {
                    0 => format!("2402:4e00::{}", rng.u8(1..4)),
                    _ => format!("10.0.{}.{}", rng.u8(..3), rng.u8(1..5)),
                };
                let scope = [
                    Scope::IntraSubnet,
                    Scope::InterSubnet,
                    Scope::VpcInbound,
                    Scope::VpcOutbound,
                    Scope::CrossVpc,
                ][rng.usize(..5)];
                let peer = [Peer::SameVpc, Peer::OtherVpc, Peer::Internet][rng.usize(..3)];
                let last_seen = if rng.u8(..10) == 0 {
                    time - rng.i64(0..1_200)
                } else {
                    time
                };
                let protocol = ["TCP", "UDP", "ICMP"][rng.usize(..3)];
                let fl_action = if rng.u8(..4) == 0 { "REJECT" } else { "ACCEPT" };
                let mut record = serde_json::json!({
                    "record_type": "traffic",
                    "record_id": format!("{i:016x}"),
                    "time": time,
                    "last_seen": last_seen,
                    "scope": scope.as_str(),
                    "peer": peer.as_str(),
                    "src_ip": address(&mut rng),
                    "dst_ip": address(&mut rng),
                    "protocol_name": protocol,
                    "fl_action": fl_action,
                    "packets": rng.i64(1..50),
                    "bytes": rng.i64(40..90_000),
                });
                let fields = record.as_object_mut().unwrap();
                for (key, vpc) in [("src", src_vpc), ("dst", dst_vpc)] {
                    if let Some(subnet) = subnet(&mut rng, vpc) {
                        fields.insert(format!("{key}_vpc"), vpc.into());
                        fields.insert(format!("{key}_subnet"), subnet.into());
                    }
                }
                match rng.u8(..12) {
                    0 => {}
                    1 => {
                        fields.insert("flows".into(), (-1).into());
                    }
                    _ => {
                        fields.insert("flows".into(), rng.i64(1..6).into());
                    }
                }
                if rng.u8(..4) != 0 {
                    fields.insert("dst_port".into(), [443, 80, 53][rng.usize(..3)].into());
                }
                record.to_string()
            })
            .collect();
        let (store, _) = store(&lines[..1_000].join("\n"));
        for part in [&lines[1_000..2_500], &lines[500..1_000], &lines[2_500..]] {
            store.import(part.join("\n").as_bytes()).unwrap();
        }
        let windows = [
            (START, START + 5 * 3_600 - 1),
            (START + 123, START + 4 * 3_600 + 77),
            (START + 901, START + 1_700),
            (START + 1_800, START + 2 * 3_600 + 899),
            (START - 86_400, START + 86_400),
            (START + 3_700, START + 2 * 86_400 + 5_000),
            (START - 2 * 86_400 + 5_000, START + 4 * 86_400 - 77),
        ];
        let filters = [
            TrafficFilter::new(0, 0),
            TrafficFilter {
                vpc: Some("vpc-a".into()),
                ..TrafficFilter::new(0, 0)
            },
            TrafficFilter {
                vpc: Some("vpc-b".into()),
                scope: Some(Scope::CrossVpc),
                ..TrafficFilter::new(0, 0)
            },
            TrafficFilter {
                subnet: Some("subnet-vpc-a-1".into()),
                fl_action: Some("REJECT"),
                ..TrafficFilter::new(0, 0)
            },
            TrafficFilter {
                vpc: Some("vpc-a".into()),
                src_subnet: Some("subnet-vpc-a-0".into()),
                dst_subnet: Some("subnet-vpc-a-2".into()),
                peer: Some(Peer::SameVpc),
                ..TrafficFilter::new(0, 0)
            },
        ];
        let (mut quarters, mut hours, mut days, mut found) = (0, 0, 0, 0);
        for (since, until) in windows {
            for filter in &filters {
                let step = crate::core::search::series_step(since, until);
                for (bucket, talkers) in
                    [(step, 20), (900, 0), (3_600, 1_000), (300, 5), (86_400, 3)]
                {
                    let filter = TrafficFilter {
                        since,
                        until,
                        bucket,
                        talkers,
                        ..filter.clone()
                    };
                    let plan = Plan::of(&filter, true, true);
                    quarters += usize::from(plan.sums.is_some());
                    hours += usize::from(plan.conversations.is_some());
                    days += usize::from(plan.reads.iter().any(|(at, _)| ROLLUPS[*at].step == DAY));
                    let records = store.traffic_within(&filter, 100_000, false).unwrap();
                    found += usize::from(!records.totals.is_empty());
                    let rolled = store.traffic_within(&filter, 100_000, true).unwrap();
                    assert_eq!(rolled, records, "{filter:?}");
                    let by_sqlite = store.traffic_within(&filter, 2, true).unwrap();
                    assert_eq!(by_sqlite, records, "{filter:?}");
                    let every = TrafficFilter {
                        talkers: 100_000,
                        ..filter.clone()
                    };
                    let conversations = store.conversations(&filter, 100_000).unwrap();
                    assert!(conversations.complete);
                    assert_eq!(
                        conversations.rows,
                        store
                            .traffic_within(&every, 100_000, false)
                            .unwrap()
                            .talkers,
                        "{filter:?}"
                    );
                }
            }
        }
        // Most views find traffic and read the rollups.
        assert!(
            found >= 150 && quarters >= 80 && hours >= 60 && days >= 30,
            "{found} {quarters} {hours} {days}"
        );
    }

    /// Long records share a block only up to about a MiB, so any block reads back; a line longer
    /// than a store keeps is counted as skipped, not stored.
    #[test]
    fn long_records_fill_smaller_blocks_and_a_huge_line_is_skipped() {
        let long = "d".repeat(300_000);
        let mut lines: Vec<String> = (0..12)
            .map(|i| format!(r#"{{"record_type":"block_hit","record_id":"l{i}","time":{},"rule_description":"{long}"}}"#, 100 + i))
            .collect();
        lines.push(format!(
            r#"{{"record_type":"block_hit","record_id":"huge","time":1,"x":"{}"}}"#,
            "h".repeat(blocks::MAX_RECORD_BYTES)
        ));
        let (store, imported) = store(&lines.join("\n"));
        assert_eq!((imported.records, imported.skipped), (12, 1));
        let blocks: i64 = store
            .run("SELECT count(*) FROM bodies", |s| {
                s.query_row([], |r| r.get(0))
            })
            .unwrap();
        assert!(blocks >= 4, "{blocks} blocks");
        let hits = store
            .search_hits(&HitFilter::new(0, 1_000), 20, None)
            .unwrap()
            .hits;
        assert_eq!(hits.len(), 12);
        assert!(hits.iter().all(|h| h["rule_description"] == long.as_str()));
    }

    #[test]
    fn lines_that_are_not_records_are_counted_and_the_rest_kept() {
        let (store, imported) = store(concat!(
            r#"{"record_type":"block_hit","record_id":"a1","time":100,"src_ip":"10.0.1.11","src_ip_num":167772427,"dst_ip":"10.0.3.10","dst_port":3306,"protocol":6,"rule_uuid":"7000","fl_action":"REJECT"}"#,
            "\nnot json\n",
            r#"{"record_type":"block_hit","time":100}"#,
            "\n\n",
            r#"{"record_type":"block_hit","record_id":"a1","time":100}"#,
            "\n",
        ));
        assert_eq!(
            imported,
            Imported {
                records: 2,
                skipped: 2
            }
        );
        // The same record id twice (a retried batch) is stored once.
        let page = store
            .search_hits(&HitFilter::new(0, 200), 10, None)
            .unwrap();
        assert_eq!(page.hits.len(), 1);
        assert_eq!(page.context, None);
    }

    /// Records written before the numeric address fields existed are found by address and
    /// network all the same.
    #[test]
    fn older_records_get_their_address_numbers() {
        let (store, imported) = store(concat!(
            r#"{"record_type":"block_hit","record_id":"b1","time":100,"src_ip":"10.0.1.11","dst_ip":"10.0.3.10"}"#,
            "\n",
            r#"{"record_type":"block_hit","record_id":"b2","time":100,"src_ip":"2001:db8::1","dst_ip":"10.0.3.10"}"#,
            "\n",
        ));
        assert_eq!(imported.records, 2);
        let found = |src: &str| {
            let filter = HitFilter {
                src: Some(AddressMatch::parse(src).unwrap()),
                ..HitFilter::new(0, 200)
            };
            let page = store.search_hits(&filter, 10, None).unwrap();
            page.hits
                .iter()
                .map(|h| h["record_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(found("10.0.1.11"), ["b1"]);
        assert_eq!(found("10.0.1.0/24"), ["b1"]);
        assert_eq!(found("2001:db8::1"), ["b2"]);
        assert!(found("10.0.3.10").is_empty());
    }

    /// A read that fails part way (after whole batches were written) stops the import with
    /// its failure, and the store keeps none of that import's records or names; the next
    /// import gives its new names ids after the store's.
    #[test]
    fn a_failed_read_keeps_nothing_of_its_import() {
        let line = |n: usize| {
            format!(
                r#"{{"record_type":"block_hit","record_id":"f{n}","time":{n},"src_ip":"2001:db8::{n:x}","dst_ip":"10.0.3.10","rule_uuid":"rule-{n}"}}"#
            )
        };
        let (store, _) = store(&line(0));
        /// Lines, then a failure.
        struct Failing(std::io::Cursor<Vec<u8>>);
        impl std::io::Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(std::io::Error::other("the disk went away")),
                    n => Ok(n),
                }
            }
        }
        let lines: String = (1..3_000).map(|n| line(n) + "\n").collect();
        let failing = std::io::BufReader::new(Failing(std::io::Cursor::new(lines.into_bytes())));
        let err = store.import(failing).unwrap_err().to_string();
        assert!(err.contains("the disk went away"), "{err}");
        let count =
            |sql: &str| -> i64 { store.run(sql, |s| s.query_row([], |r| r.get(0))).unwrap() };
        assert_eq!(count("SELECT count(*) FROM records"), 1);
        let names = count("SELECT count(*) FROM names");
        assert_eq!(count("SELECT max(id) FROM names"), names);
        let imported = store
            .import(format!("{}\n{}", line(1), line(2)).as_bytes())
            .unwrap();
        assert_eq!(imported.records, 2);
        assert_eq!(count("SELECT count(*) FROM names"), names + 4);
        let filter = |src: &str| HitFilter {
            src: Some(AddressMatch::parse(src).unwrap()),
            ..HitFilter::new(0, 200)
        };
        for (n, src) in ["2001:db8::0", "2001:db8::1", "2001:db8::2"]
            .iter()
            .enumerate()
        {
            let page = store.search_hits(&filter(src), 10, None).unwrap();
            assert_eq!(page.hits.len(), 1, "{src}");
            assert_eq!(page.hits[0]["rule_uuid"], format!("rule-{n}"), "{src}");
        }
    }

    #[test]
    fn a_cursor_from_elsewhere_is_refused_by_name() {
        let (store, _) = store("");
        let err = store
            .search_hits(&HitFilter::new(0, 1), 10, Some("abc"))
            .unwrap_err();
        assert!(err.to_string().contains("cursor"), "{err}");
    }

    #[test]
    fn a_database_of_another_schema_is_refused_with_how_to_fill_it() {
        let (store, _) = store("");
        let path = store.path.clone();
        drop(store);
        assert!(LocalRecords::open(&path).is_ok());
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 1")
            .unwrap();
        let err = LocalRecords::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("another version") && err.contains("esgflow replay"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_database_is_named_with_how_to_fill_it() {
        let err = LocalRecords::open(Path::new("/nonexistent/esgflow.db")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/esgflow.db"), "{err}");
    }
}
