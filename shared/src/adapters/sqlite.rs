//! The records store on one machine: an SQLite database (rusqlite, SQLite bundled) that
//! `esgflow replay` fills from the records audit wrote and a local lookup reads. It answers the
//! same searches as the hits topic in CLS (`crate::adapters::tencent::cls_query`), with the same
//! meaning for every condition; `tests/records_store.rs` runs each against both.
//!
//! Table `records` holds every record but traffic: the fields searches filter on as columns, the
//! record itself as JSON text. Table `traffic` holds the traffic records' fields the traffic views
//! group and sum, in time order, with each end's VPC indexed together with those fields. Records are keyed by type and `record_id`, so importing a retried batch twice
//! keeps one copy.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::types::Value as Sql;
use rusqlite::{params_from_iter, Connection, OpenFlags};
use serde_json::Value;

use crate::core::ports::{RecordsStore, SearchFuture, StoreFailure, TOO_LARGE};
use crate::core::search::{
    AddressMatch, HitFilter, HitsPage, RuleCounters, TrafficFilter, TrafficRow, TrafficView,
};

/// A failure of the local store, naming the database.
#[derive(Debug, thiserror::Error)]
#[error("records database {path}: {message}")]
pub struct LocalStoreError {
    path: String,
    message: String,
    /// The answer would be too large to compute on one machine (narrow the request).
    pub too_large: bool,
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

/// The columns, in insert order; `body` is the record as JSON text.
const COLUMNS: [&str; 16] = [
    "record_type",
    "record_id",
    "time",
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
    "body",
];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    record_type TEXT NOT NULL,
    record_id TEXT NOT NULL,
    time INTEGER NOT NULL,
    src_ip TEXT, dst_ip TEXT, src_ip_num INTEGER, dst_ip_num INTEGER,
    dst_port INTEGER, protocol INTEGER, rule_uuid TEXT,
    src_vpc TEXT, dst_vpc TEXT, src_subnet TEXT, dst_subnet TEXT, fl_action TEXT,
    body TEXT NOT NULL,
    UNIQUE (record_type, record_id)
);
CREATE INDEX IF NOT EXISTS records_by_time ON records (time);
CREATE INDEX IF NOT EXISTS records_by_rule ON records (rule_uuid, time);
CREATE INDEX IF NOT EXISTS records_by_port ON records (dst_port, time);
CREATE INDEX IF NOT EXISTS records_by_src
    ON records (src_ip_num, time, record_type, dst_port, protocol, dst_ip_num);
CREATE INDEX IF NOT EXISTS records_by_dst
    ON records (dst_ip_num, time, record_type, dst_port, protocol, src_ip_num);
