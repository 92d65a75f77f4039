//! Adapters over the local file system and the process: a snapshot in one file ([`FileStore`]) or
//! a directory of versions ([`DirStore`]), and records as JSON lines in a file ([`JsonlSink`]) or
//! on stdout ([`StdoutSink`]).
//!
//! Re-validation compares a tag: the file's length and modification time, or the pointer's
//! version.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::core::engine::Engine;
use crate::core::monitoring::{Switches, MAX_CHANGES_AHEAD};
use crate::core::ports::{
    fail, image_engine, object_name, of_version, over_memory_limit, parse_snapshot, to_json,
    version_object, BoxFuture, Latest, Pointer, Published, RecordSink, SinkError, SnapshotStore,
    StoreError, StoreFuture, Written, MAX_POINTER_BYTES, SWITCHES_OBJECT,
};
use crate::core::records::Record;
use crate::core::snapshot::Snapshot;

/// Reads `path`, which must be a regular file of at most `max_bytes`: opening a FIFO, a device or
/// a socket could block start-up until the platform kills it, so those are refused at once, and
/// so is a file the function's memory could not hold.
fn read_regular(path: &Path, max_bytes: usize) -> std::io::Result<Vec<u8>> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(std::io::Error::other(format!(
            "not a regular file ({})",
            if metadata.is_dir() {
                "a directory"
            } else {
                "a FIFO, socket or device"
            }
        )));
    }
    if metadata.len() > max_bytes as u64 {
        return Err(std::io::Error::other(format!(
            "{} bytes, {}",
            metadata.len(),
            over_memory_limit(max_bytes)
        )));
    }
    use std::io::Read;
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    std::fs::File::open(path)?
        .take((max_bytes as u64).saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() > max_bytes {
        return Err(std::io::Error::other(format!(
            "more bytes than its size said, {}",
            over_memory_limit(max_bytes)
        )));
    }
    Ok(bytes)
}

