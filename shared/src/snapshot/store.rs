//! Where snapshots live: a [`SnapshotStore`] publishes the snapshots the sync function builds and
//! serves the latest one to the audit and lookup functions, cheaply re-validated after their TTL.
//!
//! `ESGFLOW_SNAPSHOT` names the store ([`SnapshotLocation::parse`]):
//!
//! | form | store | latest |
//! |---|---|---|
//! | `/path/s.json`, `file:///path/s.json` | one file ([`FileStore`]) | the file itself |
//! | `dir:///path/dir` | a directory ([`DirStore`]) | `<dir>/latest.json` → `<dir>/<version>.json` |
//! | `cos://<bucket>-<appid>/<prefix>?region=<region>` | COS ([`CosStore`]) | `<prefix>/latest.json` → `<prefix>/<version>.json` |
//!
//! `latest.json` is a small pointer, `{"version", "object", "taken_at", "rules"}`, written after
//! the version object, so a reader never sees a pointer to an object that is not there yet.
//! Re-validation compares a tag: the file's length and modification time, the pointer's version,
//! or COS's `ETag` with a conditional `If-None-Match` GET (a `304` costs no transfer).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Snapshot;
use crate::cloud::{qsign, Credentials, Retry};

/// A boxed future, so stores can be used as trait objects.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

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
}

/// A store of snapshots.
pub trait SnapshotStore: Send + Sync + std::fmt::Debug {
    /// Where it is, for messages (never holds secrets).
    fn describe(&self) -> String;

    /// The latest snapshot, or [`Latest::Unchanged`] when its tag is `known`.
    fn latest<'a>(&'a self, known: Option<&'a str>, deadline: Instant) -> StoreFuture<'a, Latest>;

    /// Writes `snapshot` under its version and makes it the latest.
    fn publish<'a>(&'a self, snapshot: &'a Snapshot, deadline: Instant) -> StoreFuture<'a, ()>;
}

/// A store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot store {store}: {message}")]
pub struct StoreError {
    /// The store.
    pub store: String,
    /// What went wrong.
    pub message: String,
}

/// The pointer object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// The latest snapshot's version.
    pub version: String,
    /// Its object name, relative to the store.
    pub object: String,
    /// When it was taken.
    pub taken_at: String,
    /// How many rules it has.
    pub rules: usize,
}

impl Pointer {
    fn of(snapshot: &Snapshot) -> Self {
        Self {
            version: snapshot.version.clone(),
            object: format!("{}.json", snapshot.version),
            taken_at: snapshot.taken_at.clone(),
            rules: snapshot.rules.len(),
        }
    }
}

/// A parsed `ESGFLOW_SNAPSHOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotLocation {
    /// One file.
    File(PathBuf),
    /// A directory of versions with `latest.json`.
    Dir(PathBuf),
    /// A COS bucket and prefix.
    Cos {
        /// `<bucket>-<appid>`.
        bucket: String,
        /// Key prefix, without leading or trailing `/` (may be empty).
        prefix: String,
        /// Bucket region, from `?region=` (else the function's region).
        region: Option<String>,
    },
}

