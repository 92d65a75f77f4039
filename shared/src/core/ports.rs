//! The ports: the small traits the use cases talk to, which the adapters (`crate::adapters`)
//! implement, with the in-memory implementations tests and local tools use.
//!
//! - [`RecordSink`]: where records go. A sink either writes every record it is given or returns
//!   an error, so the invocation fails and SCF retries the batch; since record ids are
//!   deterministic, a retry writes the same ids. Adapters: CLS, a JSONL file, stdout.
//! - [`SnapshotStore`]: where snapshots live. The sync function publishes the snapshots it builds;
//!   the audit and lookup functions read the latest one, cheaply re-validated after their TTL.
//!   `latest.json` is a small [`Pointer`], `{"version", "object", "taken_at", "rules"}`, written
//!   after the version object, so a reader never sees a pointer to an object that is not there
//!   yet. Adapters: one file, a directory, COS.
//!
//! - [`RecordsStore`]: where lookup searches the records audit wrote. Adapters: the hits topic
//!   in CLS (`adapters::tencent::cls_query`) and, on one machine, the embedded database
//!   (`adapters::sqlite`, feature `local-store`, which the shipped lookup does not link). Both
//!   answer every search alike; `tests/records_store.rs` runs one query suite against both.
//!
//! The alert ports sit with the alert policy in [`crate::core::alert`]: `AlertState` (the
//! cooldown) and `AlertChannel` (where alerts go: a chat robot or a webhook, whose adapter
//! speaks to its platform while the alert use case, `crate::app::alerts`, decides what to send,
//! when and to whom).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::core::engine::{image_object, Engine};
use crate::core::monitoring::Switches;
use crate::core::records::Record;
use crate::core::search::{
    Conversations, HitFilter, HitsPage, RuleCounters, TrafficFilter, TrafficView,
};
use crate::core::snapshot::Snapshot;

/// What a sink wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Records the destination accepted, per destination (CLS topic id, file path, `stdout`).
    pub records: BTreeMap<String, usize>,
    /// Field values cut to the destination's limit (CLS: 1 MB a value); each cut record names
    /// its cut fields in `truncated_fields`.
    pub truncated_values: usize,
}

impl Written {
    /// `count` records accepted by `destination`.
    pub(crate) fn to(destination: impl Into<String>, count: usize) -> Self {
        Self {
            records: BTreeMap::from([(destination.into(), count)]),
            truncated_values: 0,
        }
    }
}

/// A boxed future, so sinks and stores can sit behind `dyn` traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Writing failed; the records were not (all) written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// CLS refused the upload for good (4xx or a non-retryable error code).
    #[error("CLS rejected the upload to topic {topic}: {detail}")]
    Rejected {
        /// The topic.
        topic: String,
        /// Status, CLS error code and message.
        detail: String,
    },
    /// Retries ran out of time before the invocation deadline.
    #[error("writing to CLS topic {topic} did not succeed before the invocation deadline ({attempts} attempts; last: {last})")]
    DeadlineExhausted {
        /// The topic.
        topic: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A local file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The sink cannot work at all (no credentials, bad endpoint).
    #[error("{0}")]
    Unusable(String),
    /// Part of the batch was written before a write failed. A retry writes everything again,
    /// with the same record ids.
    #[error("{source}; before that, {completed} of {total} records were written")]
    Partial {
        /// What failed.
        source: Box<SinkError>,
        /// What was written, per topic (`12 to topic-a, 3 to topic-b`).
        completed: String,
        /// Records in the batch.
        total: usize,
    },
}

impl SinkError {
    /// This error, noting what `written` already holds (when it holds anything).
    pub fn after(self, written: &Written, total: usize) -> Self {
        if written.records.values().all(|&n| n == 0) {
            return self;
        }
        let completed = written
            .records
            .iter()
            .map(|(topic, n)| format!("{n} to {topic}"))
            .collect::<Vec<_>>()
            .join(", ");
        SinkError::Partial {
            source: Box::new(self),
            completed,
            total,
        }
    }
}

/// A destination for records.
pub trait RecordSink: Send + Sync {
    /// What the sink is, for logs and the summary (`cls`, `jsonl:<path>`, `stdout`, `memory`).
    fn describe(&self) -> String;

    /// Writes every record, finishing before `deadline` or failing.
    fn write<'a>(
        &'a self,
        records: &'a [Record],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Written, SinkError>>;
}

/// Why a records search failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// The store no longer keeps the search a cursor continues.
    CursorExpired,
    /// The store failed; the text says how (for the log and a 502 answer).
    Failed {
        /// A short code (`FailedOperation.…`, `local_store`).
        code: String,
        /// What happened.
        message: String,
    },
}

/// A records search's answer.
pub type SearchFuture<'a, T> = BoxFuture<'a, Result<T, StoreFailure>>;