CREATE TABLE IF NOT EXISTS traffic (
    record_id TEXT NOT NULL,
    time INTEGER NOT NULL,
    scope TEXT, peer TEXT, src_vpc TEXT, dst_vpc TEXT, src_subnet TEXT, dst_subnet TEXT,
    src_ip TEXT, dst_ip TEXT, dst_port INTEGER, protocol_name TEXT, fl_action TEXT,
    flows INTEGER, packets INTEGER, bytes INTEGER, last_seen INTEGER, enis TEXT,
    PRIMARY KEY (time, record_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS traffic_by_src_vpc ON traffic (src_vpc, time, scope, peer, fl_action,
    src_subnet, dst_subnet, src_ip, dst_ip, dst_port, protocol_name, flows, packets, bytes, last_seen);
CREATE INDEX IF NOT EXISTS traffic_by_dst_vpc ON traffic (dst_vpc, time, scope, peer, fl_action,
    src_subnet, dst_subnet, src_ip, dst_ip, dst_port, protocol_name, flows, packets, bytes, last_seen);
PRAGMA user_version = 6;
";

/// The schema's version (`PRAGMA user_version`): a database made by another version is
/// refused, with how to fill it again.
const SCHEMA_VERSION: i64 = 6;

/// The columns of table `traffic`, in insert order.
const TRAFFIC_COLUMNS: [&str; 18] = [
    "record_id",
    "time",
    "scope",
    "peer",
    "src_vpc",
    "dst_vpc",
    "src_subnet",
    "dst_subnet",
    "src_ip",
    "dst_ip",
    "dst_port",
    "protocol_name",
    "fl_action",
    "flows",
    "packets",
    "bytes",
    "last_seen",
    "enis",
];

/// The embedded records store.
pub struct LocalRecords {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl std::fmt::Debug for LocalRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRecords")
            .field("path", &self.path)
            .finish()
    }
}

impl LocalRecords {
    fn error(path: &Path, message: impl std::fmt::Display) -> LocalStoreError {
        LocalStoreError {
            path: path.display().to_string(),
            message: message.to_string(),
            too_large: false,
        }
    }

    /// Opens (creating it if needed) the database at `path` for writing.
    pub fn create(path: &Path) -> Result<Self, LocalStoreError> {
        let connection = Connection::open(path).map_err(|e| Self::error(path, e))?;
        connection
            .execute_batch(SCHEMA)
            .map_err(|e| Self::error(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            connection: Mutex::new(connection),
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
        })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores every record of a JSON-lines text (what audit writes with `ESGFLOW_JSONL_PATH`),
    /// in one transaction; a line that is not a record is counted and skipped.
    pub fn import(&self, lines: impl std::io::BufRead) -> Result<Imported, LocalStoreError> {
        self.import_with(lines, |_| {})
    }

    /// [`Self::import`], handing each record stored to `each` as it is read (`esgflow replay`
    /// sums its report in the same pass).
    pub fn import_with(
        &self,
        lines: impl std::io::BufRead,
        mut each: impl FnMut(&Value),
    ) -> Result<Imported, LocalStoreError> {
        let path = &self.path;
        let mut connection = self.connection();
        let transaction = connection.transaction().map_err(|e| Self::error(path, e))?;
        let mut imported = Imported::default();
        {
            let insert = |table: &str, columns: &[&str]| {
                transaction
                    .prepare(&format!(
                        "INSERT OR REPLACE INTO {table} ({}) VALUES ({})",
                        columns.join(", "),
                        vec!["?"; columns.len()].join(", ")
                    ))
                    .map_err(|e| Self::error(path, e))
            };
            let mut records = insert("records", &COLUMNS)?;
            let mut traffic = insert("traffic", &TRAFFIC_COLUMNS)?;
            for line in lines.lines() {
                let line = line.map_err(|e| Self::error(path, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                let record: Option<Value> = serde_json::from_str(&line).ok();
                let stored = match record.as_ref().and_then(|record| row(record, &line)) {
                    Some(Row::Record(values)) => records.execute(params_from_iter(values)),
                    Some(Row::Traffic(values)) => traffic.execute(params_from_iter(values)),
                    None => {
                        imported.skipped += 1;
                        continue;
                    }
                };
                stored.map_err(|e| Self::error(path, e))?;
                each(record.as_ref().expect("a stored record was read"));
                imported.records += 1;
            }
        }
        transaction.commit().map_err(|e| Self::error(path, e))?;
        // Statistics for the query planner: which index narrows a search most.
        connection
            .execute_batch("ANALYZE")
            .map_err(|e| Self::error(path, e))?;
        Ok(imported)
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
        let (mut conditions, mut values) = hits_conditions(filter, after.map(|(time, _)| time));
        if let Some((time, id)) = after {
            // The window's end is already the cursor's time: only its ties need the id.
            conditions.push("(time < ? OR rowid < ?)".to_string());
            values.extend([Sql::Integer(time), Sql::Integer(id)]);
        }
        values.push(Sql::Integer(i64::from(limit) + 1));
        // Two steps: the page's keys from an index (an address index holds every column an
        // address search filters on, so it reads no record it will not return), then those
        // records. A search by address (IPv4 or IPv6) or IPv4 network is led by its address
        // index; the
        // planner would otherwise walk the time index and read every record of the window
        // (measured at 1,000,000 records: 0.4-15 s instead of 5-20 ms; benches/store.rs).
        let index = match (&filter.src, &filter.dst) {
            (Some(_), _) => "INDEXED BY records_by_src",
            (_, Some(_)) => "INDEXED BY records_by_dst",
            _ => "",
        };
        let sql = format!(
            "SELECT r.time, r.rowid, r.body FROM (SELECT rowid AS id FROM records {index} WHERE {} ORDER BY time DESC, rowid DESC LIMIT ?) AS page JOIN records AS r ON r.rowid = page.id ORDER BY r.time DESC, r.rowid DESC",
            conditions.join(" AND ")
        );
        let mut rows: Vec<(i64, i64, String)> = self.run(&sql, |statement| {
            statement
                .query_map(params_from_iter(values), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .and_then(Iterator::collect)
        })?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let context = more
            .then(|| rows.last().map(|(time, id, _)| format!("{time}-{id}")))
            .flatten();
        let hits = rows
            .into_iter()
            .map(|(_, _, body)| serde_json::from_str(&body))
            .collect::<Result<_, _>>()
            .map_err(|e| Self::error(&self.path, e))?;
        Ok(HitsPage { hits, context })
    }

    /// The rules with the most block hits between `since` and `until` (Unix seconds), most first
    /// (ties by uuid).
    pub fn top_block_rules(
        &self,
        since: i64,
        until: i64,
        limit: u32,
    ) -> Result<Vec<(String, u64)>, LocalStoreError> {
        self.run(
            "SELECT rule_uuid, count(*) AS hits FROM records WHERE record_type = 'block_hit' AND time BETWEEN ? AND ? AND rule_uuid IS NOT NULL GROUP BY rule_uuid ORDER BY hits DESC, rule_uuid ASC LIMIT ?",
            |statement| {
                statement
                    .query_map((since, until, limit), |r| {
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

    /// The traffic views of `filter`, summed in one pass over the traffic records it covers
    /// ([`TrafficView::sum_rows`]: the same sums as the SQL CLS runs). Records are kept in time
    /// order, and a VPC's are read from an index that holds every field a view reads, so a
    /// window is one sequential read.
    pub fn traffic(&self, filter: &TrafficFilter) -> Result<TrafficView, LocalStoreError> {
        let window = [Sql::Integer(filter.since), Sql::Integer(filter.until)];
        let mut values = Vec::new();
        let mut conditions = Vec::new();
        match &filter.vpc {
            // Each side through its own index, the window within it.
            Some(vpc) => {
                conditions.push(
                    "((src_vpc = ? AND time BETWEEN ? AND ?) OR (dst_vpc = ? AND time BETWEEN ? AND ?))"
                        .to_string(),
                );
                for _ in 0..2 {
                    values.push(Sql::Text(vpc.clone()));
                    values.extend(window.clone());
                }
            }
            None => {
                conditions.push("time BETWEEN ? AND ?".to_string());
                values.extend(window);
            }
        }
        if let Some(subnet) = &filter.subnet {
            conditions.push("(src_subnet = ? OR dst_subnet = ?)".to_string());
            values.extend([Sql::Text(subnet.clone()), Sql::Text(subnet.clone())]);
        }
        let mut equal = |column: &str, value: Option<&'static str>| {
            if let Some(value) = value {
                conditions.push(format!("{column} = ?"));
                values.push(Sql::Text(value.to_string()));
            }
        };
        equal("scope", filter.scope.map(|s| s.as_str()));
        equal("peer", filter.peer.map(|p| p.as_str()));
        equal("fl_action", filter.fl_action);
        let sql = format!(
            "SELECT scope, fl_action, src_ip, dst_ip, dst_port, protocol_name, src_subnet, dst_subnet, flows, packets, bytes, last_seen FROM traffic WHERE {}",
            conditions.join(" AND ")
        );
        let mut too_many = None;
        let view = self.run(&sql, |statement| {
            let rows = statement.query_map(params_from_iter(values.iter()), |r| {
                let count = |i: usize| -> rusqlite::Result<u64> {
                    Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0).max(0) as u64)
                };
                Ok(TrafficRow {
                    scope: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    fl_action: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    src_ip: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    dst_ip: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    dst_port: r
                        .get::<_, Option<i64>>(4)?
                        .and_then(|p| u16::try_from(p).ok()),
                    protocol_name: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    src_subnet: r.get(6)?,
                    dst_subnet: r.get(7)?,
                    flows: count(8)?,
                    packets: count(9)?,
                    bytes: count(10)?,
                    last_seen: r.get::<_, Option<i64>>(11)?.unwrap_or(0),
                })
            })?;
            let mut failed = None;
            let summed = TrafficView::sum_rows(
                filter,
                rows.map_while(|row| row.map_err(|e| failed = Some(e)).ok()),
            );
            if let Some(e) = failed {
                return Err(e);
            }
            Ok(summed.map_err(|e| too_many = Some(e)).ok())
        })?;
        view.ok_or_else(|| LocalStoreError {
            too_large: true,
            ..Self::error(&self.path, too_many.expect("set on failure"))
        })
    }

    /// The hit record `id` written between `since` and `until` (Unix seconds), if any.
    pub fn hit_by_id(
        &self,
        id: &str,
        since: i64,
        until: i64,
    ) -> Result<Option<Value>, LocalStoreError> {
        let types = crate::core::search::HIT_TYPES;
        let body: Option<String> = self.run(
            "SELECT body FROM records WHERE record_type IN (?, ?, ?, ?) AND record_id = ? AND time BETWEEN ? AND ? LIMIT 1",
            |statement| {
                let mut rows = statement.query_map(
                    (types[0], types[1], types[2], types[3], id, since, until),
                    |r| r.get::<_, String>(0),
                )?;
                rows.next().transpose()
            },
        )?;
        body.map(|b| serde_json::from_str(&b).map_err(|e| Self::error(&self.path, e)))
            .transpose()
    }

    /// The ENIs that recorded traffic between `since` and `until` (Unix seconds).
    pub fn recording_enis(
        &self,
        since: i64,
        until: i64,
    ) -> Result<std::collections::BTreeSet<String>, LocalStoreError> {
        let lists: Vec<String> = self.run(
            "SELECT DISTINCT enis FROM traffic WHERE time BETWEEN ? AND ? AND enis IS NOT NULL",
            |statement| {
                statement
                    .query_map((since, until), |r| r.get::<_, String>(0))
                    .and_then(Iterator::collect)
            },
        )?;
        Ok(crate::core::search::split_enis(
            lists.iter().map(String::as_str),
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
    ) -> Result<std::collections::BTreeMap<String, RuleCounters>, LocalStoreError> {
        self.counters_by_rule(None, since, until)
    }

    fn counters_by_rule(
        &self,
        uuid: Option<&str>,
        since: i64,
        until: i64,
    ) -> Result<std::collections::BTreeMap<String, RuleCounters>, LocalStoreError> {
        let sql = format!(
            "SELECT rule_uuid, sum(json_extract(body, '$.hits')), sum(json_extract(body, '$.block_hits')), sum(json_extract(body, '$.observe_hits')), min(json_extract(body, '$.first_hit')), max(json_extract(body, '$.last_hit')) FROM records WHERE record_type = 'rule_hits' AND time BETWEEN ? AND ? AND rule_uuid IS NOT NULL {} GROUP BY rule_uuid",
            if uuid.is_some() { "AND rule_uuid = ?" } else { "" }
        );
        let mut values = vec![Sql::Integer(since), Sql::Integer(until)];
        values.extend(uuid.map(|u| Sql::Text(u.to_string())));
        self.run(&sql, |statement| {
            statement
                .query_map(params_from_iter(values), |r| {
                    let count = |i: usize| -> rusqlite::Result<Option<u64>> {
                        Ok(r.get::<_, Option<i64>>(i)?.map(|n| n.max(0) as u64))
                    };
                    Ok((
                        r.get::<_, String>(0)?,
                        RuleCounters {
                            hits: count(1)?.unwrap_or(0),
                            block_hits: count(2)?.unwrap_or(0),
                            observe_hits: count(3)?.unwrap_or(0),
                            first_hit: count(4)?,
                            last_hit: count(5)?,
                        },
                    ))
                })
                .and_then(Iterator::collect)
        })
    }
}

/// A record's column values, for its table.
enum Row {
    /// Table `records`.
    Record(Vec<Sql>),
    /// Table `traffic`.
    Traffic(Vec<Sql>),
}

/// A JSON-lines record as column values, or `None` when it is not a record.
fn row(record: &Value, line: &str) -> Option<Row> {
    let text = |key: &str| match record.get(key) {
        Some(Value::String(s)) => Sql::Text(s.clone()),
        _ => Sql::Null,
    };
    let number = |key: &str| match record.get(key).and_then(Value::as_i64) {
        Some(n) => Sql::Integer(n),
        None => Sql::Null,
    };
    // The indexed address key: the record's `src_ip_num`/`dst_ip_num` for IPv4 (derived from the
    // address for records written before those fields existed), a hash for IPv6.
    let ip_number = |key: &str, address: &str| match number(key) {
        Sql::Null => record
            .get(address)
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<std::net::IpAddr>().ok())
            .map_or(Sql::Null, |ip| Sql::Integer(address_key(ip))),
        known => known,
    };
    if record.get("record_type").and_then(Value::as_str) == Some("traffic") {
        let mut values = Vec::with_capacity(TRAFFIC_COLUMNS.len());
        for column in TRAFFIC_COLUMNS {
            let value = match column {
                "time" | "dst_port" | "flows" | "packets" | "bytes" | "last_seen" => number(column),
                _ => text(column),
            };
            if value == Sql::Null && matches!(column, "record_id" | "time") {
                return None;
            }
            values.push(value);
        }
        return Some(Row::Traffic(values));
    }
    let mut values = Vec::with_capacity(COLUMNS.len());
    for column in COLUMNS {
        let value = match column {
            "time" | "dst_port" | "protocol" => number(column),
            "src_ip_num" => ip_number(column, "src_ip"),
            "dst_ip_num" => ip_number(column, "dst_ip"),
            "body" => Sql::Text(line.to_string()),
            _ => text(column),
        };
        // A record has its type, id and time.
        if value == Sql::Null && matches!(column, "record_type" | "record_id" | "time") {
            return None;
        }
        values.push(value);
    }
    Some(Row::Record(values))
}

/// An address's key in the indexed `src_ip_num`/`dst_ip_num` columns: an IPv4 address (or an
/// IPv4-mapped one) as its number, 0 to 2^32 - 1, as audit writes it; an IPv6 address as a
/// negative 63-bit FNV-1a hash of its 16 bytes, so IPv4 ranges never reach it and an IPv6
/// search is one index lookup (with the text compared too, against a collision). Before, an
/// IPv6 search read every record of its window: 3.9 s at 591,000 records.
fn address_key(ip: std::net::IpAddr) -> i64 {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => i64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => {
            let hash = v6.octets().iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            -1 - (hash >> 1) as i64
        }
    }
}

/// `side` matching `address`, with its values.
fn address(side: &str, address: &AddressMatch, values: &mut Vec<Sql>) -> String {
    match address {
        // An IPv4 address through the numeric column, which is indexed.
        AddressMatch::Exact(ip @ std::net::IpAddr::V4(_)) => {
            values.push(Sql::Integer(address_key(*ip)));
            format!("{side}_ip_num = ?")
        }
        AddressMatch::Exact(ip) => {
            values.extend([Sql::Integer(address_key(*ip)), Sql::Text(ip.to_string())]);
            format!("({side}_ip_num = ? AND {side}_ip = ?)")
        }
        AddressMatch::V4Range { first, last } => {
            values.extend([
                Sql::Integer(i64::from(*first)),
                Sql::Integer(i64::from(*last)),
            ]);
            format!("{side}_ip_num BETWEEN ? AND ?")
        }
    }
}

/// The `WHERE` conditions of `filter` and their values, condition by condition as
/// `cls_query::hits_query` writes them; `until` (a cursor's time) narrows the window's end.
fn hits_conditions(filter: &HitFilter, until: Option<i64>) -> (Vec<String>, Vec<Sql>) {
    let mut values: Vec<Sql> = filter
        .types
        .iter()
        .map(|t| Sql::Text(t.to_string()))
        .collect();
    let mut conditions = vec![format!(
        "record_type IN ({})",
        vec!["?"; filter.types.len()].join(", ")
    )];
    conditions.push("time BETWEEN ? AND ?".to_string());
    let until = until.map_or(filter.until, |t| t.min(filter.until));
    values.extend([Sql::Integer(filter.since), Sql::Integer(until)]);
    if let Some(src) = &filter.src {
        conditions.push(address("src", src, &mut values));
    }
    if let Some(dst) = &filter.dst {
        conditions.push(address("dst", dst, &mut values));
    }
    if let Some(either) = &filter.either {
        let src = address("src", either, &mut values);
        let dst = address("dst", either, &mut values);
        conditions.push(format!("({src} OR {dst})"));
    }
    if let Some(port) = filter.port {
        conditions.push("dst_port = ?".to_string());
        values.push(Sql::Integer(i64::from(port)));
    }
    if let Some(protocol) = filter.protocol {
        conditions.push("protocol = ?".to_string());
        values.push(Sql::Integer(i64::from(protocol)));
    }
    let mut either_side = |column: &str, id: &Option<String>| {
        if let Some(id) = id {
            conditions.push(format!("(src_{column} = ? OR dst_{column} = ?)"));
            values.extend([Sql::Text(id.clone()), Sql::Text(id.clone())]);
        }
    };
    either_side("vpc", &filter.vpc);
    either_side("subnet", &filter.subnet);
    if let Some(rule) = &filter.rule {
        conditions.push("rule_uuid = ?".to_string());
        values.push(Sql::Text(rule.clone()));
    }
    if let Some(action) = filter.fl_action {
        conditions.push("fl_action = ?".to_string());
        values.push(Sql::Text(action.to_string()));
    }
    (conditions, values)
}

impl From<LocalStoreError> for StoreFailure {
    fn from(err: LocalStoreError) -> Self {
        StoreFailure::Failed {
            code: if err.too_large {
                TOO_LARGE.to_string()
            } else {
                "local_store".to_string()
            },
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
        let (conditions, values) = hits_conditions(
            &HitFilter {
                src: at("2402:4e00:1013:101::a"),
                ..window
            },
            None,
        );
        let plan = plan(
            &store,
            &format!(
                "SELECT rowid FROM records INDEXED BY records_by_src WHERE {}",
                conditions.join(" AND ")
            ),
            values,
        );
        assert!(
            plan.iter()
                .any(|step| step.contains("records_by_src (src_ip_num=?")),
            "{plan:?}"
        );
    }

    /// A rare port is found through the port index (before, its search read the whole window:
    /// 4.1 s at 591,000 records).
    #[test]
    fn a_rare_port_is_searched_through_its_index() {
        let lines: Vec<String> = (0..3_000)
            .map(|i| {
                let port = if i == 1_234 { 9_999 } else { 443 };
                format!(r#"{{"record_type":"block_hit","record_id":"r{i}","time":{},"src_ip":"10.0.1.11","dst_ip":"10.0.3.10","dst_port":{port},"protocol":6}}"#, 100 + i)
            })
            .collect();
        let (store, _) = store(&lines.join("\n"));
        let filter = HitFilter {
            port: Some(9_999),
            ..HitFilter::new(0, 10_000)
        };
        let page = store.search_hits(&filter, 10, None).unwrap();
        assert_eq!(page.hits.len(), 1);
        let (conditions, values) = hits_conditions(&filter, None);
        let plan = plan(
            &store,
            &format!(
                "SELECT rowid FROM records WHERE {} ORDER BY time DESC, rowid DESC LIMIT 11",
                conditions.join(" AND ")
            ),
            values,
        );
        assert!(
            plan.iter().any(|step| step.contains("records_by_port")),
            "{plan:?}"
        );
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
