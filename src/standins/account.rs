//! A local stand-in for the management side of an account that `esgflow deploy` builds in: CLS
//! logsets, topics and indexes (`DescribeLogsets`, `CreateLogset`, `DescribeTopics`,
//! `CreateTopic`, `DescribeIndex`, `CreateIndex`, `ModifyIndex`, and their deletes) and CAM
//! roles and policies (`GetRole`, `CreateRole`, `UpdateAssumeRolePolicy`, `ListPolicies`,
//! `GetPolicy`, `CreatePolicy`, `ListPolicyVersions`, `CreatePolicyVersion`,
//! `DeletePolicyVersion`, `ListAttachedRolePolicies`, `AttachRolePolicy`, and their deletes),
//! SCF functions, their triggers and async retry settings, and the snapshot bucket. Like the
//! other API 3.0 stand-ins it checks the TC3 signature and refuses, before anything else, what
//! the action's official definition refuses ([`super::contract`]); then it keeps state, so a
//! second deploy sees what the first one created.
//!
//! It also serves what Tencent's `tencent-component-toolkit` (the code the serverless `scf`
//! component runs) asks when it deploys a function: SCF calls signed with signature v1 as form
//! fields, read against the same definitions; CLS's `/deliverfunction` (the CLS trigger); and the
//! component's code bucket, addressed by `Host`, whose zip `CreateFunction` must find.
//!
//! Where the real service's answer for a topic without an index is unconfirmed, the stand-in
//! can give each reading ([`NoIndex`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::cloud::{api_error as error, check_tc3, check_v1, SECRET_ID, SECRET_KEY, V1_COMMON};
use super::{contract, header};

/// How `DescribeIndex` answers for a topic that has no index (the API does not document it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NoIndex {
    /// An error, `ResourceNotFound.IndexNotExist`.
    #[default]
    NotFound,
    /// A normal answer with `Status` false and no `Rule`.
    EmptyRule,
}

/// One topic.
#[derive(Debug, Clone)]
pub struct Topic {
    /// `TopicId`.
    pub id: String,
    /// `TopicName`.
    pub name: String,
    /// `LogsetId`.
    pub logset: String,
    /// `Period`, days.
    pub period: i64,
    /// The index rule and its status, once created.
    pub index: Option<(Value, bool)>,
}

/// One SCF function.
#[derive(Debug, Clone, Default)]
pub struct Function {
    /// `CreateFunction`'s parameters, with later updates' merged in.
    pub config: Value,
    /// Its `AsyncTriggerConfig`.
    pub async_config: Value,
    /// Its triggers, as `ListTriggers` answers them.
    pub triggers: Vec<Value>,
}

/// A bucket addressed by name.
#[derive(Debug, Clone, Default)]
pub struct NamedBucket {
    /// Its lifecycle configuration (`PUT ?lifecycle`), as sent.
    pub lifecycle: Option<String>,
    /// Its objects: key → content.
    pub objects: BTreeMap<String, Vec<u8>>,
}

/// One custom CAM policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `PolicyName`.
    pub name: String,
    /// Its versions' documents, by version id; the default one is in force.
    pub versions: BTreeMap<u64, String>,
    /// The version in force.
    pub default: u64,
}

impl Policy {
    /// The document in force.
    pub fn document(&self) -> &str {
        &self.versions[&self.default]
    }
}

/// What the account holds and what it was asked.
#[derive(Debug, Default)]
pub struct AccountState {
    /// CAM roles: name → trust policy document.
    pub roles: BTreeMap<String, String>,
    /// CAM policies by id.
    pub policies: BTreeMap<u64, Policy>,
    /// Attached policies: role name → policy ids.
    pub attached: BTreeMap<String, Vec<u64>>,
    /// SCF functions by name.
    pub functions: BTreeMap<String, Function>,
    /// The bucket at this address, once created: its ACL (`x-cos-acl`).
    pub bucket: Option<String>,
    /// The bucket's name is another account's: `PUT` answers 409.
    pub bucket_taken: bool,
    /// Buckets addressed by name in `Host` (`<bucket>.cos.<region>.myqcloud.com`), as COS's SDKs
    /// address them (the serverless component's code bucket): name → bucket.
    pub named_buckets: BTreeMap<String, NamedBucket>,
    /// The keys of the objects in the bucket.
    pub objects: std::collections::BTreeSet<String>,
    /// Logsets: id → name.
    pub logsets: BTreeMap<String, String>,
    /// Topics by id.
    pub topics: BTreeMap<String, Topic>,
    /// CLS shipping to functions (CLS triggers), by topic id, as `/deliverfunction` keeps them.
    pub deliveries: BTreeMap<String, Value>,
    /// Dashboards: id → (name, `Data`, `Tags`).
    pub dashboards: BTreeMap<String, (String, String, Value)>,
    /// `DescribeDashboards` answers `Data: ""`, as the official example does.
    pub dashboards_without_data: bool,
    /// Whether `ListTriggers` lists CLS shipping to a function as a `cls` trigger (undocumented
    /// for shipping made through `/deliverfunction`; both readings are tested).
    pub list_deliveries: bool,
    /// How a missing index is answered.
    pub no_index: NoIndex,
    /// Every action asked, in order (refused ones too).
    pub actions: Vec<String>,
    /// Members of signature-v1 requests (`Action.Member`) that the official definition does not
    /// name. Tencent's component toolkit sends some (`GetFunction.ShowTriggers`); since that is
    /// the code the platform runs, they are let through and listed here rather than refused.
    /// API 3.0 (TC3) requests get no such leniency: an unknown member is refused.
    pub undocumented: std::collections::BTreeSet<String>,
    /// Requests refused by signature or definition (a passing test expects none).
    pub problems: Vec<String>,
    next_id: u64,
}

impl AccountState {
    /// The actions asked that change something.
    pub fn writes(&self) -> Vec<String> {
        self.actions
            .iter()
            .filter(|a| {
                !["Describe", "Get", "List", "HEAD ", "GET "]
                    .iter()
                    .any(|read| a.starts_with(read))
            })
            .cloned()
            .collect()
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:08x}-stub", self.next_id)
    }
}