/// The records lookup searches. Times are Unix seconds, both ends in.
pub trait RecordsStore: Send + Sync + std::fmt::Debug {
    /// One page of `filter`, newest first; `context` is the store's position after an earlier
    /// page of the same search.
    fn search_hits<'a>(
        &'a self,
        filter: &'a HitFilter,
        limit: u32,
        context: Option<&'a str>,
        deadline: Instant,
    ) -> SearchFuture<'a, HitsPage>;

    /// The rules with the most block hits between `since` and `until`, most first.
    fn top_block_rules(
        &self,
        since: i64,
        until: i64,
        limit: u32,
        deadline: Instant,
    ) -> SearchFuture<'_, Vec<(String, u64)>>;

    /// A rule's counters between `since` and `until`.
    fn rule_counters<'a>(
        &'a self,
        uuid: &'a str,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> SearchFuture<'a, RuleCounters>;

    /// Every rule's counters between `since` and `until`, by uuid.
    fn rule_totals(
        &self,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> SearchFuture<'_, BTreeMap<String, RuleCounters>>;

    /// The traffic views of `filter` (totals, top talkers, subnet matrix, time series).
    fn traffic<'a>(
        &'a self,
        filter: &'a TrafficFilter,
        deadline: Instant,
    ) -> SearchFuture<'a, TrafficView>;

    /// The conversations `filter` covers (traffic summed by initiator, service end, port,
    /// protocol and scope), most bytes first, at most `limit`: what a what-if judges.
    fn conversations<'a>(
        &'a self,
        filter: &'a TrafficFilter,
        limit: usize,
        deadline: Instant,
    ) -> SearchFuture<'a, Conversations>;

    /// The ENIs that recorded traffic between `since` and `until` (flow-log coverage).
    fn recording_enis(
        &self,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> SearchFuture<'_, std::collections::BTreeSet<String>>;

    /// The hit record `id` written between `since` and `until`, if any.
    fn hit_by_id<'a>(
        &'a self,
        id: &'a str,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> SearchFuture<'a, Option<serde_json::Value>>;
}

/// A boxed future, so stores can be used as trait objects.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// The latest snapshot, as a reader sees it.
#[derive(Debug)]
pub enum Latest {
    /// Nothing has been published yet.
    Missing,
    /// Same as the tag the reader already has.
    Unchanged,
    /// A snapshot, and the tag to re-validate it with.
    Found {
        /// The snapshot.
        snapshot: Box<Snapshot>,
        /// Its tag.
        tag: String,
    },
    /// The latest snapshot's engine, read from the image published with it
    /// ([`SnapshotStore::latest_engine`] only).
    Compiled {
        /// The engine.
        engine: Box<Engine>,
        /// Its tag.
        tag: String,
    },
}

/// What the pointer of a store says is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The latest snapshot's version.
    pub version: String,
    /// Whether the store should have an image of its engine that this build can read and has
    /// none (another build's, or none at all): the sync function publishes one.
    pub image_missing: bool,
}

/// A store of snapshots.
pub trait SnapshotStore: Send + Sync + std::fmt::Debug {
    /// Where it is, for messages (never holds secrets).
    fn describe(&self) -> String;

    /// The latest snapshot, or [`Latest::Unchanged`] when its tag is `known`.
    fn latest<'a>(&'a self, known: Option<&'a str>, deadline: Instant) -> StoreFuture<'a, Latest>;

    /// The latest snapshot's engine when the store has an image of it this build reads
    /// ([`Latest::Compiled`]), else what [`latest`](Self::latest) gives, to compile: what a
    /// function's cold start reads. An image that cannot be used is logged and passed over.
    fn latest_engine<'a>(
        &'a self,
        known: Option<&'a str>,
        deadline: Instant,
    ) -> StoreFuture<'a, Latest> {
        self.latest(known, deadline)
    }

    /// What `latest` points at, read without the snapshot itself (`None`: nothing published):
    /// what an unchanged account costs the sync function.
    fn latest_version<'a>(&'a self, deadline: Instant) -> StoreFuture<'a, Option<Published>>;

    /// Writes `snapshot` under its version, with the image of `engine` (compiled from it) where
    /// the store keeps images, and makes it the latest.
    fn publish<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        engine: &'a Engine,
        deadline: Instant,
    ) -> StoreFuture<'a, ()>;

    /// The snapshot of `version`, if the store still keeps it (`None`: it does not). Its
    /// content is checked against the version as every load is.
    fn version<'a>(
        &'a self,
        version: &'a str,
        deadline: Instant,
    ) -> StoreFuture<'a, Option<Snapshot>>;

    /// The monitoring switches kept beside the snapshots, their latest change (`None`: none
    /// saved yet).
    fn switches<'a>(&'a self, deadline: Instant) -> StoreFuture<'a, Option<Switches>>;

    /// Saves the monitoring switches as change number `switches.generation`, create-only:
    /// `Ok(false)` when another change took that number first (read them again and retry).
    fn save_switches<'a>(
        &'a self,
        switches: &'a Switches,
        deadline: Instant,
    ) -> StoreFuture<'a, bool>;
}

