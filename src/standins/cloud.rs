//! A local stand-in for the Tencent Cloud endpoints the sync function calls, for tests and
//! `esgflow sync --local`: API 3.0 actions of cfw, vpc and cvm (TC3-HMAC-SHA256 checked on every
//! request) answered page by page from recorded-shape responses, and a COS bucket (`q-sign`
//! checked) with ETags and conditional GETs. Every API request is checked against the action's
//! official definition first ([`super::contract`]) and refused as the real service refuses it.
//!
//! The answers come from a directory of exports (the files `esgflow snapshot build` reads,
//! e.g. `samples/export`): every document's list is merged per action and served with the
//! action's own paging (`PageNo`/`PageSize` as strings, or `Offset`/`Limit`), so a multi-page
//! listing really takes several requests. Faults can be scripted per action (`RequestLimitExceeded`
//! once, a permanent error, ...) and per COS method.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use esgflow::adapters::tencent::sign::{qsign, tc3};

use super::{contract, header, signed_service};
use serde_json::{json, Value};

/// Credentials the stub accepts (the same as the tests' CLS stub, so one function can talk to
/// both).
pub const SECRET_ID: &str = "AKIDstubSecretId0000";
/// The secret key.
pub const SECRET_KEY: &str = "stubSecretKey0000000";

/// How each list action is served: its list key, total key and paging.
const ACTIONS: &[(&str, &str, &str, Paging)] = &[
    (
        "DescribeEnterpriseSecurityGroupRule",
        "Rules",
        "TotalCount",
        Paging::PageNo {
            max: 50,
            total_as_string: true,
        },
    ),
    (
        "DescribeEnterpriseSecurityGroupRuleList",
        "Data",
        "Total",
        Paging::Offset { max: 100 },
    ),
    (
        "DescribeSecurityGroupList",
        "Data",
        "Total",
        Paging::Offset { max: 100 },
    ),
    (
        "DescribeAddressTemplates",
        "AddressTemplateSet",
        "TotalCount",
        Paging::Offset { max: 100 },
    ),
    (
        "DescribeAddressTemplateGroups",
        "AddressTemplateGroupSet",
        "TotalCount",
        Paging::Offset { max: 100 },
    ),
    (
        "DescribeServiceTemplates",
        "ServiceTemplateSet",
        "TotalCount",
        Paging::Offset { max: 100 },
    ),
    (
        "DescribeServiceTemplateGroups",
        "ServiceTemplateGroupSet",
        "TotalCount",
        Paging::Offset { max: 100 },
    ),
    (
        "DescribeVpcs",
        "VpcSet",
        "TotalCount",
        Paging::Offset { max: 100 },
    ),
    (
        "DescribeSubnets",
        "SubnetSet",
        "TotalCount",
        Paging::Offset { max: 100 },
    ),
    (
        "DescribeNetworkInterfaces",
        "NetworkInterfaceSet",
        "TotalCount",
        Paging::Offset { max: 100 },
    ),
    (
        "DescribeInstances",
        "InstanceSet",
        "TotalCount",
        Paging::Offset { max: 100 },
    ),
];

#[derive(Debug, Clone, Copy)]
enum Paging {
    PageNo { max: usize, total_as_string: bool },
    Offset { max: usize },
}

/// How the stand-in reads `DescribeEnterpriseSecurityGroupRuleList`'s `Offset`, documented as
/// "current page" (tccli `cfw/v20190904/api.json`): which reading the real API has is
/// unconfirmed, so tests run against each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OffsetMeaning {
    /// A row offset.
    #[default]
    Rows,
    /// A page number from 1 (0 is read as 1).
    PageFromOne,
    /// A page number from 0.
    PageFromZero,
}

/// A listing that misbehaves the ways a paged API can, for the tests that a snapshot is never
/// built from part of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Pages stop after this many items (empty pages after them) while Total stays whole.
    StopsAfter(usize),
    /// Every page answers the first page again.
    RepeatsFirstPage,
    /// The list member is `null` (Total stays whole).
    NullList,
    /// Total grows by one with every request after the first.
    TotalGrows,
}

/// One API request as the stub saw it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// `X-TC-Action`.
    pub action: String,
    /// `X-TC-Region`.
    pub region: String,
    /// The JSON body.
    pub body: Value,
}