/// A running stand-in; stopped on drop.
pub struct AccountStub {
    /// Shared state.
    pub state: Arc<Mutex<AccountState>>,
    /// `http://127.0.0.1:<port>`, the API endpoint.
    pub url: String,
    _server: super::Server,
}

impl AccountStub {
    /// Starts an empty account on an ephemeral port.
    pub async fn start() -> std::io::Result<Self> {
        contract::definitions("cls", "2020-10-16").map_err(std::io::Error::other)?;
        contract::definitions("cam", "2019-01-16").map_err(std::io::Error::other)?;
        contract::definitions("scf", "2018-04-16").map_err(std::io::Error::other)?;
        let state = Arc::new(Mutex::new(AccountState::default()));
        let app = Router::new()
            .route(
                "/",
                post(handle)
                    .head(bucket)
                    .put(bucket)
                    .delete(bucket)
                    .get(list_objects),
            )
            .route(
                "/deliverfunction",
                axum::routing::get(deliver_function)
                    .post(deliver_function)
                    .put(deliver_function)
                    .delete(deliver_function),
            )
            .route("/{*key}", axum::routing::delete(delete_object))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                by_bucket_name,
            ))
            .with_state(state.clone());
        let server = super::Server::start("127.0.0.1:0", app).await?;
        Ok(Self {
            state,
            url: server.url(),
            _server: server,
        })
    }

    /// Problems seen so far.
    pub fn problems(&self) -> Vec<String> {
        self.state.lock().expect("stub lock").problems.clone()
    }
}

/// The action and body of an API call, signed either way the API accepts: TC3 with a JSON
/// body (API 3.0), or signature v1 with form fields (the API 2.0 way, which Tencent's
/// `tencent-component-toolkit` uses for SCF). Recorded, then checked: signature first, then the
/// action's official definition (a v1 request's undocumented members are listed in
/// [`AccountState::undocumented`], not refused).
fn read_call(
    state: &mut AccountState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Value), (StatusCode, String)> {
    if !header(headers, "content-type").starts_with("application/x-www-form-urlencoded") {
        let action = header(headers, "x-tc-action").to_string();
        state.actions.push(action.clone());
        if let Err(problem) =
            check_tc3(headers, body, SECRET_ID, SECRET_KEY, &["cls", "cam", "scf"])
        {
            state.problems.push(format!("{action}: {problem}"));
            return Err(error("AuthFailure.SignatureFailure", &problem));
        }
        let request: Value = serde_json::from_slice(body).unwrap_or_default();
        if let Err(refusal) = contract::check(headers, &action, &request) {
            state
                .problems
                .push(format!("{action}: {}: {}", refusal.code, refusal.message));
            return Err(error(refusal.code, &refusal.message));
        }
        return Ok((action, request));
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
            .to_string()
    };
    let action = field("Action");
    state.actions.push(action.clone());
    let host = header(headers, "host");
    let mut refuse = |code: &str, problem: String| {
        state.problems.push(format!("{action} (v1): {problem}"));
        Err(error(code, &problem))
    };
    if let Err(problem) = check_v1("POST", host, "/", &fields, SECRET_ID, SECRET_KEY) {
        return refuse("AuthFailure.SignatureFailure", problem);
    }
    let service = host.split('.').next().unwrap_or_default();
    let definitions = match contract::definitions(service, &field("Version")) {
        Ok(definitions) if ["cls", "cam", "scf"].contains(&service) => definitions,
        _ => {
            return refuse(
                "InvalidAction",
                format!("no definition of {service} version {:?}", field("Version")),
            )
        }
    };
    let own: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, _)| !V1_COMMON.contains(&k.as_str()))
        .cloned()
        .collect();
    let form = match definitions.from_form(&action, &own) {
        Ok(form) => form,
        Err(refusal) => return refuse(refusal.code, refusal.message),
    };
    if let Err(refusal) = definitions.validate(&action, &form.body) {
        return refuse(refusal.code, refusal.message);
    }
    state.undocumented.extend(
        form.undocumented
            .iter()
            .map(|name| format!("{action}.{name}")),
    );
    Ok((action, form.body))
}

