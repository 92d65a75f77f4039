//! An import on four threads: one reads the lines and makes each record's row (the JSON
//! parse, the names' ids, the fields its body keeps), the caller's writes the rows into the
//! database in line order, one deflates the body blocks and one sums and sorts the rollups'
//! rows. SQLite's work is the one that cannot be shared; the rest is done beside it
//! (docs/performance.md, "The store's import").

use std::sync::mpsc;

use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Transaction};

use super::line::{RecordLine, Span};
use super::{
    address_key, blocks, record_id, rollup_upsert, AddressKey, Imported, RollupRow, Rollups, MOVED,
    RECORD_COLUMNS, ROLLUPS, TRAFFIC_COLUMNS, UPSERT_ROWS,
};

/// Lines the reading thread hands over at a time.
const BATCH: usize = 1_024;

/// Batches waiting for the writer (bounding what the reader runs ahead by).
const BATCHES_AHEAD: usize = 4;

/// Blocks waiting to be deflated.
const BLOCKS_AHEAD: usize = 4;

/// Why an import stopped.
pub(super) enum Failure {
    Read(std::io::Error),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

/// Stores every record of `lines` through `transaction`, handing each to `each` as it is read.
pub(super) fn import(
    transaction: &Transaction<'_>,
    lines: impl std::io::BufRead + Send,
    each: impl FnMut(&RecordLine<'_>) + Send,
) -> Result<Imported, Failure> {
    let names = Names::load(transaction)?;
    std::thread::scope(|scope| {
        let (batches_to_write, batches) = mpsc::sync_channel(BATCHES_AHEAD);
        scope.spawn(move || read(lines, names, each, batches_to_write));
        let (blocks_to_deflate, blocks) =
            mpsc::sync_channel::<(i64, Vec<blocks::Body>)>(BLOCKS_AHEAD);
        let (deflated_to_write, deflated) = mpsc::channel();
        scope.spawn(move || {
            for (first, bodies) in blocks {
                if deflated_to_write
                    .send((first, blocks::encode(&bodies)))
                    .is_err()
                {
                    break;
                }
            }
        });
        // The writer's rollup rows wait while those before are summed.
        let (rows_to_sum, rows) = mpsc::sync_channel::<[Vec<RollupRow>; 2]>(0);
        let (summed_to_write, summed) = mpsc::channel();
        scope.spawn(move || Rollups::sum(rows, &summed_to_write));
        let mut writer = Writer::new(
            transaction,
            (blocks_to_deflate, deflated),
            (rows_to_sum, summed),
        )?;
        let mut imported = Imported::default();
        for batch in batches {
            let batch = batch.map_err(Failure::Read)?;
            imported.skipped += batch.skipped;
            for (id, name) in &batch.names {
                writer.name.execute((id, name))?;
            }
            for row in batch.rows {
                writer.write(row)?;
                imported.records += 1;
            }
            writer.write_deflated(false)?;
            writer.write_summed(false)?;
        }
        writer.finish()?;
        Ok(imported)
    })
}

/// Lines made ready for the writer, and the names first given an id in them.
struct Batch {
    names: Vec<(i64, String)>,
    rows: Vec<Row>,
    /// Lines that were not a record: not a JSON object, too long, or without a type, id or
    /// time.
    skipped: u64,
}

/// A record made ready for the writer.
enum Row {
    /// A traffic record, its columns as [`TRAFFIC_COLUMNS`] from `rid` on, to be filed under
    /// each of its VPCs.
    Traffic {
        values: [Sql; TRAFFIC_COLUMNS.len() - 2],
        vpcs: (i64, Option<i64>),
    },
    /// Any other record: its columns as [`RECORD_COLUMNS`], a rule-hits record's counters, and
    /// its body.
    Record {
        values: [Sql; RECORD_COLUMNS.len()],
        counters: Option<[Sql; 5]>,
        body: blocks::Body,
    },
}

/// The reading thread: lines into rows, [`BATCH`] at a time, until the lines end, a read fails
/// or the writer stops taking them.
fn read(
    lines: impl std::io::BufRead,
    mut names: Names,
    mut each: impl FnMut(&RecordLine<'_>),
    batches: mpsc::SyncSender<std::io::Result<Batch>>,
) {
    let mut batch = Batch::new();
    for line in lines.lines() {
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                let _ = batches.send(Err(e));
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        // A record no block could hold (audit's are about a KB) is not one.
        if line.len() > blocks::MAX_RECORD_BYTES {
            batch.skipped += 1;
            continue;
        }
        let Some(record) = RecordLine::parse(&line) else {
            batch.skipped += 1;
            continue;
        };
        each(&record);
        let Some(row) = names.row(&record) else {
            batch.skipped += 1;
            continue;
        };
        drop(record);
        batch.rows.push(match row {
            Made::Row(row) => row,
            Made::Record {
                values,
                counters,
                spans,
            } => Row::Record {
                values,
                counters,
                body: blocks::Body { line, spans },
            },
        });
        if batch.rows.len() == BATCH {
            batch.names = std::mem::take(&mut names.new);
            if batches
                .send(Ok(std::mem::replace(&mut batch, Batch::new())))
                .is_err()
            {
                return;
            }
        }
    }
    batch.names = std::mem::take(&mut names.new);
    let _ = batches.send(Ok(batch));
}

impl Batch {
    fn new() -> Self {
        Self {
            names: Vec::new(),
            rows: Vec::with_capacity(BATCH),
            skipped: 0,
        }
    }
}

/// What [`Names::row`] made of a record: a traffic record's row, or another record's columns
/// and where the fields its body keeps are in its line.
enum Made {
    Row(Row),
    Record {
        values: [Sql; RECORD_COLUMNS.len()],
        counters: Option<[Sql; 5]>,
        spans: Vec<Span>,
    },
}

/// Every name of the store and those an import adds, by id: read once, looked up for most
/// fields of every record (foldhash, not SipHash); a new name takes the next id, written by
/// the writer with the batch that first has it.
struct Names {
    ids: foldhash::HashMap<String, i64>,
    next: i64,
    new: Vec<(i64, String)>,
}

impl Names {
    fn load(transaction: &Transaction<'_>) -> rusqlite::Result<Self> {
        let mut statement = transaction.prepare("SELECT name, id FROM names")?;
        let ids: foldhash::HashMap<String, i64> = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self {
            next: ids.values().max().map_or(1, |id| id + 1),
            ids,
            new: Vec::new(),
        })
    }

    fn id(&mut self, name: &str) -> i64 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.next;
        self.next += 1;
        self.ids.insert(name.to_string(), id);
        self.new.push((id, name.to_string()));
        id
    }

    /// A text field as its id.
    fn named(&mut self, record: &RecordLine<'_>, key: &str) -> Sql {
        match record.str(key) {
            Some(text) => Sql::Integer(self.id(&text)),
            None => Sql::Null,
        }
    }

    /// An address field as its number ([`address_key`]), and whether that number gives the
    /// field back as it was.
    fn address(&mut self, record: &RecordLine<'_>, key: &str) -> (Sql, bool) {
        let text = record.str(key).unwrap_or_default();
        // Most are IPv4 as Rust writes them, which is all its parser reads (no leading zeros,
        // four decimal bytes), so they give themselves back without being written out.
        if let Ok(v4) = text.parse::<std::net::Ipv4Addr>() {
            return (Sql::Integer(i64::from(u32::from(v4))), true);
        }
        match address_key(&text) {
            Some(AddressKey::V4(n)) => (
                Sql::Integer(i64::from(n)),
                std::net::Ipv4Addr::from(n).to_string() == text,
            ),
            Some(AddressKey::Named(name)) => (Sql::Integer(-self.id(&name)), name == text),
            None => (Sql::Null, false),
        }
    }

    /// `record`'s row: a traffic record whole, any other as the numbers searches filter on and
    /// the fields its body keeps; `None` for a line without a type, id or time.
    fn row(&mut self, record: &RecordLine<'_>) -> Option<Made> {
        let number = |key: &str| record.i64(key).map_or(Sql::Null, Sql::Integer);
        let (Some(kind), Some(id), Some(time)) = (
            record.str("record_type"),
            record.str("record_id"),
            record.i64("time"),
        ) else {
            return None;
        };
        let rid = record_id(&id);
        if kind == "traffic" {
            // `last_seen` kept only when it is not the record's time (audit writes them equal).
            let last_seen = match record.i64("last_seen") {
                Some(seen) if seen != time => Sql::Integer(seen),
                _ => Sql::Null,
            };
            let values = [
                rid,
                Sql::Integer(time),
                last_seen,
                self.named(record, "scope"),
                self.named(record, "peer"),
                self.named(record, "src_subnet"),
                self.named(record, "dst_subnet"),
                self.address(record, "src_ip").0,
                self.address(record, "dst_ip").0,
                number("dst_port"),
                self.named(record, "protocol_name"),
                self.named(record, "fl_action"),
                number("flows"),
                number("packets"),
                number("bytes"),
                // An ENI list as a name: a batch's conversations share a few.
                self.named(record, "enis"),
            ];
            // Filed under each end's VPC (0: neither has one), a record between two VPCs twice
            // (copy 1 its second filing): a VPC's traffic is one range of the table.
            let vpcs = match (self.named(record, "src_vpc"), self.named(record, "dst_vpc")) {
                (Sql::Integer(src), Sql::Integer(dst)) if src != dst => (src, Some(dst)),
                (Sql::Integer(vpc), _) | (_, Sql::Integer(vpc)) => (vpc, None),
                _ => (0, None),
            };
            return Some(Made::Row(Row::Traffic { values, vpcs }));
        }
        let kind_id = Sql::Integer(self.id(&kind));
        let (src, src_back) = self.address(record, "src_ip");
        let (dst, dst_back) = self.address(record, "dst_ip");
        let mut values = [
            kind_id,
            rid,
            Sql::Integer(time),
            src.clone(),
            dst.clone(),
            number("dst_port"),
            number("protocol"),
            self.named(record, MOVED[6]),
            self.named(record, MOVED[7]),
            self.named(record, MOVED[8]),
            self.named(record, MOVED[9]),
            self.named(record, MOVED[10]),
            self.named(record, MOVED[11]),
            Sql::Null,
        ];
        // Which fields the columns give back as they were.
        let same_number = |key: &str, column: &Sql| matches!(column, Sql::Integer(n) if *n >= 0 && record.i64(key) == Some(*n));
        let back = [
            src_back,
            dst_back,
            same_number("src_ip_num", &src),
            same_number("dst_ip_num", &dst),
        ]
        .into_iter()
        .chain(values[5..13].iter().map(|column| *column != Sql::Null));
        let mut moved = 0_i64;
        for (bit, back) in back.enumerate() {
            if back {
                moved |= 1 << bit;
            }
        }
        values[13] = Sql::Integer(moved);
        let counters = (kind == "rule_hits").then(|| {
            [
                "hits",
                "block_hits",
                "observe_hits",
                "first_hit",
                "last_hit",
            ]
            .map(number)
        });
        let spans = record.spans(|key| {
            blocks::COLUMN_KEYS.contains(&key)
                || MOVED
                    .iter()
                    .position(|moved_key| *moved_key == key)
                    .is_some_and(|bit| moved & (1 << bit) != 0)
        });
        Some(Made::Record {
            values,
            counters,
            spans,
        })
    }
}

/// A thread the writer hands work to (`In`), and its results (`Out`).
type Helper<In, Out> = (mpsc::SyncSender<In>, mpsc::Receiver<Out>);

/// The writing side: its statements, the rollup rows collected, and the body block being filled.
struct Writer<'t> {
    name: rusqlite::Statement<'t>,
    records: rusqlite::Statement<'t>,
    traffic: rusqlite::Statement<'t>,
    counters: rusqlite::Statement<'t>,
    bodies: rusqlite::Statement<'t>,
    /// Adds to each of [`ROLLUPS`].
    upserts: Vec<(rusqlite::Statement<'t>, rusqlite::Statement<'t>)>,
    /// The rollup rows not yet handed to be summed.
    rollups: Rollups,
    /// Rollup rows to the summing thread (`None` once the last are sent), and back.
    to_sum: Option<mpsc::SyncSender<[Vec<RollupRow>; 2]>>,
    summed: mpsc::Receiver<Vec<Vec<RollupRow>>>,
    /// The block being filled: the rowid of its first record, and its records.
    block: (i64, Vec<blocks::Body>),
    /// The JSON bytes of the block's records so far.
    block_bytes: usize,
    /// Full blocks to the deflating thread (`None` once the last is sent), and back.
    to_deflate: Option<mpsc::SyncSender<(i64, Vec<blocks::Body>)>>,
    deflated: mpsc::Receiver<(i64, Vec<u8>)>,
}