/// The stub's state, shared with the test that started it.
#[derive(Debug, Default)]
pub struct CloudState {
    /// Items per action.
    pub items: BTreeMap<String, Vec<Value>>,
    /// How the rule-list action reads `Offset`.
    pub rule_list_offset: OffsetMeaning,
    /// Old-ESG rules per region (`Area`); when empty, every `Area` is served `items`.
    pub areas: BTreeMap<String, Vec<Value>>,
    /// Scripted API errors per action, consumed one per request: `(code, message)`.
    pub faults: HashMap<String, VecDeque<(String, String)>>,
    /// Actions whose next answer is scripted to be `bytes` long (a well-formed page whose first
    /// item carries a huge description), consumed one per request.
    pub oversized: HashMap<String, usize>,
    /// Listings that misbehave, per action, for every request until removed.
    pub misbehaving: HashMap<String, Misbehaviour>,
    /// Actions answered only after this long, every request until removed.
    pub slow: HashMap<String, std::time::Duration>,
    /// Scripted COS statuses per method (`GET`/`PUT`), consumed one per request.
    pub cos_faults: HashMap<String, VecDeque<u16>>,
    /// API requests received.
    pub requests: Vec<ApiRequest>,
    /// COS objects: key → (body, etag).
    pub objects: BTreeMap<String, (Vec<u8>, String)>,
    /// COS requests: (method, key, status).
    pub cos_requests: Vec<(String, String, u16)>,
    /// Signature and protocol problems seen (a passing test expects none).
    pub problems: Vec<String>,
}

/// A running stub; stopped on drop.
pub struct CloudStub {
    /// Shared state.
    pub state: Arc<Mutex<CloudState>>,
    /// `http://127.0.0.1:<port>`: the API endpoint and the COS endpoint.
    pub url: String,
    _server: super::Server,
}

/// The member holding `action`'s list, for the actions the stand-in serves.
pub fn list_key(action: &str) -> Option<&'static str> {
    ACTIONS
        .iter()
        .find(|(a, ..)| *a == action)
        .map(|&(_, key, ..)| key)
}

/// Reads every `*.json` export of `dir` and merges their lists per action.
pub fn load_exports(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<Value>>> {
    let mut items: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let action = name.split('-').next().unwrap_or(name);
        let Some(&(_, list_key, _, _)) = ACTIONS.iter().find(|(a, ..)| *a == action) else {
            continue;
        };
        let text = std::fs::read_to_string(&path)?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        let body = value.get("Response").unwrap_or(&value);
        if let Some(list) = body.get(list_key).and_then(Value::as_array) {
            items
                .entry(action.to_string())
                .or_default()
                .extend(list.iter().cloned());
        }
    }
    Ok(items)
}

impl CloudStub {
    /// Starts the stub on an ephemeral 127.0.0.1 port serving `items`.
    pub async fn start(items: BTreeMap<String, Vec<Value>>) -> std::io::Result<Self> {
        Self::start_at("127.0.0.1:0", items).await
    }