async fn handle(
    State(state): State<Arc<Mutex<AccountState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mut state = state.lock().expect("stub lock");
    let (action, request) = match read_call(&mut state, &headers, &body) {
        Ok(call) => call,
        Err(refused) => return refused,
    };
    let answer = match action.as_str() {
        "DescribeLogsets" => describe_logsets(&state, &request),
        "CreateLogset" => {
            let name = request["LogsetName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if state.logsets.values().any(|n| *n == name) {
                return error(
                    "InvalidParameter.LogsetConflict",
                    "a logset of this name exists",
                );
            }
            let id = state.id("logset");
            state.logsets.insert(id.clone(), name);
            json!({"LogsetId": id})
        }
        "DeleteLogset" => {
            let id = request["LogsetId"].as_str().unwrap_or_default();
            if state.topics.values().any(|t| t.logset == id) {
                return error("OperationDenied", "the logset still has topics");
            }
            if state.logsets.remove(id).is_none() {
                return error("ResourceNotFound.LogsetNotExist", "no such logset");
            }
            json!({})
        }
        "DescribeTopics" => describe_topics(&state, &request),
        "CreateTopic" => {
            let logset = request["LogsetId"].as_str().unwrap_or_default().to_string();
            let name = request["TopicName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !state.logsets.contains_key(&logset) {
                return error("ResourceNotFound.LogsetNotExist", "no such logset");
            }
            if state
                .topics
                .values()
                .any(|t| t.logset == logset && t.name == name)
            {
                return error(
                    "InvalidParameter.TopicConflict",
                    "a topic of this name exists in the logset",
                );
            }
            let id = state.id("topic");
            let period = request["Period"].as_i64().unwrap_or(30);
            state.topics.insert(
                id.clone(),
                Topic {
                    id: id.clone(),
                    name,
                    logset,
                    period,
                    index: None,
                },
            );
            json!({"TopicId": id})
        }
        "DeleteTopic" => {
            let id = request["TopicId"].as_str().unwrap_or_default();
            if state.topics.remove(id).is_none() {
                return error("ResourceNotFound.TopicNotExist", "no such topic");
            }
            json!({})
        }
        "DescribeIndex" | "CreateIndex" | "ModifyIndex" | "DeleteIndex" => {
            let no_index = state.no_index;
            let id = request["TopicId"].as_str().unwrap_or_default();
            let Some(topic) = state.topics.get_mut(id) else {
                return error("ResourceNotFound.TopicNotExist", "no such topic");
            };
            match (action.as_str(), topic.index.as_mut()) {
                ("DescribeIndex", Some((rule, status))) => {
                    json!({"TopicId": id, "Status": status, "Rule": rule,
                        "ModifyTime": "2026-11-28 12:00:00", "IncludeInternalFields": false, "MetadataFlag": 0})
                }
                ("DescribeIndex", None) if no_index == NoIndex::EmptyRule => {
                    json!({"TopicId": id, "Status": false, "Rule": null})
                }
                ("CreateIndex", Some(_)) => {
                    return error("FailedOperation.IndexExist", "the topic has an index")
                }
                ("ModifyIndex", Some((rule, status))) => {
                    if let Some(new) = request.get("Rule") {
                        *rule = new.clone();
                    }
                    if let Some(new) = request.get("Status").and_then(Value::as_bool) {
                        *status = new;
                    }
                    json!({})
                }
                ("CreateIndex", None) => {
                    topic.index = Some((
                        request["Rule"].clone(),
                        request["Status"].as_bool().unwrap_or(true),
                    ));
                    json!({})
                }
                ("DeleteIndex", Some(_)) => {
                    topic.index = None;
                    json!({})
                }
                _ => return error("ResourceNotFound.IndexNotExist", "the topic has no index"),
            }
        }
        "GetRole"
        | "CreateRole"
        | "UpdateAssumeRolePolicy"
        | "DeleteRole"
        | "ListPolicies"
        | "GetPolicy"
        | "CreatePolicy"
        | "ListPolicyVersions"
        | "CreatePolicyVersion"
        | "DeletePolicyVersion"
        | "DeletePolicy"
        | "ListAttachedRolePolicies"
        | "AttachRolePolicy"
        | "DetachRolePolicy" => match cam(&mut state, &action, &request) {
            Ok(answer) => answer,
            Err((code, message)) => return error(code, &message),
        },
        "DescribeDashboards" => {
            let names = filter(&request, "dashboardName");
            let infos: Vec<Value> = state
                .dashboards
                .iter()
                .filter(|(_, (name, _, _))| name_matches(name, &names, false))
                .map(|(id, (name, data, tags))| {
                    let data = if state.dashboards_without_data {
                        ""
                    } else {
                        data.as_str()
                    };
                    json!({"DashboardId": id, "DashboardName": name, "Data": data,
                    "CreateTime": "2026-11-28 12:00:00", "UpdateTime": "2026-11-28 12:00:00",
                    "DashboardRegion": "", "DashboardTopicInfos": [], "Tags": tags})
                })
                .collect();
            json!({"TotalCount": infos.len(), "DashboardInfos": infos})
        }
        // API 3.0 CLS shipping to a function: one shipping a topic, as `/deliverfunction` keeps
        // it (the same CLS rule under either API).
        "CreateDeliverCloudFunction" => {
            let topic = request["TopicId"].as_str().unwrap_or_default().to_string();
            let function = request["FunctionName"].as_str().unwrap_or_default();
            if !state.topics.contains_key(&topic) {
                return error("ResourceNotFound.TopicNotExist", "topic not exist");
            }
            if !state.functions.contains_key(function) {
                return error("InvalidParameter", "the function does not exist");
            }
            if state.deliveries.contains_key(&topic) {
                return error("FailedOperation", "the topic ships to a function already");
            }
            let delivery = json!({"topic_id": topic, "name_space": request["Namespace"],
                "function_name": function, "qualifier": request["Qualifier"],
                "max_wait": request.get("Timeout").cloned().unwrap_or(json!(60)),
                "max_size": request.get("MaxMsgNum").cloned().unwrap_or(json!(100)),
                "effective": true});
            state.deliveries.insert(topic, delivery);
            json!({})
        }
        "CreateDashboard" => {
            let name = request["DashboardName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if state.dashboards.values().any(|(n, _, _)| *n == name) {
                return error(
                    "InvalidParameter.DashboardNameConflict",
                    "a dashboard of this name exists",
                );
            }
            let data = request["Data"].as_str().unwrap_or_default().to_string();
            if serde_json::from_str::<Value>(&data).is_err() {
                return error("InvalidParameterValue", "Data is not JSON");
            }
            let id = state.id("dashboard");
            let tags = request.get("Tags").cloned().unwrap_or_else(|| json!([]));
            state.dashboards.insert(id.clone(), (name, data, tags));
            json!({"DashboardId": id})
        }
        "ModifyDashboard" | "DeleteDashboard" => {
            let id = request["DashboardId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !state.dashboards.contains_key(&id) {
                return error(
                    "ResourceNotFound.DashboardRecordNotExist",
                    "no such dashboard",
                );
            }
            if action == "DeleteDashboard" {
                state.dashboards.remove(&id);
            } else {
                let entry = state.dashboards.get_mut(&id).expect("checked above");
                if let Some(name) = request["DashboardName"].as_str() {
                    entry.0 = name.to_string();
                }
                if let Some(data) = request["Data"].as_str() {
                    entry.1 = data.to_string();
                }
                if let Some(tags) = request.get("Tags") {
                    entry.2 = tags.clone();
                }
            }
            json!({})
        }
        "GetFunction"
        | "CreateFunction"
        | "UpdateFunctionCode"
        | "UpdateFunctionConfiguration"
        | "DeleteFunction"
        | "GetFunctionEventInvokeConfig"
        | "UpdateFunctionEventInvokeConfig"
        | "ListTriggers"
        | "CreateTrigger"
        | "UpdateTrigger"
        | "DeleteTrigger"
        | "GetAlias" => match scf(&mut state, &action, &request) {
            Ok(answer) => answer,
            Err((code, message)) => return error(code, &message),
        },
        other => {
            return error(
                "InvalidAction",
                &format!("the account stand-in does not serve {other}"),
            )
        }
    };
    let mut response = answer;
    response["RequestId"] = json!(format!("stub-{}", state.actions.len()));
    (StatusCode::OK, json!({ "Response": response }).to_string())
}