/// The switches document at `path` (`None` when there is none), bounded and checked.
fn read_switches(path: &Path) -> Result<Option<Switches>, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
        Ok(m) if m.len() > crate::core::monitoring::MAX_SWITCHES_BYTES as u64 => {
            return Err(format!(
                "{}: {} bytes, over the {}-byte cap",
                path.display(),
                m.len(),
                crate::core::monitoring::MAX_SWITCHES_BYTES
            ))
        }
        Ok(_) => {}
    }
    let bytes = read_regular(path, crate::core::monitoring::MAX_SWITCHES_BYTES)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Switches::parse(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The latest change of the switches: the copy at `copy` (`…monitoring.json`), then every
/// change after it in the directory beside it (`…monitoring/<n>.json`).
fn read_changes(copy: &Path) -> Result<Option<Switches>, String> {
    let mut latest = read_switches(copy)?;
    let first = latest.as_ref().map_or(0, |s| s.generation);
    for generation in first + 1..=first + MAX_CHANGES_AHEAD {
        match read_switches(&change_path(copy, generation))? {
            Some(next) => latest = Some(next),
            None => return Ok(latest),
        }
    }
    Err(format!(
        "{}: over {MAX_CHANGES_AHEAD} changes past it",
        copy.display()
    ))
}

/// Writes change `switches.generation` beside `copy` unless it exists (`false`), then the copy.
fn write_change(copy: &Path, switches: &Switches) -> Result<bool, String> {
    let path = change_path(copy, switches.generation);
    let shown = |e: std::io::Error| format!("{}: {e}", path.display());
    let parent = path.parent().expect("a change has a directory");
    std::fs::create_dir_all(parent).map_err(shown)?;
    // Written whole aside, then linked in: a link to an existing name fails, so exactly one
    // writer takes a number and no reader sees half a change.
    let aside = parent.join(format!(
        ".{}-{}-{:x}",
        switches.generation,
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::write(&aside, switches.to_json()).map_err(shown)?;
    let linked = std::fs::hard_link(&aside, &path);
    std::fs::remove_file(&aside).ok();
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(shown(e)),
    }
    if let Err(e) = write_atomically(copy, &switches.to_json()) {
        // The change stands; readers walk past the stale copy.
        tracing::warn!(copy = %copy.display(), error = %e, "the switches copy was not rewritten");
    }
    Ok(true)
}

/// `…/monitoring.json`, change `n` → `…/monitoring/<n>.json`.
fn change_path(copy: &Path, generation: u64) -> PathBuf {
    let stem = copy.with_extension("");
    let name = crate::core::monitoring::change_object(generation);
    let file = name.rsplit('/').next().expect("a name");
    stem.join(file)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// One snapshot file.
#[derive(Debug, Clone)]
pub(crate) struct FileStore {
    path: PathBuf,
    max_bytes: usize,
}

impl FileStore {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: usize::MAX,
        }
    }

    /// The same store, reading snapshots of at most `max_bytes`.
    pub fn within(self, max_bytes: usize) -> Self {
        Self { max_bytes, ..self }
    }

    /// The switches beside the file: `s.json` → `s.monitoring.json`.
    fn switches_path(&self) -> PathBuf {
        let stem = self
            .path
            .file_stem()
            .map_or_else(|| "snapshot".into(), |s| s.to_string_lossy().into_owned());
        self.path
            .with_file_name(format!("{stem}.{SWITCHES_OBJECT}"))
    }
}

impl SnapshotStore for FileStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn latest<'a>(&'a self, known: Option<&'a str>, _: Instant) -> StoreFuture<'a, Latest> {
        Box::pin(async move {
            let metadata = match std::fs::metadata(&self.path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Latest::Missing),
                Err(e) => return Err(fail(self, e)),
            };
            let modified = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let tag = format!("{}-{modified}", metadata.len());
            if known == Some(tag.as_str()) {
                return Ok(Latest::Unchanged);
            }
            let bytes = read_regular(&self.path, self.max_bytes).map_err(|e| fail(self, e))?;
            let snapshot = parse_snapshot(&bytes, "", &self.describe())?;
            Ok(Latest::Found {
                snapshot: Box::new(snapshot),
                tag,
            })
        })
    }

    fn latest_version<'a>(&'a self, deadline: Instant) -> StoreFuture<'a, Option<Published>> {
        // One file is the snapshot: its version is inside it (and it keeps no image).
        Box::pin(async move {
            Ok(match self.latest(None, deadline).await? {
                Latest::Found { snapshot, .. } => Some(Published {
                    version: snapshot.version,
                    image_missing: false,
                }),
                Latest::Missing | Latest::Unchanged | Latest::Compiled { .. } => None,
            })
        })
    }

    fn publish<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        _: &'a Engine,
        _: Instant,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            write_atomically(&self.path, &to_json(snapshot)).map_err(|e| fail(self, e))
        })
    }

    fn version<'a>(
        &'a self,
        version: &'a str,
        deadline: Instant,
    ) -> StoreFuture<'a, Option<Snapshot>> {
        // One file keeps one version: the one it holds.
        Box::pin(async move {
            Ok(match self.latest(None, deadline).await? {
                Latest::Found { snapshot, .. } if snapshot.version == version => Some(*snapshot),
                _ => None,
            })
        })
    }

    fn switches<'a>(&'a self, _: Instant) -> StoreFuture<'a, Option<Switches>> {
        Box::pin(async move { read_changes(&self.switches_path()).map_err(|e| fail(self, e)) })
    }

    fn save_switches<'a>(&'a self, switches: &'a Switches, _: Instant) -> StoreFuture<'a, bool> {
        Box::pin(
            async move { write_change(&self.switches_path(), switches).map_err(|e| fail(self, e)) },
        )
    }
}

/// A directory of versions and a `latest.json` pointer.
#[derive(Debug, Clone)]
pub(crate) struct DirStore {
    dir: PathBuf,
    max_bytes: usize,
}