/// The name of the monitoring switches document in a directory or COS store.
pub(crate) const SWITCHES_OBJECT: &str = "monitoring.json";

/// A store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot store {store}: {message}")]
pub struct StoreError {
    /// The store.
    pub store: String,
    /// What went wrong.
    pub message: String,
}

/// The most a snapshot pointer (`latest.json`) read may be: it names a version and an object.
pub(crate) const MAX_POINTER_BYTES: usize = 64 * 1024;

/// Why a snapshot object is not read: it is over the function's limit, and what to do.
pub(crate) fn over_memory_limit(max_bytes: usize) -> String {
    format!(
        "over the {} this function reads (a quarter of its memory): give it more memory (template.yaml MemorySize)",
        crate::core::text::mib(max_bytes)
    )
}

/// The pointer object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pointer {
    /// The latest snapshot's version.
    pub version: String,
    /// Its object name, relative to the store.
    pub object: String,
    /// When it was taken.
    pub taken_at: String,
    /// How many rules it has.
    pub rules: usize,
    /// The object of its engine's image, when one was published with it (the name holds the
    /// format of the build that wrote it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

impl Pointer {
    /// The pointer to `snapshot`, published with the image of its engine.
    pub(crate) fn of(snapshot: &Snapshot) -> Self {
        Self {
            version: snapshot.version.clone(),
            object: format!("{}.json", snapshot.version),
            taken_at: snapshot.taken_at.clone(),
            rules: snapshot.rules.len(),
            engine: Some(image_object(&snapshot.version)),
        }
    }

    /// The image this build can read, when the pointer names one: only the name this build
    /// gives the image of its version (never a path out of the store).
    pub(crate) fn image(&self) -> Option<&str> {
        self.engine
            .as_deref()
            .filter(|name| *name == image_object(&self.version))
    }

    /// What the pointer says is published.
    pub(crate) fn published(&self) -> Published {
        Published {
            version: self.version.clone(),
            image_missing: self.image().is_none(),
        }
    }
}

/// A pointer's object must be a plain name in the store, never a path out of it.
pub(crate) fn object_name(object: &str) -> Result<&str, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if object.ends_with(".json") && object.chars().all(plain) && !object.starts_with('.') {
        Ok(object)
    } else {
        Err(format!(
            "latest.json names {object:?}, not a snapshot object"
        ))
    }
}

/// The object a version is kept under, for a version that is a plain name.
pub(crate) fn version_object(version: &str) -> Result<String, String> {
    let plain = !version.is_empty()
        && version.len() <= 128
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if plain {
        Ok(format!("{version}.json"))
    } else {
        Err(format!("{version:?} is not a snapshot version"))
    }
}

/// `snapshot` if it is `version` (a store may hold another under the name).
pub(crate) fn of_version(
    store: &dyn SnapshotStore,
    snapshot: Snapshot,
    version: &str,
) -> Result<Option<Snapshot>, StoreError> {
    if snapshot.version == version {
        Ok(Some(snapshot))
    } else {
        Err(fail(
            store,
            format!("{version}.json holds version {}", snapshot.version),
        ))
    }
}

/// An error of `store`, named as the store describes itself.
pub(crate) fn fail(store: &dyn SnapshotStore, message: impl std::fmt::Display) -> StoreError {
    StoreError {
        store: store.describe(),
        message: message.to_string(),
    }
}

/// The engine in `image` of version `version`, as `read` from a store; `None` (logged) when the
/// image cannot be used, and the snapshot is to be compiled instead.
pub(crate) fn image_engine(
    store: &dyn SnapshotStore,
    image: &str,
    read: Result<Vec<u8>, String>,
    version: &str,
) -> Option<Box<Engine>> {
    match read.and_then(|bytes| Engine::from_image(&bytes, version)) {
        Ok(engine) => Some(Box::new(engine)),
        Err(error) => {
            tracing::warn!(
                store = %store.describe(),
                image,
                error,
                "engine image not used; compiling the snapshot instead"
            );
            None
        }
    }
}

pub(crate) fn parse_snapshot(
    bytes: &[u8],
    name: &str,
    store: &str,
) -> Result<Snapshot, StoreError> {
    Snapshot::from_json(bytes).map_err(|message| StoreError {
        store: store.to_string(),
        message: format!("{name}: {message}"),
    })
}

pub(crate) fn to_json(snapshot: &Snapshot) -> Vec<u8> {
    serde_json::to_vec_pretty(snapshot).expect("snapshots serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_cannot_leave_the_store() {
        assert!(object_name("abc123.json").is_ok());
        for bad in [
            "../etc/passwd.json",
            "/abs.json",
            "a/b.json",
            ".json",
            "x.txt",
        ] {
            assert!(object_name(bad).is_err(), "{bad}");
        }
    }
}
