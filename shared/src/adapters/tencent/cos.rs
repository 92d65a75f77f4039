//! The snapshot store on COS (object storage): one object per version and a `latest.json`
//! pointer under a key prefix, through the COS XML API with `q-sign` signatures. Re-validation is
//! a conditional `If-None-Match` GET on the pointer's `ETag` (a `304` costs no transfer).

use std::time::{Duration, Instant};

use crate::adapters::bounded;
use crate::adapters::tencent::transport::{self, CredentialSource};
use crate::core::engine::Engine;
use crate::core::monitoring::{change_object, Switches, MAX_CHANGES_AHEAD};
use crate::core::ports::{
    fail, image_engine, object_name, of_version, parse_snapshot, to_json, version_object, Latest,
    Pointer, Published, SnapshotStore, StoreError, StoreFuture, SWITCHES_OBJECT,
};
use crate::core::ports::{over_memory_limit, MAX_POINTER_BYTES};
use crate::core::snapshot::Snapshot;

/// The largest object read from the bucket: a snapshot of 20,000 rules with their topology is
/// some tens of MB.
pub(crate) const MAX_OBJECT_BYTES: usize = 128 * 1024 * 1024;

/// The most of an answer to a PUT read (COS answers an empty body or a short XML error).
const MAX_PUT_ANSWER_BYTES: usize = 64 * 1024;

/// A COS bucket and key prefix, through the COS XML API with `q-sign` signatures.
#[derive(Debug, Clone)]
pub(crate) struct CosStore {
    http: reqwest::Client,
    credentials: CredentialSource,
    endpoint: reqwest::Url,
    host: String,
    bucket: String,
    prefix: String,
    /// The largest snapshot object read.
    max_bytes: usize,
}

impl CosStore {
    /// The bucket served at `endpoint`, objects under `prefix`, signed with `credentials`.
    pub fn new(
        endpoint: &str,
        bucket: &str,
        prefix: &str,
        credentials: CredentialSource,
    ) -> Result<Self, String> {
        let url =
            reqwest::Url::parse(endpoint).map_err(|e| format!("COS endpoint {endpoint:?}: {e}"))?;
        let host = super::host_header(&url)
            .ok_or_else(|| format!("COS endpoint {endpoint:?} has no host"))?;
        Ok(Self {
            http: transport::client(),
            credentials,
            endpoint: url,
            host,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            max_bytes: MAX_OBJECT_BYTES,
        })
    }

    /// Writes object `name`; anything but a 2xx is an error naming the object, the status and
    /// COS's error code.
    async fn put(&self, name: &str, body: Vec<u8>, deadline: Instant) -> Result<(), StoreError> {
        let (status, _, answer) = self
            .send(
                reqwest::Method::PUT,
                name,
                None,
                Some(body),
                MAX_PUT_ANSWER_BYTES,
                deadline,
            )
            .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(fail(
                self,
                format!("PUT {name}: HTTP {status} {}", cos_code(&answer)),
            ))
        }
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
    /// The same store, reading snapshot objects of at most `max_bytes`.
    pub fn within(self, max_bytes: usize) -> Self {
        Self {
            max_bytes: max_bytes.min(MAX_OBJECT_BYTES),
            ..self
        }
    }

