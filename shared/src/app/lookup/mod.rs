//! The lookup function's HTTP API for the three jobs: search the ESG flow log, explain a flow
//! or a record, read traffic views, rules and VPCs, and switch a VPC's monitoring.
//!
//! [`Lookup`] holds what the answers are made from (the snapshot cache, the records store, the
//! settings); each resource is a module that owns its routes, its parameters and the answers it
//! makes — `hits` (the flow log, its export, one record), `traffic`, `rules` (and top rules),
//! `vpcs` (and the monitoring switches), `explain`, `snapshot` and `health` (the page and
//! `/v1/healthz`); [`router`] is the axum application that routes requests to them,
//! with authentication, the body cap, JSON errors and the security headers as tower layers;
//! [`scf`] turns an API Gateway / Function URL event into an `http::Request` for that router and
//! its answer back into an integration response. The same router serves SCF, `esgflow serve`
//! (through the runtime emulator) and the tests (`tower::ServiceExt::oneshot`).
//!
//! Errors are JSON `{"error": {"code", "message", "request_id"}}` with 400 (naming the bad
//! field), 401, 403, 404, 405, 410, 413, 502, 503 (no snapshot) or 500 (request id only, no
//! internals).

pub mod api;
mod explain;
mod health;
mod hits;
mod request;
pub mod router;
mod rules;
pub use rules::RULES_HYGIENE_BYTES;
pub mod scf;
mod snapshot;
mod traffic;
mod vpcs;
pub mod whatif;

pub use explain::*;
pub use health::*;
pub use hits::*;
pub use rules::*;
pub use snapshot::*;
pub use traffic::*;
pub use vpcs::*;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

use axum::http::header;
use axum::response::Response;
use serde_json::json;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use crate::adapters::tencent::cls_query::{hits_query, traffic_search};
use crate::app::snapshot_cache::SnapshotCache;
use crate::app::views::{ExplainView, RuleView};
use crate::core::classify::Monitored;
use crate::core::engine::{Detail, Engine, FlowKey, Scope};
use crate::core::ports::{RecordsStore, StoreFailure};
use crate::core::records::Peer;
use crate::core::search::{
    is_search_id, series_step, AddressMatch, HitFilter, TrafficFilter, HIT_TYPES,
    MAX_SERIES_POINTS, MAX_TALKERS,
};
pub use request::{ErrorBody, ErrorDetail, Invocation, Params};
pub(crate) use request::{NoParameters, Query};
pub use router::router;
pub use scf::App;
use strum::VariantArray;

/// How requests are authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`, compared in constant time.
    Bearer(String),
    /// The deployment declared API Gateway authentication in front of the function.
    ApiGateway,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::ApiGateway => f.write_str("ApiGateway"),
        }
    }
}

/// The lookup function's state across a warm instance. Cloning shares it: the router holds
/// one clone per request.
#[derive(Clone)]
pub struct Lookup(Arc<Shared>);

/// What a [`Lookup`] and its clones share.
pub struct Shared {
    auth: Auth,
    max_body_bytes: usize,
    snapshots: Mutex<SnapshotCache>,
    store: Option<std::sync::Arc<dyn RecordsStore>>,
    export_budget: usize,
    export_page: u32,
    monitored: Monitored,
    admin_token: Option<String>,
    snapshot_ttl: std::time::Duration,
    hygiene: std::sync::Mutex<Option<Arc<rules::HygieneRun>>>,
}

impl std::ops::Deref for Lookup {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// An error answer: rendered as the JSON error body by the router's error layer.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    status: u16,
    code: &'static str,
    message: String,
}

pub(crate) use crate::core::text::shown;

fn fail(status: u16, code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        status,
        code,
        message: message.into(),
    }
}

impl Lookup {
    /// A lookup over the snapshot cache, with the given authentication and body cap.
    pub fn new(auth: Auth, max_body_bytes: usize, snapshots: SnapshotCache) -> Self {
        Self(Arc::new(Shared {
            auth,
            max_body_bytes,
            snapshots: Mutex::new(snapshots),
            store: None,
            export_budget: MAX_ANSWER_BYTES,
            export_page: EXPORT_PAGE,
            monitored: Monitored::All,
            admin_token: None,
            snapshot_ttl: std::time::Duration::from_secs(300),
            hygiene: std::sync::Mutex::new(None),
        }))
    }

    /// The settings, while no router holds this lookup yet (the builders run before serving).
    fn configure(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.0).expect("a lookup is configured before it serves")
    }

    /// The axum application over this lookup, ready for SCF events ([`App::handle`]). Build it
    /// once per instance: it shares this lookup, which can no longer be configured.
    pub fn app(&self) -> App {
        App::new(self.clone())
    }

    /// The monitored VPC list (`ESGFLOW_MONITORED_VPCS`), the admin token that may change the
    /// monitoring switches (none: they cannot be changed here), and the snapshot TTL the audit
    /// function re-reads them after.
    pub fn with_monitoring(
        mut self,
        monitored: Monitored,
        admin_token: Option<String>,
        snapshot_ttl: std::time::Duration,
    ) -> Self {
        let shared = self.configure();
        shared.monitored = monitored;
        shared.admin_token = admin_token;
        shared.snapshot_ttl = snapshot_ttl;
        self
    }

    /// Loads the snapshot ahead of the first request (cold start), so that the first request
    /// is as fast as the rest. A failure is logged; requests try again and answer 503 until it
    /// loads.
    pub async fn warm_up(&self) {
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        if let Err(failure) = self.engine(deadline).await {
            tracing::error!(error = %failure.message, "rule snapshot not loaded at start-up");
        }
    }

    /// Searches records (`/v1/hits`, hit counts, top rules) in `store`.
    pub fn with_store(mut self, store: std::sync::Arc<dyn RecordsStore>) -> Self {
        self.configure().store = Some(store);
        self
    }

    /// Where records are searched, or 503 when no store is configured.
    fn store(&self) -> Result<&dyn RecordsStore, Failure> {
        self.store
            .as_deref()
            .ok_or_else(|| fail(503, "hits_unavailable", NO_STORE))
    }

    /// Whether `authorization` (the header's value) carries the lookup token; always when API
    /// Gateway authenticates in front of the function.
    pub(crate) fn admits(&self, authorization: Option<&str>) -> bool {
        let Auth::Bearer(token) = &self.auth else {
            return true;
        };
        let presented = authorization.and_then(bearer_token).unwrap_or("");
        !token.is_empty() && bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
    }

    /// Whether `authorization` may change a monitoring switch: `Err` says why not (403: no
    /// admin token here, 401: not the admin token).
    pub(crate) fn admits_admin(&self, authorization: Option<&str>) -> Result<(), Failure> {
        let Some(admin) = &self.admin_token else {
            return Err(fail(
                403,
                "switches_read_only",
                "monitoring switches cannot be changed here: this lookup has no admin token",
            ));
        };
        let presented = authorization.and_then(bearer_token).unwrap_or("");
        if bool::from(presented.as_bytes().ct_eq(admin.as_bytes())) {
            Ok(())
        } else {
            Err(fail(
                401,
                "unauthorized",
                "changing a monitoring switch needs the admin bearer token",
            ))
        }
    }

    pub(crate) async fn engine(
        &self,
        deadline: Instant,
    ) -> Result<std::sync::Arc<Engine>, Failure> {
        let load_by = crate::app::snapshot_cache::load_by(deadline);
        self.snapshots
            .lock()
            .await
            .engine_by(Instant::now(), load_by)
            .await
            .map_err(|err| fail(503, "snapshot_unavailable", err.to_string()))
    }
}

/// The latest time a search may name, Unix seconds: 9999-12-31T23:59:59Z (times from 1970 to
/// then are accepted, so no arithmetic on them can overflow).
pub(crate) const MAX_TIME_SECONDS: i64 = 253_402_300_799;

/// An id parameter (`name`, as given), checked with [`is_search_id`]; `what` names the kind.
fn search_id(name: &str, given: Option<&str>, what: &str) -> Result<Option<String>, Failure> {
    match given.map(str::trim) {
        Some(text) if is_search_id(text) => Ok(Some(text.to_string())),
        Some(text) => Err(field_error(
            name,
            format!("{} is not {what} (letters, digits, - and _)", shown(text)),
        )),
        None => Ok(None),
    }
}

