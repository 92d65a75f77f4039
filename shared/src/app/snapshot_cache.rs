//! The snapshot as a warm function instance holds it: loaded at cold start from its
//! [`SnapshotStore`], compiled once, and re-validated after a TTL (a conditional read: an
//! unchanged snapshot is not transferred or compiled again). A failed refresh keeps the last good
//! engine (and logs a warning); with no good engine yet, every invocation tries again and fails
//! with a clear error until it loads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapters::files::FileStore;
use crate::core::engine::Engine;
use crate::core::monitoring::Switches;
use crate::core::ports::{Latest, SnapshotStore, StoreError};

/// No usable snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no rule snapshot could be loaded from {source_name}: {message}")]
pub struct SnapshotUnavailable {
    /// Where it was looked for.
    pub source_name: String,
    /// Why it could not be used.
    pub message: String,
}

/// Time a load for an invocation keeps back from its deadline, to answer or report with (a
/// load that ran to the deadline would leave the platform to kill the function instead).
pub(crate) const LOAD_MARGIN: Duration = Duration::from_millis(1000);

/// When a load for an invocation ending at `deadline` gives up: [`LOAD_MARGIN`] before it, or
/// now when less is left.
pub(crate) fn load_by(deadline: Instant) -> Instant {
    deadline
        .checked_sub(LOAD_MARGIN)
        .unwrap_or(deadline)
        .max(Instant::now())
}

/// A cached, compiled snapshot read from a store.
#[derive(Debug)]
pub struct SnapshotCache {
    store: Box<dyn SnapshotStore>,
    ttl: Duration,
    engine: Option<Arc<Engine>>,
    tag: Option<String>,
    checked_at: Option<Instant>,
    switches: Option<Switches>,
    switches_checked_at: Option<Instant>,
    /// An older version asked for by [`engine_of_version`](Self::engine_of_version).
    judged_with: Option<(String, Arc<Engine>)>,
    /// When the snapshot in use was taken (its `taken_at`).
    taken_at: Option<Taken>,
    /// The last published version refused for being older than the one in use (warned once).
    refused: Option<String>,
}

/// When a snapshot was taken.
type Taken = chrono::DateTime<chrono::FixedOffset>;

/// A snapshot's `taken_at` (RFC 3339) as a time; `None` when it cannot be read, and then it is
/// compared with nothing.
fn taken(taken_at: &str) -> Option<Taken> {
    chrono::DateTime::parse_from_rfc3339(taken_at).ok()
}

/// What a read of the store found.
enum Loaded {
    /// The snapshot already held.
    Unchanged,
    /// The snapshot to use (the engine held, when the version is the same), with its tag and
    /// taken-at time.
    New(Arc<Engine>, String, Option<Taken>),
    /// A snapshot taken before the one in use (a rolled-back pointer): not loaded.
    Older {
        tag: String,
        version: String,
        taken: Taken,
    },
}

/// How long one load may take when the caller has no deadline of its own (cold start).
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a refresh may take before the last good snapshot is used.
pub(crate) const REFRESH_BUDGET: Duration = Duration::from_secs(2);

impl SnapshotCache {
    /// A cache of the snapshot file at `path`, re-read every `ttl`.
    pub fn new(path: impl Into<std::path::PathBuf>, ttl: Duration) -> Self {
        Self::with_store(Box::new(FileStore::new(path)), ttl)
    }