impl<'t> Writer<'t> {
    fn new(
        transaction: &'t Transaction<'_>,
        (to_deflate, deflated): Helper<(i64, Vec<blocks::Body>), (i64, Vec<u8>)>,
        (to_sum, summed): Helper<[Vec<RollupRow>; 2], Vec<Vec<RollupRow>>>,
    ) -> rusqlite::Result<Self> {
        let insert = |table: &str, columns: &[&str]| {
            transaction.prepare(&format!(
                "INSERT OR IGNORE INTO {table} ({}) VALUES ({})",
                columns.join(", "),
                vec!["?"; columns.len()].join(", ")
            ))
        };
        Ok(Self {
            name: transaction.prepare("INSERT INTO names (id, name) VALUES (?, ?)")?,
            records: insert("records", &RECORD_COLUMNS)?,
            traffic: insert("traffic", &TRAFFIC_COLUMNS)?,
            counters: insert(
                "counters",
                &[
                    "id",
                    "hits",
                    "block_hits",
                    "observe_hits",
                    "first_hit",
                    "last_hit",
                ],
            )?,
            bodies: transaction.prepare("INSERT INTO bodies (first, data) VALUES (?, ?)")?,
            upserts: ROLLUPS
                .iter()
                .map(|rollup| {
                    Ok((
                        transaction.prepare(&rollup_upsert(rollup, 1))?,
                        transaction.prepare(&rollup_upsert(rollup, UPSERT_ROWS))?,
                    ))
                })
                .collect::<rusqlite::Result<_>>()?,
            rollups: Rollups::new(),
            to_sum: Some(to_sum),
            summed,
            block: (0, Vec::new()),
            block_bytes: 0,
            to_deflate: Some(to_deflate),
            deflated,
        })
    }

