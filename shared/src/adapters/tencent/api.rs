//! A Tencent Cloud API 3.0 client for JSON actions: TC3-signed POSTs to
//! `https://<service>.tencentcloudapi.com/` (or an override for tests), the `Response.Error`
//! envelope mapped to [`ApiError`], and retries on throttling, internal errors and network
//! errors while the deadline allows.

use std::collections::BTreeMap;
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
#[error("{action}: {code}: {message}{}", request_id_of(.request_id))]
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

/// ` (request id …)` when the API answered with one.
fn request_id_of(request_id: &str) -> String {
    if request_id.is_empty() {
        String::new()
    } else {
        format!(" (request id {request_id})")
    }
}

impl ApiError {
    /// A failure of `action` found before or without the API's answer (no request id).
    pub(crate) fn local(action: &str, code: &str, message: String) -> Self {
        Self {
            action: action.to_string(),
            code: code.to_string(),
            message,
            request_id: String::new(),
        }
    }
}

/// The client.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    region: String,
    endpoint: Option<String>,
    /// `https://<service>.<domain>` when no endpoint replaces it.
    domain: String,
    limits: std::sync::Arc<Vec<RateLimit>>,
    credentials: CredentialSource,
    timings: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Timing>>>,
}

/// How one action's calls went: what a run that ran out of time reports.
#[derive(Debug, Default, Clone, Copy)]
struct Timing {
    answers: u32,
    slowest: Duration,
    cut: u32,
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
    /// or from 0): which one is detected ([`OffsetReading`]) from the items' ids.
    OffsetOrPage {
        /// Items per page.
        limit: u32,
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

/// The API 3.0 domain of the China site (https://cloud.tencent.com/document/api/213/30654).
pub const DOMAIN: &str = "tencentcloudapi.com";

impl ApiClient {
    /// A client for `region`; `endpoint` (e.g. `http://127.0.0.1:9000`) replaces
    /// `https://<service>.tencentcloudapi.com` for every service.
    pub fn new(region: &str, endpoint: Option<String>) -> Self {
        Self {
            http: transport::client(),
            region: region.to_string(),
            endpoint,
            domain: DOMAIN.to_string(),
            limits: std::sync::Arc::new(Vec::new()),
            credentials: CredentialSource::environment(),
            timings: Default::default(),
        }
    }

    /// The slowest actions so far, slowest first (at most three): each with its answers, its
    /// slowest answer and the attempts cut short by their timeout or the deadline.
    pub fn slowest(&self) -> String {
        let timings = self.timings.lock().expect("not poisoned");
        let mut actions: Vec<(&String, &Timing)> = timings.iter().collect();
        actions.sort_by_key(|(_, t)| std::cmp::Reverse((t.cut, t.slowest)));
        actions
            .iter()
            .take(3)
            .map(|(action, t)| {
                let mut text = format!(
                    "{action}: {} answer{}, the slowest {:.1} s",
                    t.answers,
                    if t.answers == 1 { "" } else { "s" },
                    t.slowest.as_secs_f64()
                );
                if t.cut > 0 {
                    text.push_str(&format!(
                        ", {} attempt{} cut short without an answer",
                        t.cut,
                        if t.cut == 1 { "" } else { "s" }
                    ));
                }
                text
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn timed(&self, action: &str, took: Duration, answered: bool) {
        let mut timings = self.timings.lock().expect("not poisoned");
        let timing = timings.entry(action.to_string()).or_default();
        if answered {
            timing.answers += 1;
            timing.slowest = timing.slowest.max(took);
        } else {
            timing.cut += 1;
        }
    }

    /// Calls `https://<service>.<domain>`: `intl.tencentcloudapi.com` for an account of the
    /// international site. An empty domain keeps the default.
    pub fn with_domain(mut self, domain: &str) -> Self {
        let domain = domain.trim().trim_matches('.');
        if !domain.is_empty() {
            self.domain = domain.to_string();
        }
        self
    }

    /// Where `service`'s calls go.
    fn url(&self, service: &str) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{service}.{}", self.domain))
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

    /// Every item of a paged listing: calls page after page until its `TotalCount`/`Total`
    /// distinct items are held or a page comes back short, checking every answer ([`Tally`]): a
    /// listing that ends short of its Total, repeats items, changes its Total or answers no list
    /// fails with `IncompleteListing`, so a snapshot is never built from part of a listing. The
    /// pages' bytes are taken from `budget` (the total the run may hold). Returns each page's
    /// `Response` object, as JSON text.
    pub async fn pages(
        &self,
        listing: &Listing<'_>,
        budget: &PageBudget,
        deadline: Instant,
    ) -> Result<Vec<Page>, ApiError> {
        let mut tally = Tally::new(listing);
        let mut pages = Vec::new();
        let size = match listing.paging {
            Paging::OffsetOrPage { limit } => {
                return self
                    .pages_offset_or_page(listing, limit as usize, budget, deadline)
                    .await
            }
            Paging::PageNo { size } => size,
            Paging::Offset { limit, .. } => limit,
        } as usize;
        for page in 0..MAX_PAGES {
            let mut request = listing.body.clone();
            let object = request
                .as_object_mut()
                .expect("list requests are JSON objects");
            match listing.paging {
                Paging::PageNo { size } => {
                    object.insert("PageNo".into(), (page + 1).to_string().into());
                    object.insert("PageSize".into(), size.to_string().into());
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
                }
                Paging::OffsetOrPage { .. } => unreachable!("paged above"),
            }
            let response = self
                .call(
                    listing.service,
                    listing.version,
                    listing.action,
                    &request,
                    deadline,
                )
                .await?;
            let count = tally.count(&response, false)?;
            pages.push(budget.keep(listing.action, &response)?);
            if tally.done(count, size) {
                tally.finish()?;
                return Ok(pages);
            }
        }
        Err(tally.fail(format!("still paging after {MAX_PAGES} pages")))
    }

    /// Every item of a listing whose `Offset` may be a row offset or a page number. The first
    /// page is asked with `Offset` 0 (and, if that is refused or empty while items exist, with
    /// 1: pages from one); when it does not hold every item, `Offset` 1 tells the readings
    /// apart: a row offset answers from the first page's second item, pages from one answer
    /// the first page again, pages from zero answer items the first page does not hold. Paging
    /// then goes on by that reading until `Total` distinct items are held or a page comes back
    /// short. Returns the pages (the probe's overlap included: the importer keeps each item
    /// once); past the probe, the answers are checked as [`ApiClient::pages`] checks them.
    async fn pages_offset_or_page(
        &self,
        listing: &Listing<'_>,
        limit: usize,
        budget: &PageBudget,
        deadline: Instant,
    ) -> Result<Vec<Page>, ApiError> {
        let mut tally = Tally::new(listing);
        let mut reading = None;
        let first = match self.page_at(listing, 0, limit, deadline).await {
            Ok(page) if tally.ids(&page).is_empty() && total_of(&page).is_some_and(|t| t > 0) => {
                reading = Some(OffsetReading::PagesFromOne);
                self.page_at(listing, 1, limit, deadline).await?
            }
            Ok(page) => page,
            Err(err) if err.code.starts_with("InvalidParameter") => {
                reading = Some(OffsetReading::PagesFromOne);
                self.page_at(listing, 1, limit, deadline).await?
            }
            Err(err) => return Err(err),
        };
        let first_ids = tally.ids(&first);
        let count = tally.count(&first, false)?;
        let mut pages = vec![budget.keep(listing.action, &first)?];
        if tally.done(count, limit) {
            tally.finish()?;
            return Ok(pages);
        }
        let reading = match reading {
            Some(known) => known,
            None => {
                let probe = self.page_at(listing, 1, limit, deadline).await?;
                let probe_ids = tally.ids(&probe);
                let known = match probe_ids.first() {
                    Some(id) if first_ids.get(1) == Some(id) => OffsetReading::Rows,
                    Some(id) if first_ids.first() == Some(id) => OffsetReading::PagesFromOne,
                    Some(id) if !first_ids.contains(id) => OffsetReading::PagesFromZero,
                    _ => {
                        return Err(tally.fail(format!(
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
                // The probe overlaps the first page by design under two of the readings.
                let count = tally.count(&probe, true)?;
                pages.push(budget.keep(listing.action, &probe)?);
                if tally.done(count, limit) {
                    tally.finish()?;
                    return Ok(pages);
                }
                known
            }
        };
        // Offset 1 has been read under either reading's first or second page.
        let mut offset = reading.next(1, limit);
        for _ in 0..MAX_PAGES {
            let page = self.page_at(listing, offset, limit, deadline).await?;
            let count = tally.count(&page, false)?;
            pages.push(budget.keep(listing.action, &page)?);
            if tally.done(count, limit) {
                tally.finish()?;
                return Ok(pages);
            }
            offset = reading.next(offset, limit);
        }
        Err(tally.fail(format!("still paging after {MAX_PAGES} pages")))
    }

    async fn page_at(
        &self,
        listing: &Listing<'_>,
        offset: usize,
        limit: usize,
        deadline: Instant,
    ) -> Result<Value, ApiError> {
        let mut request = listing.body.clone();
        let object = request
            .as_object_mut()
            .expect("list requests are JSON objects");
        object.insert("Offset".into(), offset.into());
        object.insert("Limit".into(), limit.into());
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
        let error = |code: &str, message: String| ApiError::local(action, code, message);
        let url = self.url(service);
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
            let started = Instant::now();
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match bounded::read_text(response, MAX_ANSWER_BYTES).await {
                        Ok(text) => {
                            self.timed(action, started.elapsed(), true);
                            interpret(action, status, &text)
                        }
                        // Far more than any page of any listing: not worth asking again.
                        Err(too_large @ bounded::ReadError::TooLarge { .. }) => {
                            Err(error("ResponseTooLarge", too_large.to_string()))
                        }
                        Err(cut) => Err(error("Network", cut.to_string())),
                    }
                }
                Err(err) => {
                    if err.is_timeout() {
                        self.timed(action, started.elapsed(), false);
                    }
                    Err(error("Network", err.to_string()))
                }
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

/// One paged listing: the request, how it pages, and how its answers are read.
#[derive(Debug, Clone, Copy)]
pub struct Listing<'a> {
    /// The service (`cfw`, `vpc`, `cvm`).
    pub service: &'a str,
    /// Its API version.
    pub version: &'a str,
    /// The action.
    pub action: &'a str,
    /// The request's own members (paging members are added).
    pub body: &'a Value,
    /// How it pages.
    pub paging: Paging,
    /// The member holding the list (`Rules`, `VpcSet`, ...).
    pub list_key: &'a str,
    /// The member that identifies an item (`Id`, `VpcId`, ...): items are counted by it.
    pub id_key: &'a str,
}

/// The error code of a listing that answered part of itself ([`ApiClient::pages`]).
pub const INCOMPLETE: &str = "IncompleteListing";

/// What a listing has answered so far: its distinct items and its Total, checked answer by
/// answer.
struct Tally<'a> {
    listing: &'a Listing<'a>,
    seen: std::collections::HashSet<String>,
    total: Option<u64>,
    pages: usize,
}

impl<'a> Tally<'a> {
    fn new(listing: &'a Listing<'a>) -> Self {
        Self {
            listing,
            seen: std::collections::HashSet::new(),
            total: None,
            pages: 0,
        }
    }

    /// An `IncompleteListing` error about this listing.
    fn fail(&self, what: String) -> ApiError {
        ApiError::local(self.listing.action, INCOMPLETE, what)
    }

    /// The ids of an answer's items (an item without the id member counts as its whole text).
    fn ids(&self, response: &Value) -> Vec<String> {
        let Some(Value::Array(items)) = response.get(self.listing.list_key) else {
            return Vec::new();
        };
        items
            .iter()
            .map(|item| match item.get(self.listing.id_key) {
                Some(Value::String(id)) => id.clone(),
                Some(Value::Null) | None => item.to_string(),
                Some(other) => other.to_string(),
            })
            .collect()
    }

    /// Counts one answer's items, returning how many it held. Fails when it holds no list (a
    /// missing or `null` list is read as empty only when the answer's Total is 0), when its
    /// Total differs from the first answer's, or when it repeats items already held (unless
    /// `overlap` is expected).
    fn count(&mut self, response: &Value, overlap: bool) -> Result<usize, ApiError> {
        self.pages += 1;
        let page = self.pages;
        let total = total_of(response);
        if page == 1 {
            self.total = total;
        } else if let (Some(before), Some(now)) = (self.total, total) {
            if before != now {
                return Err(self.fail(format!(
                    "its Total changed from {before} to {now} at page {page}: the listing changed \
                     while it was read"
                )));
            }
        }
        match response.get(self.listing.list_key) {
            Some(Value::Array(_)) => {}
            None | Some(Value::Null) if total == Some(0) => return Ok(0),
            other => {
                return Err(self.fail(format!(
                    "page {page} answered {} for {}, which its definition says is a list{}",
                    match other {
                        None => "nothing".to_string(),
                        Some(value) => bounded_text(value),
                    },
                    self.listing.list_key,
                    total.map(|t| format!(" (Total {t})")).unwrap_or_default()
                )))
            }
        }
        let ids = self.ids(response);
        let count = ids.len();
        let mut repeated = 0;
        let mut example = None;
        for id in ids {
            if let Some(id) = self.seen.replace(id) {
                repeated += 1;
                example.get_or_insert(id);
            }
        }
        if repeated > 0 && !overlap {
            return Err(self.fail(format!(
                "page {page} repeats {repeated} of its {count} items already listed ({} {}): \
                 the listing is not paging",
                self.listing.id_key,
                example.unwrap_or_default()
            )));
        }
        Ok(count)
    }

    /// Whether the listing has ended: its Total held, or a page of `count` short of `size`.
    fn done(&self, count: usize, size: usize) -> bool {
        count < size || self.total.is_some_and(|t| self.seen.len() as u64 >= t)
    }

    /// Fails when the listing ended short of its Total.
    fn finish(&self) -> Result<(), ApiError> {
        match self.total {
            Some(total) if (self.seen.len() as u64) < total => Err(self.fail(format!(
                "it ended after {} pages with {} distinct items of its Total {total} ({} short)",
                self.pages,
                self.seen.len(),
                total - self.seen.len() as u64
            ))),
            _ => Ok(()),
        }
    }
}

/// A value as at most 100 characters of JSON, for an error message.
fn bounded_text(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The bytes the pages of a run's listings may hold together (each page is bounded by
/// [`MAX_ANSWER_BYTES`] on its own): past it, the listing fails with `PagesTooLarge`, naming the
/// limit, instead of the function being killed for its memory.
#[derive(Debug)]
pub struct PageBudget {
    limit: usize,
    held: std::sync::atomic::AtomicUsize,
}

impl PageBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            held: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Bytes held so far.
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `page` as kept, its bytes taken from the budget.
    fn keep(&self, action: &str, page: &Value) -> Result<Page, ApiError> {
        let kept = keep(page);
        let bytes = kept.get().len();
        let held = self
            .held
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed)
            + bytes;
        if held > self.limit {
            return Err(ApiError::local(
                action,
                "PagesTooLarge",
                format!(
                    "the listings' answers exceed {} held at once, the limit for the function's \
                     memory: give the sync function more memory (template.yaml MemorySize)",
                    crate::core::text::mib(self.limit)
                ),
            ));
        }
        Ok(kept)
    }
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
    let bad = |message: String| {
        let code = if status >= 500 || status == 429 {
            "InternalError"
        } else {
            "BadResponse"
        };
        ApiError::local(action, code, message)
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

    /// The international site's accounts call `*.intl.tencentcloudapi.com` (issue #36); an
    /// endpoint replaces every service's.
    #[test]
    fn calls_go_to_the_sites_domain() {
        let china = ApiClient::new("ap-guangzhou", None);
        assert_eq!(china.url("cfw"), "https://cfw.tencentcloudapi.com");
        let intl = china.clone().with_domain("intl.tencentcloudapi.com");
        assert_eq!(intl.url("vpc"), "https://vpc.intl.tencentcloudapi.com");
        assert_eq!(
            intl.in_region("ap-singapore").url("cls"),
            "https://cls.intl.tencentcloudapi.com"
        );
        assert_eq!(
            china.clone().with_domain(" ").url("cfw"),
            "https://cfw.tencentcloudapi.com"
        );
        let stub = ApiClient::new("ap-guangzhou", Some("http://127.0.0.1:9".into()));
        assert_eq!(
            stub.with_domain("intl.tencentcloudapi.com").url("cfw"),
            "http://127.0.0.1:9"
        );
    }

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