impl SnapshotLocation {
    /// Parses the forms in the module documentation.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("file://") {
            return non_empty(rest).map(|p| Self::File(p.into()));
        }
        if let Some(rest) = text.strip_prefix("dir://") {
            return non_empty(rest).map(|p| Self::Dir(p.into()));
        }
        if let Some(rest) = text.strip_prefix("cos://") {
            let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
            if bucket.is_empty() || !bucket.chars().all(valid) || !bucket.contains('-') {
                return Err(format!(
                    "{bucket:?} is not a COS bucket name of the form <bucket>-<appid>"
                ));
            }
            let mut region = None;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("region", value)) if !value.is_empty() => {
                        region = Some(value.to_string())
                    }
                    _ => return Err(format!("unknown COS location parameter {pair:?}")),
                }
            }
            return Ok(Self::Cos {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
                region,
            });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "unknown snapshot location scheme {scheme:?} (use a path, file://, dir:// or cos://)"
            ));
        }
        non_empty(text).map(|p| Self::File(p.into()))
    }

    /// Opens the store. `region` is the function's region (for COS without `?region=`),
    /// `cos_endpoint` replaces `https://<bucket>.cos.<region>.myqcloud.com` (tests, private
    /// endpoints).
    pub fn open(
        &self,
        region: Option<&str>,
        cos_endpoint: Option<&str>,
    ) -> Result<Box<dyn SnapshotStore>, String> {
        Ok(match self {
            Self::File(path) => Box::new(FileStore::new(path)),
            Self::Dir(path) => Box::new(DirStore::new(path)),
            Self::Cos {
                bucket,
                prefix,
                region: own,
            } => {
                let region = own.as_deref().or(region).ok_or_else(|| {
                    "a cos:// snapshot location needs ?region= or TENCENTCLOUD_REGION".to_string()
                })?;
                let endpoint = cos_endpoint
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("https://{bucket}.cos.{region}.myqcloud.com"));
                Box::new(CosStore::new(&endpoint, bucket, prefix)?)
            }
        })
    }
}

fn non_empty(path: &str) -> Result<&str, String> {
    if path.trim().is_empty() {
        Err("the snapshot location is empty".into())
    } else {
        Ok(path)
    }
}

/// An error of `store`, named as the store describes itself.
fn fail(store: &dyn SnapshotStore, message: impl std::fmt::Display) -> StoreError {
    StoreError {
        store: store.describe(),
        message: message.to_string(),
    }
}

fn parse_snapshot(bytes: &[u8], name: &str, store: &str) -> Result<Snapshot, StoreError> {
    Snapshot::from_json(bytes).map_err(|message| StoreError {
        store: store.to_string(),
        message: format!("{name}: {message}"),
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

fn to_json(snapshot: &Snapshot) -> Vec<u8> {
    serde_json::to_vec_pretty(snapshot).expect("snapshots serialize")
}

/// One snapshot file.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
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
            let bytes = std::fs::read(&self.path).map_err(|e| fail(self, e))?;
            let snapshot = parse_snapshot(&bytes, "", &self.describe())?;
            Ok(Latest::Found {
                snapshot: Box::new(snapshot),
                tag,
            })
        })
    }

    fn publish<'a>(&'a self, snapshot: &'a Snapshot, _: Instant) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            write_atomically(&self.path, &to_json(snapshot)).map_err(|e| fail(self, e))
        })
    }
}

/// A directory of versions and a `latest.json` pointer.
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// The directory `dir` (created on the first publish).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl SnapshotStore for DirStore {
    fn describe(&self) -> String {
        format!("dir://{}", self.dir.display())
    }

    fn latest<'a>(&'a self, known: Option<&'a str>, _: Instant) -> StoreFuture<'a, Latest> {
        Box::pin(async move {
            let bytes = match std::fs::read(self.dir.join("latest.json")) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Latest::Missing),
                Err(e) => return Err(fail(self, format!("latest.json: {e}"))),
            };
            let pointer: Pointer = serde_json::from_slice(&bytes)
                .map_err(|e| fail(self, format!("latest.json: {e}")))?;
            if known == Some(pointer.version.as_str()) {
                return Ok(Latest::Unchanged);
            }
            let object = object_name(&pointer.object).map_err(|e| fail(self, e))?;
            let bytes = std::fs::read(self.dir.join(object))
                .map_err(|e| fail(self, format!("{object}: {e}")))?;
            let snapshot = parse_snapshot(&bytes, object, &self.describe())?;
            Ok(Latest::Found {
                tag: pointer.version,
                snapshot: Box::new(snapshot),
            })
        })
    }

    fn publish<'a>(&'a self, snapshot: &'a Snapshot, _: Instant) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let pointer = Pointer::of(snapshot);
            write_atomically(&self.dir.join(&pointer.object), &to_json(snapshot))
                .map_err(|e| fail(self, e))?;
            let bytes = serde_json::to_vec_pretty(&pointer).expect("pointers serialize");
            write_atomically(&self.dir.join("latest.json"), &bytes).map_err(|e| fail(self, e))
        })
    }
}