/// The COS bucket served at this address (`HEAD`, `PUT`, `DELETE` on `/`), signed with
/// `q-sign` over `host` (and `x-cos-acl` when sent).
async fn bucket(
    State(state): State<Arc<Mutex<AccountState>>>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let mut state = state.lock().expect("stub lock");
    state.actions.push(format!("{method} Bucket"));
    let mut signed = vec![("host", header(&headers, "host"))];
    if !header(&headers, "x-cos-acl").is_empty() {
        signed.push(("x-cos-acl", header(&headers, "x-cos-acl")));
    }
    if let Err(problem) = esgflow::adapters::tencent::sign::qsign::verify(
        header(&headers, "authorization"),
        SECRET_KEY,
        method.as_str(),
        "/",
        &[],
        &signed,
    ) {
        state.problems.push(format!("{method} Bucket: {problem}"));
        return cos_error(403, "SignatureDoesNotMatch");
    }
    match method.as_str() {
        "HEAD" if state.bucket_taken => (StatusCode::FORBIDDEN, String::new()),
        "HEAD" if state.bucket.is_some() => (StatusCode::OK, String::new()),
        "HEAD" => (StatusCode::NOT_FOUND, String::new()),
        "PUT" if state.bucket_taken || state.bucket.is_some() => {
            cos_error(409, "BucketAlreadyExists")
        }
        "PUT" => {
            let acl = header(&headers, "x-cos-acl");
            state.bucket = Some(if acl.is_empty() { "private" } else { acl }.to_string());
            (StatusCode::OK, String::new())
        }
        _ if state.bucket.is_some() && !state.objects.is_empty() => {
            cos_error(409, "BucketNotEmpty")
        }
        _ if state.bucket.take().is_some() => (StatusCode::NO_CONTENT, String::new()),
        _ => cos_error(404, "NoSuchBucket"),
    }
}

/// Requests whose `Host` names a bucket (`<bucket>.cos.<region>.myqcloud.com`, or the
/// `tencentcos.cn` domain COS's SDK falls back to) go to that bucket; the rest (the API, and the deploy's bucket at the stand-in's own address) pass on.
async fn by_bucket_name(
    State(state): State<Arc<Mutex<AccountState>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = header(request.headers(), "host").to_string();
    let Some(bucket) = host
        .strip_suffix(".myqcloud.com")
        .or_else(|| host.strip_suffix(".tencentcos.cn"))
        .and_then(|rest| rest.split_once(".cos."))
        .map(|(bucket, _region)| bucket.to_string())
    else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut state = state.lock().expect("stub lock");
    let request_id = format!("stub-{}", state.actions.len() + 1);
    let (status, body) = named_bucket(&mut state, &bucket, &parts, &body);
    // COS answers every request with its id; the SDK takes an answer without one for a
    // network error and retries on its other domain.
    (status, [("x-cos-request-id", request_id)], body).into_response()
}

/// `HEAD`/`PUT` of a bucket, `PUT ?lifecycle`, `PUT` of an object, each checked for its
/// `q-sign` signature over the headers it names
/// (<https://cloud.tencent.com/document/product/436/7778>).
fn named_bucket(
    state: &mut AccountState,
    bucket: &str,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> (StatusCode, String) {
    let method = parts.method.as_str();
    // COS signs the path decoded.
    let path = percent_encoding::percent_decode_str(parts.uri.path())
        .decode_utf8_lossy()
        .into_owned();
    let call = match (method, path.as_str(), parts.uri.query()) {
        (_, "/", Some(query)) => format!("{method} Bucket?{query}"),
        (_, "/", None) => format!("{method} Bucket {bucket}"),
        _ => format!("{method} Object"),
    };
    state.actions.push(call.clone());
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let params: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    if let Err(problem) = esgflow::adapters::tencent::sign::qsign::verify(
        header(&parts.headers, "authorization"),
        SECRET_KEY,
        method,
        &path,
        &params,
        &headers,
    ) {
        state.problems.push(format!("{call}: {problem}"));
        return cos_error(403, "SignatureDoesNotMatch");
    }
    let exists = state.named_buckets.contains_key(bucket);
    match (method, path.as_str(), params.as_slice()) {
        ("HEAD", "/", []) if exists => (StatusCode::OK, String::new()),
        ("HEAD", "/", []) => (StatusCode::NOT_FOUND, String::new()),
        ("PUT", "/", []) if exists => cos_error(409, "BucketAlreadyOwnedByYou"),
        ("PUT", "/", []) => {
            state
                .named_buckets
                .insert(bucket.into(), NamedBucket::default());
            (StatusCode::OK, String::new())
        }
        (_, _, _) if !exists => cos_error(404, "NoSuchBucket"),
        ("PUT", "/", [("lifecycle", "")]) => {
            let text = String::from_utf8_lossy(body);
            if !text.contains("<LifecycleConfiguration>") || !text.contains("<Rule>") {
                state
                    .problems
                    .push(format!("{call}: not a lifecycle configuration: {text}"));
                return cos_error(400, "MalformedXML");
            }
            state
                .named_buckets
                .get_mut(bucket)
                .expect("exists")
                .lifecycle = Some(text.into());
            (StatusCode::OK, String::new())
        }
        ("PUT", key, []) if key != "/" => {
            let key = key[1..].to_string();
            let objects = &mut state.named_buckets.get_mut(bucket).expect("exists").objects;
            objects.insert(key, body.to_vec());
            (StatusCode::OK, String::new())
        }
        _ => {
            state
                .problems
                .push(format!("{call}: not served by the stand-in"));
            cos_error(405, "MethodNotAllowed")
        }
    }
}

/// `GET Bucket`: the keys after `marker`, at most `max-keys` of them.
async fn list_objects(
    State(state): State<Arc<Mutex<AccountState>>>,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let mut state = state.lock().expect("stub lock");
    state.actions.push("GET Bucket".into());
    let params: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if let Err(problem) = esgflow::adapters::tencent::sign::qsign::verify(
        header(&headers, "authorization"),
        SECRET_KEY,
        "GET",
        "/",
        &params,
        &[("host", header(&headers, "host"))],
    ) {
        state.problems.push(format!("GET Bucket: {problem}"));
        return cos_error(403, "SignatureDoesNotMatch");
    }
    if state.bucket.is_none() {
        return cos_error(404, "NoSuchBucket");
    }
    let marker = query.get("marker").cloned().unwrap_or_default();
    let max: usize = query
        .get("max-keys")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000)
        .min(1000);
    let after: Vec<&String> = state.objects.iter().filter(|k| **k > marker).collect();
    let page = &after[..after.len().min(max)];
    let truncated = after.len() > page.len();
    let contents: String = page
        .iter()
        .map(|k| format!("<Contents><Key>{k}</Key><Size>1</Size></Contents>"))
        .collect();
    let next = match (truncated, page.last()) {
        (true, Some(last)) => format!("<NextMarker>{last}</NextMarker>"),
        _ => String::new(),
    };
    (
        StatusCode::OK,
        format!("<?xml version='1.0' encoding='utf-8' ?><ListBucketResult><Name>stub</Name><Marker>{marker}</Marker><MaxKeys>{max}</MaxKeys><IsTruncated>{truncated}</IsTruncated>{next}{contents}</ListBucketResult>"),
    )
}

