//! A Tencent Cloud API 3.0 client for JSON actions: TC3-signed POSTs to
//! `https://<service>.tencentcloudapi.com/` (or an override for tests), the `Response.Error`
//! envelope mapped to [`ApiError`], and retries on throttling, internal errors and network
//! errors while the deadline allows.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::adapters::bounded;
use crate::adapters::tencent::transport::{self, retryable, Action, CredentialSource};
use crate::adapters::tencent::Credentials;

/// The longest API 3.0 answer read: a page of 100 rules or a `SearchLog` page is well under
/// 1 MB; anything past this is refused as `ResponseTooLarge`.
pub(crate) const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action}: {code}: {message} (request id {request_id})")]
pub struct ApiError {
    /// The action called.
    pub action: String,
    /// The API's error code (`AuthFailure.SignatureFailure`, `RequestLimitExceeded`, ...), or
    /// `Network`/`Deadline`/`NoCredentials`/`BadResponse` for failures before an answer.
    pub code: String,
    /// The message.
    pub message: String,
    /// The API's request id, when it answered.
    pub request_id: String,
}

/// The client.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    region: String,
    endpoint: Option<String>,
    limits: std::sync::Arc<Vec<RateLimit>>,
    credentials: CredentialSource,
}

/// A client-side rate limit for one action: calls are spaced `interval` apart.
#[derive(Debug)]
struct RateLimit {
    action: &'static str,
    interval: Duration,
    next: std::sync::Mutex<Instant>,
}

/// How a list action pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `PageNo` (from 1) and `PageSize`, sent as strings (cfw `DescribeEnterpriseSecurityGroupRule`).
    PageNo {
        /// Items per page.
        size: u32,
    },
    /// `Offset` and `Limit`, as numbers or as strings (some vpc actions take strings).
    Offset {
        /// Items per page.
        limit: u32,
        /// Send them as JSON strings.
        strings: bool,
    },
    /// `Offset` documented as "current page" (cfw `DescribeEnterpriseSecurityGroupRuleList`,
    /// tccli `cfw/v20190904/api.json`), which may mean a row offset or a page number (from 1
    /// or from 0): which one is detected ([`OffsetReading`]), and items are told apart by
    /// their `key` member.
    OffsetOrPage {
        /// Items per page.
        limit: u32,
        /// The member that identifies an item (`RuleUuid`).
        key: &'static str,
    },
}

/// How an API reads a `Offset` documented as "current page".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReading {
    /// `Offset` counts rows: the n-th page starts at `n * Limit`.
    Rows,
    /// `Offset` is a page number from 1 (0 is read as 1, or refused).
    PagesFromOne,
    /// `Offset` is a page number from 0.
    PagesFromZero,
}

impl OffsetReading {
    /// The `Offset` of the page after the one at `offset`.
    fn next(self, offset: usize, limit: usize) -> usize {
        match self {
            OffsetReading::Rows => offset + limit,
            OffsetReading::PagesFromOne | OffsetReading::PagesFromZero => offset + 1,
        }
    }
}

/// Most pages one listing may take: a guard against an API that never stops paging.
pub(crate) const MAX_PAGES: usize = 2_000;

/// A page of a listing, kept as its JSON text until it is imported: parsed values of the
/// 20,000-rule account `make measure` syncs held the sync function at 184 MB; as text each page
/// is a fraction of that, and the importer parses one page at a time.
pub type Page = Box<serde_json::value::RawValue>;

/// `page` as kept.
fn keep(page: &Value) -> Page {
    serde_json::value::to_raw_value(page).expect("JSON values serialize")
}

const CONTENT_TYPE: &str = "application/json; charset=utf-8";

impl ApiClient {
    /// A client for `region`; `endpoint` (e.g. `http://127.0.0.1:9000`) replaces
    /// `https://<service>.tencentcloudapi.com` for every service.
    pub fn new(region: &str, endpoint: Option<String>) -> Self {
        Self {
            http: transport::client(),
            region: region.to_string(),
            endpoint,
            limits: std::sync::Arc::new(Vec::new()),
            credentials: CredentialSource::environment(),
        }
    }