/// A pointer's object must be a plain name in the store, never a path out of it.
fn object_name(object: &str) -> Result<&str, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if object.ends_with(".json") && object.chars().all(plain) && !object.starts_with('.') {
        Ok(object)
    } else {
        Err(format!(
            "latest.json names {object:?}, not a snapshot object"
        ))
    }
}

/// A COS bucket and key prefix, through the COS XML API with `q-sign` signatures.
#[derive(Debug, Clone)]
pub struct CosStore {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    host: String,
    bucket: String,
    prefix: String,
}

impl CosStore {
    /// The bucket served at `endpoint`, objects under `prefix`.
    pub fn new(endpoint: &str, bucket: &str, prefix: &str) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(endpoint).map_err(|e| format!("COS endpoint {endpoint:?}: {e}"))?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(format!("COS endpoint {endpoint:?} has no host")),
        };
        Ok(Self {
            http: reqwest::Client::new(),
            endpoint: url,
            host,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            format!("/{name}")
        } else {
            format!("/{}/{name}", self.prefix)
        }
    }

    /// One signed request, retried on network errors, 429 and 5xx while the deadline allows.
    /// Returns the status, the `ETag` and the body.
    async fn send(
        &self,
        method: reqwest::Method,
        name: &str,
        if_none_match: Option<&str>,
        body: Option<Vec<u8>>,
        deadline: Instant,
    ) -> Result<(u16, Option<String>, Vec<u8>), StoreError> {
        let path = self.key(name);
        let mut url = self.endpoint.clone();
        url.set_path(&path);
        let mut retry = Retry::new(deadline, Duration::from_millis(200), Duration::from_secs(2));
        loop {
            let credentials = Credentials::from_env().map_err(|e| fail(self, e))?;
            let now = chrono::Utc::now().timestamp();
            let mut headers: Vec<(&str, &str)> = vec![("host", &self.host)];
            if let Some(tag) = if_none_match {
                headers.push(("if-none-match", tag));
            }
            let request = qsign::Request {
                method: method.as_str(),
                path: &path,
                params: &[],
                headers: &headers,
                start: now - 60,
                end: now + 600,
            };
            let timeout = retry.remaining().min(Duration::from_secs(10));
            if timeout.is_zero() {
                return Err(fail(
                    self,
                    format!("{path}: no time left before the deadline"),
                ));
            }
            let mut builder = self
                .http
                .request(method.clone(), url.clone())
                .timeout(timeout)
                .header("Host", &self.host)
                .header(
                    "Authorization",
                    qsign::authorization(&credentials, &request),
                );
            if let Some(tag) = if_none_match {
                builder = builder.header("If-None-Match", tag);
            }
            if let Some(token) = &credentials.token {
                builder = builder.header("x-cos-security-token", token);
            }
            if let Some(body) = &body {
                builder = builder
                    .header("Content-Type", "application/json")
                    .body(body.clone());
            }
            let outcome = match builder.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let etag = response
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    match response.bytes().await {
                        Ok(bytes) => Ok((status, etag, bytes.to_vec())),
                        Err(e) => Err(format!("{path}: reading the answer: {e}")),
                    }
                }
                Err(e) => Err(format!("{path}: {e}")),
            };
            let retryable = match &outcome {
                Ok((status, _, _)) => *status == 429 || *status >= 500,
                Err(_) => true,
            };
            if !retryable {
                return outcome.map_err(|e| fail(self, e));
            }
            let message = match outcome {
                Ok((status, _, body)) => format!("{path}: HTTP {status} {}", cos_code(&body)),
                Err(e) => e,
            };
            tracing::warn!(store = %self.describe(), %message, "COS request failed, retrying");
            if !retry.wait(Duration::from_millis(100)).await {
                return Err(fail(self, message));
            }
        }
    }
}

/// The `<Code>` of a COS XML error body, for messages.
fn cos_code(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_string())
        .unwrap_or_default()
}