/// A search window from `since` and `until` as given: until defaults to `now`, since to an hour
/// before until; since must come first, and the span be at most 30 days.
fn window(since: Option<&str>, until: Option<&str>, now: i64) -> Result<(i64, i64), Failure> {
    let until = until
        .map(|t| parse_time("until", t))
        .transpose()?
        .unwrap_or(now);
    let since = since
        .map(|t| parse_time("since", t))
        .transpose()?
        .unwrap_or(until - 3600);
    if since >= until {
        return Err(field_error("since", "must be before until"));
    }
    if until - since > MAX_HITS_SPAN_SECONDS {
        return Err(field_error("since", "the span may be at most 30 days"));
    }
    Ok((since, until))
}

/// A whole-number parameter `name` as given, within `range`, or `default` when not given.
fn whole_number(
    name: &str,
    given: Option<&str>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, Failure> {
    let Some(text) = given.map(str::trim) else {
        return Ok(default);
    };
    text.parse::<i64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            field_error(
                name,
                format!(
                    "{} is not a whole number from {} to {}",
                    shown(text),
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// The window of `since` and `until` when `since` is given (as [`window`] reads them), else the
/// `span` seconds before `until` (default `now`). `last` is the parameter that gives the span:
/// its name, whether it was given (refused beside `since`), and the span.
fn window_or_last(
    since: Option<&str>,
    until: Option<&str>,
    last: (&str, bool, i64),
    now: i64,
) -> Result<(i64, i64), Failure> {
    let (name, given, span) = last;
    match since {
        Some(_) if given => Err(field_error(name, format!("give since or {name}, not both"))),
        Some(_) => window(since, until, now),
        None => {
            let until = until
                .map(|t| parse_time("until", t))
                .transpose()?
                .unwrap_or(now);
            Ok((until - span, until))
        }
    }
}

fn parse_time(field: &str, text: &str) -> Result<i64, Failure> {
    let seconds = match text.trim().parse::<i64>() {
        Ok(seconds) => seconds,
        Err(_) => chrono::DateTime::parse_from_rfc3339(text.trim())
            .map(|t| t.timestamp())
            .map_err(|_| {
                field_error(
                    field,
                    format!("{} is neither Unix seconds nor RFC 3339", shown(text)),
                )
            })?,
    };
    if (0..=MAX_TIME_SECONDS).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(field_error(
            field,
            format!("{} is outside 1970-01-01 to 9999-12-31", shown(text)),
        ))
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive
/// (RFC 9110 §11.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(char::is_whitespace)?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Headers on every answer: nothing may frame the page or sniff a type, no referrer leaves it,
/// and the page may run only its own script and style (by hash) and talk only to its origin.
fn security_headers(html: bool) -> &'static [(&'static str, String)] {
    static HTML: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    static DATA: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    let common = |policy: String| {
        vec![
            ("Content-Security-Policy", policy),
            ("Referrer-Policy", "no-referrer".to_string()),
            ("X-Content-Type-Options", "nosniff".to_string()),
            ("X-Frame-Options", "DENY".to_string()),
        ]
    };
    if html {
        HTML.get_or_init(|| {
            common(format!(
                "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                inline_hash(PAGE, "script"),
                inline_hash(PAGE, "style")
            ))
        })
    } else {
        DATA.get_or_init(|| common("default-src 'none'; frame-ancestors 'none'".to_string()))
    }
}

/// The CSP source of the page's one inline `<tag>` element: `'sha256-<base64>'` of its text.
fn inline_hash(page: &str, tag: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest;
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = page.find(&open).map(|i| i + open.len()).unwrap_or(0);
    let end = page[start..].find(&close).map_or(start, |i| start + i);
    let digest = sha2::Sha256::digest(&page.as_bytes()[start..end]);
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn field_error(field: &str, message: impl std::fmt::Display) -> Failure {
    fail(400, "invalid_field", format!("{field}: {message}"))
}

/// The longest answer body: SCF returns at most 6 MB from a synchronous invocation ("Quota
/// Limits", <https://www.tencentcloud.com/document/product/583/11637>), and the body travels
/// inside the integration response as a JSON string, so it is counted escaped, with room left
/// for the envelope and headers.
pub(crate) const MAX_ANSWER_BYTES: usize = 6_000_000 - 64 * 1024;

/// What `text` weighs inside the integration response, a JSON string: `"`, `\`, and the
/// control characters JSON writes in two bytes (`\n`, `\r`, `\t`, `\b`, `\f`) gain a byte;
/// any other control character becomes six (`\u0001`) — a CSV export carries them raw.
fn escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// A failed CLS search: logged with its details, answered 502 with the CLS error code only.
/// The answer to a failed search: 410 `cursor_expired` (saying `expired`) when the store no
/// longer keeps the search a cursor continues, else 502 naming the store's error code.
fn search_failed(failure: StoreFailure, expired: &str) -> Failure {
    match failure {
        StoreFailure::CursorExpired => fail(410, "cursor_expired", expired),
        StoreFailure::Failed { code, message } => {
            tracing::error!(%code, error = %message, "records search failed");
            fail(
                502,
                "search_failed",
                format!("the records search failed: {code}"),
            )
        }
    }
}

/// Why records cannot be searched when no store is configured.
const NO_STORE: &str = "no records store is configured for this lookup: deploy it with a hits topic, or run it locally with `esgflow serve --store <database>` after `esgflow replay --store <database>`";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::snapshot::fixtures;
    use crate::events::ApiGatewayRequest;
    use serde_json::Value;

    fn lookup() -> (Lookup, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "esgflow-lookup-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snapshot.json");
        fixtures::sample(0).save(&path).unwrap();
        (
            Lookup::new(
                Auth::Bearer("t0ken".into()),
                4096,
                SnapshotCache::new(&path, std::time::Duration::from_secs(60)),
            ),
            dir,
        )
    }

    /// `lookup` over a local records store (`dir`/records.db) holding `lines`.
    #[cfg(feature = "local-store")]
    fn with_records(lookup: Lookup, dir: &std::path::Path, lines: &str) -> Lookup {
        let db = dir.join("records.db");
        crate::adapters::sqlite::LocalRecords::create(&db)
            .unwrap()
            .import(lines.as_bytes())
            .unwrap();
        lookup.with_store(std::sync::Arc::new(
            crate::adapters::sqlite::LocalRecords::open(&db).unwrap(),
        ))
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    fn request(
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> ApiGatewayRequest {
        let mut headers = serde_json::Map::new();
        if let Some(token) = token {
            headers.insert("Authorization".into(), json!(format!("Bearer {token}")));
        }
        serde_json::from_value(
            json!({"httpMethod": method, "path": path, "headers": headers, "body": body}),
        )
        .unwrap()
    }

    /// [`call`] with the query parameters `query` and the lookup token.
    fn call_query(
        lookup: &Lookup,
        method: &str,
        path: &str,
        query: &Value,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut request = request(method, path, Some("t0ken"), body);
        request.query_string = serde_json::from_value(query.clone()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let response = runtime.block_on(lookup.app().handle(
            &request,
            "r",
            Instant::now() + std::time::Duration::from_secs(5),
        ));
        (
            response.status_code,
            serde_json::from_str(&response.body).unwrap(),
        )
    }

    fn call(
        lookup: &Lookup,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let response = runtime.block_on(lookup.app().handle(
            &request(method, path, token, body),
            "req-1",
            deadline,
        ));
        (
            response.status_code,
            serde_json::from_str(&response.body).unwrap(),
        )
    }

    /// The parameters of a query, as an SCF event delivers them.
    /// The query parameters of a request, as the route's typed struct `T` reads them.
    fn typed<T: super::request::QueryParams>(query: &[(&str, &str)]) -> T {
        let query: serde_json::Map<String, Value> = query
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let event: ApiGatewayRequest = serde_json::from_value(
            json!({"httpMethod": "GET", "path": "/v1/hits", "queryString": query}),
        )
        .unwrap();
        let params = Params {
            query_string: event.query_string,
        };
        T::read(&params.values()).unwrap()
    }

    /// A `/v1/hits` request's parameters.
    fn hits_request(query: &[(&str, &str)]) -> (SearchParams, PageParams) {
        typed(query)
    }

    #[test]
    fn switches_need_the_admin_token_and_show_at_once() {
        let (lookup, dir) = lookup();
        let put = |lookup: &Lookup, token: &str, vpc: &str, body: &str| {
            call(
                lookup,
                "PUT",
                &format!("/v1/vpcs/{vpc}/monitoring"),
                Some(token),
                Some(body),
            )
        };
        let off = r#"{"monitored": false}"#;
        // Without an admin token the switches are read-only.
        let (status, body) = put(&lookup, "t0ken", "vpc-prod0001", off);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("switches_read_only"))
        );
        let lookup = lookup.with_monitoring(
            Monitored::All,
            Some("admin-token-0123456789".into()),
            std::time::Duration::from_secs(60),
        );
        let admin = "admin-token-0123456789";
        let (status, _) = put(&lookup, "t0ken", "vpc-prod0001", off);
        assert_eq!(status, 401, "the lookup token cannot change a switch");
        let (status, body) = put(&lookup, admin, "vpc-nope", off);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("unknown_vpc"))
        );
        for body in [r#"{"on": 1}"#, r#"{"monitored": true, "monitored": false}"#] {
            let (status, body) = put(&lookup, admin, "vpc-prod0001", body);
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (400, Some("invalid_body")),
                "{body}"
            );
        }
        // Who changes it is a name the caller gives (the admin token is shared): plain text only.
        let (status, body) = put(
            &lookup,
            admin,
            "vpc-prod0001",
            r#"{"monitored": false, "by": "<script>"}"#,
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_field")),
            "{body}"
        );
        let before = chrono::Utc::now().timestamp();
        let (status, body) = put(
            &lookup,
            admin,
            "vpc-prod0001",
            r#"{"monitored": false, "by": "Li Wei (ops)"}"#,
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["vpc"]["monitored"], false);
        assert_eq!(body["takes_effect_within_seconds"], 60);
        assert_eq!(body["vpc"]["changed_by"], "Li Wei (ops)", "{body}");
        assert!(body["vpc"]["changed_at"].as_i64() >= Some(before), "{body}");
        let (_, body) = put(&lookup, admin, "vpc-prod0001", off);
        assert!(
            body["vpc"]["changed_by"].is_null(),
            "a change without a name names nobody: {body}"
        );
        assert!(body["vpc"]["changed_at"].as_i64() >= Some(before), "{body}");
        assert!(dir.join("snapshot.monitoring.json").is_file());
        let (status, vpcs) = call(&lookup, "GET", "/v1/vpcs", Some("t0ken"), None);
        assert_eq!(status, 200, "{vpcs}");
        let state = |vpcs: &Value, id: &str| {
            vpcs["vpcs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["id"] == id)
                .cloned()
                .unwrap()
        };
        let prod = state(&vpcs, "vpc-prod0001");
        assert_eq!(
            (&prod["monitored"], &prod["switch"], &prod["listed"]),
            (&json!(false), &json!(false), &json!(true))
        );
        assert_eq!(state(&vpcs, "vpc-dev00001")["monitored"], true);
        // Null drops the switch: back to the list.
        let (status, body) = put(&lookup, admin, "vpc-prod0001", r#"{"monitored": null}"#);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (&body["vpc"]["monitored"], &body["vpc"]["switch"]),
            (&json!(true), &Value::Null)
        );
        let (status, _) = call(
            &lookup,
            "GET",
            "/v1/vpcs/vpc-prod0001/monitoring",
            Some(admin),
            None,
        );
        assert_eq!(status, 405);
        std::fs::remove_dir_all(dir).ok();
    }

    /// The rules page: every rule in order with its counters, unused flag and hygiene, paged,
    /// with the recent rule changes.
    /// `POST /v1/whatif` over the local store: turning 7008 (app → db 3306, accept) into a drop
    /// blocks the app host's conversation and leaves the web one; a bad edit is refused by its
    /// position, before anything is searched.
    #[cfg(feature = "local-store")]
    #[test]
    fn what_if_reports_the_conversations_a_change_would_block() {
        let (lookup, dir) = lookup();
        let now = chrono::Utc::now().timestamp();
        let traffic = |id: &str, src: &str, dst: &str, port: u16, bytes: u64| {
            json!({"record_type": "traffic", "record_id": id, "time": now - 60, "scope": "inter_subnet",
                   "src_ip": src, "dst_ip": dst, "dst_port": port, "protocol": 6, "protocol_name": "TCP",
                   "fl_action": "ACCEPT", "flows": 2, "packets": 10, "bytes": bytes, "last_seen": now - 60,
                   "src_vpc": "vpc-prod0001", "dst_vpc": "vpc-prod0001"})
        };
        let lines = [
            traffic("t1", "10.0.2.11", "10.0.3.10", 3306, 5000),
            traffic("t2", "10.0.1.11", "10.0.2.11", 8080, 9000),
        ]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>();
        let lookup = with_records(lookup, &dir, &lines);
        let window = json!({"since": (now - 3600).to_string(), "until": now.to_string()});
        let ask = |body: &str| call_query(&lookup, "POST", "/v1/whatif", &window, Some(body));
        let (status, answer) =
            ask(r#"{"edits": [{"op": "set", "rule": "7008", "action": "drop"}]}"#);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            (answer["judged"].as_u64(), answer["unchanged"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(answer["complete"], true);
        assert_eq!(answer["classes"][0]["outcome"], "newly_blocked", "{answer}");
        assert_eq!(answer["classes"][0]["bytes"], 5000);
        let changed = &answer["changed"][0];
        assert_eq!(
            (changed["src_ip"].as_str(), changed["dst_port"].as_u64()),
            (Some("10.0.2.11"), Some(3306))
        );
        assert_eq!(changed["before"]["rule"], "7008");
        assert_eq!(changed["after"]["decision"], "block");
        assert_ne!(answer["proposed_version"], answer["snapshot_version"]);
        // No edits: the current rules, nothing changes.
        let (status, same) = ask(r#"{"edits": []}"#);
        assert_eq!((status, same["changed_total"].as_u64()), (200, Some(0)));
        let (status, refused) = ask(r#"{"edits": [{"op": "move", "rule": "nope", "to": 1}]}"#);
        assert_eq!(status, 400, "{refused}");
        assert!(
            refused["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("edits[0]: no rule"),
            "{refused}"
        );
        let (status, refused) = ask(r#"{"edits": [{"op": "rename", "rule": "7008"}]}"#);
        assert_eq!(status, 400, "{refused}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[cfg(feature = "local-store")]
    #[test]
    fn rules_are_listed_with_hits_hygiene_and_changes() {
        let (lookup, dir) = lookup();
        let now = chrono::Utc::now().timestamp();
        let lines = [
            json!({"record_type": "rule_hits", "record_id": "h1", "time": now - 60, "rule_uuid": "7010",
                   "hits": 3, "block_hits": 3, "observe_hits": 0, "first_hit": now - 100, "last_hit": now - 60}),
            json!({"record_type": "rule_hits", "record_id": "h2", "time": now - 30, "rule_uuid": "7010",
                   "hits": 2, "block_hits": 2, "observe_hits": 0, "first_hit": now - 50, "last_hit": now - 30}),
            json!({"record_type": "rule_change", "record_id": "c1", "time": now - 10, "change": "added",
                   "rule_uuid": "7010"}),
        ]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>();
        let lookup = with_records(lookup, &dir, &lines);
        let (status, page) = call(&lookup, "GET", "/v1/rules", Some("t0ken"), None);
        assert_eq!(status, 200, "{page}");
        let rules = page["rules"].as_array().unwrap();
        let total = page["total"].as_u64().unwrap() as usize;
        assert_eq!(rules.len(), total.min(500));
        assert_eq!(
            page["hygiene_analysed"], total,
            "a small set is analysed whole"
        );
        let rule = rules.iter().find(|r| r["uuid"] == "7010").unwrap();
        assert_eq!(rule["hits"]["hits"], 5, "{rule}");
        assert_eq!(rule["hits"]["first_hit"], now - 100);
        assert_eq!(rule["unused"], false);
        assert!(rules
            .iter()
            .any(|r| r["unused"] == true && r["enabled"] == true));
        assert_eq!(page["changes"][0]["record_id"], "c1", "{page}");
        // In evaluation order; a page continues at next_offset.
        let positions: Vec<u64> = rules
            .iter()
            .map(|r| r["position"].as_u64().unwrap())
            .collect();
        assert_eq!(positions, (0..rules.len() as u64).collect::<Vec<_>>());
        let (_, second) = call_query(
            &lookup,
            "GET",
            "/v1/rules",
            &json!({"offset": "2", "limit": "3"}),
            None,
        );
        assert_eq!(second["rules"][0]["uuid"], rules[2]["uuid"]);
        assert_eq!(second["rules"].as_array().unwrap().len(), 3);
        assert_eq!(second["next_offset"], 5);
        std::fs::remove_dir_all(dir).ok();
    }

    /// The rules page counts hits over the window it is asked for (not the last days from now),
    /// and filters, sorts and pages the rules before it answers.
    #[cfg(feature = "local-store")]
    #[test]
    fn rules_count_hits_over_the_asked_window_and_filter_sort_and_page() {
        let (lookup, dir) = lookup();
        // Hits three days ago and an hour ago: a window around the older one sees only it.
        let now = chrono::Utc::now().timestamp();
        let old = now - 3 * 86_400;
        let hits = |id: &str, time: i64, rule: &str, n: u64| {
            json!({"record_type": "rule_hits", "record_id": id, "time": time, "rule_uuid": rule,
                   "hits": n, "block_hits": n, "observe_hits": 0, "first_hit": time - 10, "last_hit": time})
        };
        let lines = [
            hits("h1", old, "7010", 4),
            hits("h2", now - 3600, "7010", 1),
            hits("h3", old, "7012", 9),
        ]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>();
        let lookup = with_records(lookup, &dir, &lines);
        let window = |extra: Value| {
            let mut query =
                json!({"since": (old - 600).to_string(), "until": (old + 600).to_string()});
            query
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            call_query(&lookup, "GET", "/v1/rules", &query, None)
        };
        let (status, page) = window(json!({}));
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            (page["since"].as_i64(), page["until"].as_i64()),
            (Some(old - 600), Some(old + 600))
        );
        let find = |page: &Value, uuid: &str| {
            page["rules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["uuid"] == uuid)
                .cloned()
        };
        assert_eq!(find(&page, "7010").unwrap()["hits"]["hits"], 4, "{page}");
        assert_eq!(find(&page, "7012").unwrap()["hits"]["last_hit"], old);
        // Sorted by hits: the most first, then the rest in evaluation order.
        let (_, by_hits) = window(json!({"sort": "hits"}));
        let uuids: Vec<&str> = by_hits["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["uuid"].as_str().unwrap())
            .collect();
        assert_eq!(&uuids[..2], ["7012", "7010"], "{by_hits}");
        // Filters: action, used, and a text search; matched counts what the filters keep.
        let (_, drops) = window(json!({"action": "drop"}));
        let rules = drops["rules"].as_array().unwrap();
        assert!(
            !rules.is_empty() && rules.iter().all(|r| r["action"] == "drop"),
            "{drops}"
        );
        assert_eq!(drops["matched"].as_u64(), Some(rules.len() as u64));
        assert!(drops["matched"].as_u64() < drops["total"].as_u64());
        let (_, used) = window(json!({"only": "hit"}));
        let used: Vec<&str> = used["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["uuid"].as_str().unwrap())
            .collect();
        assert_eq!(used, ["7010", "7012"]);
        let (_, unused) = window(json!({"only": "unused"}));
        assert!(
            unused["rules"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["unused"] == true),
            "{unused}"
        );
        let (_, found) = window(json!({"q": "7012"}));
        assert_eq!(found["matched"], 1, "{found}");
        // Paging continues within what the filters keep.
        let (_, first) = window(json!({"sort": "hits", "limit": "1"}));
        assert_eq!(
            (
                first["rules"][0]["uuid"].as_str(),
                first["next_offset"].as_u64()
            ),
            (Some("7012"), Some(1))
        );
        let (_, second) = window(json!({"sort": "hits", "limit": "1", "offset": "1"}));
        assert_eq!(second["rules"][0]["uuid"], "7010");
        // A bad value is named.
        let (status, bad) = window(json!({"sort": "size"}));
        assert_eq!(
            (status, bad["error"]["code"].as_str()),
            (400, Some("invalid_field")),
            "{bad}"
        );
        assert!(
            bad["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("sort:"),
            "{bad}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    /// An empty first page says when the same search finds its newest record at any time, so
    /// the page can offer to go there (a sample a year old, a range on the wrong day).
    #[cfg(feature = "local-store")]
    #[test]
    fn an_empty_search_says_where_its_records_are() {
        let (lookup, dir) = lookup();
        let then = 1_764_000_000; // 2025-11-24
        let record = |id: &str, time: i64, src: &str| {
            json!({"record_type": "block_hit", "record_id": id, "time": time, "src_ip": src,
                   "dst_ip": "10.0.3.10", "dst_port": 3306, "protocol": 6, "rule_uuid": "7010"})
        };
        let lines = format!(
            "{}\n{}\n",
            record("00000000000000b1", then, "10.0.1.11"),
            record("00000000000000b2", then - 600, "10.0.1.12")
        );
        let lookup = with_records(lookup, &dir, &lines);
        let (status, page) = call_query(
            &lookup,
            "GET",
            "/v1/hits",
            &json!({"src": "10.0.1.12"}),
            None,
        );
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            (page["count"].as_u64(), page["newest_elsewhere"].as_i64()),
            (Some(0), Some(then - 600)),
            "{page}"
        );
        let (_, none) = call_query(
            &lookup,
            "GET",
            "/v1/hits",
            &json!({"src": "10.0.1.99"}),
            None,
        );
        assert!(none["newest_elsewhere"].is_null(), "{none}");
        let window =
            json!({"since": (then - 3600).to_string(), "until": (then + 3600).to_string()});
        let (_, found) = call_query(&lookup, "GET", "/v1/hits", &window, None);
        assert_eq!(found["count"], 2);
        assert!(
            found["newest_elsewhere"].is_null(),
            "only an empty page looks elsewhere: {found}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    /// A VPC's inbound traffic grouped by where it comes from: the internet /24 of two clients
    /// is one group, most bytes first; the VPC is required.
    #[cfg(feature = "local-store")]
    #[test]
    fn inbound_traffic_is_grouped_by_where_it_comes_from() {
        let (lookup, dir) = lookup();
        let now = chrono::Utc::now().timestamp();
        let traffic = |id: &str, src: &str, peer: &str, bytes: u64| {
            json!({"record_type": "traffic", "record_id": id, "time": now - 60, "last_seen": now - 60,
                   "src_ip": src, "dst_ip": "10.0.1.11", "dst_port": 443, "protocol_name": "TCP",
                   "scope": "vpc_inbound", "peer": peer, "dst_vpc": "vpc-prod0001", "fl_action": "ACCEPT",
                   "flows": 1, "packets": 2, "bytes": bytes})
        };
        let lines = [
            traffic("00000000000000c1", "203.0.113.5", "internet", 100),
            traffic("00000000000000c2", "203.0.113.77", "internet", 50),
            traffic("00000000000000c3", "192.168.9.9", "private", 400),
        ]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>();
        let lookup = with_records(lookup, &dir, &lines);
        let ask = |extra: Value| {
            let mut query = json!({"vpc": "vpc-prod0001", "scope": "vpc_inbound", "since": (now - 3600).to_string()});
            query
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            call_query(&lookup, "GET", "/v1/traffic/peers", &query, None)
        };
        let (status, answer) = ask(json!({}));
        assert_eq!(status, 200, "{answer}");
        let groups: Vec<(&str, &str, u64, u64)> = answer["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["peer"].as_str().unwrap(),
                    g["network"].as_str().unwrap(),
                    g["conversations"].as_u64().unwrap(),
                    g["bytes"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            [
                ("private", "192.168.9.0/24", 1, 400),
                ("internet", "203.0.113.0/24", 2, 150)
            ]
        );
        assert_eq!(
            (
                answer["complete"].as_bool(),
                answer["conversations"].as_u64()
            ),
            (Some(true), Some(3))
        );
        let (_, one) = ask(json!({"limit": "1", "prefix": "8"}));
        assert_eq!(
            (
                one["groups"][0]["network"].as_str(),
                one["total_groups"].as_u64()
            ),
            (Some("192.0.0.0/8"), Some(2)),
            "{one}"
        );
        let (status, refused) = call_query(
            &lookup,
            "GET",
            "/v1/traffic/peers",
            &json!({"scope": "vpc_inbound"}),
            None,
        );
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (400, Some("invalid_field")),
            "{refused}"
        );
        let (status, _) = ask(json!({"prefix": "33"}));
        assert_eq!(status, 400);
        // The same conversations by instance pair: each client's /24 to web-02 (10.0.1.11).
        let (status, pairs) = call_query(
            &lookup,
            "GET",
            "/v1/traffic/instances",
            &json!({"vpc": "vpc-prod0001", "since": (now - 3600).to_string()}),
            None,
        );
        assert_eq!(status, 200, "{pairs}");
        let seen: Vec<(&str, &str, u64)> = pairs["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["src"]["id"].as_str().unwrap(),
                    p["dst"]["name"].as_str().unwrap(),
                    p["bytes"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("192.168.9.0/24", "web-02", 400),
                ("203.0.113.0/24", "web-02", 150)
            ]
        );
        assert_eq!(pairs["total_pairs"], 2);
        // Paged: the second pair on a page of its own.
        let (_, second) = call_query(
            &lookup,
            "GET",
            "/v1/traffic/instances",
            &json!({"vpc": "vpc-prod0001", "since": (now - 3600).to_string(), "limit": "1", "offset": "1"}),
            None,
        );
        assert_eq!(
            (
                second["pairs"][0]["src"]["id"].as_str(),
                second["offset"].as_u64()
            ),
            (Some("203.0.113.0/24"), Some(1)),
            "{second}"
        );
        assert_eq!(second["pairs"].as_array().unwrap().len(), 1);
        std::fs::remove_dir_all(dir).ok();
    }

    /// Talkers page: the second page starts where the first ended, most bytes first.
    #[cfg(feature = "local-store")]
    #[test]
    fn talkers_page_past_the_first() {
        let (lookup, dir) = lookup();
        let now = chrono::Utc::now().timestamp();
        let lines: String = (1..=5u64)
            .map(|i| {
                json!({"record_type": "traffic", "record_id": format!("{i:016x}"), "time": now - 60,
                       "last_seen": now - 60, "src_ip": format!("10.0.2.{i}"), "dst_ip": "10.0.3.10",
                       "dst_port": 3306, "protocol_name": "TCP", "scope": "inter_subnet",
                       "src_vpc": "vpc-prod0001", "dst_vpc": "vpc-prod0001", "fl_action": "ACCEPT",
                       "flows": 1, "packets": 1, "bytes": 100 * i})
                .to_string()
                    + "\n"
            })
            .collect();
        let lookup = with_records(lookup, &dir, &lines);
        let page = |offset: &str| {
            let query = json!({"vpc": "vpc-prod0001", "since": (now - 3600).to_string(), "talkers": "2", "talkers_offset": offset});
            call_query(&lookup, "GET", "/v1/traffic", &query, None)
        };
        let sources = |answer: &Value| -> Vec<String> {
            answer["talkers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["src_ip"].as_str().unwrap().to_string())
                .collect()
        };
        let (status, first) = page("0");
        assert_eq!(status, 200, "{first}");
        assert_eq!(sources(&first), ["10.0.2.5", "10.0.2.4"]);
        let (_, second) = page("2");
        assert_eq!(
            (sources(&second), second["talkers_offset"].as_u64()),
            (
                vec!["10.0.2.3".to_string(), "10.0.2.2".to_string()],
                Some(2)
            )
        );
        let (_, last) = page("4");
        assert_eq!(sources(&last), ["10.0.2.1"]);
        let (status, _) = page("9001");
        assert_eq!(status, 400);
        std::fs::remove_dir_all(dir).ok();
    }

    /// A rule that names templates lists them with their names and members, a group followed
    /// by its members; a rule that names none has no templates.
    #[test]
    fn one_rule_expands_its_templates_with_names_and_members() {
        let (lookup, dir) = lookup();
        let (status, rule) = call(&lookup, "GET", "/v1/rules/7010", Some("t0ken"), None);
        assert_eq!(status, 200, "{rule}");
        let templates: Vec<(String, String, String)> = rule["templates"]
            .as_array()
            .unwrap_or_else(|| panic!("{rule}"))
            .iter()
            .map(|t| {
                let members: Vec<&str> = t["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap())
                    .collect();
                (
                    t["id"].as_str().unwrap().to_string(),
                    t["name"].as_str().unwrap().to_string(),
                    members.join(" "),
                )
            })
            .collect();
        assert_eq!(
            templates,
            [
                (
                    "ipmg-data0001".into(),
                    "data tier".into(),
                    "ipm-cache001 ipm-db000001".into()
                ),
                (
                    "ipm-cache001".into(),
                    "redis hosts".into(),
                    "10.0.3.20".into()
                ),
                (
                    "ipm-db000001".into(),
                    "mysql hosts".into(),
                    "10.0.3.10 10.0.3.11 10.0.3.12".into()
                ),
            ]
        );
        assert!(rule["templates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["side"] == "destination"));
        let (_, services) = call(&lookup, "GET", "/v1/rules/7013", Some("t0ken"), None);
        let service = services["templates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["side"] == "service")
            .unwrap();
        assert_eq!(
            (service["name"].as_str(), service["members"][0].as_str()),
            (Some("exporters"), Some("tcp:9100")),
            "{services}"
        );
        let (_, plain) = call(&lookup, "GET", "/v1/rules/7000", Some("t0ken"), None);
        assert!(plain.get("templates").is_none(), "{plain}");
        std::fs::remove_dir_all(dir).ok();
    }

    /// One record is explained against the snapshot version that judged it while the store
    /// keeps that version; when it does not, against the current one, and the answer says so.
    #[cfg(feature = "local-store")]
    #[test]
    fn a_record_is_explained_against_the_snapshot_that_judged_it() {
        use crate::core::ports::SnapshotStore;
        let dir = std::env::temp_dir().join(format!("esgflow-record-{}", rand_suffix()));
        let snapshots = dir.join("snapshots");
        let store = crate::adapters::files::DirStore::new(&snapshots);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        // The older version judged the record; a newer one is current.
        let (older, current) = (fixtures::sample(0), fixtures::sample(7));
        for snapshot in [&older, &current] {
            let engine = Engine::compile(snapshot).unwrap();
            runtime
                .block_on(store.publish(snapshot, &engine, deadline))
                .unwrap();
        }
        let now = chrono::Utc::now().timestamp();
        let record = |id: &str, version: &str| {
            json!({"record_type": "block_hit", "record_id": id, "time": now - 60,
                   "src_ip": "10.0.1.11", "dst_ip": "10.0.3.10", "dst_port": 3306, "protocol": 6,
                   "rule_uuid": "7010", "snapshot_version": version})
            .to_string()
        };
        let lines = format!(
            "{}\n{}\n",
            record("00000000000000a1", &older.version),
            record("00000000000000a2", "0000000000000000")
        );
        let lookup = with_records(
            Lookup::new(
                Auth::Bearer("t0ken".into()),
                4096,
                SnapshotCache::with_store(Box::new(store), std::time::Duration::from_secs(60)),
            ),
            &dir,
            &lines,
        );
        let (status, answer) = call(
            &lookup,
            "GET",
            "/v1/hits/00000000000000a1",
            Some("t0ken"),
            None,
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["judged_with"], older.version.as_str());
        assert_eq!(answer["explained_with"], older.version.as_str());
        assert_eq!(answer["note"], Value::Null);
        assert_eq!(answer["explanation"]["decision"], "block", "{answer}");
        assert_eq!(answer["explanation"]["rule"]["uuid"], "7010", "{answer}");
        assert_eq!(answer["record"]["record_id"], "00000000000000a1");
        // A version the store no longer keeps: the current one explains it, and says so.
        let (status, answer) = call(
            &lookup,
            "GET",
            "/v1/hits/00000000000000a2",
            Some("t0ken"),
            None,
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["explained_with"], current.version.as_str());
        assert!(
            answer["note"].as_str().unwrap().contains("no longer keeps"),
            "{answer}"
        );
        for (path, expected) in [
            ("/v1/hits/00000000000000ff", 404),
            ("/v1/hits/not-an-id", 404),
        ] {
            let (status, _) = call(&lookup, "GET", path, Some("t0ken"), None);
            assert_eq!(status, expected, "{path}");
        }
        std::fs::remove_dir_all(dir).ok();
    }

    /// Flow-log coverage: of each VPC's ENIs, those that recorded traffic in the last hour;
    /// without a records store, why it is unavailable.
    #[cfg(feature = "local-store")]
    #[test]
    fn vpcs_show_flow_log_coverage_of_the_last_hour() {
        let (lookup, dir) = lookup();
        let (status, vpcs) = call(&lookup, "GET", "/v1/vpcs", Some("t0ken"), None);
        assert_eq!(status, 200, "{vpcs}");
        assert_eq!(vpcs["vpcs"][0]["coverage"]["available"], false, "{vpcs}");
        let now = chrono::Utc::now().timestamp();
        let lines: String = [
            (now - 60, "eni-app00000,eni-app00001"),
            (now - 120, "eni-app00001"),
            // Older than an hour: not counted.
            (now - 7200, "eni-app00002"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (time, enis))| {
            format!(
                "{}\n",
                json!({"record_type": "traffic", "record_id": format!("t{i}"), "time": time,
                       "last_seen": time, "scope": "intra_subnet", "src_vpc": "vpc-prod0001",
                       "dst_vpc": "vpc-prod0001", "flows": 1, "enis": enis})
            )
        })
        .collect();
        let lookup = with_records(lookup, &dir, &lines);
        let (status, vpcs) = call(&lookup, "GET", "/v1/vpcs", Some("t0ken"), None);
        assert_eq!(status, 200, "{vpcs}");
        let coverage = |id: &str| {
            vpcs["vpcs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["id"] == id)
                .map(|v| v["coverage"].clone())
                .unwrap()
        };
        assert_eq!(
            coverage("vpc-prod0001"),
            json!({"available": true, "enis_recording": 2, "enis": 17, "window_seconds": 3600})
        );
        assert_eq!(coverage("vpc-dev00001")["enis_recording"], 0);
        std::fs::remove_dir_all(dir).ok();
    }

    /// Traffic view parameters are read strictly: each bad value is named, and the time series'
    /// step keeps a window within its points.
    #[test]
    fn traffic_parameters_are_checked_by_name() {
        let filter = |query: &[(&str, &str)]| traffic_filter(&typed(query), 1_000_000);
        let day = [("since", "913600"), ("until", "1000000")];
        let read = filter(&[
            day[0],
            day[1],
            ("vpc", "vpc-1"),
            ("scope", "vpc_inbound"),
            ("peer", "private"),
            ("fl_action", "reject"),
            ("talkers", "5"),
        ])
        .unwrap();
        assert_eq!(
            (
                read.vpc.as_deref(),
                read.scope,
                read.peer,
                read.fl_action,
                read.talkers
            ),
            (
                Some("vpc-1"),
                Some(Scope::VpcInbound),
                Some(Peer::Private),
                Some("REJECT"),
                5
            )
        );
        // A day: 15-minute steps (96 points) unless asked for coarser ones.
        assert_eq!(read.bucket, 900);
        assert_eq!(
            filter(&[day[0], day[1], ("step", "3600")]).unwrap().bucket,
            3600
        );
        assert_eq!(filter(&[]).unwrap().bucket, 60);
        for (name, value) in [
            ("scope", "sideways"),
            ("peer", "moon"),
            ("vpc", "vpc 1"),
            ("talkers", "0"),
            ("talkers", "1001"),
            ("step", "300"),
            ("step", "901"),
            ("step", "90000"),
            ("fl_action", "drop"),
        ] {
            let failure = filter(&[day[0], day[1], (name, value)]).unwrap_err();
            assert_eq!(failure.status, 400, "{name}={value}");
            assert!(
                failure.message.starts_with(&format!("{name}: ")),
                "{}",
                failure.message
            );
        }
    }

    /// A formula after any separator a spreadsheet may split on is defused too (issue #36: a
    /// description `;=cmd…;` passed the guard in spreadsheets that split on `;`).
    #[test]
    fn csv_defuses_formulas_after_any_separator() {
        let mut row = String::new();
        hits::csv_row(
            &mut row,
            &serde_json::json!({"rule_description": ";=cmd|' /C calc'!A0;|+1;@x\n-2"}),
        );
        assert!(
            row.contains(r#"";'=cmd|' /C calc'!A0;|'+1;'@x"#) && row.contains("\n'-2\""),
            "{row}"
        );
        let mut plain = String::new();
        hits::csv_row(
            &mut plain,
            &serde_json::json!({"rule_description": "a-b, c=d"}),
        );
        assert!(plain.contains(r#""a-b, c=d""#), "{plain}");
    }

    /// Long records (a rule description of 40,000 control characters, six bytes each once
    /// escaped) are weighed as the answer carries them: a page of them that does not fit is 413
    /// naming a limit that does (issue #36: 500 or 502), and an export splits into answers
    /// that each fit.
    #[cfg(feature = "local-store")]
    #[test]
    fn long_records_are_weighed_escaped() {
        let (mut lookup, dir) = lookup();
        let description = "\u{1}".repeat(40_000);
        let lines: String = (0..30)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"record_type": "block_hit", "record_id": format!("{i:04}"), "time": 1000 + i,
                           "src_ip": "10.0.1.11", "dst_ip": "10.0.3.10", "dst_port": 3306,
                           "protocol": 6, "rule_uuid": "7010", "rule_description": description})
                )
            })
            .collect();
        lookup = with_records(lookup, &dir, &lines);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let get = |path: &str, query: Value| {
            let request: ApiGatewayRequest = serde_json::from_value(json!({
                "httpMethod": "GET", "path": path,
                "headers": {"authorization": "Bearer t0ken"}, "queryString": query,
            }))
            .unwrap();
            runtime.block_on(lookup.app().handle(
                &request,
                "r",
                Instant::now() + std::time::Duration::from_secs(30),
            ))
        };
        let search = |limit: &str| json!({"type": "block_hit", "since": "0", "until": "5000", "limit": limit});
        let refused = get("/v1/hits", search("30"));
        assert_eq!(
            refused.status_code,
            413,
            "{}",
            &refused.body[..200.min(refused.body.len())]
        );
        let error: Value = serde_json::from_str(&refused.body).unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        let fits = message
            .split("limit=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let answer = get("/v1/hits", search(fits));
        assert_eq!(answer.status_code, 200, "{message}");
        // What the answer weighs inside the integration response: the body as a JSON string.
        let weight = |body: &str| serde_json::to_string(body).unwrap().len();
        assert!(weight(&answer.body) <= MAX_ANSWER_BYTES, "{message}");
        let mut query =
            json!({"format": "csv", "type": "block_hit", "since": "0", "until": "5000"});
        let mut exported = 0;
        for _ in 0..10 {
            let part = get("/v1/hits/export", query.clone());
            assert_eq!(part.status_code, 200);
            assert!(
                weight(&part.body) <= MAX_ANSWER_BYTES,
                "{}",
                weight(&part.body)
            );
            exported += part.headers["X-Esgflow-Count"].parse::<usize>().unwrap();
            match part.headers.get("X-Esgflow-Next") {
                Some(next) => {
                    query = Value::Object(
                        next.split('&')
                            .map(|p| p.split_once('=').unwrap())
                            .map(|(k, v)| (k.to_string(), json!(v)))
                            .collect(),
                    )
                }
                None => break,
            }
        }
        assert_eq!(exported, 30);
        std::fs::remove_dir_all(dir).ok();
    }

    /// An export pages through the whole search within its answer budget: every record once,
    /// in order, the rest always one `X-Esgflow-Next` away; CSV cells a spreadsheet would run
    /// as formulas are defused, and quotes, commas and line breaks survive.
    #[cfg(feature = "local-store")]
    #[test]
    fn exports_page_through_the_search_within_the_budget() {
        let (mut lookup, dir) = lookup();
        let lines: String = (0..250)
            .map(|i| {
                let description = match i % 3 {
                    0 => "=HYPERLINK(\"http://x\")".to_string(),
                    1 => "db, \"primary\"\nline two".to_string(),
                    _ => format!("rule {i}"),
                };
                format!(
                    "{}\n",
                    json!({"record_type": "block_hit", "record_id": format!("{i:04}"), "time": 1000 + i,
                           "src_ip": "10.0.1.11", "src_ip_num": 167772427, "dst_ip": "10.0.3.10",
                           "dst_port": 3306, "protocol": 6, "rule_uuid": "7010", "rule_description": description})
                )
            })
            .collect();
        lookup = with_records(lookup, &dir, &lines);
        // Pages of 50 and room for a few: the export needs several answers.
        lookup.configure().export_budget = 40_000;
        lookup.configure().export_page = 50;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for format in ["csv", "jsonl"] {
            let mut query =
                format!("format={format}&type=block_hit&since=0&until=5000&src=10.0.1.0%2F24");
            let mut rows: Vec<String> = Vec::new();
            let mut answers = 0;
            loop {
                answers += 1;
                assert!(answers < 20, "the export ends");
                let pairs: serde_json::Map<String, Value> = query
                    .split('&')
                    .map(|p| p.split_once('=').unwrap())
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
                // Through deserialisation, as the platform delivers it (values percent-decoded).
                let request: ApiGatewayRequest = serde_json::from_value(json!({
                    "httpMethod": "GET", "path": "/v1/hits/export",
                    "headers": {"authorization": "Bearer t0ken"}, "queryString": pairs,
                }))
                .unwrap();
                let response = runtime.block_on(lookup.app().handle(
                    &request,
                    "r",
                    Instant::now() + std::time::Duration::from_secs(10),
                ));
                assert_eq!(response.status_code, 200, "{}", response.body);
                let count: usize = response.headers["X-Esgflow-Count"].parse().unwrap();
                let body = response.body.clone();
                if format == "csv" {
                    assert_eq!(response.headers["Content-Type"], "text/csv; charset=utf-8");
                    let (header, rest) = body.split_once("\r\n").unwrap();
                    assert_eq!(header, EXPORT_COLUMNS.join(","));
                    // Rows end with CRLF; a quoted cell may hold a bare LF.
                    rows.extend(rest.split_terminator("\r\n").map(str::to_string));
                    assert_eq!(rest.split_terminator("\r\n").count(), count);
                } else {
                    assert_eq!(response.headers["Content-Type"], "application/x-ndjson");
                    rows.extend(body.lines().map(str::to_string));
                    assert_eq!(body.lines().count(), count);
                }
                match response.headers.get("X-Esgflow-Next") {
                    Some(next) => {
                        assert_eq!(response.headers["X-Esgflow-Complete"], "false");
                        query = next.clone();
                    }
                    None => {
                        assert_eq!(response.headers["X-Esgflow-Complete"], "true");
                        break;
                    }
                }
            }
            assert!(
                answers >= 2,
                "{format}: the budget split the export ({answers})"
            );
            assert_eq!(rows.len(), 250, "{format}: every record once");
            if format == "csv" {
                assert!(rows[0].ends_with(",0249"), "newest first: {}", rows[0]);
                let formula = rows.iter().find(|r| r.contains("HYPERLINK")).unwrap();
                assert!(
                    formula.contains(r#""'=HYPERLINK(""http://x"")""#),
                    "{formula}"
                );
                let quoted = rows.iter().find(|r| r.contains("primary")).unwrap();
                assert!(
                    quoted.contains("\"db, \"\"primary\"\"\nline two\""),
                    "{quoted}"
                );
                assert!(
                    rows[0].starts_with("1970-01-01T00:20:49Z,1249,block_hit,10.0.1.11,"),
                    "{}",
                    rows[0]
                );
            } else {
                let ids: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        serde_json::from_str::<Value>(r).unwrap()["record_id"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                let expected: Vec<String> = (0..250).rev().map(|i| format!("{i:04}")).collect();
                assert_eq!(ids, expected);
            }
        }
        // A format it cannot write, and the page size it sets itself, are refused by name.
        for (name, value, code) in [
            ("format", "xlsx", "invalid_field"),
            ("limit", "5", "unknown_parameter"),
        ] {
            let mut request = request("GET", "/v1/hits/export", Some("t0ken"), None);
            request.query_string = serde_json::from_value(json!({ name: value })).unwrap();
            let response = runtime.block_on(lookup.app().handle(
                &request,
                "r",
                Instant::now() + std::time::Duration::from_secs(5),
            ));
            let body: Value = serde_json::from_str(&response.body).unwrap();
            assert_eq!(
                (response.status_code, body["error"]["code"].as_str()),
                (400, Some(code)),
                "{body}"
            );
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn hits_queries_are_built_only_from_validated_values() {
        let q = HitsQuery::parse(
            &hits_request(&[("ip", "10.0.1.5"), ("rule", "7010"), ("type", "block_hit")]),
            1_000_000,
        )
        .unwrap();
        assert_eq!(
            hits_query(&q.filter),
            r#"(record_type:"block_hit") AND (src_ip:"10.0.1.5" OR dst_ip:"10.0.1.5") AND rule_uuid:"7010""#
        );
        assert_eq!(
            (q.filter.since, q.filter.until, q.limit),
            (1_000_000 - 3600, 1_000_000, 100)
        );
        let q = HitsQuery::parse(
            &hits_request(&[("since", "2025-11-24T00:00:00Z"), ("until", "1763946000")]),
            2_000_000_000,
        )
        .unwrap();
        assert_eq!((q.filter.since, q.filter.until), (1763942400, 1763946000));
        assert_eq!(
            hits_query(&q.filter),
            r#"(record_type:"block_hit" OR record_type:"observe_hit")"#
        );
        for (field, value) in [
            ("ip", r#"10.0.0.1" OR *"#),
            ("src", "10.0.0.1/8 OR dst_ip:*"),
            ("dst", "2001:db8::/32"),
            ("dst", "10.0.0.300"),
            ("port", "abc"),
            ("port", "70000"),
            ("protocol", "sctp-ish"),
            ("protocol", "256"),
            ("vpc", r#"vpc-1" OR *"#),
            ("subnet", "subnet 1"),
            ("fl_action", "DROP"),
            ("rule", r#"7010" OR record_type:*"#),
            ("type", "traffic"),
            ("limit", "0"),
            ("limit", "5000"),
            ("cursor", "a b"),
            ("cursor", "opaque-context-without-our-prefix"),
            ("cursor", "17_nothex00_ctx"),
            ("since", "yesterday"),
        ] {
            let err = HitsQuery::parse(&hits_request(&[(field, value)]), 1_000_000).unwrap_err();
            assert_eq!(err.status, 400, "{field}={value}");
            assert!(err.message.starts_with(field), "{field}: {}", err.message);
        }
        let err =
            HitsQuery::parse(&hits_request(&[("since", "10"), ("until", "5")]), 100).unwrap_err();
        assert!(err.message.contains("before until"));
    }

    /// A parameter a route does not read is refused with 400 naming it (`?src=&dst=` once
    /// returned unfiltered hits), and so is a parameter given twice.
    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let (lookup, dir) = lookup();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ask = |path: &str, query: Value| {
            let mut request = request("GET", path, Some("t0ken"), None);
            request.query_string = serde_json::from_value(query).unwrap();
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            let response = runtime.block_on(lookup.app().handle(&request, "r", deadline));
            let body: Value = serde_json::from_str(&response.body).unwrap();
            (response.status_code, body)
        };
        let (status, body) = ask(
            "/v1/hits",
            json!({"source": "10.0.1.5", "dest": "10.0.3.10", "rule": "7010"}),
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("unknown_parameter"))
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("does not read dest, source"), "{message}");
        assert!(message.contains("it reads src, dst, ip, port"), "{message}");
        let (status, body) = ask("/v1/snapshot", json!({"verbose": "1"}));
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no query parameters"));
        let (status, body) = ask("/v1/stats/top-rules", json!({"hours": "1", "vpc": "vpc-1"}));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("unknown_parameter"))
        );
        let (status, body) = ask("/v1/hits", json!({"ip": ["10.0.0.1", "10.0.0.2"]}));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("repeated_parameter"))
        );
        // The parameters a route reads pass this check (here to the missing hits topic).
        let (status, body) = ask("/v1/hits", json!({"ip": "10.0.0.1", "limit": "5"}));
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("hits_unavailable"))
        );
        std::fs::remove_dir_all(dir).ok();
    }

    /// Times outside 1970..9999 are refused by name before any arithmetic on them (the
    /// smallest i64 once overflowed the span check).
    #[test]
    fn search_times_are_bounded() {
        for (field, value) in [
            ("since", "-9223372036854775808"),
            ("until", "-1"),
            ("until", "9223372036854775807"),
            ("since", "253402300800"),
        ] {
            let err = HitsQuery::parse(&hits_request(&[(field, value)]), 1_000_000).unwrap_err();
            assert_eq!(err.status, 400, "{field}={value}");
            assert!(
                err.message.starts_with(field) && err.message.contains("1970"),
                "{field}={value}: {}",
                err.message
            );
        }
        let q = HitsQuery::parse(&hits_request(&[("since", "0"), ("until", "3600")]), 9).unwrap();
        assert_eq!((q.filter.since, q.filter.until), (0, 3600));
    }

    /// The bearer scheme is case-insensitive and may be followed by more than one space; any
    /// other scheme, or the token alone, is refused.
    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer t0ken"), Some("t0ken"));
        assert_eq!(bearer_token("bearer t0ken"), Some("t0ken"));
        assert_eq!(bearer_token("BEARER   t0ken "), Some("t0ken"));
        for refused in ["Basic t0ken", "t0ken", "Bearert0ken", "Bearer ", ""] {
            assert_eq!(bearer_token(refused), None, "{refused:?}");
        }
        let (lookup, dir) = lookup();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (header, status) in [
            ("bearer t0ken", 200),
            ("BEARER t0ken", 200),
            ("Basic t0ken", 401),
        ] {
            let request: ApiGatewayRequest = serde_json::from_value(json!({
                "httpMethod": "GET", "path": "/v1/snapshot", "headers": {"Authorization": header}
            }))
            .unwrap();
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            let response = runtime.block_on(lookup.app().handle(&request, "req-1", deadline));
            assert_eq!(response.status_code, status, "{header}");
        }
        std::fs::remove_dir_all(dir).ok();
    }

    /// Every answer, page or JSON, success or error, carries the security headers; the page's
    /// policy allows exactly its own inline script and style, by hash.
    #[test]
    fn every_answer_carries_the_security_headers() {
        let (lookup, dir) = lookup();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (path, token, status) in [
            ("/", None, 200),
            ("/v1/healthz", None, 200),
            ("/v1/snapshot", None, 401),
            ("/nope", None, 404),
        ] {
            let deadline = Instant::now() + std::time::Duration::from_secs(5);
            let response = runtime.block_on(lookup.app().handle(
                &request("GET", path, token, None),
                "r",
                deadline,
            ));
            assert_eq!(response.status_code, status, "{path}");
            let header = |name: &str| response.headers.get(name).cloned().unwrap_or_default();
            let policy = header("Content-Security-Policy");
            assert!(
                policy.contains("frame-ancestors 'none'"),
                "{path}: {policy}"
            );
            assert!(policy.starts_with("default-src 'none'"), "{path}: {policy}");
            assert_eq!(header("Referrer-Policy"), "no-referrer", "{path}");
            assert_eq!(header("X-Content-Type-Options"), "nosniff", "{path}");
            if path == "/" {
                let script =
                    &PAGE[PAGE.find("<script>").unwrap() + 8..PAGE.find("</script>").unwrap()];
                use base64::Engine as _;
                use sha2::Digest;
                let hash = base64::engine::general_purpose::STANDARD
                    .encode(sha2::Sha256::digest(script.as_bytes()));
                assert!(
                    policy.contains(&format!("script-src 'sha256-{hash}';")),
                    "{policy}"
                );
                assert!(!policy.contains("unsafe-inline"), "{policy}");
            }
        }
        std::fs::remove_dir_all(dir).ok();
    }

    /// A cursor carries when its search started and which search it continues; CLS's context
    /// (which may hold `_`) comes back whole.
    #[test]
    fn cursors_bind_to_their_search_and_expire() {
        let first = HitsQuery::parse(
            &hits_request(&[("since", "1000"), ("until", "2000"), ("limit", "5")]),
            2_000,
        )
        .unwrap();
        let cursor = HitsCursor {
            issued: 2_000,
            binding: first.binding(),
            context: "ctx_with_under_scores==".into(),
        }
        .to_string();
        let next = first.next_page(&cursor);
        let pairs: Vec<(&str, &str)> = next
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let second = HitsQuery::parse(&hits_request(&pairs), 2_100).unwrap();
        assert_eq!(second.cursor.unwrap().context, "ctx_with_under_scores==");
        let late = HitsQuery::parse(&hits_request(&pairs), 2_000 + 3_601).unwrap_err();
        assert_eq!((late.status, late.code), (410, "cursor_expired"));
        let mut changed = pairs.clone();
        changed.push(("rule", "7010"));
        let err = HitsQuery::parse(&hits_request(&changed), 2_100).unwrap_err();
        assert!(err.message.contains("different search"), "{}", err.message);
    }

    #[test]
    fn statuses() {
        let (lookup, dir) = lookup();
        assert_eq!(call(&lookup, "GET", "/v1/healthz", None, None).0, 200);
        assert_eq!(call(&lookup, "GET", "/v1/snapshot", None, None).0, 401);
        assert_eq!(
            call(&lookup, "GET", "/v1/snapshot", Some("wrong"), None).0,
            401
        );
        let (status, body) = call(&lookup, "GET", "/v1/snapshot", Some("t0ken"), None);
        assert_eq!(status, 200);
        assert_eq!(body["rules"], fixtures::sample(0).rules.len());
        assert_eq!(
            call(&lookup, "GET", "/v1/explain", Some("t0ken"), None).0,
            405
        );
        assert_eq!(call(&lookup, "GET", "/nope", Some("t0ken"), None).0, 404);
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some("{not json"),
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_json"))
        );
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some(r#"{"src":"10.0.0.1","dst":"10.0.0.999","protocol":"tcp","port":22}"#),
        );
        assert_eq!(status, 400);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("dst:"),
            "{body}"
        );
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some(r#"{"src":"10.0.0.1","dst":"10.0.0.2","protocol":"tcp","port":70000}"#),
        );
        assert_eq!(status, 400);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("port:"),
            "{body}"
        );
        let big = format!(r#"{{"src":"{}"}}"#, "1".repeat(5000));
        assert_eq!(
            call(&lookup, "POST", "/v1/explain", Some("t0ken"), Some(&big)).0,
            413
        );
        assert_eq!(
            call(&lookup, "GET", "/v1/rules/nope", Some("t0ken"), None).0,
            404
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn explain_one_and_batch() {
        let (lookup, dir) = lookup();
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some(r#"{"src":"10.0.1.5","dst":"10.1.2.8","protocol":"tcp","port":3306}"#),
        );
        assert_eq!(status, 200, "{body}");
        assert!(["allow", "block", "none"].contains(&body["decision"].as_str().unwrap()));
        assert!(body["snapshot_version"].is_string());
        assert!(body["steps"].is_array());
        let flows: Vec<Value> = (0..3).map(|i| json!({"src": format!("10.0.1.{i}"), "dst": "10.1.0.1", "protocol": "udp", "port": 53})).collect();
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some(&json!({"flows": flows}).to_string()),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["results"].as_array().unwrap().len(), 3);
        let (status, body) = call(
            &lookup,
            "POST",
            "/v1/explain",
            Some("t0ken"),
            Some(r#"{"flows":[{"src":"10.0.0.1","dst":"x","protocol":"tcp","port":1}]}"#),
        );
        assert_eq!(status, 400);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("flows[0].dst"),
            "{body}"
        );
        // A key given twice is refused by name, at any depth (issue #36: the last one won).
        for text in [
            r#"{"src":"10.0.0.1","src":"10.0.1.11","dst":"10.0.3.10","protocol":"tcp","port":3306}"#,
            r#"{"flows":[{"src":"10.0.1.11","dst":"10.0.3.10","protocol":"tcp","port":1,"port":3306}]}"#,
        ] {
            let (status, body) = call(&lookup, "POST", "/v1/explain", Some("t0ken"), Some(text));
            assert_eq!(status, 400, "{body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("is given twice"), "{message}");
        }
        std::fs::remove_dir_all(dir).ok();
    }
}