    /// The answer's body is read up to `max_bytes`: past it, the request fails naming the limit.
    async fn send(
        &self,
        method: reqwest::Method,
        name: &str,
        condition: Option<(&str, &str)>,
        body: Option<Vec<u8>>,
        max_bytes: usize,
        deadline: Instant,
    ) -> Result<(u16, Option<String>, Vec<u8>), StoreError> {
        let path = self.key(name);
        let mut url = self.endpoint.clone();
        url.set_path(&path);
        let mut retry = transport::retry(deadline);
        loop {
            let credentials = self.credentials.get().map_err(|e| fail(self, e))?;
            let mut headers: Vec<(&str, &str)> = vec![("host", &self.host)];
            if let Some(condition) = condition {
                headers.push(condition);
            }
            let timeout = retry.remaining().min(transport::ATTEMPT_TIMEOUT);
            if timeout.is_zero() {
                return Err(fail(
                    self,
                    format!("{path}: no time left before the deadline"),
                ));
            }
            let mut builder = transport::cos_request(
                &self.http,
                method.clone(),
                url.clone(),
                &self.host,
                &path,
                &headers,
                &credentials,
                timeout,
            );
            if let Some((name, value)) = condition {
                builder = builder.header(name, value);
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
                    match bounded::read(response, max_bytes).await {
                        Ok(bytes) => Ok((status, etag, bytes)),
                        // More than this function can hold: asking again will not help.
                        Err(bounded::ReadError::TooLarge { .. }) => {
                            return Err(fail(
                                self,
                                format!("{path}: {}", over_memory_limit(max_bytes)),
                            ))
                        }
                        Err(cut) => Err(format!("{path}: {cut}")),
                    }
                }
                Err(e) => Err(format!("{path}: {e}")),
            };
            if let Ok((_, _, body)) = &outcome {
                self.credentials.answered(&cos_code(body));
            }
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

/// What the pointer of a COS store says.
enum Pointed {
    /// Nothing published, or the version the reader holds.
    Not(Latest),
    /// The pointer, and the tag to re-validate with (its ETag).
    At(Pointer, String),
}

impl CosStore {
    /// Reads `latest.json` (unless its ETag is `known`).
    async fn pointer(&self, known: Option<&str>, deadline: Instant) -> Result<Pointed, StoreError> {
        let (status, etag, body) = self
            .send(
                reqwest::Method::GET,
                "latest.json",
                known.map(|tag| ("if-none-match", tag)),
                None,
                MAX_POINTER_BYTES,
                deadline,
            )
            .await?;
        match status {
            304 => return Ok(Pointed::Not(Latest::Unchanged)),
            404 => return Ok(Pointed::Not(Latest::Missing)),
            200..=299 => {}
            _ => {
                return Err(fail(
                    self,
                    format!("latest.json: HTTP {status} {}", cos_code(&body)),
                ))
            }
        }
        let pointer: Pointer =
            serde_json::from_slice(&body).map_err(|e| fail(self, format!("latest.json: {e}")))?;
        let tag = etag.unwrap_or_else(|| pointer.version.clone());
        Ok(Pointed::At(pointer, tag))
    }

    /// The snapshot `pointer` names.
    async fn snapshot(
        &self,
        pointer: &Pointer,
        tag: String,
        deadline: Instant,
    ) -> Result<Latest, StoreError> {
        let object = object_name(&pointer.object).map_err(|e| fail(self, e))?;
        let (status, _, body) = self
            .send(
                reqwest::Method::GET,
                object,
                None,
                None,
                self.max_bytes,
                deadline,
            )
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
            tag,
        })
    }
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
            match self.pointer(known, deadline).await? {
                Pointed::Not(latest) => Ok(latest),
                Pointed::At(pointer, tag) => self.snapshot(&pointer, tag, deadline).await,
            }
        })
    }

    fn latest_engine<'a>(
        &'a self,
        known: Option<&'a str>,
        deadline: Instant,
    ) -> StoreFuture<'a, Latest> {
        Box::pin(async move {
            let (pointer, tag) = match self.pointer(known, deadline).await? {
                Pointed::Not(latest) => return Ok(latest),
                Pointed::At(pointer, tag) => (pointer, tag),
            };
            if let Some(image) = pointer.image() {
                let read = match self
                    .send(
                        reqwest::Method::GET,
                        image,
                        None,
                        None,
                        self.max_bytes,
                        deadline,
                    )
                    .await
                {
                    Ok((200..=299, _, body)) => Ok(body),
                    Ok((status, _, body)) => Err(format!("HTTP {status} {}", cos_code(&body))),
                    Err(e) => Err(e.message),
                };
                if let Some(engine) = image_engine(self, image, read, &pointer.version) {
                    return Ok(Latest::Compiled { engine, tag });
                }
            }
            self.snapshot(&pointer, tag, deadline).await
        })
    }

    fn latest_version<'a>(&'a self, deadline: Instant) -> StoreFuture<'a, Option<Published>> {
        Box::pin(async move {
            Ok(match self.pointer(None, deadline).await? {
                Pointed::At(pointer, _) => Some(pointer.published()),
                Pointed::Not(_) => None,
            })
        })
    }

    fn publish<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        engine: &'a Engine,
        deadline: Instant,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let pointer = Pointer::of(snapshot);
            self.put(&pointer.object, to_json(snapshot), deadline)
                .await?;
            if let Some(image) = pointer.image() {
                self.put(image, engine.to_image(), deadline).await?;
            }
            self.put(
                "latest.json",
                serde_json::to_vec_pretty(&pointer).expect("pointers serialize"),
                deadline,
            )
            .await
        })
    }

    fn version<'a>(
        &'a self,
        version: &'a str,
        deadline: Instant,
    ) -> StoreFuture<'a, Option<Snapshot>> {
        Box::pin(async move {
            let object = version_object(version).map_err(|e| fail(self, e))?;
            let (status, _, body) = self
                .send(
                    reqwest::Method::GET,
                    &object,
                    None,
                    None,
                    self.max_bytes,
                    deadline,
                )
                .await?;
            match status {
                404 => Ok(None),
                200..=299 => {
                    let snapshot = parse_snapshot(&body, &object, &self.describe())?;
                    of_version(self, snapshot, version)
                }
                _ => Err(fail(
                    self,
                    format!("{object}: HTTP {status} {}", cos_code(&body)),
                )),
            }
        })
    }

    fn switches<'a>(&'a self, deadline: Instant) -> StoreFuture<'a, Option<Switches>> {
        Box::pin(async move {
            let mut latest = self.read_switches(SWITCHES_OBJECT, deadline).await?;
            let first = latest.as_ref().map_or(0, |s| s.generation);
            for generation in first + 1..=first + MAX_CHANGES_AHEAD {
                match self
                    .read_switches(&change_object(generation), deadline)
                    .await?
                {
                    Some(next) => latest = Some(next),
                    None => return Ok(latest),
                }
            }
            Err(fail(
                self,
                format!("{SWITCHES_OBJECT}: over {MAX_CHANGES_AHEAD} changes past it"),
            ))
        })
    }

    fn save_switches<'a>(
        &'a self,
        switches: &'a Switches,
        deadline: Instant,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let name = change_object(switches.generation);
            let body = switches.to_json();
            // Create-only: COS answers 409 FileAlreadyExists when the name is taken (PUT Object,
            // https://cloud.tencent.com/document/product/436/7749).
            let (status, _, answer) = self
                .send(
                    reqwest::Method::PUT,
                    &name,
                    Some(("x-cos-forbid-overwrite", "true")),
                    Some(body.clone()),
                    MAX_PUT_ANSWER_BYTES,
                    deadline,
                )
                .await?;
            match status {
                409 => return Ok(false),
                200..=299 => {}
                _ => {
                    return Err(fail(
                        self,
                        format!("PUT {name}: HTTP {status} {}", cos_code(&answer)),
                    ))
                }
            }
            // A bucket that ever had versioning on ignores the header: read the change back, so
            // a writer whose change was replaced before it looked knows it lost.
            let (status, _, stored) = self
                .send(
                    reqwest::Method::GET,
                    &name,
                    None,
                    None,
                    crate::core::monitoring::MAX_SWITCHES_BYTES,
                    deadline,
                )
                .await?;
            if !(200..300).contains(&status) || stored != body {
                return Ok(false);
            }
            if let Err(e) = self.put(SWITCHES_OBJECT, body, deadline).await {
                // The change stands; readers walk past the stale copy.
                tracing::warn!(error = %e, "the switches copy was not rewritten");
            }
            Ok(true)
        })
    }
}