impl SnapshotStore for CosStore {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("cos://{}", self.bucket)
        } else {
            format!("cos://{}/{}", self.bucket, self.prefix)
        }
    }

    fn latest<'a>(&'a self, known: Option<&'a str>, deadline: Instant) -> StoreFuture<'a, Latest> {
        Box::pin(async move {
            let (status, etag, body) = self
                .send(reqwest::Method::GET, "latest.json", known, None, deadline)
                .await?;
            match status {
                304 => return Ok(Latest::Unchanged),
                404 => return Ok(Latest::Missing),
                200..=299 => {}
                _ => {
                    return Err(fail(
                        self,
                        format!("latest.json: HTTP {status} {}", cos_code(&body)),
                    ))
                }
            }
            let pointer: Pointer = serde_json::from_slice(&body)
                .map_err(|e| fail(self, format!("latest.json: {e}")))?;
            let object = object_name(&pointer.object).map_err(|e| fail(self, e))?;
            let (status, _, body) = self
                .send(reqwest::Method::GET, object, None, None, deadline)
                .await?;
            if !(200..300).contains(&status) {
                return Err(fail(
                    self,
                    format!("{object}: HTTP {status} {}", cos_code(&body)),
                ));
            }
            let snapshot = parse_snapshot(&body, object, &self.describe())?;
            Ok(Latest::Found {
                snapshot: Box::new(snapshot),
                tag: etag.unwrap_or(pointer.version),
            })
        })
    }

    fn publish<'a>(&'a self, snapshot: &'a Snapshot, deadline: Instant) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let pointer = Pointer::of(snapshot);
            let put = |name: String, body: Vec<u8>| async move {
                let (status, _, answer) = self
                    .send(reqwest::Method::PUT, &name, None, Some(body), deadline)
                    .await?;
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err(fail(
                        self,
                        format!("PUT {name}: HTTP {status} {}", cos_code(&answer)),
                    ))
                }
            };
            put(pointer.object.clone(), to_json(snapshot)).await?;
            put(
                "latest.json".to_string(),
                serde_json::to_vec_pretty(&pointer).expect("pointers serialize"),
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::synthetic;

    #[test]
    fn locations_parse() {
        assert_eq!(
            SnapshotLocation::parse("/opt/esgflow/snapshot.json"),
            Ok(SnapshotLocation::File("/opt/esgflow/snapshot.json".into()))
        );
        assert_eq!(
            SnapshotLocation::parse("file:///tmp/s.json"),
            Ok(SnapshotLocation::File("/tmp/s.json".into()))
        );
        assert_eq!(
            SnapshotLocation::parse("dir:///var/esgflow"),
            Ok(SnapshotLocation::Dir("/var/esgflow".into()))
        );
        assert_eq!(
            SnapshotLocation::parse("cos://esg-1250000000/esgflow/snapshots/?region=ap-guangzhou"),
            Ok(SnapshotLocation::Cos {
                bucket: "esg-1250000000".into(),
                prefix: "esgflow/snapshots".into(),
                region: Some("ap-guangzhou".into())
            })
        );
        for bad in [
            "",
            "s3://x/y",
            "cos://Bad_Bucket/x",
            "cos://nodash/x",
            "cos://a-1/x?zone=1",
        ] {
            assert!(SnapshotLocation::parse(bad).is_err(), "{bad}");
        }
        let cos = SnapshotLocation::parse("cos://esg-1250000000/p").unwrap();
        assert!(cos.open(None, None).is_err(), "a region is needed");
        assert_eq!(
            cos.open(Some("ap-shanghai"), None).unwrap().describe(),
            "cos://esg-1250000000/p"
        );
    }

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

    #[tokio::test]
    async fn dir_store_publishes_versions_and_revalidates_by_version() {
        let dir = std::env::temp_dir().join(format!("esgflow-dirstore-{}", std::process::id()));
        let store = DirStore::new(&dir);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(
            store.latest(None, deadline).await.unwrap(),
            Latest::Missing
        ));
        let first = synthetic::snapshot(10, 2, 1);
        store.publish(&first, deadline).await.unwrap();
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
        let second = synthetic::snapshot(10, 2, 2);
        store.publish(&second, deadline).await.unwrap();
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
}