/// `DELETE Object`.
async fn delete_object(
    State(state): State<Arc<Mutex<AccountState>>>,
    axum::extract::Path(key): axum::extract::Path<String>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let mut state = state.lock().expect("stub lock");
    state.actions.push("DELETE Object".into());
    let path = format!("/{key}");
    if let Err(problem) = esgflow::adapters::tencent::sign::qsign::verify(
        header(&headers, "authorization"),
        SECRET_KEY,
        "DELETE",
        &path,
        &[],
        &[("host", header(&headers, "host"))],
    ) {
        state.problems.push(format!("DELETE {path}: {problem}"));
        return cos_error(403, "SignatureDoesNotMatch");
    }
    state.objects.remove(&key);
    (StatusCode::NO_CONTENT, String::new())
}

/// CLS's shipping of a topic to a function (a CLS trigger), as Tencent's component toolkit
/// makes it: `GET`/`DELETE /deliverfunction?topic_id=`, `POST`/`PUT` with a JSON body, on
/// `<region>.cls.tencentcs.com`, signed with CLS's `q-sign` (sha1,
/// <https://cloud.tencent.com/document/product/614/12445>). No official definition of this API
/// exists to check against; the body is held to the fields the toolkit documents
/// (`lib/modules/cls/utils.js`), the topic and the function must exist, and `max_wait` is in
/// the component's range (3–300 s).
async fn deliver_function(
    State(state): State<Arc<Mutex<AccountState>>>,
    method: axum::http::Method,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mut state = state.lock().expect("stub lock");
    let call = format!("{method} /deliverfunction");
    state.actions.push(call.clone());
    let params: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let refuse = |state: &mut AccountState, status: u16, code: &str, message: String| {
        state.problems.push(format!("{call}: {code}: {message}"));
        (
            StatusCode::from_u16(status).expect("a valid status"),
            json!({"errorcode": code, "errormessage": message}).to_string(),
        )
    };
    if let Err(problem) = esgflow::adapters::tencent::sign::qsign::verify(
        header(&headers, "authorization"),
        SECRET_KEY,
        method.as_str(),
        "/deliverfunction",
        &params,
        &[("host", header(&headers, "host"))],
    ) {
        return refuse(&mut state, 403, "SignatureFailure", problem);
    }
    let (topic, delivery) = if matches!(method.as_str(), "GET" | "DELETE") {
        (query.get("topic_id").cloned().unwrap_or_default(), None)
    } else {
        let delivery: Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Err(problem) = check_delivery(&state, &delivery) {
            return refuse(&mut state, 400, "InvalidParameter", problem);
        }
        (
            delivery["topic_id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            Some(delivery),
        )
    };
    let exists = state.deliveries.contains_key(&topic);
    match (method.as_str(), delivery) {
        ("GET", _) if exists => (StatusCode::OK, state.deliveries[&topic].to_string()),
        ("POST", Some(_)) if exists => {
            refuse(&mut state, 409, "DeliverFunctionExist", format!("topic {topic} ships already"))
        }
        ("POST", Some(delivery)) => {
            state.deliveries.insert(topic, delivery);
            (StatusCode::OK, String::new())
        }
        // An update only switches the shipping on or off; the other fields are not applied.
        ("PUT", Some(delivery)) if exists => {
            if let Some(effective) = delivery.get("effective") {
                let kept = state.deliveries.get_mut(&topic).expect("exists");
                kept["effective"] = effective.clone();
            }
            (StatusCode::OK, String::new())
        }
        ("DELETE", _) if exists => {
            state.deliveries.remove(&topic);
            (StatusCode::OK, String::new())
        }
        _ => (
            StatusCode::NOT_FOUND,
            json!({"errorcode": "DeliverFunctionNotExist", "errormessage": format!("topic {topic} ships to no function")}).to_string(),
        ),
    }
}

/// What `/deliverfunction` accepts as a body.
fn check_delivery(state: &AccountState, delivery: &Value) -> Result<(), String> {
    let fields = delivery
        .as_object()
        .ok_or("the body is not a JSON object")?;
    for (name, value) in fields {
        let fits = match name.as_str() {
            "topic_id" | "name_space" | "function_name" | "qualifier" => value.is_string(),
            "max_wait" => value.as_u64().is_some_and(|w| (3..=300).contains(&w)),
            "max_size" => value.is_u64(),
            "effective" => value.is_boolean(),
            _ => return Err(format!("{name} is not a field of a delivery")),
        };
        if !fits {
            return Err(format!("{name} = {value} is not valid"));
        }
    }
    for required in ["topic_id", "name_space", "function_name", "qualifier"] {
        if !fields.contains_key(required) {
            return Err(format!("{required} is missing"));
        }
    }
    let topic = delivery["topic_id"].as_str().unwrap_or_default();
    if !state.topics.contains_key(topic) {
        return Err(format!("topic {topic} does not exist"));
    }
    let function = delivery["function_name"].as_str().unwrap_or_default();
    if !state.functions.contains_key(function) {
        return Err(format!("function {function} does not exist"));
    }
    Ok(())
}

fn cos_error(status: u16, code: &str) -> (StatusCode, String) {
    (
        StatusCode::from_u16(status).expect("a valid status"),
        format!("<?xml version='1.0' encoding='utf-8' ?><Error><Code>{code}</Code></Error>"),
    )
}

/// The SCF actions: functions are made by `CreateFunction` (or put in place by a test, as the
/// serverless CLI would have), changed by the two updates, and their triggers kept as
/// `ListTriggers` answers them.
fn scf(
    state: &mut AccountState,
    action: &str,
    request: &Value,
) -> Result<Value, (&'static str, String)> {
    let name = request["FunctionName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let no_function = || {
        (
            "ResourceNotFound.Function",
            format!("function {name:?} does not exist"),
        )
    };
    if action == "CreateFunction" {
        if state.functions.contains_key(&name) {
            return Err(("ResourceInUse.Function", format!("{name:?} exists")));
        }
        check_code(
            &state.named_buckets,
            &request["Code"],
            request["Runtime"] == "CustomRuntime",
        )?;
        state.functions.insert(
            name,
            Function {
                config: request.clone(),
                async_config: json!({"RetryConfig": [{"RetryNum": 2}], "MsgTTL": 86400}),
                triggers: vec![],
            },
        );
        return Ok(json!({}));
    }
    // CLS shipping to this function, as SCF would list it if it lists CLS triggers (with the
    // topic's resource id, which the toolkit reads them by).
    let shipped: Vec<Value> = state
        .deliveries
        .values()
        .filter(|d| state.list_deliveries && d["function_name"] == name.as_str())
        .map(|d| {
            json!({"Type": "cls", "TriggerName": d["topic_id"], "TriggerDesc": d.to_string(),
                "Qualifier": d["qualifier"], "Enable": if d["effective"] == true { "OPEN" } else { "CLOSE" },
                "ResourceId": format!("qcs::cls:ap-guangzhou:uin/100000000001:topic/{}", d["topic_id"].as_str().unwrap_or_default())})
        })
        .collect();
    if action == "UpdateFunctionCode" {
        let custom = state
            .functions
            .get(&name)
            .is_some_and(|f| f.config["Runtime"] == "CustomRuntime");
        check_code(&state.named_buckets, &request["Code"], custom)?;
    }
    // A CLS trigger is CLS shipping: deleting it deletes the shipping of its topic.
    if action == "DeleteTrigger" && request["Type"] == "cls" {
        state.functions.get(&name).ok_or_else(no_function)?;
        let topic = request["TriggerName"].as_str().unwrap_or_default();
        if state
            .deliveries
            .get(topic)
            .is_some_and(|d| d["function_name"] == name.as_str())
        {
            state.deliveries.remove(topic);
            return Ok(json!({}));
        }
        return Err((
            "ResourceNotFound.Trigger",
            format!("no cls trigger {topic}"),
        ));
    }
    let function = state.functions.get_mut(&name).ok_or_else(no_function)?;
    let trigger_at = |function: &Function| {
        function.triggers.iter().position(|t| {
            t["Type"] == request["Type"]
                && t["TriggerName"] == request["TriggerName"]
                && t["Qualifier"] == *request.get("Qualifier").unwrap_or(&json!("$LATEST"))
        })
    };
    Ok(match action {
        "GetFunction" => {
            let mut answer = function.config.clone();
            for (key, value) in [
                ("Status", json!("Active")),
                ("Qualifier", json!("$LATEST")),
                (
                    "Namespace",
                    json!(request["Namespace"].as_str().unwrap_or("default")),
                ),
                ("Triggers", json!(function.triggers)),
                ("Tags", json!([])),
            ] {
                answer[key] = value;
            }
            answer
        }
        "UpdateFunctionCode" | "UpdateFunctionConfiguration" => {
            for (key, value) in request.as_object().into_iter().flatten() {
                function.config[key] = value.clone();
            }
            json!({})
        }
        "DeleteFunction" => {
            state.functions.remove(&name);
            json!({})
        }
        "GetFunctionEventInvokeConfig" => json!({"AsyncTriggerConfig": function.async_config}),
        "UpdateFunctionEventInvokeConfig" => {
            function.async_config = request["AsyncTriggerConfig"].clone();
            json!({"AsyncTriggerConfig": function.async_config})
        }
        "ListTriggers" => {
            let wanted = |key: &str| filter(request, key);
            let (types, qualifiers) = (wanted("Type"), wanted("Qualifier"));
            let matching: Vec<&Value> = function
                .triggers
                .iter()
                .chain(&shipped)
                .filter(|t| {
                    types
                        .as_ref()
                        .is_none_or(|v| v.contains(&t["Type"].as_str().unwrap_or_default()))
                })
                .filter(|t| {
                    qualifiers
                        .as_ref()
                        .is_none_or(|v| v.contains(&t["Qualifier"].as_str().unwrap_or_default()))
                })
                .collect();
            let offset = request["Offset"].as_u64().unwrap_or(0) as usize;
            let limit = request["Limit"].as_u64().unwrap_or(20) as usize;
            let page: Vec<&&Value> = matching.iter().skip(offset).take(limit).collect();
            json!({"Triggers": page, "TotalCount": matching.len()})
        }
        "CreateTrigger" => {
            let trigger = scf_trigger(request)?;
            if trigger_at(function).is_some() {
                return Err((
                    "ResourceInUse.Trigger",
                    format!(
                        "{} trigger {} exists",
                        trigger["Type"], trigger["TriggerName"]
                    ),
                ));
            }
            function.triggers.push(trigger.clone());
            json!({"TriggerInfo": trigger})
        }
        "UpdateTrigger" | "DeleteTrigger" => {
            let at = trigger_at(function).ok_or((
                "ResourceNotFound.Trigger",
                format!("no {} trigger {}", request["Type"], request["TriggerName"]),
            ))?;
            if action == "DeleteTrigger" {
                function.triggers.remove(at);
                json!({})
            } else {
                let trigger = &mut function.triggers[at];
                for key in ["TriggerDesc", "Enable"] {
                    if let Some(value) = request.get(key) {
                        trigger[key] = value.clone();
                    }
                }
                json!({"TriggerInfo": trigger})
            }
        }
        "GetAlias" => json!({"Name": request["Name"], "FunctionVersion": "$LATEST",
            "RoutingConfig": {"AdditionalVersionWeights": [], "AddtionVersionMatchs": []}}),
        other => unreachable!("scf() is called for SCF actions only, not {other}"),
    })
}

/// Whether SCF could fetch and run a function's code: the object `Code` names must be in the
/// code bucket (`<CosBucketName>-<APPID>`; the key with or without the leading `/` SCF's
/// `CosObjectName` carries), be a zip, and, for a Custom Runtime, hold an executable
/// `bootstrap` at its root (<https://cloud.tencent.com/document/product/583/47274>).
fn check_code(
    buckets: &BTreeMap<String, NamedBucket>,
    code: &Value,
    custom_runtime: bool,
) -> Result<(), (&'static str, String)> {
    let bad = |why: String| Err(("InvalidParameterValue.Code", why));
    let (Some(bucket), Some(object)) = (
        code["CosBucketName"].as_str(),
        code["CosObjectName"].as_str(),
    ) else {
        return bad(format!("Code {code} names no COS object"));
    };
    let content = buckets
        .iter()
        .filter(|(name, _)| {
            name.strip_prefix(bucket)
                .and_then(|appid| appid.strip_prefix('-'))
                .is_some_and(|appid| !appid.is_empty() && appid.bytes().all(|b| b.is_ascii_digit()))
        })
        .find_map(|(_, b)| {
            b.objects
                .get(object)
                .or_else(|| b.objects.get(object.trim_start_matches('/')))
        });
    let Some(content) = content else {
        return bad(format!("no object {object} in a bucket {bucket}-<APPID>"));
    };
    let mut zip = match zip::ZipArchive::new(std::io::Cursor::new(content)) {
        Ok(zip) => zip,
        Err(e) => return bad(format!("{object} is not a zip: {e}")),
    };
    if custom_runtime {
        let executable = zip
            .by_name("bootstrap")
            .ok()
            .and_then(|entry| entry.unix_mode())
            .is_some_and(|mode| mode & 0o111 != 0);
        if !executable {
            return bad(format!(
                "{object} has no executable bootstrap at its root (Custom Runtime)"
            ));
        }
    }
    Ok(())
}

/// A trigger as `CreateTrigger` makes it, refused where SCF documents a form for its
/// description (<https://cloud.tencent.com/document/api/583/18589>): a timer's is a 7-field cron
/// expression, an `http` (Function URL) trigger's a JSON object with `AuthType` and
/// `NetConfig`.
fn scf_trigger(request: &Value) -> Result<Value, (&'static str, String)> {
    let kind = request["Type"].as_str().unwrap_or_default();
    let desc = request["TriggerDesc"].as_str().unwrap_or_default();
    let bad = |why: String| Err(("InvalidParameterValue.TriggerDesc", why));
    match kind {
        "timer" if desc.split_whitespace().count() != 7 => {
            return bad(format!("{desc:?} is not a 7-field cron expression"))
        }
        "http" => {
            let parsed: Value = serde_json::from_str(desc).unwrap_or_default();
            if !["NONE", "CAM"].contains(&parsed["AuthType"].as_str().unwrap_or_default())
                || !parsed["NetConfig"]["EnableIntranet"].is_boolean()
                || !parsed["NetConfig"]["EnableExtranet"].is_boolean()
            {
                return bad(format!("{desc:?} is not an http trigger description"));
            }
        }
        "timer" => {}
        other => {
            return Err((
                "InvalidParameterValue.Type",
                format!("the account stand-in makes no {other:?} triggers"),
            ))
        }
    }
    Ok(json!({
        "Type": kind,
        "TriggerName": request["TriggerName"],
        "TriggerDesc": desc,
        "Qualifier": request.get("Qualifier").unwrap_or(&json!("$LATEST")),
        "Enable": request.get("Enable").unwrap_or(&json!("OPEN")),
        "AddTime": "2026-11-28 00:00:00",
        "ModTime": "2026-11-28 00:00:00",
    }))
}

/// The CAM actions. A role is named by `RoleName` here (the deploy never uses ids).
fn cam(
    state: &mut AccountState,
    action: &str,
    request: &Value,
) -> Result<Value, (&'static str, String)> {
    let role = |key: &str| request[key].as_str().unwrap_or_default().to_string();
    let policy_id = request["PolicyId"].as_u64().unwrap_or_default();
    let no_role = || ("ResourceNotFound.RoleNotExist", "no such role".to_string());
    let no_policy = || {
        (
            "ResourceNotFound.PolicyIdNotExist",
            "no such policy".to_string(),
        )
    };
    Ok(match action {
        "GetRole" => {
            let name = role("RoleName");
            let trust = state.roles.get(&name).ok_or_else(no_role)?;
            json!({"RoleInfo": {"RoleId": format!("4611686018{:09}", name.len()), "RoleName": name,
                "PolicyDocument": trust, "Description": "", "AddTime": "2026-11-28 12:00:00",
                "UpdateTime": "2026-11-28 12:00:00", "ConsoleLogin": 0, "RoleType": "user"}})
        }
        "CreateRole" => {
            let name = role("RoleName");
            if state.roles.contains_key(&name) {
                return Err(("InvalidParameter.RoleNameInUse", "the role exists".into()));
            }
            serde_json::from_str::<Value>(request["PolicyDocument"].as_str().unwrap_or(""))
                .map_err(|e| ("InvalidParameter.PolicyDocumentError", e.to_string()))?;
            state.roles.insert(name, role("PolicyDocument"));
            json!({"RoleId": "4611686018000000001"})
        }
        "UpdateAssumeRolePolicy" => {
            let trust = state.roles.get_mut(&role("RoleName")).ok_or_else(no_role)?;
            *trust = role("PolicyDocument");
            json!({})
        }
        "DeleteRole" => {
            let name = role("RoleName");
            state.roles.remove(&name).ok_or_else(no_role)?;
            state.attached.remove(&name);
            json!({})
        }
        "ListPolicies" => {
            let keyword = role("Keyword");
            let list: Vec<Value> = state
                .policies
                .iter()
                .filter(|(_, p)| p.name.contains(&keyword))
                .map(|(id, p)| {
                    json!({"PolicyId": id, "PolicyName": p.name, "Type": 1,
                    "AddTime": "2026-11-28 12:00:00", "CreateMode": 2, "Attachments": 0})
                })
                .collect();
            json!({"TotalNum": list.len(), "List": list})
        }
        "GetPolicy" => {
            let policy = state.policies.get(&policy_id).ok_or_else(no_policy)?;
            json!({"PolicyName": policy.name, "Type": 1, "PolicyDocument": policy.document(),
                "AddTime": "2026-11-28 12:00:00", "UpdateTime": "2026-11-28 12:00:00"})
        }
        "CreatePolicy" => {
            let name = role("PolicyName");
            if state.policies.values().any(|p| p.name == name) {
                return Err((
                    "FailedOperation.PolicyNameInUse",
                    "the policy exists".into(),
                ));
            }
            serde_json::from_str::<Value>(request["PolicyDocument"].as_str().unwrap_or(""))
                .map_err(|e| ("InvalidParameter.PolicyDocumentError", e.to_string()))?;
            let id = 200_000_000 + state.policies.len() as u64;
            state.policies.insert(
                id,
                Policy {
                    name,
                    versions: BTreeMap::from([(1, role("PolicyDocument"))]),
                    default: 1,
                },
            );
            json!({"PolicyId": id})
        }
        "ListPolicyVersions" => {
            let policy = state.policies.get(&policy_id).ok_or_else(no_policy)?;
            let versions: Vec<Value> = policy
                .versions
                .keys()
                .map(|v| {
                    json!({"VersionId": v, "CreateDate": "2026-11-28 12:00:00",
                    "IsDefaultVersion": i64::from(*v == policy.default)})
                })
                .collect();
            json!({"Versions": versions})
        }
        "CreatePolicyVersion" => {
            let policy = state.policies.get_mut(&policy_id).ok_or_else(no_policy)?;
            if policy.versions.len() >= 5 {
                return Err((
                    "LimitExceeded.PolicyVersionFull",
                    "a policy has at most 5 versions".into(),
                ));
            }
            let version = policy.versions.keys().max().copied().unwrap_or(0) + 1;
            policy.versions.insert(version, role("PolicyDocument"));
            if request["SetAsDefault"].as_bool() == Some(true) {
                policy.default = version;
            }
            json!({"VersionId": version})
        }
        "DeletePolicyVersion" => {
            let policy = state.policies.get_mut(&policy_id).ok_or_else(no_policy)?;
            for version in request["VersionId"].as_array().into_iter().flatten() {
                let version = version.as_u64().unwrap_or_default();
                if version == policy.default {
                    return Err((
                        "OperationDenied",
                        "the default version cannot be deleted".into(),
                    ));
                }
                policy.versions.remove(&version);
            }
            json!({})
        }
        "DeletePolicy" => {
            for id in request["PolicyId"].as_array().into_iter().flatten() {
                let id = id.as_u64().unwrap_or_default();
                state.policies.remove(&id).ok_or_else(no_policy)?;
                for attached in state.attached.values_mut() {
                    attached.retain(|a| *a != id);
                }
            }
            json!({})
        }
        "ListAttachedRolePolicies" => {
            let name = role("RoleName");
            if !state.roles.contains_key(&name) {
                return Err(no_role());
            }
            let list: Vec<Value> = state
                .attached
                .get(&name)
                .into_iter()
                .flatten()
                .map(|id| {
                    json!({"PolicyId": id, "PolicyName": state.policies[id].name,
                    "AddTime": "2026-11-28 12:00:00", "PolicyType": "User", "CreateMode": 2})
                })
                .collect();
            json!({"TotalNum": list.len(), "List": list})
        }
        "AttachRolePolicy" | "DetachRolePolicy" => {
            let key = if action == "AttachRolePolicy" {
                "AttachRoleName"
            } else {
                "DetachRoleName"
            };
            let name = role(key);
            if !state.roles.contains_key(&name) {
                return Err(no_role());
            }
            if !state.policies.contains_key(&policy_id) {
                return Err(no_policy());
            }
            let attached = state.attached.entry(name).or_default();
            attached.retain(|a| *a != policy_id);
            if action == "AttachRolePolicy" {
                attached.push(policy_id);
            }
            json!({})
        }
        other => unreachable!("routed here only for CAM actions, not {other}"),
    })
}

fn filter<'a>(request: &'a Value, key: &str) -> Option<Vec<&'a str>> {
    request["Filters"].as_array()?.iter().find_map(|f| {
        (f["Key"] == key).then(|| {
            f["Values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect()
        })
    })
}