impl CosStore {
    /// The switches document `name` (`None`: there is none).
    async fn read_switches(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<Switches>, StoreError> {
        let (status, _, body) = self
            .send(
                reqwest::Method::GET,
                name,
                None,
                None,
                crate::core::monitoring::MAX_SWITCHES_BYTES,
                deadline,
            )
            .await?;
        match status {
            404 => Ok(None),
            200..=299 => Switches::parse(&body)
                .map(Some)
                .map_err(|e| fail(self, format!("{name}: {e}"))),
            _ => Err(fail(
                self,
                format!("{name}: HTTP {status} {}", cos_code(&body)),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ports::SnapshotStore;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A bucket that answers every request 200 with `body`.
    async fn bucket(body: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = vec![0u8; 16 * 1024];
                    let _ = stream.read(&mut request).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                });
            }
        });
        url
    }

    fn store(url: &str) -> CosStore {
        CosStore::new(
            url,
            "esg-1250000000",
            "snapshots",
            CredentialSource::given(crate::adapters::tencent::Credentials {
                secret_id: "AKIDtest".into(),
                secret_key: "key".into(),
                token: None,
            }),
        )
        .unwrap()
    }

    /// A pointer over 64 KiB, and a snapshot object over the function's limit, are refused with
    /// an error naming the limit, not read into memory.
    #[tokio::test]
    async fn reads_are_bounded_by_the_functions_memory() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let pointer = bucket(vec![b' '; MAX_POINTER_BYTES + 1]).await;
        let error = store(&pointer)
            .latest_version(deadline)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("over the 64 KiB"), "{error}");
        // A pointer naming an object, answered (by this bucket) with a 4 KiB body for every key.
        let mut body =
            br#"{"version":"v1","object":"v1.json","taken_at":"2026-01-01T00:00:00Z","rules":1}"#
                .to_vec();
        body.resize(4096, b' ');
        let object = bucket(body).await;
        let error = store(&object)
            .within(2048)
            .latest(None, deadline)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("v1.json")
                && error.contains("over the 2 KiB")
                && error.contains("MemorySize"),
            "{error}"
        );
    }
}