impl DirStore {
    /// The directory `dir` (created on the first publish).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: usize::MAX,
        }
    }

    /// The same store, reading snapshots of at most `max_bytes`.
    pub fn within(self, max_bytes: usize) -> Self {
        Self { max_bytes, ..self }
    }

    /// The pointer (`None`: nothing published).
    fn pointer(&self) -> Result<Option<Pointer>, StoreError> {
        let bytes = match read_regular(&self.dir.join("latest.json"), MAX_POINTER_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(self, format!("latest.json: {e}"))),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| fail(self, format!("latest.json: {e}")))
    }

    /// The snapshot `pointer` names.
    fn snapshot(&self, pointer: Pointer) -> Result<Latest, StoreError> {
        let object = object_name(&pointer.object).map_err(|e| fail(self, e))?;
        let bytes = read_regular(&self.dir.join(object), self.max_bytes)
            .map_err(|e| fail(self, format!("{object}: {e}")))?;
        let snapshot = parse_snapshot(&bytes, object, &self.describe())?;
        Ok(Latest::Found {
            tag: pointer.version,
            snapshot: Box::new(snapshot),
        })
    }
}

impl SnapshotStore for DirStore {
    fn describe(&self) -> String {
        format!("dir://{}", self.dir.display())
    }

    fn latest<'a>(&'a self, known: Option<&'a str>, _: Instant) -> StoreFuture<'a, Latest> {
        Box::pin(async move {
            let Some(pointer) = self.pointer()? else {
                return Ok(Latest::Missing);
            };
            if known == Some(pointer.version.as_str()) {
                return Ok(Latest::Unchanged);
            }
            self.snapshot(pointer)
        })
    }

    fn latest_engine<'a>(&'a self, known: Option<&'a str>, _: Instant) -> StoreFuture<'a, Latest> {
        Box::pin(async move {
            let Some(pointer) = self.pointer()? else {
                return Ok(Latest::Missing);
            };
            if known == Some(pointer.version.as_str()) {
                return Ok(Latest::Unchanged);
            }
            if let Some(image) = pointer.image() {
                let read = read_regular(&self.dir.join(image), self.max_bytes);
                let read = read.map_err(|e| e.to_string());
                if let Some(engine) = image_engine(self, image, read, &pointer.version) {
                    let tag = pointer.version;
                    return Ok(Latest::Compiled { engine, tag });
                }
            }
            // The snapshot of the same pointer: the pointer is not read twice.
            self.snapshot(pointer)
        })
    }

    fn latest_version<'a>(&'a self, _: Instant) -> StoreFuture<'a, Option<Published>> {
        Box::pin(async move { Ok(self.pointer()?.as_ref().map(Pointer::published)) })
    }

    fn publish<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        engine: &'a Engine,
        _: Instant,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let pointer = Pointer::of(snapshot);
            write_atomically(&self.dir.join(&pointer.object), &to_json(snapshot))
                .map_err(|e| fail(self, e))?;
            if let Some(image) = pointer.image() {
                write_atomically(&self.dir.join(image), &engine.to_image())
                    .map_err(|e| fail(self, e))?;
            }
            let bytes = serde_json::to_vec_pretty(&pointer).expect("pointers serialize");
            write_atomically(&self.dir.join("latest.json"), &bytes).map_err(|e| fail(self, e))
        })
    }

    fn version<'a>(&'a self, version: &'a str, _: Instant) -> StoreFuture<'a, Option<Snapshot>> {
        Box::pin(async move {
            let object = version_object(version).map_err(|e| fail(self, e))?;
            let bytes = match read_regular(&self.dir.join(&object), self.max_bytes) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(fail(self, format!("{object}: {e}"))),
            };
            let snapshot = parse_snapshot(&bytes, &object, &self.describe())?;
            of_version(self, snapshot, version)
        })
    }

    fn switches<'a>(&'a self, _: Instant) -> StoreFuture<'a, Option<Switches>> {
        Box::pin(
            async move { read_changes(&self.dir.join(SWITCHES_OBJECT)).map_err(|e| fail(self, e)) },
        )
    }

    fn save_switches<'a>(&'a self, switches: &'a Switches, _: Instant) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            write_change(&self.dir.join(SWITCHES_OBJECT), switches).map_err(|e| fail(self, e))
        })
    }
}

/// Appends records as JSON lines to a file.
#[derive(Debug)]
pub(crate) struct JsonlSink {
    path: PathBuf,
    lock: Mutex<()>,
}

impl JsonlSink {
    /// A sink appending to `path` (its directory is created if needed).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }
}

