//! A local stand-in for the management side of an account that `esgflow deploy` builds in: CLS
//! logsets, topics and indexes (`DescribeLogsets`, `CreateLogset`, `DescribeTopics`,
//! `CreateTopic`, `DescribeIndex`, `CreateIndex`, `ModifyIndex`, and their deletes) and CAM
//! roles and policies (`GetRole`, `CreateRole`, `UpdateAssumeRolePolicy`, `ListPolicies`,
//! `GetPolicy`, `CreatePolicy`, `ListPolicyVersions`, `CreatePolicyVersion`,
//! `DeletePolicyVersion`, `ListAttachedRolePolicies`, `AttachRolePolicy`, and their deletes),
//! SCF's async retry settings (`GetFunctionEventInvokeConfig`,
//! `UpdateFunctionEventInvokeConfig`) and the snapshot bucket. Like the
//! other API 3.0 stand-ins it checks the TC3 signature and refuses, before anything else, what
//! the action's official definition refuses ([`super::contract`]); then it keeps state, so a
//! second deploy sees what the first one created.
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

use super::cloud::{api_error as error, check_tc3, SECRET_ID, SECRET_KEY};
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
    /// SCF functions (as the serverless CLI would have created them): name → their
    /// `AsyncTriggerConfig`.
    pub functions: BTreeMap<String, Value>,
    /// The bucket at this address, once created: its ACL (`x-cos-acl`).
    pub bucket: Option<String>,
    /// The bucket's name is another account's: `PUT` answers 409.
    pub bucket_taken: bool,
    /// The keys of the objects in the bucket.
    pub objects: std::collections::BTreeSet<String>,
    /// Logsets: id → name.
    pub logsets: BTreeMap<String, String>,
    /// Topics by id.
    pub topics: BTreeMap<String, Topic>,
    /// Dashboards: id → (name, `Data`).
    pub dashboards: BTreeMap<String, (String, String)>,
    /// How a missing index is answered.
    pub no_index: NoIndex,
    /// Every action asked, in order (refused ones too).
    pub actions: Vec<String>,
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
            .route("/{*key}", axum::routing::delete(delete_object))
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

async fn handle(
    State(state): State<Arc<Mutex<AccountState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mut state = state.lock().expect("stub lock");
    let action = header(&headers, "x-tc-action").to_string();
    state.actions.push(action.clone());
    if let Err(problem) = check_tc3(
        &headers,
        &body,
        SECRET_ID,
        SECRET_KEY,
        &["cls", "cam", "scf"],
    ) {
        state.problems.push(format!("{action}: {problem}"));
        return error("AuthFailure.SignatureFailure", &problem);
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Err(refusal) = contract::check(&headers, &action, &request) {
        state
            .problems
            .push(format!("{action}: {}: {}", refusal.code, refusal.message));
        return error(refusal.code, &refusal.message);
    }
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
                .filter(|(_, (name, _))| name_matches(name, &names, false))
                .map(|(id, (name, data))| {
                    json!({"DashboardId": id, "DashboardName": name, "Data": data,
                    "CreateTime": "2026-11-28 12:00:00", "UpdateTime": "2026-11-28 12:00:00",
                    "DashboardRegion": "", "DashboardTopicInfos": [], "Tags": []})
                })
                .collect();
            json!({"TotalCount": infos.len(), "DashboardInfos": infos})
        }
        "CreateDashboard" => {
            let name = request["DashboardName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if state.dashboards.values().any(|(n, _)| *n == name) {
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
            state.dashboards.insert(id.clone(), (name, data));
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
            }
            json!({})
        }
        "GetFunction" => {
            let name = request["FunctionName"].as_str().unwrap_or_default();
            if !state.functions.contains_key(name) {
                return error("ResourceNotFound.Function", "no such function");
            }
            json!({"FunctionName": name, "Namespace": request["Namespace"].as_str().unwrap_or("default"),
                "Status": "Active", "Runtime": "CustomRuntime", "Handler": "bootstrap"})
        }
        "GetFunctionEventInvokeConfig" | "UpdateFunctionEventInvokeConfig" => {
            let name = request["FunctionName"].as_str().unwrap_or_default();
            let Some(config) = state.functions.get_mut(name) else {
                return error("ResourceNotFound.Function", "no such function");
            };
            if action == "UpdateFunctionEventInvokeConfig" {
                *config = request["AsyncTriggerConfig"].clone();
            }
            json!({"AsyncTriggerConfig": config})
        }
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

fn cos_error(status: u16, code: &str) -> (StatusCode, String) {
    (
        StatusCode::from_u16(status).expect("a valid status"),
        format!("<?xml version='1.0' encoding='utf-8' ?><Error><Code>{code}</Code></Error>"),
    )
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