    /// Writes a record's row unless the store holds the record already (a retried batch).
    fn write(&mut self, row: Row) -> rusqlite::Result<()> {
        match row {
            Row::Traffic { values, vpcs } => {
                for (copy, vpc) in std::iter::once(vpcs.0).chain(vpcs.1).enumerate() {
                    let filed = [Sql::Integer(vpc), Sql::Integer(copy as i64)];
                    // Summed into the rollups only when new (INSERT OR IGNORE changed a row).
                    if self
                        .traffic
                        .execute(params_from_iter(filed.iter().chain(&values)))?
                        == 1
                    {
                        self.rollups.add(vpc, copy as i64, &values);
                    }
                }
                if self.rollups.full() {
                    self.sum()?;
                }
            }
            Row::Record {
                values,
                counters,
                body,
            } => {
                let rowid = match self.records.insert(params_from_iter(values)) {
                    Ok(rowid) => rowid,
                    // Already stored (INSERT OR IGNORE changed nothing).
                    Err(rusqlite::Error::StatementChangedRows(0)) => return Ok(()),
                    Err(e) => return Err(e),
                };
                if let Some(counters) = counters {
                    self.counters.execute(params_from_iter(
                        std::iter::once(Sql::Integer(rowid)).chain(counters),
                    ))?;
                }
                self.keep(rowid, body)?;
            }
        }
        Ok(())
    }