/// A name filter matches by part of the name, as the real one does unless `PreciseSearch` is 1.
fn name_matches(name: &str, wanted: &Option<Vec<&str>>, precise: bool) -> bool {
    wanted.as_ref().is_none_or(|values| {
        values.iter().any(|v| {
            if precise {
                name == *v
            } else {
                name.contains(v)
            }
        })
    })
}

fn describe_logsets(state: &AccountState, request: &Value) -> Value {
    let wanted = filter(request, "logsetName");
    let logsets: Vec<Value> = state
        .logsets
        .iter()
        .filter(|(_, name)| name_matches(name, &wanted, false))
        .map(|(id, name)| {
            json!({"LogsetId": id, "LogsetName": name, "CreateTime": "2026-11-28 12:00:00",
            "TopicCount": state.topics.values().filter(|t| &t.logset == id).count(), "Tags": []})
        })
        .collect();
    json!({"TotalCount": logsets.len(), "Logsets": logsets})
}

fn describe_topics(state: &AccountState, request: &Value) -> Value {
    let names = filter(request, "topicName");
    let logsets = filter(request, "logsetId");
    let precise = request["PreciseSearch"].as_u64() == Some(1);
    let topics: Vec<Value> = state
        .topics
        .values()
        .filter(|t| name_matches(&t.name, &names, precise))
        .filter(|t| {
            logsets
                .as_ref()
                .is_none_or(|l| l.contains(&t.logset.as_str()))
        })
        .map(|t| {
            json!({"TopicId": t.id, "TopicName": t.name, "LogsetId": t.logset, "Period": t.period,
            "Index": t.index.is_some(), "Status": true, "PartitionCount": 1, "StorageType": "hot",
            "CreateTime": "2026-11-28 12:00:00", "BizType": 0})
        })
        .collect();
    json!({"TotalCount": topics.len(), "Topics": topics})
}
