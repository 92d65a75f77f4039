//! The snapshot as a warm function instance holds it: loaded at cold start, compiled once, and
//! re-read after a TTL. A failed refresh keeps the last good engine (and logs a warning); with no
//! good engine yet, every invocation tries again and fails with a clear error until it loads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::snapshot::Snapshot;

/// No usable snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no rule snapshot could be loaded from {source_name}: {message}")]
pub struct SnapshotUnavailable {
    /// Where it was looked for.
    pub source_name: String,
    /// Why it could not be used.
    pub message: String,
}

/// A cached, compiled snapshot read from a file.
#[derive(Debug)]
pub struct SnapshotCache {
    path: PathBuf,
    ttl: Duration,
    engine: Option<Arc<Engine>>,
    checked_at: Option<Instant>,
}

impl SnapshotCache {
    /// A cache of the snapshot file at `path`, re-read every `ttl`.
    pub fn new(path: impl Into<PathBuf>, ttl: Duration) -> Self {
        Self {
            path: path.into(),
            ttl,
            engine: None,
            checked_at: None,
        }
    }

    fn load(&self) -> Result<Snapshot, SnapshotUnavailable> {
        Snapshot::load(&self.path).map_err(|err| SnapshotUnavailable {
            source_name: self.path.display().to_string(),
            message: err.to_string(),
        })
    }

    fn compile(&self, snapshot: &Snapshot) -> Result<Arc<Engine>, SnapshotUnavailable> {
        Engine::compile(snapshot)
            .map(Arc::new)
            .map_err(|err| SnapshotUnavailable {
                source_name: self.path.display().to_string(),
                message: err.to_string(),
            })
    }

    /// The current engine, loading or refreshing as needed.
    pub fn engine(&mut self, now: Instant) -> Result<Arc<Engine>, SnapshotUnavailable> {
        let due = self
            .checked_at
            .is_none_or(|at| now.duration_since(at) >= self.ttl);
        match (&self.engine, due) {
            (Some(engine), false) => Ok(engine.clone()),
            (None, _) => {
                let engine = self.compile(&self.load()?)?;
                tracing::info!(
                    version = engine.version(),
                    rules = engine.rules().len(),
                    "rule snapshot loaded"
                );
                self.engine = Some(engine.clone());
                self.checked_at = Some(now);
                Ok(engine)
            }
            (Some(current), true) => {
                self.checked_at = Some(now);
                let refreshed = self.load().and_then(|snapshot| {
                    if snapshot.version == current.version() && !snapshot.version.is_empty() {
                        Ok(None)
                    } else {
                        self.compile(&snapshot).map(Some)
                    }
                });
                match refreshed {
                    Ok(Some(engine)) => {
                        tracing::info!(
                            from = current.version(),
                            to = engine.version(),
                            "rule snapshot refreshed"
                        );
                        self.engine = Some(engine.clone());
                        Ok(engine)
                    }
                    Ok(None) => Ok(current.clone()),
                    Err(err) => {
                        tracing::warn!(error = %err, version = current.version(), "snapshot refresh failed; keeping the last good snapshot");
                        Ok(current.clone())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::synthetic;

    #[test]
    fn loads_keeps_and_refreshes() {
        let dir = std::env::temp_dir().join(format!("esgflow-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapshot.json");
        let mut cache = SnapshotCache::new(&path, Duration::from_secs(60));
        let t0 = Instant::now();
        let err = cache.engine(t0).unwrap_err();
        assert!(err.to_string().contains("snapshot.json"), "{err}");

        let first = synthetic::snapshot(20, 2, 1);
        first.save(&path).unwrap();
        assert_eq!(cache.engine(t0).unwrap().version(), first.version);

        let second = synthetic::snapshot(20, 2, 2);
        second.save(&path).unwrap();
        assert_eq!(
            cache
                .engine(t0 + Duration::from_secs(30))
                .unwrap()
                .version(),
            first.version,
            "within the TTL"
        );
        assert_eq!(
            cache
                .engine(t0 + Duration::from_secs(61))
                .unwrap()
                .version(),
            second.version,
            "after the TTL"
        );

        std::fs::write(&path, "{ broken").unwrap();
        assert_eq!(
            cache
                .engine(t0 + Duration::from_secs(200))
                .unwrap()
                .version(),
            second.version,
            "a failed refresh keeps the last good one"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