    /// Starts the stub on `addr` (a store that comes back where it was).
    pub async fn start_at(
        addr: &str,
        items: BTreeMap<String, Vec<Value>>,
    ) -> std::io::Result<Self> {
        for (service, version) in [
            ("cfw", "2019-09-04"),
            ("vpc", "2017-03-12"),
            ("cvm", "2017-03-12"),
        ] {
            contract::definitions(service, version).map_err(std::io::Error::other)?;
        }
        let state = Arc::new(Mutex::new(CloudState {
            items,
            ..CloudState::default()
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let server = super::Server::start(addr, app).await?;
        Ok(Self {
            state,
            url: server.url(),
            _server: server,
        })
    }

    /// Scripts an API error for the next call of `action`.
    pub fn fail_next(&self, action: &str, code: &str) {
        self.state
            .lock()
            .expect("stub lock")
            .faults
            .entry(action.to_string())
            .or_default()
            .push_back((code.to_string(), format!("scripted {code}")));
    }

    /// Scripts the next answer to `action` to be about `bytes` long.
    pub fn oversize_next(&self, action: &str, bytes: usize) {
        self.state
            .lock()
            .expect("stub lock")
            .oversized
            .insert(action.to_string(), bytes);
    }

    /// Makes `action`'s listing misbehave until the state's entry is removed.
    pub fn misbehave(&self, action: &str, how: Misbehaviour) {
        self.state
            .lock()
            .expect("stub lock")
            .misbehaving
            .insert(action.to_string(), how);
    }

    /// Scripts a COS status for the next request with `method`.
    pub fn fail_next_cos(&self, method: &str, status: u16) {
        self.state
            .lock()
            .expect("stub lock")
            .cos_faults
            .entry(method.to_string())
            .or_default()
            .push_back(status);
    }

    /// Settings pointing the sync function at this stub (credentials, API and COS endpoints).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("TENCENTCLOUD_SECRETID", SECRET_ID),
            ("TENCENTCLOUD_SECRETKEY", SECRET_KEY),
            ("TENCENTCLOUD_REGION", "ap-shanghai"),
            ("ESGFLOW_API_ENDPOINT", self.url.as_str()),
            ("ESGFLOW_COS_ENDPOINT", self.url.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Problems seen so far.
    pub fn problems(&self) -> Vec<String> {
        self.state.lock().expect("stub lock").problems.clone()
    }
}

async fn handle(State(state): State<Arc<Mutex<CloudState>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let action = header(&parts.headers, "x-tc-action").to_string();
    let delay = state.lock().expect("stub lock").slow.get(&action).copied();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut state = state.lock().expect("stub lock");
    if parts.method == Method::POST && parts.uri.path() == "/" {
        api(&mut state, &parts.headers, &body).into_response()
    } else {
        cos(
            &mut state,
            &parts.method,
            parts.uri.path(),
            &parts.headers,
            body,
        )
    }
}

/// An API 3.0 error answer, as the services give it (HTTP 200, `Response.Error`).
pub(crate) fn api_error(code: &str, message: &str) -> (StatusCode, String) {
    (
        StatusCode::OK,
        json!({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "stub"}})
            .to_string(),
    )
}

/// Checks the TC3 signature (over `content-type;host` and the exact body), that it was made for
/// one of `services`, and the ±5 minute timestamp window, as the API does for every action.
pub fn check_tc3(
    headers: &HeaderMap,
    body: &[u8],
    secret_id: &str,
    secret_key: &str,
    services: &[&str],
) -> Result<(), String> {
    let timestamp: i64 = header(headers, "x-tc-timestamp")
        .parse()
        .map_err(|_| "x-tc-timestamp is not a number".to_string())?;
    if (timestamp - chrono::Utc::now().timestamp()).abs() > 300 {
        return Err("signature expired: timestamp more than 5 minutes off".into());
    }
    let authorization = header(headers, "authorization");
    let service = signed_service(headers);
    if !services.contains(&service) {
        return Err(format!(
            "signed for service {service:?}, expected one of {services:?}"
        ));
    }
    let signed = tc3::SignedRequest {
        method: "POST",
        host: header(headers, "host"),
        query: "",
        content_type: header(headers, "content-type"),
        body,
        service,
        timestamp,
    };
    let expected = format!(
        "TC3-HMAC-SHA256 Credential={secret_id}/{}/{service}/tc3_request, SignedHeaders=content-type;host, Signature={}",
        tc3::utc_date(timestamp),
        tc3::signature(secret_key, &signed)
    );
    if authorization != expected {
        return Err(format!("signature mismatch: got {authorization:?}"));
    }
    Ok(())
}

/// The common fields of a request signed with signature v1, which are not the action's.
pub const V1_COMMON: &[&str] = &[
    "Action",
    "Version",
    "Region",
    "Timestamp",
    "Nonce",
    "SecretId",
    "Signature",
    "SignatureMethod",
    "Token",
    "Language",
    "RequestClient",
];

/// Checks a request signed the API 2.0 way, signature v1
/// (<https://cloud.tencent.com/document/api/213/15693>): HMAC-SHA1 (or HMAC-SHA256 with
/// `SignatureMethod=HmacSHA256`), base64, over `<METHOD><host><path>?<fields sorted by name,
/// values as sent>` without `Signature`; the key's id and the ±5 minute timestamp window too.
pub fn check_v1(
    method: &str,
    host: &str,
    path: &str,
    fields: &[(String, String)],
    secret_id: &str,
    secret_key: &str,
) -> Result<(), String> {
    use base64::Engine as _;
    use hmac::Mac as _;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("SecretId") != Some(secret_id) {
        return Err(format!("SecretId {:?} is not the key's", field("SecretId")));
    }
    let timestamp: i64 = field("Timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or("Timestamp is not a number")?;
    if (timestamp - chrono::Utc::now().timestamp()).abs() > 300 {
        return Err("signature expired: timestamp more than 5 minutes off".into());
    }
    let mut signed: Vec<&(String, String)> =
        fields.iter().filter(|(k, _)| k != "Signature").collect();
    signed.sort();
    let query: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let text = format!("{method}{host}{path}?{}", query.join("&"));
    let digest = match field("SignatureMethod") {
        Some("HmacSHA256") => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret_key.as_bytes())
                .expect("any key length");
            mac.update(text.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        None | Some("HmacSHA1") => {
            let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret_key.as_bytes())
                .expect("any key length");
            mac.update(text.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Some(other) => {
            return Err(format!(
                "SignatureMethod {other:?} is not one the API knows"
            ))
        }
    };
    let expected = base64::engine::general_purpose::STANDARD.encode(digest);
    if field("Signature") != Some(expected.as_str()) {
        return Err(format!(
            "signature mismatch over {text:?}: got {:?}",
            field("Signature")
        ));
    }
    Ok(())
}

fn api(state: &mut CloudState, headers: &HeaderMap, body: &[u8]) -> (StatusCode, String) {
    let action = header(headers, "x-tc-action").to_string();
    if let Err(problem) = check_tc3(headers, body, SECRET_ID, SECRET_KEY, &["cfw", "vpc", "cvm"]) {
        state.problems.push(format!("{action}: {problem}"));
        return api_error("AuthFailure.SignatureFailure", &problem);
    }
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    state.requests.push(ApiRequest {
        action: action.clone(),
        region: header(headers, "x-tc-region").to_string(),
        body: request.clone(),
    });
    // The official definition of the action is checked first, as the real API does.
    if let Err(refusal) = contract::check(headers, &action, &request) {
        state
            .problems
            .push(format!("{action}: {}: {}", refusal.code, refusal.message));
        return api_error(refusal.code, &refusal.message);
    }
    if let Some((code, message)) = state.faults.get_mut(&action).and_then(VecDeque::pop_front) {
        return api_error(&code, &message);
    }
    let Some(&(_, list_key, total_key, paging)) = ACTIONS.iter().find(|(a, ..)| *a == action)
    else {
        return api_error(
            "InvalidAction",
            &format!("the stub does not serve {action}"),
        );
    };
    let number = |key: &str| {
        request.get(key).and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let area = request.get("Area").and_then(Value::as_str).unwrap_or("");
    // Filtered by reference: only the page served is copied (a 20,000-rule account is read in
    // 400 pages).
    let all = if action == "DescribeSecurityGroupList" && !state.areas.is_empty() {
        state.areas.get(area)
    } else {
        state.items.get(&action)
    };
    let mut items: Vec<&Value> = all.map(|items| items.iter().collect()).unwrap_or_default();
    if action == "DescribeSecurityGroupList" {
        let direction = number("Direction");
        items.retain(|i| i.get("Direction").and_then(Value::as_u64) == direction);
    }
    if let Some(vpcs) = request
        .pointer("/Filters/0/Values")
        .and_then(Value::as_array)
    {
        items.retain(|i| {
            // cvm nests the VPC in `VirtualPrivateCloud`.
            let vpc = i
                .get("VpcId")
                .or_else(|| i.pointer("/VirtualPrivateCloud/VpcId"))
                .and_then(Value::as_str)
                .unwrap_or("");
            vpcs.iter().any(|v| v.as_str() == Some(vpc))
        });
    }
    let total = items.len();
    let (start, size) = match paging {
        Paging::PageNo { max, .. } => {
            let page = number("PageNo").unwrap_or(1).max(1) as usize;
            let size = number("PageSize").unwrap_or(10) as usize;
            if size > max {
                return api_error(
                    "InvalidParameterValue",
                    &format!("PageSize {size} is over {max}"),
                );
            }
            ((page - 1) * size, size)
        }
        Paging::Offset { max } => {
            let limit = number("Limit").unwrap_or(20) as usize;
            if limit > max {
                return api_error(
                    "InvalidParameterValue",
                    &format!("Limit {limit} is over {max}"),
                );
            }
            let offset = number("Offset").unwrap_or(0) as usize;
            let start = match state.rule_list_offset {
                _ if action != "DescribeEnterpriseSecurityGroupRuleList" => offset,
                OffsetMeaning::Rows => offset,
                OffsetMeaning::PageFromOne => offset.max(1).saturating_sub(1) * limit,
                OffsetMeaning::PageFromZero => offset * limit,
            };
            (start, limit)
        }
    };
    let misbehaviour = state.misbehaving.get(&action).copied();
    let start = match misbehaviour {
        Some(Misbehaviour::RepeatsFirstPage) => 0,
        _ => start,
    };
    let size = match misbehaviour {
        Some(Misbehaviour::StopsAfter(items)) => size.min(items.saturating_sub(start)),
        _ => size,
    };
    let page: Vec<Value> = items.into_iter().skip(start).take(size).cloned().collect();
    let total = match misbehaviour {
        Some(Misbehaviour::TotalGrows) => {
            let asked = state.requests.iter().filter(|r| r.action == action).count();
            total + asked - 1
        }
        _ => total,
    };
    let total = match paging {
        Paging::PageNo {
            total_as_string: true,
            ..
        } => json!(total.to_string()),
        _ => json!(total),
    };
    if let Some(bytes) = state.oversized.remove(&action) {
        if let Some(first) = page.first().cloned() {
            let mut huge = first;
            huge["Description"] = json!("x".repeat(bytes));
            let mut response = json!({"RequestId": "stub-oversized", total_key: total});
            response[list_key] = json!([huge]);
            return (StatusCode::OK, json!({ "Response": response }).to_string());
        }
    }
    let mut response = json!({"RequestId": format!("stub-{}", state.requests.len())});
    response[list_key] = match misbehaviour {
        Some(Misbehaviour::NullList) => Value::Null,
        _ => json!(page),
    };
    response[total_key] = total;
    (StatusCode::OK, json!({ "Response": response }).to_string())
}

fn cos(
    state: &mut CloudState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut signed: Vec<(&str, &str)> = vec![("host", header(headers, "host"))];
    for name in ["if-none-match", "x-cos-forbid-overwrite"] {
        if !header(headers, name).is_empty() {
            signed.push((name, header(headers, name)));
        }
    }
    let key = path.to_string();
    let mut respond = |status: u16, etag: Option<String>, body: Vec<u8>| {
        state
            .cos_requests
            .push((method.to_string(), key.clone(), status));
        let mut response =
            (StatusCode::from_u16(status).expect("valid status"), body).into_response();
        if let Some(etag) = etag {
            response
                .headers_mut()
                .insert("etag", etag.parse().expect("ASCII etag"));
        }
        response
    };
    if let Err(problem) = qsign::verify(
        header(headers, "authorization"),
        SECRET_KEY,
        method.as_str(),
        path,
        &[],
        &signed,
    ) {
        let message = format!("COS {method} {path}: {problem}");
        state.problems.push(message);
        return respond(
            403,
            None,
            b"<Error><Code>SignatureDoesNotMatch</Code></Error>".to_vec(),
        );
    }
    if let Some(status) = state
        .cos_faults
        .get_mut(method.as_str())
        .and_then(VecDeque::pop_front)
    {
        return respond(
            status,
            None,
            b"<Error><Code>InternalError</Code></Error>".to_vec(),
        );
    }
    match *method {
        // PUT Object: with `x-cos-forbid-overwrite: true` an existing name is refused, 409
        // FileAlreadyExists (https://cloud.tencent.com/document/product/436/7749).
        Method::PUT
            if header(headers, "x-cos-forbid-overwrite").eq_ignore_ascii_case("true")
                && state.objects.contains_key(&key) =>
        {
            respond(
                409,
                None,
                b"<Error><Code>FileAlreadyExists</Code></Error>".to_vec(),
            )
        }
        Method::PUT => {
            use sha2::Digest;
            let etag = format!("\"{}\"", hex::encode(&sha2::Sha256::digest(&body)[..16]));
            state
                .objects
                .insert(key.clone(), (body.to_vec(), etag.clone()));
            respond(200, Some(etag), Vec::new())
        }
        Method::GET => match state.objects.get(&key).cloned() {
            None => respond(404, None, b"<Error><Code>NoSuchKey</Code></Error>".to_vec()),
            Some((_, etag)) if header(headers, "if-none-match") == etag => {
                respond(304, Some(etag), Vec::new())
            }
            Some((data, etag)) => respond(200, Some(etag), data),
        },
        _ => respond(405, None, Vec::new()),
    }
}