    /// Adds the body of the record stored at `rowid` to the block being filled.
    fn keep(&mut self, rowid: i64, body: blocks::Body) -> rusqlite::Result<()> {
        let bytes = body.line.len();
        // A block covers consecutive rowids, and about a MiB of records at most.
        if !self.block.1.is_empty()
            && (rowid != self.block.0 + self.block.1.len() as i64
                || self.block_bytes + bytes > blocks::BLOCK_BYTES)
        {
            self.flush()?;
        }
        self.block_bytes += bytes;
        if self.block.1.is_empty() {
            self.block.0 = rowid;
        }
        self.block.1.push(body);
        if self.block.1.len() == blocks::BLOCK {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the block being filled to the deflating thread (or deflates it here when that
    /// thread is gone).
    fn flush(&mut self) -> rusqlite::Result<()> {
        if self.block.1.is_empty() {
            return Ok(());
        }
        let block = (
            self.block.0,
            std::mem::replace(&mut self.block.1, Vec::with_capacity(blocks::BLOCK)),
        );
        self.block_bytes = 0;
        let unsent = match &self.to_deflate {
            Some(to) => to.send(block).err().map(|mpsc::SendError(block)| block),
            None => Some(block),
        };
        if let Some((first, bodies)) = unsent {
            self.bodies.execute((first, blocks::encode(&bodies)))?;
        }
        Ok(())
    }

    /// Writes the blocks deflated so far; with `all`, every block still to come.
    fn write_deflated(&mut self, all: bool) -> rusqlite::Result<()> {
        let bodies = &mut self.bodies;
        drain(&self.deflated, all, |(first, data)| {
            bodies.execute((first, data)).map(drop)
        })
    }

    /// Hands the rollup rows collected to the summing thread (or sums and writes them here
    /// when that thread is gone).
    fn sum(&mut self) -> rusqlite::Result<()> {
        let rows = self.rollups.take();
        let unsent = match &self.to_sum {
            Some(to) => to.send(rows).err().map(|mpsc::SendError(rows)| rows),
            None => Some(rows),
        };
        if let Some(mut rows) = unsent {
            rows.iter_mut().for_each(super::sum_sorted);
            Rollups::write(&Rollups::summed(rows), &mut self.upserts)?;
        }
        Ok(())
    }

    /// Adds the rollup rows summed so far to the rollups; with `all`, every one still to come.
    fn write_summed(&mut self, all: bool) -> rusqlite::Result<()> {
        let upserts = &mut self.upserts;
        drain(&self.summed, all, |summed| Rollups::write(&summed, upserts))
    }

    /// Writes the rollup rows, the block being filled and every block deflated: the import's
    /// end.
    fn finish(&mut self) -> rusqlite::Result<()> {
        self.sum()?;
        self.to_sum = None;
        self.flush()?;
        self.to_deflate = None;
        self.write_deflated(true)?;
        self.write_summed(true)
    }
}

/// Hands `each` what `from` has ready; with `all`, everything until its sender is gone.
fn drain<T>(
    from: &mpsc::Receiver<T>,
    all: bool,
    mut each: impl FnMut(T) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    loop {
        let next = match all {
            true => from.recv().ok(),
            false => from.try_recv().ok(),
        };
        match next {
            Some(next) => each(next)?,
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// What Rust's parser reads as an IPv4 address it writes back as it was, which
        /// [`super::Names::address`] relies on to skip writing it out.
        #[test]
        fn an_ipv4_address_that_parses_is_written_as_it_was(text in "[0-9.+ ]{0,4}[0-9]{1,3}[.][0-9]{1,4}[.][0-9]{1,3}[.][0-9]{1,4}[0-9. ]{0,2}") {
            if let Ok(ip) = text.parse::<std::net::Ipv4Addr>() {
                prop_assert_eq!(ip.to_string(), text);
            }
        }
    }
}