    /// Signs with these credentials instead of the execution role's from the environment.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = CredentialSource::given(credentials);
        self
    }

    /// The same client (and rate limits) calling in another region.
    pub(crate) fn in_region(&self, region: &str) -> Self {
        Self {
            region: region.to_string(),
            ..self.clone()
        }
    }

    /// The region calls are made in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Spaces calls of `action` so that at most `per_second` start each second (the API's
    /// documented limit, e.g. 20/s for `DescribeEnterpriseSecurityGroupRule`).
    pub fn with_rate_limit(mut self, action: &'static str, per_second: u32) -> Self {
        let mut limits: Vec<RateLimit> = Vec::new();
        for limit in self.limits.iter() {
            limits.push(RateLimit {
                action: limit.action,
                interval: limit.interval,
                next: std::sync::Mutex::new(Instant::now()),
            });
        }
        limits.push(RateLimit {
            action,
            interval: Duration::from_secs(1) / per_second.max(1),
            next: std::sync::Mutex::new(Instant::now()),
        });
        self.limits = std::sync::Arc::new(limits);
        self
    }

    async fn pace(&self, action: &str) {
        let Some(limit) = self.limits.iter().find(|l| l.action == action) else {
            return;
        };
        let start = {
            let mut next = limit.next.lock().expect("no panics while held");
            let start = (*next).max(Instant::now());
            *next = start + limit.interval;
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }

    /// Every item of a paged list action: calls page after page until `TotalCount`/`Total` items
    /// are collected or a page comes back short. Returns each page's `Response` object, as JSON
    /// text.
    #[allow(clippy::too_many_arguments)]
    pub async fn pages(
        &self,
        service: &str,
        version: &str,
        action: &str,
        body: &Value,
        paging: Paging,
        list_key: &str,
        deadline: Instant,
    ) -> Result<Vec<Page>, ApiError> {
        if let Paging::OffsetOrPage { limit, key } = paging {
            let listing = Listing {
                service,
                version,
                action,
                body,
                list_key,
                limit: limit as usize,
            };
            return self.pages_offset_or_page(&listing, key, deadline).await;
        }
        let mut pages = Vec::new();
        let mut collected = 0usize;
        for page in 0..MAX_PAGES {
            let mut request = body.clone();
            let object = request
                .as_object_mut()
                .expect("list requests are JSON objects");
            let size = match paging {
                Paging::PageNo { size } => {
                    object.insert("PageNo".into(), (page + 1).to_string().into());
                    object.insert("PageSize".into(), size.to_string().into());
                    size
                }
                Paging::Offset { limit, strings } => {
                    let offset = page * limit as usize;
                    if strings {
                        object.insert("Offset".into(), offset.to_string().into());
                        object.insert("Limit".into(), limit.to_string().into());
                    } else {
                        object.insert("Offset".into(), offset.into());
                        object.insert("Limit".into(), limit.into());
                    }
                    limit
                }
                Paging::OffsetOrPage { .. } => unreachable!("paged above"),
            };
            let response = self
                .call(service, version, action, &request, deadline)
                .await?;
            let count = response
                .get(list_key)
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            collected += count;
            let total = total_of(&response);
            pages.push(keep(&response));
            let done = match total {
                Some(total) => collected as u64 >= total || count == 0,
                None => count < size as usize,
            };
            if done {
                return Ok(pages);
            }
        }
        Err(ApiError {
            action: action.to_string(),
            code: "BadResponse".into(),
            message: format!("still paging after {MAX_PAGES} pages"),
            request_id: String::new(),
        })
    }

    /// Every item of a listing whose `Offset` may be a row offset or a page number. The first
    /// page is asked with `Offset` 0 (and, if that is refused or empty while items exist, with
    /// 1: pages from one); when it does not hold every item, `Offset` 1 tells the readings
    /// apart: a row offset answers from the first page's second item, pages from one answer
    /// the first page again, pages from zero answer items the first page does not hold. Paging
    /// then goes on by that reading until `Total` distinct items are held or a page comes back
    /// short. Returns the pages (overlaps included: the importer keeps each item once).
    async fn pages_offset_or_page(
        &self,
        listing: &Listing<'_>,
        key: &str,
        deadline: Instant,
    ) -> Result<Vec<Page>, ApiError> {
        let bad = |message: String| ApiError {
            action: listing.action.to_string(),
            code: "BadResponse".into(),
            message,
            request_id: String::new(),
        };
        let ids = |page: &Value| -> Vec<String> {
            page.get(listing.list_key)
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .map(|item| match item.get(key) {
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                            None => item.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut reading = None;
        let first = match self.page_at(listing, 0, deadline).await {
            Ok(page) if ids(&page).is_empty() && total_of(&page).is_some_and(|t| t > 0) => {
                reading = Some(OffsetReading::PagesFromOne);
                self.page_at(listing, 1, deadline).await?
            }
            Ok(page) => page,
            Err(err) if err.code.starts_with("InvalidParameter") => {
                reading = Some(OffsetReading::PagesFromOne);
                self.page_at(listing, 1, deadline).await?
            }
            Err(err) => return Err(err),
        };
        let first_ids = ids(&first);
        let total = total_of(&first);
        let mut seen: std::collections::HashSet<String> = first_ids.iter().cloned().collect();
        let mut pages = vec![keep(&first)];
        let complete = |seen: usize, count: usize| {
            count < listing.limit || total.is_some_and(|t| seen as u64 >= t)
        };
        if complete(seen.len(), first_ids.len()) {
            return Ok(pages);
        }
        let reading = match reading {
            Some(known) => known,
            None => {
                let probe = self.page_at(listing, 1, deadline).await?;
                let probe_ids = ids(&probe);
                let known = match probe_ids.first() {
                    Some(id) if first_ids.get(1) == Some(id) => OffsetReading::Rows,
                    Some(id) if first_ids.first() == Some(id) => OffsetReading::PagesFromOne,
                    Some(id) if !seen.contains(id) => OffsetReading::PagesFromZero,
                    _ => {
                        return Err(bad(format!(
                            "cannot tell whether Offset is a row offset or a page number: Offset 0 \
                             answered {} items starting {:?}, Offset 1 answered {} starting {:?}",
                            first_ids.len(),
                            first_ids.first(),
                            probe_ids.len(),
                            probe_ids.first()
                        )))
                    }
                };
                tracing::info!(action = listing.action, reading = ?known, "Offset reading detected");
                let count = probe_ids.len();
                seen.extend(probe_ids);
                pages.push(keep(&probe));
                if complete(seen.len(), count) {
                    return Ok(pages);
                }
                known
            }
        };
        // Offset 1 has been read under either reading's first or second page.
        let mut offset = reading.next(1, listing.limit);
        for _ in 0..MAX_PAGES {
            let page = self.page_at(listing, offset, deadline).await?;
            let page_ids = ids(&page);
            let count = page_ids.len();
            seen.extend(page_ids);
            pages.push(keep(&page));
            if complete(seen.len(), count) {
                if let Some(total) = total.filter(|&t| (seen.len() as u64) < t) {
                    tracing::warn!(
                        action = listing.action,
                        held = seen.len(),
                        total,
                        "the listing ended with fewer distinct items than its Total (it changed while paging?)"
                    );
                }
                return Ok(pages);
            }
            offset = reading.next(offset, listing.limit);
        }
        Err(bad(format!("still paging after {MAX_PAGES} pages")))
    }

    async fn page_at(
        &self,
        listing: &Listing<'_>,
        offset: usize,
        deadline: Instant,
    ) -> Result<Value, ApiError> {
        let mut request = listing.body.clone();
        let object = request
            .as_object_mut()
            .expect("list requests are JSON objects");
        object.insert("Offset".into(), offset.into());
        object.insert("Limit".into(), listing.limit.into());
        self.call(
            listing.service,
            listing.version,
            listing.action,
            &request,
            deadline,
        )
        .await
    }

    /// Calls `action` of `service` (version `version`) with a JSON body, returning the
    /// `Response` object.
    pub async fn call(
        &self,
        service: &str,
        version: &str,
        action: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<Value, ApiError> {
        let error = |code: &str, message: String| ApiError {
            action: action.to_string(),
            code: code.to_string(),
            message,
            request_id: String::new(),
        };
        let url = self
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{service}.tencentcloudapi.com"));
        let parsed =
            reqwest::Url::parse(&url).map_err(|e| error("BadEndpoint", format!("{url:?}: {e}")))?;
        let host = super::host_header(&parsed)
            .ok_or_else(|| error("BadEndpoint", format!("{url:?} has no host")))?;
        let payload = serde_json::to_vec(body).expect("JSON values serialize");
        let mut retry = transport::retry(deadline);
        loop {
            self.pace(action).await;
            let credentials = self
                .credentials
                .get()
                .map_err(|e| error("NoCredentials", e.to_string()))?;
            let timeout = retry.remaining().min(transport::ATTEMPT_TIMEOUT);
            if timeout.is_zero() {
                return Err(error(
                    "Deadline",
                    "no time left before the invocation deadline".to_string(),
                ));
            }
            let request = transport::tc3_request(
                &self.http,
                parsed.clone(),
                &host,
                &Action {
                    service,
                    version,
                    action,
                    region: &self.region,
                },
                CONTENT_TYPE,
                payload.clone(),
                &credentials,
                timeout,
            );
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match bounded::read_text(response, MAX_ANSWER_BYTES).await {
                        Ok(text) => interpret(action, status, &text),
                        // Far more than any page of any listing: not worth asking again.
                        Err(too_large @ bounded::ReadError::TooLarge { .. }) => {
                            Err(error("ResponseTooLarge", too_large.to_string()))
                        }
                        Err(cut) => Err(error("Network", cut.to_string())),
                    }
                }
                Err(err) => Err(error("Network", err.to_string())),
            };
            if let Err(err) = &outcome {
                self.credentials.answered(&err.code);
            }
            match outcome {
                Ok(value) => return Ok(value),
                Err(err) if retryable(&err.code) => {
                    tracing::warn!(action, code = %err.code, "API call failed, retrying");
                    if !retry.wait(Duration::from_millis(100)).await {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// One listing's request, for the paging helpers.
pub(crate) struct Listing<'a> {
    service: &'a str,
    version: &'a str,
    action: &'a str,
    body: &'a Value,
    list_key: &'a str,
    limit: usize,
}

/// A page's `TotalCount`/`Total` (a number, or a number as a string).
fn total_of(response: &Value) -> Option<u64> {
    ["TotalCount", "Total"].iter().find_map(|key| {
        let value = response.get(*key)?;
        value
            .as_u64()
            .or_else(|| value.as_str().and_then(|t| t.trim().parse().ok()))
    })
}

fn interpret(action: &str, status: u16, text: &str) -> Result<Value, ApiError> {
    let bad = |message: String| ApiError {
        action: action.to_string(),
        code: if status >= 500 || status == 429 {
            "InternalError".into()
        } else {
            "BadResponse".into()
        },
        message,
        request_id: String::new(),
    };
    let value: Value = serde_json::from_str(text).map_err(|_| {
        bad(format!(
            "HTTP {status}: not JSON: {}",
            text.chars().take(200).collect::<String>()
        ))
    })?;
    let response = value
        .get("Response")
        .cloned()
        .ok_or_else(|| bad(format!("HTTP {status}: no Response object")))?;
    if let Some(error) = response.get("Error") {
        return Err(ApiError {
            action: action.to_string(),
            code: error
                .get("Code")
                .and_then(Value::as_str)
                .unwrap_or("Unknown")
                .to_string(),
            message: error
                .get("Message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            request_id: response
                .get("RequestId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    if !(200..300).contains(&status) {
        return Err(bad(format!("HTTP {status}")));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_envelope_becomes_a_typed_error() {
        let err = interpret("SearchLog", 200, r#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"bad sig"},"RequestId":"r-1"}}"#).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.request_id.as_str()),
            ("AuthFailure.SignatureFailure", "r-1")
        );
        assert_eq!(
            err.to_string(),
            "SearchLog: AuthFailure.SignatureFailure: bad sig (request id r-1)"
        );
        assert!(retryable(
            &interpret(
                "X",
                200,
                r#"{"Response":{"Error":{"Code":"RequestLimitExceeded","Message":""}}}"#
            )
            .unwrap_err()
            .code
        ));
        assert!(retryable(&interpret("X", 502, "gateway").unwrap_err().code));
        assert!(interpret("X", 200, r#"{"Response":{"Results":[],"RequestId":"r"}}"#).is_ok());
    }
}
