//! Where records go: CLS ([`cls::ClsSink`]), a JSONL file, stdout, or memory (tests). A sink
//! either writes every record it is given or returns an error, so the invocation fails and SCF
//! retries the batch; since record ids are deterministic, a retry writes the same ids.

pub mod cls;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::records::Record;

/// Records written, per destination (CLS topic id, file path, `stdout`).
pub type Written = BTreeMap<String, usize>;

/// A boxed future, so sinks can sit behind `dyn RecordSink`.
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
        if written.values().all(|&n| n == 0) {
            return self;
        }
        let completed = written
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

/// Appends records as JSON lines to a file.
#[derive(Debug)]
pub struct JsonlSink {
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

fn json_lines(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * 512);
    for record in records {
        serde_json::to_writer(&mut out, record).expect("records are plain data");
        out.push(b'\n');
    }
    out
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
            file.write_all(&json_lines(records)).map_err(io)?;
            Ok(Written::from([(self.describe(), records.len())]))
        })
    }
}

/// Prints records as JSON lines on stdout.
#[derive(Debug, Default)]
pub struct StdoutSink;

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
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&json_lines(records))
                .and_then(|()| stdout.flush())
                .map_err(|source| SinkError::Io {
                    path: "stdout".to_string(),
                    source,
                })?;
            Ok(Written::from([("stdout".to_string(), records.len())]))
        })
    }
}

/// Keeps records in memory (tests, local tools).
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    /// Everything written so far.
    pub records: Arc<Mutex<Vec<Record>>>,
}

impl RecordSink for MemorySink {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    fn write<'a>(
        &'a self,
        records: &'a [Record],
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Written, SinkError>> {
        Box::pin(async move {
            self.records
                .lock()
                .expect("no panics while holding the lock")
                .extend_from_slice(records);
            Ok(Written::from([("memory".to_string(), records.len())]))
        })
    }
}