    /// A cache over any store.
    pub(crate) fn with_store(store: Box<dyn SnapshotStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            engine: None,
            tag: None,
            checked_at: None,
            switches: None,
            switches_checked_at: None,
            judged_with: None,
            taken_at: None,
            refused: None,
        }
    }

    /// Where the snapshot comes from.
    pub fn describe(&self) -> String {
        self.store.describe()
    }

    fn unavailable(&self, message: impl std::fmt::Display) -> SnapshotUnavailable {
        SnapshotUnavailable {
            source_name: self.store.describe(),
            message: message.to_string(),
        }
    }

    /// Reads the store: the engine's image published with the snapshot, or the snapshot to
    /// compile. A snapshot taken before the one in use is not used: a pointer moved back (by
    /// mistake, or by someone who may write the bucket) must not roll the rules back.
    async fn load(&self, deadline: Instant) -> Result<Loaded, SnapshotUnavailable> {
        let known = self.engine.as_ref().and(self.tag.as_deref());
        let (read, tag) = match self.store.latest_engine(known, deadline).await {
            Ok(Latest::Unchanged) => return Ok(Loaded::Unchanged),
            Ok(Latest::Missing) => {
                return Err(self.unavailable("no snapshot has been published there"))
            }
            Ok(Latest::Found { snapshot, tag }) => (Ok(snapshot), tag),
            Ok(Latest::Compiled { engine, tag }) => (Err(engine), tag),
            Err(err) => return Err(self.unavailable(err.message)),
        };
        // A snapshot to compile, or its engine read from the image published with it.
        let (version, taken_at) = match &read {
            Ok(snapshot) => (snapshot.version.clone(), taken(&snapshot.taken_at)),
            Err(engine) => (engine.version().to_string(), taken(engine.taken_at())),
        };
        if let Some(current) = &self.engine {
            if !version.is_empty() && version == current.version() {
                return Ok(Loaded::New(current.clone(), tag, self.taken_at));
            }
            if let (Some(published), Some(held)) = (taken_at, self.taken_at) {
                if published < held {
                    return Ok(Loaded::Older {
                        tag,
                        version,
                        taken: published,
                    });
                }
            }
        }
        let engine = match read {
            Ok(snapshot) => Engine::compile_owned(*snapshot).map_err(|e| self.unavailable(e))?,
            Err(engine) => *engine,
        };
        Ok(Loaded::New(Arc::new(engine), tag, taken_at))
    }

    /// The current engine, loading or refreshing as needed; store reads end by `deadline`.
    pub(crate) async fn engine_by(
        &mut self,
        now: Instant,
        deadline: Instant,
    ) -> Result<Arc<Engine>, SnapshotUnavailable> {
        let due = self
            .checked_at
            .is_none_or(|at| now.duration_since(at) >= self.ttl);
        match (self.engine.clone(), due) {
            (Some(engine), false) => Ok(engine),
            (None, _) => {
                let Loaded::New(engine, tag, taken_at) = self.load(deadline).await? else {
                    return Err(self.unavailable("the store answered 'unchanged' to a first read"));
                };
                self.taken_at = taken_at;
                tracing::info!(
                    version = engine.version(),
                    rules = engine.rules().len(),
                    store = %self.store.describe(),
                    "rule snapshot loaded"
                );
                self.engine = Some(engine.clone());
                self.tag = Some(tag);
                self.checked_at = Some(now);
                Ok(engine)
            }
            (Some(current), true) => {
                self.checked_at = Some(now);
                // A refresh has a good snapshot to fall back on: it gets a short budget, so a
                // store that hangs or keeps failing never eats the invocation.
                let budget = deadline.min(Instant::now() + REFRESH_BUDGET);
                match self.load(budget).await {
                    Ok(Loaded::New(engine, tag, taken_at)) => {
                        if engine.version() != current.version() {
                            tracing::info!(
                                from = current.version(),
                                to = engine.version(),
                                "rule snapshot refreshed"
                            );
                        }
                        self.engine = Some(engine.clone());
                        self.tag = Some(tag);
                        self.taken_at = taken_at;
                        Ok(engine)
                    }
                    Ok(Loaded::Older {
                        tag,
                        version,
                        taken,
                    }) => {
                        if self.refused.as_deref() != Some(version.as_str()) {
                            tracing::warn!(
                                published = %version,
                                published_taken_at = %taken,
                                in_use = current.version(),
                                in_use_taken_at = ?self.taken_at.map(|t| t.to_rfc3339()),
                                "the published snapshot was taken before the one in use (a rolled-back pointer?); keeping the newer one"
                            );
                            self.refused = Some(version);
                        }
                        // Its tag is kept, so the next refresh reads only whether it moved on.
                        self.tag = Some(tag);
                        Ok(current)
                    }
                    Ok(Loaded::Unchanged) => Ok(current),
                    Err(err) => {
                        tracing::warn!(error = %err, version = current.version(), "snapshot refresh failed; keeping the last good snapshot");
                        Ok(current)
                    }
                }
            }
        }
    }

    /// The monitoring switches, re-read after the TTL as the snapshot is; with no switches
    /// saved, none. A failed read keeps the last good switches; with none read yet it gives
    /// none and says why, so the caller can report it.
    pub(crate) async fn switches_by(
        &mut self,
        now: Instant,
        deadline: Instant,
    ) -> (Switches, Option<String>) {
        let due = self
            .switches_checked_at
            .is_none_or(|at| now.duration_since(at) >= self.ttl);
        if !due {
            return (self.switches.clone().unwrap_or_default(), None);
        }
        self.switches_checked_at = Some(now);
        let budget = if self.switches.is_some() {
            deadline.min(Instant::now() + REFRESH_BUDGET)
        } else {
            deadline
        };
        match self.store.switches(budget).await {
            Ok(read) => {
                let read = read.unwrap_or_default();
                if self.switches.as_ref() != Some(&read) {
                    tracing::info!(vpcs = read.vpcs.len(), "monitoring switches loaded");
                }
                self.switches = Some(read.clone());
                (read, None)
            }
            Err(err) => {
                tracing::warn!(error = %err, "monitoring switches not read; keeping the last good ones");
                match &self.switches {
                    Some(last) => (last.clone(), None),
                    None => (Switches::default(), Some(err.to_string())),
                }
            }
        }
    }

    /// The engine of snapshot `version`: the current one when it is that version, else the
    /// store's copy of it compiled (`None`: the store no longer keeps it).
    pub(crate) async fn engine_of_version(
        &mut self,
        version: &str,
        deadline: Instant,
    ) -> Result<Option<Arc<Engine>>, SnapshotUnavailable> {
        if let Some(engine) = self.engine.as_ref().filter(|e| e.version() == version) {
            return Ok(Some(engine.clone()));
        }
        if let Some((kept, engine)) = &self.judged_with {
            if kept == version {
                return Ok(Some(engine.clone()));
            }
        }
        let Some(snapshot) = self.snapshot_of_version(version, deadline).await? else {
            return Ok(None);
        };
        let engine = Arc::new(Engine::compile_owned(snapshot).map_err(|e| self.unavailable(e))?);
        // One older version kept: the records of one search are usually judged with one.
        self.judged_with = Some((version.to_string(), engine.clone()));
        Ok(Some(engine))
    }

    /// Snapshot `version` itself, read from the store (`None`: the store no longer keeps it):
    /// what a proposal edits. Not kept: the engine is what serves requests.
    pub(crate) async fn snapshot_of_version(
        &self,
        version: &str,
        deadline: Instant,
    ) -> Result<Option<crate::core::snapshot::Snapshot>, SnapshotUnavailable> {
        self.store
            .version(version, deadline)
            .await
            .map_err(|e| self.unavailable(e.message))
    }

    /// The switches as the store holds them now (none saved: none), whatever the TTL.
    pub(crate) async fn switches_now(&mut self, deadline: Instant) -> Result<Switches, StoreError> {
        let read = self.store.switches(deadline).await?.unwrap_or_default();
        self.switches = Some(read.clone());
        self.switches_checked_at = Some(Instant::now());
        Ok(read)
    }

    /// Saves `switches` as their next change and holds them at once; `false` when another
    /// change took that number first (nothing saved).
    pub(crate) async fn save_switches(
        &mut self,
        switches: &Switches,
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        let saved = self.store.save_switches(switches, deadline).await?;
        if saved {
            self.switches = Some(switches.clone());
            self.switches_checked_at = Some(Instant::now());
        }
        Ok(saved)
    }

    /// [`engine_by`](Self::engine_by) with the default load timeout.
    pub async fn engine(&mut self, now: Instant) -> Result<Arc<Engine>, SnapshotUnavailable> {
        self.engine_by(now, Instant::now() + LOAD_TIMEOUT).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::snapshot::fixtures;

    #[tokio::test]
    async fn loads_keeps_and_refreshes() {
        let dir = std::env::temp_dir().join(format!("esgflow-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapshot.json");
        let mut cache = SnapshotCache::new(&path, Duration::from_secs(60));
        let t0 = Instant::now();
        let err = cache.engine(t0).await.unwrap_err();
        assert!(err.to_string().contains("snapshot.json"), "{err}");

        let first = fixtures::sample(1);
        first.save(&path).unwrap();
        assert_eq!(cache.engine(t0).await.unwrap().version(), first.version);

        let second = fixtures::sample(2);
        second.save(&path).unwrap();
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(
            cache.engine(at(30)).await.unwrap().version(),
            first.version,
            "within the TTL"
        );
        assert_eq!(
            cache.engine(at(61)).await.unwrap().version(),
            second.version,
            "after the TTL"
        );

        std::fs::write(&path, "{ broken").unwrap();
        assert_eq!(
            cache.engine(at(200)).await.unwrap().version(),
            second.version,
            "a failed refresh keeps the last good one"
        );

        // A snapshot whose content was changed under its genuine version (a drop rule made an
        // accept rule) is refused the same way: the warm instance keeps judging with the last
        // good one.
        let mut tampered = fixtures::sample(3);
        let rule = tampered
            .rules
            .iter_mut()
            .find(|r| r.action == crate::core::snapshot::RuleAction::Drop)
            .unwrap();
        rule.action = crate::core::snapshot::RuleAction::Accept;
        tampered.save(&path).unwrap();
        assert_eq!(
            cache.engine(at(300)).await.unwrap().version(),
            second.version,
            "a tampered snapshot is not loaded"
        );
        let mut cold = SnapshotCache::new(&path, Duration::from_secs(60));
        let err = cold.engine(at(300)).await.unwrap_err().to_string();
        assert!(err.contains("not the hash of its content"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A published snapshot taken before the one a warm instance holds (a pointer moved back)
    /// is not loaded; the instance keeps the newer one and notes the refused version once. A
    /// newer one after it is loaded as usual. The same from a snapshot file (compiled) and from
    /// a directory of versions (their engines' images).
    #[tokio::test]
    async fn an_older_snapshot_is_not_rolled_back_to() {
        use crate::adapters::files::DirStore;
        for images in [false, true] {
            let dir = std::env::temp_dir()
                .join(format!("esgflow-rollback-{}-{images}", std::process::id()));
            std::fs::remove_dir_all(&dir).ok();
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("snapshot.json");
            let taken_at = |variant: u32, at: &str| {
                let mut snapshot = fixtures::sample(variant);
                snapshot.taken_at = at.to_string();
                snapshot
            };
            let publish = |snapshot: crate::core::snapshot::Snapshot| {
                let (path, dir) = (path.clone(), dir.clone());
                async move {
                    if images {
                        let engine = Engine::compile(&snapshot).unwrap();
                        let deadline = Instant::now() + Duration::from_secs(5);
                        DirStore::new(&dir)
                            .publish(&snapshot, &engine, deadline)
                            .await
                            .unwrap();
                    } else {
                        snapshot.save(&path).unwrap();
                    }
                }
            };
            let ttl = Duration::from_secs(60);
            let mut cache = match images {
                true => SnapshotCache::with_store(Box::new(DirStore::new(&dir)), ttl),
                false => SnapshotCache::new(&path, ttl),
            };
            let t0 = Instant::now();
            let at = |s| t0 + Duration::from_secs(s);
            let newer = taken_at(2, "2025-11-24T12:00:00Z");
            publish(newer.clone()).await;
            assert_eq!(cache.engine(t0).await.unwrap().version(), newer.version);

            let older = taken_at(1, "2025-11-24T06:00:00+00:00");
            publish(older.clone()).await;
            assert_eq!(cache.engine(at(61)).await.unwrap().version(), newer.version);
            assert_eq!(cache.refused.as_deref(), Some(older.version.as_str()));
            // Asked again after the TTL, still refused (the warning is not repeated).
            if !images {
                std::fs::write(&path, std::fs::read(&path).unwrap()).unwrap();
            }
            assert_eq!(
                cache.engine(at(122)).await.unwrap().version(),
                newer.version
            );

            let later = taken_at(3, "2025-11-25T00:00:00Z");
            publish(later.clone()).await;
            assert_eq!(
                cache.engine(at(183)).await.unwrap().version(),
                later.version
            );
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}
