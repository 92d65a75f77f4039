//! The records store lookup searches: one port, two adapters — the hits topic in CLS
//! ([`ClsRecords`]) and, on one machine, the SQLite database `esgflow replay` fills
//! (`crate::adapters::sqlite`). Both answer the same [`HitFilter`] with the same records;
//! `tests/records_store.rs` holds them to it.

use std::path::PathBuf;
use std::time::Instant;

use crate::adapters::tencent::cls_query::ClsRecords;
use crate::core::search::{HitFilter, HitsPage, RuleCounters, TrafficFilter, TrafficView};

/// Where the records are, as configured.
#[derive(Debug, Clone)]
pub enum RecordsSource {
    /// The hits topic in CLS.
    Cls(ClsRecords),
    /// An SQLite database file (`ESGFLOW_RECORDS_DB`).
    Local(PathBuf),
}

/// A records store, opened.
#[derive(Debug)]
pub enum RecordsStore {
    /// The hits topic in CLS.
    Cls(ClsRecords),
    /// The embedded database.
    #[cfg(feature = "local-store")]
    Local(crate::adapters::sqlite::LocalRecords),
}

/// Why a search failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFailure {
    /// The store no longer keeps the search a cursor continues (CLS keeps it an hour).
    CursorExpired,
    /// The store failed; the text says how (for the log and a 502 answer).
    Failed {
        /// A short code (`FailedOperation.…`, `local_store`).
        code: String,
        /// What happened.
        message: String,
    },
}

impl From<crate::adapters::tencent::api::ApiError> for StoreFailure {
    fn from(err: crate::adapters::tencent::api::ApiError) -> Self {
        if err.code.starts_with("FailedOperation.InvalidContext") {
            StoreFailure::CursorExpired
        } else {
            StoreFailure::Failed {
                message: err.to_string(),
                code: err.code,
            }
        }
    }
}

#[cfg(feature = "local-store")]
impl From<crate::adapters::sqlite::LocalStoreError> for StoreFailure {
    fn from(err: crate::adapters::sqlite::LocalStoreError) -> Self {
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

/// The code of a failure that a narrower request avoids (answered 413).
pub(crate) const TOO_LARGE: &str = "view_too_large";

impl RecordsSource {
    /// Opens the store: a local database must exist and hold records.
    pub fn open(self) -> Result<RecordsStore, String> {
        match self {
            RecordsSource::Cls(cls) => Ok(RecordsStore::Cls(cls)),
            #[cfg(feature = "local-store")]
            RecordsSource::Local(path) => crate::adapters::sqlite::LocalRecords::open(&path)
                .map(RecordsStore::Local)
                .map_err(|e| e.to_string()),
            #[cfg(not(feature = "local-store"))]
            RecordsSource::Local(path) => Err(format!(
                "{}: this build has no local records store (feature `local-store`)",
                path.display()
            )),
        }
    }
}

impl RecordsStore {
    /// One page of `filter`, newest first; `context` is the store's position after an earlier
    /// page of the same search.
    pub async fn search_hits(
        &self,
        filter: &HitFilter,
        limit: u32,
        context: Option<&str>,
        deadline: Instant,
    ) -> Result<HitsPage, StoreFailure> {
        match self {
            RecordsStore::Cls(cls) => Ok(cls.search_hits(filter, limit, context, deadline).await?),
            #[cfg(feature = "local-store")]
            RecordsStore::Local(local) => Ok(local.search_hits(filter, limit, context)?),
        }
    }

    /// The rules with the most block hits between `since` and `until`, most first.
    pub async fn top_block_rules(
        &self,
        since: i64,
        until: i64,
        limit: u32,
        deadline: Instant,
    ) -> Result<Vec<(String, u64)>, StoreFailure> {
        match self {
            RecordsStore::Cls(cls) => {
                Ok(cls.top_block_rules(since, until, limit, deadline).await?)
            }
            #[cfg(feature = "local-store")]
            RecordsStore::Local(local) => Ok(local.top_block_rules(since, until, limit)?),
        }
    }

    /// A rule's counters between `since` and `until`.
    pub async fn rule_counters(
        &self,
        uuid: &str,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> Result<RuleCounters, StoreFailure> {
        match self {
            RecordsStore::Cls(cls) => Ok(cls.rule_counters(uuid, since, until, deadline).await?),
            #[cfg(feature = "local-store")]
            RecordsStore::Local(local) => Ok(local.rule_counters(uuid, since, until)?),
        }
    }

    /// The traffic views of `filter` (totals, top talkers, subnet matrix, time series).
    pub async fn traffic(
        &self,
        filter: &TrafficFilter,
        deadline: Instant,
    ) -> Result<TrafficView, StoreFailure> {
        match self {
            RecordsStore::Cls(cls) => Ok(cls.traffic(filter, deadline).await?),
            #[cfg(feature = "local-store")]
            RecordsStore::Local(local) => Ok(local.traffic(filter)?),
        }
    }

    /// The ENIs that recorded traffic between `since` and `until` (flow-log coverage).
    pub async fn recording_enis(
        &self,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> Result<std::collections::BTreeSet<String>, StoreFailure> {
        match self {
            RecordsStore::Cls(cls) => Ok(cls.recording_enis(since, until, deadline).await?),
            #[cfg(feature = "local-store")]
            RecordsStore::Local(local) => Ok(local.recording_enis(since, until)?),
        }
    }

    /// The hit record `id` written between `since` and `until`, if any.
    pub async fn hit_by_id(
        &self,
        id: &str,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> Result<Option<serde_json::Value>, StoreFailure> {
        match self {
            RecordsStore::Cls(cls) => Ok(cls.hit_by_id(id, since, until, deadline).await?),
            #[cfg(feature = "local-store")]
            RecordsStore::Local(local) => Ok(local.hit_by_id(id, since, until)?),
        }
    }

    /// Every rule's counters between `since` and `until`, by uuid.
    pub async fn rule_totals(
        &self,
        since: i64,
        until: i64,
        deadline: Instant,
    ) -> Result<std::collections::BTreeMap<String, RuleCounters>, StoreFailure> {
        match self {
            RecordsStore::Cls(cls) => Ok(cls.rule_totals(since, until, deadline).await?),
            #[cfg(feature = "local-store")]
            RecordsStore::Local(local) => Ok(local.rule_totals(since, until)?),
        }
    }
}
