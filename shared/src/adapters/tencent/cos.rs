//! The snapshot store on COS (object storage): one object per version and a `latest.json`
//! pointer under a key prefix, through the COS XML API with `q-sign` signatures. Re-validation is
//! a conditional `If-None-Match` GET on the pointer's `ETag` (a `304` costs no transfer).

use std::time::{Duration, Instant};

use crate::adapters::bounded;
use crate::adapters::tencent::transport::{self, CredentialSource};
use crate::core::monitoring::Switches;
use crate::core::ports::{
    fail, object_name, of_version, parse_snapshot, to_json, version_object, Latest, Pointer,
    SnapshotStore, StoreError, StoreFuture, SWITCHES_OBJECT,
};
use crate::core::snapshot::Snapshot;

/// The largest object read from the bucket: a snapshot of 20,000 rules with their topology is
/// some tens of MB.
pub(crate) const MAX_OBJECT_BYTES: usize = 128 * 1024 * 1024;

/// A COS bucket and key prefix, through the COS XML API with `q-sign` signatures.
#[derive(Debug, Clone)]
pub(crate) struct CosStore {
    http: reqwest::Client,
    credentials: CredentialSource,
    endpoint: reqwest::Url,
    host: String,
    bucket: String,
    prefix: String,
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
        })
    }

    /// Writes object `name`; anything but a 2xx is an error naming the object, the status and
    /// COS's error code.
    async fn put(&self, name: &str, body: Vec<u8>, deadline: Instant) -> Result<(), StoreError> {
        let (status, _, answer) = self
            .send(reqwest::Method::PUT, name, None, Some(body), deadline)
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
        let mut retry = transport::retry(deadline);
        loop {
            let credentials = self.credentials.get().map_err(|e| fail(self, e))?;
            let mut headers: Vec<(&str, &str)> = vec![("host", &self.host)];
            if let Some(tag) = if_none_match {
                headers.push(("if-none-match", tag));
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
            if let Some(tag) = if_none_match {
                builder = builder.header("If-None-Match", tag);
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
                    match bounded::read(response, MAX_OBJECT_BYTES).await {
                        Ok(bytes) => Ok((status, etag, bytes)),
                        // Larger than any snapshot esgflow writes: asking again will not help.
                        Err(too_large @ bounded::ReadError::TooLarge { .. }) => {
                            return Err(fail(self, format!("{path}: {too_large}")))
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

    fn latest_version<'a>(&'a self, deadline: Instant) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let (status, _, body) = self
                .send(reqwest::Method::GET, "latest.json", None, None, deadline)
                .await?;
            match status {
                404 => Ok(None),
                200..=299 => {
                    let pointer: Pointer = serde_json::from_slice(&body)
                        .map_err(|e| fail(self, format!("latest.json: {e}")))?;
                    Ok(Some(pointer.version))
                }
                _ => Err(fail(
                    self,
                    format!("latest.json: HTTP {status} {}", cos_code(&body)),
                )),
            }
        })
    }

    fn publish<'a>(&'a self, snapshot: &'a Snapshot, deadline: Instant) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let pointer = Pointer::of(snapshot);
            self.put(&pointer.object, to_json(snapshot), deadline)
                .await?;
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
                .send(reqwest::Method::GET, &object, None, None, deadline)
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
            let (status, _, body) = self
                .send(reqwest::Method::GET, SWITCHES_OBJECT, None, None, deadline)
                .await?;
            match status {
                404 => Ok(None),
                200..=299 => Switches::parse(&body)
                    .map(Some)
                    .map_err(|e| fail(self, format!("{SWITCHES_OBJECT}: {e}"))),
                _ => Err(fail(
                    self,
                    format!("{SWITCHES_OBJECT}: HTTP {status} {}", cos_code(&body)),
                )),
            }
        })
    }

    fn save_switches<'a>(
        &'a self,
        switches: &'a Switches,
        deadline: Instant,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.put(SWITCHES_OBJECT, switches.to_json(), deadline)
                .await
        })
    }
}