/// Writes records as JSON lines through a 64 KiB buffer: a batch of 100,000 records is not
/// first gathered into one 100 MB text.
fn write_json_lines(out: impl Write, records: &[Record]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    for record in records {
        serde_json::to_writer(&mut out, record).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

impl RecordSink for JsonlSink {
    fn describe(&self) -> String {
        format!("jsonl:{}", self.path.display())
    }

    fn write<'a>(
        &'a self,
        records: &'a [Record],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Written, SinkError>> {
        Box::pin(async move {
            let io = |source| SinkError::Io {
                path: self.path.display().to_string(),
                source,
            };
            let _guard = self.lock.lock().expect("no panics while holding the lock");
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io)?;
            write_json_lines(&mut file, records).map_err(io)?;
            Ok(Written::to(self.describe(), records.len()))
        })
    }
}

/// Prints records as JSON lines on stdout.
#[derive(Debug, Default)]
pub(crate) struct StdoutSink;

impl RecordSink for StdoutSink {
    fn describe(&self) -> String {
        "stdout".to_string()
    }

    fn write<'a>(
        &'a self,
        records: &'a [Record],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Written, SinkError>> {
        Box::pin(async move {
            write_json_lines(std::io::stdout().lock(), records).map_err(|source| {
                SinkError::Io {
                    path: "stdout".to_string(),
                    source,
                }
            })?;
            Ok(Written::to("stdout", records.len()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::snapshot::fixtures;
    use std::time::Duration;

    /// JSON lines go out through a bounded buffer: before, the whole batch was first rendered
    /// into one text (100 MB for the largest legal batch).
    #[test]
    fn json_lines_are_written_in_bounded_pieces() {
        struct Recorder {
            bytes: Vec<u8>,
            largest_write: usize,
        }
        impl Write for Recorder {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.largest_write = self.largest_write.max(buf.len());
                self.bytes.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        use crate::core::records::RecordType;
        let records: Vec<Record> = (0..2_000)
            .map(|i| {
                crate::core::alert::tests::hit(
                    RecordType::BlockHit,
                    "7002",
                    "block ssh",
                    "10.0.1.1",
                    "10.0.3.10",
                    i,
                )
            })
            .collect();
        let mut recorder = Recorder {
            bytes: Vec::new(),
            largest_write: 0,
        };
        write_json_lines(&mut recorder, &records).unwrap();
        let lines: Vec<&str> = std::str::from_utf8(&recorder.bytes)
            .unwrap()
            .lines()
            .collect();
        assert_eq!(lines.len(), records.len());
        assert_eq!(lines[7], serde_json::to_string(&records[7]).unwrap());
        assert!(
            recorder.bytes.len() > 4 * 64 * 1024,
            "the batch is larger than the buffer"
        );
        assert!(
            recorder.largest_write <= 64 * 1024,
            "{}",
            recorder.largest_write
        );
    }

    /// Snapshot reads fit the function's memory: a published snapshot over the store's limit,
    /// a pointer over 64 KiB, and a single snapshot file over the limit are refused with an
    /// error naming the limit and what to do; within it, the same snapshot loads.
    #[tokio::test]
    async fn snapshot_reads_are_bounded_by_the_functions_memory() {
        let dir = std::env::temp_dir().join(format!("esgflow-limits-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let deadline = Instant::now() + Duration::from_secs(5);
        let snapshot = fixtures::sample(0);
        let size = to_json(&snapshot).len();
        let engine = Engine::compile(&snapshot).unwrap();
        DirStore::new(&dir)
            .publish(&snapshot, &engine, deadline)
            .await
            .unwrap();
        let small = DirStore::new(&dir).within(size - 1);
        let refused = small.latest(None, deadline).await.unwrap_err().to_string();
        assert!(
            refused.contains(&format!("{size} bytes, over the")) && refused.contains("MemorySize"),
            "{refused}"
        );
        assert!(small.version(&snapshot.version, deadline).await.is_err());
        let fits = DirStore::new(&dir).within(size);
        assert!(matches!(
            fits.latest(None, deadline).await.unwrap(),
            Latest::Found { .. }
        ));
        std::fs::write(dir.join("latest.json"), vec![b' '; MAX_POINTER_BYTES + 1]).unwrap();
        let pointer = fits.latest_version(deadline).await.unwrap_err().to_string();
        assert!(pointer.contains("over the 64 KiB"), "{pointer}");
        let file = dir.join("one.json");
        FileStore::new(&file)
            .publish(&snapshot, &engine, deadline)
            .await
            .unwrap();
        let one = FileStore::new(&file).within(1 << 10);
        let refused = one.latest(None, deadline).await.unwrap_err().to_string();
        assert!(refused.contains("over the 1 KiB"), "{refused}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A snapshot path that is a FIFO (or a `latest.json` that is one) is refused at once with
    /// a clear error: reading it blocked start-up until the init timeout.
    #[tokio::test]
    async fn a_snapshot_path_that_would_block_is_refused_at_once() {
        let dir = std::env::temp_dir().join(format!("esgflow-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("latest.json");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        let started = Instant::now();
        let file = FileStore::new(&fifo)
            .latest(None, deadline)
            .await
            .unwrap_err();
        assert!(file.to_string().contains("not a regular file"), "{file}");
        let pointer = DirStore::new(&dir)
            .latest(None, deadline)
            .await
            .unwrap_err();
        assert!(
            pointer.to_string().contains("not a regular file"),
            "{pointer}"
        );
        let version = DirStore::new(&dir)
            .latest_version(deadline)
            .await
            .unwrap_err();
        assert!(
            version.to_string().contains("not a regular file"),
            "{version}"
        );
        let directory = FileStore::new(&dir)
            .latest(None, deadline)
            .await
            .unwrap_err();
        assert!(directory.to_string().contains("a directory"), "{directory}");
        assert!(started.elapsed() < Duration::from_secs(1));
        std::fs::remove_dir_all(dir).ok();
    }

    /// Two writers that read the same switches cannot both save the next change: the second is
    /// told it lost, and the first one's change is what every reader sees — also when the copy
    /// beside the changes is stale (issue #36: a change was lost while both answered 200).
    #[tokio::test]
    async fn switch_changes_are_compare_and_swap() {
        let dir = std::env::temp_dir().join(format!("esgflow-cas-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let stores: [Box<dyn SnapshotStore>; 2] = [
            Box::new(DirStore::new(dir.join("versions"))),
            Box::new(FileStore::new(dir.join("file/snapshot.json"))),
        ];
        let deadline = Instant::now() + Duration::from_secs(5);
        for store in &stores {
            assert_eq!(store.switches(deadline).await.unwrap(), None);
            let change = |vpc: &str, base: &Option<Switches>| {
                let mut next = base.clone().unwrap_or_default();
                next.vpcs.insert(vpc.to_string(), false);
                next.generation += 1;
                next
            };
            let (a, b) = (
                store.switches(deadline).await.unwrap(),
                store.switches(deadline).await.unwrap(),
            );
            assert!(store
                .save_switches(&change("vpc-a", &a), deadline)
                .await
                .unwrap());
            assert!(!store
                .save_switches(&change("vpc-b", &b), deadline)
                .await
                .unwrap());
            let read = store.switches(deadline).await.unwrap();
            assert_eq!(read.as_ref().map(|s| s.generation), Some(1));
            assert!(read.as_ref().unwrap().vpcs.contains_key("vpc-a"));
            // The loser reads again and applies its change after the winner's.
            assert!(store
                .save_switches(&change("vpc-b", &read), deadline)
                .await
                .unwrap());
            let after = store.switches(deadline).await.unwrap().unwrap();
            assert_eq!(after.generation, 2);
            assert_eq!(after.vpcs.keys().collect::<Vec<_>>(), ["vpc-a", "vpc-b"]);
        }
        // A copy left behind (its rewrite failed) is walked past to the latest change.
        let copy = dir.join("versions").join(SWITCHES_OBJECT);
        let stale = Switches {
            generation: 1,
            ..Switches::default()
        };
        std::fs::write(&copy, stale.to_json()).unwrap();
        assert_eq!(
            stores[0]
                .switches(deadline)
                .await
                .unwrap()
                .unwrap()
                .generation,
            2
        );
        // A document written before changes were numbered is change 0.
        std::fs::remove_dir_all(dir.join("versions/monitoring")).unwrap();
        std::fs::write(&copy, br#"{"vpcs": {"vpc-old": true}, "updated_at": 5}"#).unwrap();
        let old = stores[0].switches(deadline).await.unwrap().unwrap();
        assert_eq!((old.generation, old.vpcs.len()), (0, 1));
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn dir_store_publishes_versions_and_revalidates_by_version() {
        let dir = std::env::temp_dir().join(format!("esgflow-dirstore-{}", std::process::id()));
        let store = DirStore::new(&dir);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(
            store.latest(None, deadline).await.unwrap(),
            Latest::Missing
        ));
        let first = fixtures::sample(1);
        store
            .publish(&first, &Engine::compile(&first).unwrap(), deadline)
            .await
            .unwrap();
        let Latest::Found { snapshot, tag } = store.latest(None, deadline).await.unwrap() else {
            panic!("published")
        };
        assert_eq!(
            (snapshot.version.as_str(), tag.as_str()),
            (first.version.as_str(), first.version.as_str())
        );
        assert!(matches!(
            store.latest(Some(&tag), deadline).await.unwrap(),
            Latest::Unchanged
        ));
        let second = fixtures::sample(2);
        let engine = Engine::compile(&second).unwrap();
        store.publish(&second, &engine, deadline).await.unwrap();
        assert!(
            dir.join(format!("{}.json", first.version)).exists(),
            "old versions are kept"
        );
        let Latest::Found { snapshot, .. } = store.latest(Some(&tag), deadline).await.unwrap()
        else {
            panic!("moved")
        };
        assert_eq!(snapshot.version, second.version);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A function's cold start reads the engine's image published with the snapshot; an image
    /// it cannot use (damaged, another build's, none) is passed over for the snapshot, and the
    /// pointer tells the sync function to publish one.
    #[tokio::test]
    async fn dir_store_serves_the_engine_image_and_falls_back_to_the_snapshot() {
        let dir = std::env::temp_dir().join(format!("esgflow-images-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let store = DirStore::new(&dir);
        let deadline = Instant::now() + Duration::from_secs(5);
        let snapshot = fixtures::sample(3);
        let engine = Engine::compile(&snapshot).unwrap();
        store.publish(&snapshot, &engine, deadline).await.unwrap();
        let image = dir.join(crate::core::engine::image_object(&snapshot.version));
        assert_eq!(std::fs::read(&image).unwrap(), engine.to_image());
        let published = store.latest_version(deadline).await.unwrap().unwrap();
        assert!(!published.image_missing);
        let Latest::Compiled { engine: read, tag } =
            store.latest_engine(None, deadline).await.unwrap()
        else {
            panic!("the image is read")
        };
        assert_eq!(
            (read.version(), tag.as_str()),
            (engine.version(), engine.version())
        );
        assert!(matches!(
            store.latest_engine(Some(&tag), deadline).await.unwrap(),
            Latest::Unchanged
        ));
        let falls_back = || async {
            match store.latest_engine(None, deadline).await.unwrap() {
                Latest::Found {
                    snapshot: found, ..
                } => assert_eq!(found.version, snapshot.version),
                other => panic!("the snapshot, not {other:?}"),
            }
        };
        // Damaged: one byte of the payload changed.
        let mut bytes = std::fs::read(&image).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&image, &bytes).unwrap();
        falls_back().await;
        // Missing.
        std::fs::remove_file(&image).unwrap();
        falls_back().await;
        // Named by another build, or by none (a pointer written before images).
        let pointer_path = dir.join("latest.json");
        let pointer: Pointer =
            serde_json::from_slice(&std::fs::read(&pointer_path).unwrap()).unwrap();
        for engine in [
            Some(format!("{}.0123456789abcdef.engine", snapshot.version)),
            None,
        ] {
            let other = Pointer {
                engine,
                ..pointer.clone()
            };
            std::fs::write(&pointer_path, serde_json::to_vec(&other).unwrap()).unwrap();
            falls_back().await;
            let published = store.latest_version(deadline).await.unwrap().unwrap();
            assert!(published.image_missing);
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
