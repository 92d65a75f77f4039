//! What `esgflow deploy` creates before the functions:
//! - the CLS logset and the hits and traffic topics, each with the key-value index esgflow's
//!   queries and the console's filters need ([`HITS_INDEX`], [`TRAFFIC_INDEX`]: the one list the
//!   query builders use), through the CLS API (`DescribeLogsets`/`CreateLogset`,
//!   `DescribeTopics`/`CreateTopic`, `DescribeIndex`/`CreateIndex`/`ModifyIndex`, tccli
//!   `cls/v20201016/api.json`);
//! - a CLS dashboard with the console's main views, for users who live in the CLS console
//!   (`DescribeDashboards`/`CreateDashboard`/`ModifyDashboard`); its `Data` is laid out as
//!   Tencent's own toolkit writes it (serverless-tencent/tencent-component-toolkit
//!   `src/modules/cls/dashboard.ts`: `panels[]` of `{id, title, gridPos, type, target{RegionId,
//!   LogsetId, TopicId, Query, ChartAxis}}`), since the API documents `Data` only as a string;
//! - each function's execution role, trusting SCF (`scf.qcloud.com`,
//!   <https://cloud.tencent.com/document/product/583/32389>), with its least-privilege policy
//!   from `template.yaml` attached, through the CAM API (`GetRole`/`CreateRole`/
//!   `UpdateAssumeRolePolicy`, `ListPolicies`/`GetPolicy`/`CreatePolicy`/`CreatePolicyVersion`,
//!   `ListAttachedRolePolicies`/`AttachRolePolicy`, tccli `cam/v20190116/api.json`);
//! - audit's retry of failed batches, through SCF's `UpdateFunctionEventInvokeConfig` (tccli
//!   `scf/v20180416/api.json`) once the function exists: the serverless component sends it only
//!   with `asyncRunEnable`, which turns a function into a long-running async one
//!   (serverless-tencent/tencent-component-toolkit `src/modules/scf/index.ts`), so `retryNum` and
//!   `msgTTL` in a serverless.yml are otherwise ignored;
//! - the snapshot bucket, private, through the COS XML API (`HEAD Bucket`,
//!   <https://www.tencentcloud.com/document/product/436/7735>; `PUT Bucket` with
//!   `x-cos-acl: private`, <https://www.tencentcloud.com/document/product/436/7738>).
//!
//! Every step reads first and changes only what differs, so a second run with nothing changed
//! calls nothing that writes. An index that lacks a field, has it with another type, or has
//! statistics off where a query needs them is modified (fields someone added by hand are kept),
//! with a warning: CLS applies index changes only to logs written afterwards
//! (<https://www.tencentcloud.com/document/product/614/39594>).
//!
//! Whether a topic has no index yet is read three ways, because the API documents none of them
//! as the only one: the topic's `Index` flag in `DescribeTopics`, a `ResourceNotFound…` error from
//! `DescribeIndex`, or an answer without a `Rule`. A `CreateIndex` refused because an index
//! exists falls back to `ModifyIndex`.

use std::time::Instant;

use esgflow::adapters::tencent::api::{ApiClient, ApiError};
use esgflow::adapters::tencent::cls_query::{FieldKind, IndexField, HITS_INDEX, TRAFFIC_INDEX};
use serde_json::{json, Value};

/// CLS API version.
const CLS: (&str, &str) = ("cls", "2020-10-16");
/// SCF API version.
const SCF: (&str, &str) = ("scf", "2018-04-16");
/// CAM API version.
const CAM: (&str, &str) = ("cam", "2019-01-16");

/// The trust policy of an execution role: SCF may assume it.
pub const SCF_TRUST: &str = r#"{"version":"2.0","statement":[{"action":"name/sts:AssumeRole","effect":"allow","principal":{"service":["scf.qcloud.com"]}}]}"#;

/// CAM keeps at most five versions of a policy; the oldest other than the default one is deleted
/// before a sixth is made.
const MAX_POLICY_VERSIONS: usize = 5;

/// The full-text tokenizer CLS's console proposes (the official `DescribeIndex` example's).
const FULL_TEXT_TOKENIZER: &str = "@&?|#()='\",;:<>[]{}/ \n\t\r\\";

/// How a resource is left by a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Absent: created.
    Create,
    /// Present but different: changed in place.
    Update,
    /// Present as wanted: left alone.
    Keep,
    /// Present: removed (`esgflow destroy`).
    Delete,
    /// Not there: nothing to do.
    Absent,
}

impl Change {
    /// How the resources table names it.
    pub fn label(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Update => "update",
            Change::Keep => "keep",
            Change::Delete => "delete",
            Change::Absent => "absent",
        }
    }
}

/// One row of the resources table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `cls logset`, `cls topic`, `cls index`.
    pub kind: &'static str,
    /// Its name (and id once known).
    pub name: String,
    /// What the run does (or, in a dry run, would do).
    pub change: Change,
    /// Why, for an update; empty otherwise.
    pub detail: String,
}

/// The names of what the deploy owns in CLS.
#[derive(Debug, Clone)]
pub struct ClsNames {
    /// The logset.
    pub logset: String,
    /// The hits topic (hit, rule_hits, rule_change, rule_hygiene records).
    pub hits_topic: String,
    /// The traffic topic.
    pub traffic_topic: String,
    /// Days CLS keeps logs.
    pub period_days: u32,
}

impl ClsNames {
    /// The names for stack `stack`: `<stack>` logset, `<stack>-hits` and `<stack>-traffic` topics.
    pub fn for_stack(stack: &str) -> Self {
        Self {
            logset: stack.to_string(),
            hits_topic: format!("{stack}-hits"),
            traffic_topic: format!("{stack}-traffic"),
            period_days: 30,
        }
    }
}

/// What the CLS step did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct ClsOutcome {
    /// The logset's id (`None` in a dry run that would create it, or when topics were given).
    pub logset_id: Option<String>,
    /// One row per resource, in the order they are handled.
    pub steps: Vec<Step>,
    /// The hits topic's id (`None` in a dry run that would create it).
    pub hits_topic_id: Option<String>,
    /// The traffic topic's id.
    pub traffic_topic_id: Option<String>,
    /// Things the operator must know (an index changed applies to new logs only).
    pub warnings: Vec<String>,
}

/// The index rule a topic with `fields` needs: full text on (the CLS console's default), and a
/// key-value index with each field's type and statistics flag. Text fields are not split (an
/// address, an id or a verdict is searched whole).
pub fn index_rule(fields: &[IndexField]) -> Value {
    let key_values: Vec<Value> = fields.iter().map(key_value).collect();
    json!({
        "FullText": {"CaseSensitive": false, "Tokenizer": FULL_TEXT_TOKENIZER, "ContainZH": false},
        "KeyValue": {"CaseSensitive": false, "KeyValues": key_values},
    })
}

fn key_value(field: &IndexField) -> Value {
    let kind = match field.kind {
        FieldKind::Text => "text",
        FieldKind::Long => "long",
    };
    json!({"Key": field.name, "Value": {
        "Type": kind, "Tokenizer": "", "SqlFlag": field.statistics, "ContainZH": false}})
}

/// `actual` made to serve `fields`: the rule to send and what had to change (empty: nothing).
/// Fields not in `fields` are kept as they are; the full-text part is left as found, or set
/// when there is none.
pub fn merged_rule(actual: Option<&Value>, fields: &[IndexField]) -> (Value, Vec<String>) {
    let Some(actual) = actual.filter(|rule| rule.is_object()) else {
        return (index_rule(fields), vec!["no index".into()]);
    };
    let mut rule = actual.clone();
    let mut changes = Vec::new();
    if rule.get("FullText").is_none_or(Value::is_null) {
        rule["FullText"] = index_rule(&[])["FullText"].clone();
    }
    if rule.get("KeyValue").is_none_or(Value::is_null) {
        rule["KeyValue"] = json!({"CaseSensitive": false, "KeyValues": []});
    }
    if !rule["KeyValue"]["KeyValues"].is_array() {
        rule["KeyValue"]["KeyValues"] = json!([]);
    }
    let key_values = rule["KeyValue"]["KeyValues"]
        .as_array_mut()
        .expect("made an array above");
    for field in fields {
        let wanted = key_value(field);
        let found = key_values
            .iter_mut()
            .find(|kv| kv.get("Key").and_then(Value::as_str) == Some(field.name));
        match found {
            None => {
                changes.push(format!("add {}", field.name));
                key_values.push(wanted);
            }
            Some(kv) => {
                let kind = kv.pointer("/Value/Type").and_then(Value::as_str);
                let statistics = kv.pointer("/Value/SqlFlag").and_then(Value::as_bool);
                let wanted_kind = wanted["Value"]["Type"].as_str();
                if kind != wanted_kind {
                    changes.push(format!(
                        "{}: type {} → {}",
                        field.name,
                        kind.unwrap_or("none"),
                        wanted_kind.unwrap_or_default()
                    ));
                    *kv = wanted;
                } else if field.statistics && statistics != Some(true) {
                    changes.push(format!("{}: statistics on", field.name));
                    kv["Value"]["SqlFlag"] = json!(true);
                }
            }
        }
    }
    (rule, changes)
}

/// A topic as `DescribeTopics` lists it.
#[derive(Debug, Clone)]
struct Topic {
    id: String,
    /// The `Index` flag, when the answer carries it.
    indexed: Option<bool>,
}

/// Makes sure the logset, both topics and their indexes exist as esgflow needs them. With
/// `dry_run`, only reads. `existing` names topics the operator already has (by id): they are
/// used instead of creating ours, and their indexes are checked all the same.
pub async fn ensure_cls(
    client: &ApiClient,
    names: &ClsNames,
    existing: (Option<&str>, Option<&str>),
    dry_run: bool,
    deadline: Instant,
) -> Result<ClsOutcome, ApiError> {
    let mut outcome = ClsOutcome::default();
    let needs_logset = existing.0.is_none() || existing.1.is_none();
    let mut logset_id = None;
    if needs_logset {
        logset_id = find_logset(client, &names.logset, deadline).await?;
        let change = if logset_id.is_some() {
            Change::Keep
        } else {
            Change::Create
        };
        if logset_id.is_none() && !dry_run {
            let created = call(
                client,
                "CreateLogset",
                json!({"LogsetName": names.logset}),
                deadline,
            )
            .await?;
            logset_id = Some(text(&created, "LogsetId", "CreateLogset")?);
        }
        outcome.steps.push(Step {
            kind: "cls logset",
            name: with_id(&names.logset, logset_id.as_deref()),
            change,
            detail: String::new(),
        });
    }
    outcome.logset_id = logset_id.clone();
    for (topic_name, given, fields, is_hits) in [
        (&names.hits_topic, existing.0, HITS_INDEX, true),
        (&names.traffic_topic, existing.1, TRAFFIC_INDEX, false),
    ] {
        let (topic, change) = match given {
            Some(id) => (
                Some(Topic {
                    id: id.to_string(),
                    indexed: None,
                }),
                Change::Keep,
            ),
            None => {
                let found = match &logset_id {
                    Some(logset) => find_topic(client, logset, topic_name, deadline).await?,
                    None => None,
                };
                match found {
                    Some(topic) => (Some(topic), Change::Keep),
                    None if dry_run => (None, Change::Create),
                    None => {
                        let logset = logset_id.as_deref().expect("created above unless dry run");
                        let created = call(
                            client,
                            "CreateTopic",
                            json!({"LogsetId": logset, "TopicName": topic_name,
                                "Period": names.period_days,
                                "Describes": "esgflow ESG flow-log records"}),
                            deadline,
                        )
                        .await?;
                        let id = text(&created, "TopicId", "CreateTopic")?;
                        (
                            Some(Topic {
                                id,
                                indexed: Some(false),
                            }),
                            Change::Create,
                        )
                    }
                }
            }
        };
        let label = given.map_or_else(|| topic_name.to_string(), |id| id.to_string());
        outcome.steps.push(Step {
            kind: "cls topic",
            name: with_id(&label, topic.as_ref().map(|t| t.id.as_str())),
            change,
            detail: String::new(),
        });
        let index = match &topic {
            Some(topic) => ensure_index(client, topic, fields, dry_run, deadline).await?,
            None => Step {
                kind: "cls index",
                name: String::new(),
                change: Change::Create,
                detail: format!("{} fields", fields.len()),
            },
        };
        if index.change == Change::Update {
            outcome.warnings.push(format!(
                "the index of {label} changed ({}): CLS applies it only to logs written from now on; older records are not searchable by the new fields",
                index.detail
            ));
        }
        outcome.steps.push(Step {
            name: label.clone(),
            ..index
        });
        let id = topic.map(|t| t.id);
        if is_hits {
            outcome.hits_topic_id = id;
        } else {
            outcome.traffic_topic_id = id;
        }
    }
    Ok(outcome)
}

async fn ensure_index(
    client: &ApiClient,
    topic: &Topic,
    fields: &[IndexField],
    dry_run: bool,
    deadline: Instant,
) -> Result<Step, ApiError> {
    let actual = if topic.indexed == Some(false) {
        None
    } else {
        match call(
            client,
            "DescribeIndex",
            json!({"TopicId": topic.id}),
            deadline,
        )
        .await
        {
            Ok(answer) => Some(answer),
            Err(error) if error.code.starts_with("ResourceNotFound") => None,
            Err(error) => return Err(error),
        }
    };
    let rule = actual
        .as_ref()
        .and_then(|a| a.get("Rule"))
        .filter(|r| !r.is_null());
    let enabled = actual
        .as_ref()
        .and_then(|a| a.get("Status"))
        .and_then(Value::as_bool);
    let (wanted, mut changes) = merged_rule(rule, fields);
    let change = match (rule.is_some(), changes.is_empty(), enabled) {
        (false, ..) => Change::Create,
        (true, true, Some(false)) => {
            changes.push("switched on".into());
            Change::Update
        }
        (true, true, _) => Change::Keep,
        (true, false, _) => Change::Update,
    };
    if !dry_run {
        match change {
            Change::Keep | Change::Delete | Change::Absent => {}
            Change::Create => {
                let created = call(
                    client,
                    "CreateIndex",
                    json!({"TopicId": topic.id, "Rule": wanted, "Status": true}),
                    deadline,
                )
                .await;
                match created {
                    Ok(_) => {}
                    // An index the reads did not see: change it instead.
                    Err(error) if error.code.contains("Exist") => {
                        modify_index(client, &topic.id, &wanted, deadline).await?;
                    }
                    Err(error) => return Err(error),
                }
            }
            Change::Update => modify_index(client, &topic.id, &wanted, deadline).await?,
        }
    }
    Ok(Step {
        kind: "cls index",
        name: topic.id.clone(),
        change,
        detail: if change == Change::Create {
            format!("{} fields", fields.len())
        } else {
            changes.join(", ")
        },
    })
}

async fn modify_index(
    client: &ApiClient,
    topic: &str,
    rule: &Value,
    deadline: Instant,
) -> Result<(), ApiError> {
    call(
        client,
        "ModifyIndex",
        json!({"TopicId": topic, "Rule": rule, "Status": true}),
        deadline,
    )
    .await
    .map(drop)
}

async fn find_logset(
    client: &ApiClient,
    name: &str,
    deadline: Instant,
) -> Result<Option<String>, ApiError> {
    let found = find_cls_named(client, &LOGSETS, name, deadline).await?;
    Ok(found.and_then(|l| Some(l.get("LogsetId")?.as_str()?.to_string())))
}

/// A CLS listing searched by one name filter.
struct ClsListing {
    action: &'static str,
    /// The filter's `Key`.
    filter: &'static str,
    list_key: &'static str,
    /// The field each item's name is in.
    name_field: &'static str,
}

const LOGSETS: ClsListing = ClsListing {
    action: "DescribeLogsets",
    filter: "logsetName",
    list_key: "Logsets",
    name_field: "LogsetName",
};
const DASHBOARDS: ClsListing = ClsListing {
    action: "DescribeDashboards",
    filter: "dashboardName",
    list_key: "DashboardInfos",
    name_field: "DashboardName",
};

/// The item of a CLS `listing` named exactly `name`.
async fn find_cls_named(
    client: &ApiClient,
    listing: &ClsListing,
    name: &str,
    deadline: Instant,
) -> Result<Option<Value>, ApiError> {
    let filters = json!({"Filters": [{"Key": listing.filter, "Values": [name]}],
        "Offset": 0, "Limit": 100});
    find_named(
        client,
        CLS,
        listing.action,
        filters,
        listing.list_key,
        deadline,
        |item| item.get(listing.name_field).and_then(Value::as_str) == Some(name),
    )
    .await
}

/// The first item of `action`'s `list_key` that `wanted` accepts: the name filters of these
/// listings match by part of the name (or fuzzily), so only an exact match counts.
async fn find_named(
    client: &ApiClient,
    (service, version): (&str, &str),
    action: &str,
    body: Value,
    list_key: &str,
    deadline: Instant,
    wanted: impl Fn(&Value) -> bool,
) -> Result<Option<Value>, ApiError> {
    let answer = client
        .call(service, version, action, &body, deadline)
        .await?;
    let found = listed(&answer, list_key).find(|item| wanted(item)).cloned();
    Ok(found)
}

async fn find_topic(
    client: &ApiClient,
    logset: &str,
    name: &str,
    deadline: Instant,
) -> Result<Option<Topic>, ApiError> {
    let filters = json!({"Filters": [
            {"Key": "topicName", "Values": [name]},
            {"Key": "logsetId", "Values": [logset]}],
        "PreciseSearch": 1, "Offset": 0, "Limit": 100});
    let found = find_named(
        client,
        CLS,
        "DescribeTopics",
        filters,
        "Topics",
        deadline,
        |t| {
            t.get("TopicName").and_then(Value::as_str) == Some(name)
                && t.get("LogsetId").and_then(Value::as_str) == Some(logset)
        },
    )
    .await?;
    let topic = found.and_then(|t| {
        Some(Topic {
            id: t.get("TopicId")?.as_str()?.to_string(),
            indexed: t.get("Index").and_then(Value::as_bool),
        })
    });
    Ok(topic)
}

fn listed<'a>(answer: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    answer
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

async fn call(
    client: &ApiClient,
    action: &str,
    body: Value,
    deadline: Instant,
) -> Result<Value, ApiError> {
    client.call(CLS.0, CLS.1, action, &body, deadline).await
}

async fn cam(
    client: &ApiClient,
    action: &str,
    body: Value,
    deadline: Instant,
) -> Result<Value, ApiError> {
    client.call(CAM.0, CAM.1, action, &body, deadline).await
}

/// One execution role the stack needs.
#[derive(Debug, Clone)]
pub struct RoleSpec {
    /// The role's name (`template.yaml`'s `role`).
    pub name: String,
    /// Its policy's name.
    pub policy_name: String,
    /// The policy document (JSON).
    pub policy: Value,
}

/// Makes sure each role exists, trusts SCF, and has its policy, as written, attached. With
/// `dry_run`, only reads. Three rows per role: the role, its policy, the attachment.
pub async fn ensure_roles(
    client: &ApiClient,
    roles: &[RoleSpec],
    dry_run: bool,
    deadline: Instant,
) -> Result<Vec<Step>, ApiError> {
    let mut steps = Vec::new();
    for role in roles {
        steps.push(ensure_role(client, role, dry_run, deadline).await?);
        let (policy_id, step) = ensure_policy(client, role, dry_run, deadline).await?;
        steps.push(step);
        let attached = match (policy_id, steps[steps.len() - 2].change) {
            (Some(id), Change::Keep | Change::Update) => {
                let answer = cam(
                    client,
                    "ListAttachedRolePolicies",
                    json!({"Page": 1, "Rp": 200, "RoleName": role.name}),
                    deadline,
                )
                .await?;
                let attached = listed(&answer, "List")
                    .any(|p| p.get("PolicyId").and_then(Value::as_u64) == Some(id));
                attached
            }
            _ => false,
        };
        let change = if attached {
            Change::Keep
        } else {
            Change::Create
        };
        if !attached && !dry_run {
            let id = policy_id.expect("a policy exists unless this is a dry run");
            cam(
                client,
                "AttachRolePolicy",
                json!({"PolicyId": id, "AttachRoleName": role.name}),
                deadline,
            )
            .await?;
        }
        steps.push(Step {
            kind: "cam attachment",
            name: format!("{} → {}", role.policy_name, role.name),
            change,
            detail: String::new(),
        });
    }
    Ok(steps)
}

async fn ensure_role(
    client: &ApiClient,
    role: &RoleSpec,
    dry_run: bool,
    deadline: Instant,
) -> Result<Step, ApiError> {
    let found = find_role(client, &role.name, deadline).await?;
    let trusts_scf = |info: &Value| {
        info.get("PolicyDocument")
            .and_then(Value::as_str)
            .and_then(|doc| serde_json::from_str::<Value>(doc).ok())
            .is_some_and(|doc| doc.to_string().contains("scf.qcloud.com"))
    };
    let (change, detail) = match &found {
        None => (Change::Create, String::new()),
        Some(info) if trusts_scf(info) => (Change::Keep, String::new()),
        Some(_) => (Change::Update, "trust SCF".to_string()),
    };
    if !dry_run {
        match change {
            Change::Create => {
                cam(
                    client,
                    "CreateRole",
                    json!({"RoleName": role.name, "PolicyDocument": SCF_TRUST,
                        "Description": "esgflow function execution role"}),
                    deadline,
                )
                .await?;
            }
            Change::Update => {
                cam(
                    client,
                    "UpdateAssumeRolePolicy",
                    json!({"RoleName": role.name, "PolicyDocument": SCF_TRUST}),
                    deadline,
                )
                .await?;
            }
            Change::Keep | Change::Delete | Change::Absent => {}
        }
    }
    Ok(Step {
        kind: "cam role",
        name: role.name.clone(),
        change,
        detail,
    })
}

/// SCF's own service role, which lets SCF create triggers (the CLS trigger) and read code: it
/// is made once per account when the SCF console's authorisation prompt is accepted
/// (<https://cloud.tencent.com/document/product/583/32389>). Only read: the row says whether it
/// is there.
pub const SCF_SERVICE_ROLE: &str = "SCF_QcsRole";

/// Whether SCF's service role exists (`keep`) or not (`absent`, with what to do).
pub async fn check_service_role(client: &ApiClient, deadline: Instant) -> Result<Step, ApiError> {
    let found = find_role(client, SCF_SERVICE_ROLE, deadline).await?;
    Ok(Step {
        kind: "cam service role",
        name: SCF_SERVICE_ROLE.to_string(),
        change: if found.is_some() {
            Change::Keep
        } else {
            Change::Absent
        },
        detail: if found.is_some() {
            String::new()
        } else {
            "open the SCF console once and accept its authorisation prompt, or the CLS trigger cannot be created".into()
        },
    })
}

/// The role named `name`, as `GetRole`'s `RoleInfo`, if it exists.
async fn find_role(
    client: &ApiClient,
    name: &str,
    deadline: Instant,
) -> Result<Option<Value>, ApiError> {
    match cam(client, "GetRole", json!({"RoleName": name}), deadline).await {
        Ok(answer) => Ok(answer.get("RoleInfo").filter(|r| r.is_object()).cloned()),
        Err(error)
            if error.code.starts_with("ResourceNotFound")
                || error.code.contains("RoleNotExist") =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The id of the custom policy named exactly `name`, if it exists.
async fn find_policy(
    client: &ApiClient,
    name: &str,
    deadline: Instant,
) -> Result<Option<u64>, ApiError> {
    let body = json!({"Rp": 200, "Page": 1, "Scope": "Local", "Keyword": name});
    let found = find_named(client, CAM, "ListPolicies", body, "List", deadline, |p| {
        p.get("PolicyName").and_then(Value::as_str) == Some(name)
    })
    .await?;
    let id = found.and_then(|p| p.get("PolicyId").and_then(Value::as_u64));
    Ok(id)
}

/// The policy's id (none in a dry run that would create it) and its row.
async fn ensure_policy(
    client: &ApiClient,
    role: &RoleSpec,
    dry_run: bool,
    deadline: Instant,
) -> Result<(Option<u64>, Step), ApiError> {
    let found = find_policy(client, &role.policy_name, deadline).await?;
    let document = role.policy.to_string();
    let step = |change, detail: &str| Step {
        kind: "cam policy",
        name: role.policy_name.clone(),
        change,
        detail: detail.to_string(),
    };
    let Some(id) = found else {
        if dry_run {
            return Ok((None, step(Change::Create, "")));
        }
        let created = cam(
            client,
            "CreatePolicy",
            json!({"PolicyName": role.policy_name, "PolicyDocument": document,
                "Description": format!("esgflow: what {} may do", role.name)}),
            deadline,
        )
        .await?;
        let id = created
            .get("PolicyId")
            .and_then(Value::as_u64)
            .ok_or_else(|| lacks("CreatePolicy", "PolicyId"))?;
        return Ok((Some(id), step(Change::Create, "")));
    };
    let current = cam(client, "GetPolicy", json!({"PolicyId": id}), deadline).await?;
    let same = current
        .get("PolicyDocument")
        .and_then(Value::as_str)
        .and_then(|doc| serde_json::from_str::<Value>(doc).ok())
        .is_some_and(|doc| doc == role.policy);
    if same {
        return Ok((Some(id), step(Change::Keep, "")));
    }
    if !dry_run {
        let versions = cam(
            client,
            "ListPolicyVersions",
            json!({"PolicyId": id}),
            deadline,
        )
        .await?;
        let versions: Vec<&Value> = listed(&versions, "Versions").collect();
        if versions.len() >= MAX_POLICY_VERSIONS {
            let oldest = versions
                .iter()
                .filter(|v| v.get("IsDefaultVersion").and_then(Value::as_i64) != Some(1))
                .filter_map(|v| v.get("VersionId").and_then(Value::as_u64))
                .min();
            if let Some(oldest) = oldest {
                cam(
                    client,
                    "DeletePolicyVersion",
                    json!({"PolicyId": id, "VersionId": [oldest]}),
                    deadline,
                )
                .await?;
            }
        }
        cam(
            client,
            "CreatePolicyVersion",
            json!({"PolicyId": id, "PolicyDocument": document, "SetAsDefault": true}),
            deadline,
        )
        .await?;
    }
    Ok((
        Some(id),
        step(Change::Update, "statements differ from template.yaml"),
    ))
}

fn text(answer: &Value, key: &str, action: &str) -> Result<String, ApiError> {
    answer
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| lacks(action, key))
}

/// An answer of `action` without its `key`.
fn lacks(action: &str, key: &str) -> ApiError {
    ApiError {
        action: action.to_string(),
        code: "BadResponse".into(),
        message: format!("the answer has no {key}"),
        request_id: String::new(),
    }
}

fn with_id(name: &str, id: Option<&str>) -> String {
    match id {
        Some(id) if id != name => format!("{name} ({id})"),
        _ => name.to_string(),
    }
}

/// One panel of the dashboard.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Its title.
    pub title: &'static str,
    /// The chart: `bar`, `pie`, `table`, `graph`.
    pub chart: &'static str,
    /// The query, built by the same functions the lookup API uses.
    pub query: String,
    /// Hits (`true`) or traffic topic.
    pub hits_topic: bool,
    /// The x and y columns, for charts.
    pub axes: Option<(&'static str, &'static str)>,
}

/// The console's main views as dashboard panels: job 1's blocks (the rules that blocked most,
/// the block hits to filter), observe hits and rule counters; jobs 2 and 3's traffic by scope,
/// top talkers and the subnet matrix.
pub fn dashboard_panels() -> Vec<Panel> {
    use esgflow::adapters::tencent::cls_query::{
        hits_query, top_block_rules_query, traffic_query, RULE_TOTALS_QUERY,
    };
    use esgflow::core::search::{HitFilter, TrafficFilter, TrafficQuery};
    let hits = |types: Vec<&'static str>| {
        hits_query(&HitFilter {
            types,
            ..HitFilter::new(0, 0)
        })
    };
    let traffic = TrafficFilter {
        talkers: 20,
        bucket: 300,
        ..TrafficFilter::new(0, 0)
    };
    vec![
        Panel {
            title: "Rules that blocked most",
            chart: "bar",
            query: top_block_rules_query(20),
            hits_topic: true,
            axes: Some(("rule_uuid", "hits")),
        },
        Panel {
            title: "Blocked flows (filter by src_ip, dst_ip, dst_port, rule_uuid)",
            chart: "table",
            query: hits(vec!["block_hit"]),
            hits_topic: true,
            axes: None,
        },
        Panel {
            title: "Observed flows",
            chart: "table",
            query: hits(vec!["observe_hit"]),
            hits_topic: true,
            axes: None,
        },
        Panel {
            title: "Rule hit counters",
            chart: "table",
            query: RULE_TOTALS_QUERY.to_string(),
            hits_topic: true,
            axes: None,
        },
        Panel {
            title: "Traffic by scope (bytes)",
            chart: "pie",
            query: traffic_query(&traffic, TrafficQuery::Totals),
            hits_topic: false,
            axes: Some(("scope", "sum_bytes")),
        },
        Panel {
            title: "Top talkers",
            chart: "table",
            query: traffic_query(&traffic, TrafficQuery::Talkers),
            hits_topic: false,
            axes: None,
        },
        Panel {
            title: "Between subnets",
            chart: "table",
            query: traffic_query(&traffic, TrafficQuery::Matrix),
            hits_topic: false,
            axes: None,
        },
        Panel {
            title: "Traffic over time (bytes per 5 minutes)",
            chart: "graph",
            query: traffic_query(&traffic, TrafficQuery::Series),
            hits_topic: false,
            axes: Some(("bucket", "sum_bytes")),
        },
    ]
}

/// CLS's region numbers (`RegionId` in a dashboard panel's target), from the toolkit's
/// `Raw.regionName2Id`.
const REGION_IDS: &[(&str, u32)] = &[
    ("ap-guangzhou", 1),
    ("ap-shanghai", 4),
    ("ap-hongkong", 5),
    ("na-toronto", 6),
    ("ap-shanghai-fsi", 7),
    ("ap-beijing", 8),
    ("ap-singapore", 9),
    ("ap-shenzhen-fsi", 11),
    ("ap-guangzhou-open", 12),
    ("na-siliconvalley", 15),
    ("ap-chengdu", 16),
    ("eu-frankfurt", 17),
    ("ap-seoul", 18),
    ("ap-chongqing", 19),
    ("ap-mumbai", 21),
    ("na-ashburn", 22),
    ("ap-bangkok", 23),
    ("eu-moscow", 24),
    ("ap-tokyo", 25),
    ("ap-nanjing", 33),
    ("ap-tianjin", 36),
    ("ap-shenzhen", 37),
    ("ap-taipei", 39),
    ("ap-beijing-fsi", 46),
    ("ap-qingyuan", 54),
    ("ap-jakarta", 72),
    ("sa-saopaulo", 74),
];

/// The dashboard's `Data`: two panels a row, each reading its topic.
pub fn dashboard_data(region: &str, logset: &str, hits_topic: &str, traffic_topic: &str) -> Value {
    let region_id = REGION_IDS
        .iter()
        .find(|(name, _)| *name == region)
        .map(|(_, id)| *id);
    let panels: Vec<Value> = dashboard_panels()
        .iter()
        .enumerate()
        .map(|(i, panel)| {
            let (x, y) = match panel.axes {
                Some((x, y)) => (json!(x), json!(y)),
                None => (Value::Null, Value::Null),
            };
            json!({
                "id": format!("chart-esgflow-{}", i + 1),
                "title": panel.title,
                "gridPos": {"x": (i % 2) * 12, "y": (i / 2) * 8, "w": 12, "h": 8},
                "type": panel.chart,
                "target": {
                    "RegionId": region_id,
                    "LogsetId": logset,
                    "TopicId": if panel.hits_topic { hits_topic } else { traffic_topic },
                    "Query": panel.query,
                    "ChartAxis": {"xAxisKey": x, "yAxisKey": y, "aggregateKey": null},
                },
            })
        })
        .collect();
    json!({ "panels": panels })
}

/// Makes sure the dashboard `name` exists with `data` (created, or modified when its panels
/// differ). With `dry_run`, only reads.
pub async fn ensure_dashboard(
    client: &ApiClient,
    name: &str,
    data: &Value,
    dry_run: bool,
    deadline: Instant,
) -> Result<Step, ApiError> {
    let found = find_dashboard(client, name, deadline).await?;
    let fingerprint = dashboard_fingerprint(data);
    let change = match &found {
        None => Change::Create,
        // The listing's `Data` when it carries the panels; when it does not (the official
        // DescribeDashboards example answers `Data: ""`), the fingerprint esgflow tagged the
        // dashboard with when it wrote them.
        Some(found) if found.data == *data => Change::Keep,
        Some(found) if found.data.is_null() && found.fingerprint == Some(fingerprint.clone()) => {
            Change::Keep
        }
        Some(_) => Change::Update,
    };
    let tags = json!([{"Key": FINGERPRINT_TAG, "Value": fingerprint}]);
    if !dry_run {
        match (&found, change) {
            (None, _) => {
                call(
                    client,
                    "CreateDashboard",
                    json!({"DashboardName": name, "Data": data.to_string(), "Tags": tags}),
                    deadline,
                )
                .await?;
            }
            (Some(found), Change::Update) => {
                call(
                    client,
                    "ModifyDashboard",
                    json!({"DashboardId": found.id, "DashboardName": name, "Data": data.to_string(), "Tags": tags}),
                    deadline,
                )
                .await?;
            }
            _ => {}
        }
    }
    Ok(Step {
        kind: "cls dashboard",
        name: name.to_string(),
        change,
        detail: format!("{} panels", dashboard_panels().len()),
    })
}

/// Deletes the dashboard `name` (it holds no data). With `dry_run`, only reads.
pub async fn remove_dashboard(
    client: &ApiClient,
    name: &str,
    dry_run: bool,
    deadline: Instant,
) -> Result<Step, ApiError> {
    let found = find_dashboard(client, name, deadline).await?;
    if let (Some(found), false) = (&found, dry_run) {
        call(
            client,
            "DeleteDashboard",
            json!({"DashboardId": found.id}),
            deadline,
        )
        .await?;
    }
    Ok(Step {
        kind: "cls dashboard",
        name: name.to_string(),
        change: if found.is_some() {
            Change::Delete
        } else {
            Change::Absent
        },
        detail: String::new(),
    })
}

/// The tag holding the fingerprint of the panels esgflow last wrote to its dashboard.
const FINGERPRINT_TAG: &str = "esgflow-dashboard-fingerprint";

/// A dashboard as listed.
struct FoundDashboard {
    id: String,
    /// Its parsed `Data`; null when the listing leaves it out or empty.
    data: Value,
    /// The [`FINGERPRINT_TAG`] it carries.
    fingerprint: Option<String>,
}

/// The fingerprint of dashboard `data`: its SHA-256, 32 hex digits.
fn dashboard_fingerprint(data: &Value) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(data.to_string().as_bytes())[..16])
}

/// The dashboard named exactly `name`.
async fn find_dashboard(
    client: &ApiClient,
    name: &str,
    deadline: Instant,
) -> Result<Option<FoundDashboard>, ApiError> {
    let found = find_cls_named(client, &DASHBOARDS, name, deadline)
        .await?
        .and_then(|d| {
            let id = d.get("DashboardId")?.as_str()?.to_string();
            let data = d
                .get("Data")
                .and_then(Value::as_str)
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or(Value::Null);
            let fingerprint = listed(&d, "Tags")
                .find(|tag| tag["Key"] == FINGERPRINT_TAG)
                .and_then(|tag| tag["Value"].as_str())
                .map(str::to_string);
            Some(FoundDashboard {
                id,
                data,
                fingerprint,
            })
        });
    Ok(found)
}

/// Makes sure `function`'s failed asynchronous invocations (a CLS trigger's batches) are retried
/// `retries` times and kept `msg_ttl` seconds. A function the serverless CLI has not created yet
/// (a dry run) is a `create` row.
pub async fn ensure_async_retry(
    client: &ApiClient,
    function: &str,
    namespace: &str,
    retries: u32,
    msg_ttl: u32,
    dry_run: bool,
    deadline: Instant,
) -> Result<Step, ApiError> {
    let wanted = json!({"RetryConfig": [{"RetryNum": retries}], "MsgTTL": msg_ttl});
    let current = client
        .call(
            SCF.0,
            SCF.1,
            "GetFunctionEventInvokeConfig",
            &json!({"FunctionName": function, "Namespace": namespace}),
            deadline,
        )
        .await;
    let change = match current {
        Ok(answer) => {
            let config = &answer["AsyncTriggerConfig"];
            let same = config["MsgTTL"].as_u64() == Some(u64::from(msg_ttl))
                && config
                    .pointer("/RetryConfig/0/RetryNum")
                    .and_then(Value::as_u64)
                    == Some(u64::from(retries));
            if same {
                Change::Keep
            } else {
                Change::Update
            }
        }
        Err(error) if dry_run && error.code.starts_with("ResourceNotFound") => Change::Create,
        Err(error) => return Err(error),
    };
    if change == Change::Update && !dry_run {
        client
            .call(
                SCF.0,
                SCF.1,
                "UpdateFunctionEventInvokeConfig",
                &json!({"FunctionName": function, "Namespace": namespace, "AsyncTriggerConfig": wanted}),
                deadline,
            )
            .await?;
    }
    Ok(Step {
        kind: "scf async retry",
        name: function.to_string(),
        change,
        detail: format!("{retries} retries, events kept {msg_ttl} s"),
    })
}

/// CLS shipping a topic to a function (what the SCF console calls a CLS trigger).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipping {
    /// The topic shipped.
    pub topic: String,
    /// The function it ships to.
    pub function: String,
    /// Its namespace.
    pub namespace: String,
    /// The most seconds a batch waits (`Timeout`).
    pub max_wait: u64,
    /// The most logs a batch holds (`MaxMsgNum`), when set.
    pub max_messages: Option<u64>,
}

/// Makes sure `shipping` exists with its settings, through API 3.0, after the serverless
/// component (which creates it, but whose legacy `/deliverfunction` update only switches it on
/// or off): SCF `ListTriggers` reads it (a CLS trigger whose resource id, name or description
/// names the topic); settings that differ are applied by SCF `DeleteTrigger` and CLS
/// `CreateDeliverCloudFunction`; shipping not there is created.
///
/// tccli defines no Describe or Modify action for it, and whether SCF lists CLS shipping is not
/// documented: when it is not listed, it is created, and a creation refused (it exists) is kept
/// with a note that its settings could not be compared.
pub async fn ensure_shipping(
    client: &ApiClient,
    shipping: &Shipping,
    dry_run: bool,
    deadline: Instant,
) -> Result<(Step, Option<String>), ApiError> {
    let listed = client
        .call(
            SCF.0,
            SCF.1,
            "ListTriggers",
            &json!({"FunctionName": shipping.function, "Namespace": shipping.namespace, "Limit": 100}),
            deadline,
        )
        .await;
    let listed = match listed {
        Ok(answer) => listed_shipping(&answer, &shipping.topic),
        Err(error) if dry_run && error.code.starts_with("ResourceNotFound") => None,
        Err(error) => return Err(error),
    };
    let wanted = (shipping.max_wait, shipping.max_messages);
    let (mut change, mut note) = match &listed {
        None => (Change::Create, None),
        Some(trigger) => match trigger_settings(trigger) {
            Some((wait, messages)) if wait == wanted.0 && (wanted.1.is_none() || messages == wanted.1) => {
                (Change::Keep, None)
            }
            Some(_) => (Change::Update, None),
            None => (
                Change::Keep,
                Some(format!(
                    "CLS shipping from {} to {}: SCF lists it without its settings, so a changed maxWait is not applied; remove it in the CLS console and deploy again to apply one",
                    shipping.topic, shipping.function
                )),
            ),
        },
    };
    let mut detail = format!(
        "maxWait {} s{}",
        shipping.max_wait,
        shipping
            .max_messages
            .map_or(String::new(), |m| format!(", at most {m} logs"))
    );
    if !dry_run && change != Change::Keep {
        if let Some(trigger) = &listed {
            client
                .call(
                    SCF.0,
                    SCF.1,
                    "DeleteTrigger",
                    &json!({"FunctionName": shipping.function, "Namespace": shipping.namespace,
                            "TriggerName": trigger["TriggerName"].as_str().unwrap_or(&shipping.topic),
                            "Type": "cls",
                            "Qualifier": trigger["Qualifier"].as_str().unwrap_or("$DEFAULT")}),
                    deadline,
                )
                .await?;
        }
        let mut body = json!({"TopicId": shipping.topic, "FunctionName": shipping.function,
            "Namespace": shipping.namespace, "Qualifier": "$DEFAULT", "Timeout": shipping.max_wait});
        if let Some(messages) = shipping.max_messages {
            body["MaxMsgNum"] = json!(messages);
        }
        match call(client, "CreateDeliverCloudFunction", body, deadline).await {
            Ok(_) => {}
            // Not listed, yet there: shipping SCF does not list (undocumented either way).
            Err(error) if listed.is_none() && !error.code.starts_with("ResourceNotFound") => {
                note = Some(format!(
                    "CLS shipping from {} to {}: not listed by SCF, and creating it answered {}: {} — if it ships already, its settings could not be compared; remove it in the CLS console and deploy again to apply a changed maxWait",
                    shipping.topic, shipping.function, error.code, error.message
                ));
                change = Change::Keep;
                detail = "settings not readable".into();
            }
            Err(error) => return Err(error),
        }
    }
    Ok((
        Step {
            kind: "cls shipping",
            name: format!("{} → {}", shipping.topic, shipping.function),
            change,
            detail,
        },
        note,
    ))
}

/// The CLS trigger of `answer` (a `ListTriggers` answer) that ships `topic`: named by its
/// resource id's last part (as the component reads it), its name, or its description.
fn listed_shipping(answer: &Value, topic: &str) -> Option<Value> {
    listed(answer, "Triggers")
        .filter(|t| t["Type"] == "cls")
        .find(|t| {
            let resource = t["ResourceId"].as_str().unwrap_or_default();
            resource.rsplit('/').next() == Some(topic)
                || t["TriggerName"] == topic
                || trigger_desc(t)["topic_id"] == topic
                || trigger_desc(t)["TopicId"] == topic
        })
        .cloned()
}

/// A trigger's `TriggerDesc`, a JSON text, as a value (null when it is not one).
fn trigger_desc(trigger: &Value) -> Value {
    trigger["TriggerDesc"]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

/// The maximum wait and messages a listed CLS trigger states, under the names the legacy API
/// (`max_wait`, `max_size`) or API 3.0 (`Timeout`, `MaxMsgNum`) give them; `None` without a
/// wait.
fn trigger_settings(trigger: &Value) -> Option<(u64, Option<u64>)> {
    let desc = trigger_desc(trigger);
    let number = |names: &[&str]| {
        names.iter().find_map(|name| match &desc[*name] {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
    };
    let wait = number(&["max_wait", "maxWait", "MaxWait", "Timeout", "timeout"])?;
    Some((
        wait,
        number(&["max_size", "maxSize", "MaxMsgNum", "max_msg_num"]),
    ))
}

/// Removes what [`ensure_roles`] made: each role's policy is detached and deleted, then the role.
/// With `dry_run`, only reads. Roles or policies already gone are `absent`.
pub async fn remove_roles(
    client: &ApiClient,
    roles: &[RoleSpec],
    dry_run: bool,
    deadline: Instant,
) -> Result<Vec<Step>, ApiError> {
    let mut steps = Vec::new();
    for role in roles {
        let policy = find_policy(client, &role.policy_name, deadline).await?;
        let exists = find_role(client, &role.name, deadline).await?.is_some();
        if let (Some(id), true, false) = (policy, exists, dry_run) {
            cam(
                client,
                "DetachRolePolicy",
                json!({"PolicyId": id, "DetachRoleName": role.name}),
                deadline,
            )
            .await?;
        }
        if let (Some(id), false) = (policy, dry_run) {
            cam(client, "DeletePolicy", json!({"PolicyId": [id]}), deadline).await?;
        }
        if exists && !dry_run {
            cam(
                client,
                "DeleteRole",
                json!({"RoleName": role.name}),
                deadline,
            )
            .await?;
        }
        let gone = |present: bool| {
            if present {
                Change::Delete
            } else {
                Change::Absent
            }
        };
        steps.push(Step {
            kind: "cam policy",
            name: role.policy_name.clone(),
            change: gone(policy.is_some()),
            detail: String::new(),
        });
        steps.push(Step {
            kind: "cam role",
            name: role.name.clone(),
            change: gone(exists),
            detail: String::new(),
        });
    }
    Ok(steps)
}

/// Removes the topics [`ensure_cls`] created (their logs with them) and then the logset, when
/// `delete_logs`; otherwise says they are kept. Topics the operator gave by id are never touched.
pub async fn remove_cls(
    client: &ApiClient,
    names: &ClsNames,
    delete_logs: bool,
    dry_run: bool,
    deadline: Instant,
) -> Result<Vec<Step>, ApiError> {
    let Some(logset) = find_logset(client, &names.logset, deadline).await? else {
        return Ok(vec![Step {
            kind: "cls logset",
            name: names.logset.clone(),
            change: Change::Absent,
            detail: String::new(),
        }]);
    };
    let mut steps = Vec::new();
    for name in [&names.hits_topic, &names.traffic_topic] {
        let topic = find_topic(client, &logset, name, deadline).await?;
        let change = match (&topic, delete_logs) {
            (None, _) => Change::Absent,
            (Some(_), false) => Change::Keep,
            (Some(_), true) => Change::Delete,
        };
        if let (Some(topic), Change::Delete, false) = (&topic, change, dry_run) {
            call(
                client,
                "DeleteTopic",
                json!({"TopicId": topic.id}),
                deadline,
            )
            .await?;
        }
        steps.push(Step {
            kind: "cls topic",
            name: with_id(name, topic.as_ref().map(|t| t.id.as_str())),
            change,
            detail: if change == Change::Keep {
                "its logs are kept: --delete-logs removes it".into()
            } else {
                String::new()
            },
        });
    }
    let change = if delete_logs {
        Change::Delete
    } else {
        Change::Keep
    };
    // A logset that holds topics of someone else's stays.
    let listed_topics = call(
        client,
        "DescribeTopics",
        json!({"Filters": [{"Key": "logsetId", "Values": [logset]}], "Offset": 0, "Limit": 100}),
        deadline,
    )
    .await?;
    let others = listed(&listed_topics, "Topics")
        .filter(|t| {
            let name = t
                .get("TopicName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            name != names.hits_topic && name != names.traffic_topic
        })
        .count();
    let (change, detail) = match others {
        0 => (change, String::new()),
        n => (Change::Keep, format!("it holds {n} other topic(s)")),
    };
    if change == Change::Delete && !dry_run {
        call(
            client,
            "DeleteLogset",
            json!({"LogsetId": logset}),
            deadline,
        )
        .await?;
    }
    steps.push(Step {
        kind: "cls logset",
        name: with_id(&names.logset, Some(&logset)),
        change,
        detail,
    });
    Ok(steps)
}

/// The snapshot bucket: `<name>-<appid>` in `region`, reached at `endpoint` (the stand-in's
/// address), else at `https://<bucket>.cos.<region>.myqcloud.com`.
#[derive(Debug, Clone)]
pub struct BucketSpec {
    /// `<name>-<appid>`.
    pub bucket: String,
    /// Its region.
    pub region: String,
    /// Where to reach it instead of COS (tests).
    pub endpoint: Option<String>,
}

/// The largest answer read from a bucket request (an error document).
const MAX_BUCKET_ANSWER_BYTES: usize = 64 * 1024;

/// Makes sure the bucket exists (created private when absent). With `dry_run`, only asks.
pub async fn ensure_bucket(
    spec: &BucketSpec,
    credentials: &esgflow::adapters::tencent::Credentials,
    dry_run: bool,
    deadline: Instant,
) -> Result<Step, String> {
    let (status, _) = bucket_request(spec, credentials, "HEAD", deadline).await?;
    let change = match status {
        200 => Change::Keep,
        404 => Change::Create,
        403 => return Err(format!(
            "COS bucket {}: access denied (403) — it belongs to another account, or the deploy key may not read it (allow cos:HeadBucket and cos:PutBucket)",
            spec.bucket
        )),
        other => return Err(format!("COS bucket {}: HEAD answered {other}", spec.bucket)),
    };
    if change == Change::Create && !dry_run {
        let (status, body) = bucket_request(spec, credentials, "PUT", deadline).await?;
        match status {
            200 => {}
            409 => {
                return Err(format!(
                    "COS bucket {}: the name is taken (409 {}); choose another SNAPSHOT_BUCKET",
                    spec.bucket,
                    error_code(&body)
                ))
            }
            other => {
                return Err(format!(
                    "COS bucket {}: PUT answered {other} {}",
                    spec.bucket,
                    error_code(&body)
                ))
            }
        }
    }
    Ok(Step {
        kind: "cos bucket",
        name: spec.bucket.clone(),
        change,
        detail: if change == Change::Create {
            "private".into()
        } else {
            String::new()
        },
    })
}

/// Most objects listed per page (COS's `max-keys` limit).
const LIST_PAGE: &str = "1000";

/// Removes the bucket when `delete_snapshots` (every object in it first), else says it is kept.
pub async fn remove_bucket(
    spec: &BucketSpec,
    credentials: &esgflow::adapters::tencent::Credentials,
    delete_snapshots: bool,
    dry_run: bool,
    deadline: Instant,
) -> Result<Step, String> {
    let (status, _) = bucket_request(spec, credentials, "HEAD", deadline).await?;
    let step = |change, detail: String| Step {
        kind: "cos bucket",
        name: spec.bucket.clone(),
        change,
        detail,
    };
    match status {
        404 => return Ok(step(Change::Absent, String::new())),
        200 => {}
        other => return Err(format!("COS bucket {}: HEAD answered {other}", spec.bucket)),
    }
    if !delete_snapshots {
        return Ok(step(
            Change::Keep,
            "its snapshots are kept: --delete-snapshots removes it".into(),
        ));
    }
    let mut deleted = 0usize;
    let mut marker = String::new();
    loop {
        if Instant::now() >= deadline {
            return Err(format!(
                "COS bucket {}: no time left emptying it",
                spec.bucket
            ));
        }
        let (status, body) = cos_request(
            spec,
            credentials,
            "GET",
            "/",
            &[("marker", &marker), ("max-keys", LIST_PAGE)],
            deadline,
        )
        .await?;
        if status != 200 {
            return Err(format!(
                "COS bucket {}: listing answered {status} {}",
                spec.bucket,
                error_code(&body)
            ));
        }
        let text = String::from_utf8_lossy(&body);
        let keys = elements(&text, "Key");
        for key in &keys {
            if !dry_run {
                let (status, body) = cos_request(
                    spec,
                    credentials,
                    "DELETE",
                    &format!("/{key}"),
                    &[],
                    deadline,
                )
                .await?;
                if !matches!(status, 200 | 204 | 404) {
                    return Err(format!(
                        "COS bucket {}: deleting {key} answered {status} {}",
                        spec.bucket,
                        error_code(&body)
                    ));
                }
            }
            deleted += 1;
        }
        let truncated = elements(&text, "IsTruncated").first().map(String::as_str) == Some("true");
        match (truncated, keys.last()) {
            (true, Some(last)) => {
                marker = elements(&text, "NextMarker")
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| last.clone())
            }
            _ => break,
        }
        if dry_run {
            break;
        }
    }
    if !dry_run {
        let (status, body) = bucket_request(spec, credentials, "DELETE", deadline).await?;
        if !matches!(status, 200 | 204) {
            return Err(format!(
                "COS bucket {}: DELETE answered {status} {}",
                spec.bucket,
                error_code(&body)
            ));
        }
    }
    Ok(step(Change::Delete, format!("{deleted} object(s) with it")))
}

/// The text of every `<name>…</name>` element of a COS XML answer, in order.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split(&close).next())
        .map(|text| {
            text.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}

/// The `<Code>` of a COS error document, or nothing.
fn error_code(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or_default()
        .to_string()
}

/// One signed request on the bucket itself (`/`): its status and body.
async fn bucket_request(
    spec: &BucketSpec,
    credentials: &esgflow::adapters::tencent::Credentials,
    method: &str,
    deadline: Instant,
) -> Result<(u16, Vec<u8>), String> {
    cos_request(spec, credentials, method, "/", &[], deadline).await
}

/// One signed request on `path` of the bucket with query `params`: its status and body.
async fn cos_request(
    spec: &BucketSpec,
    credentials: &esgflow::adapters::tencent::Credentials,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    deadline: Instant,
) -> Result<(u16, Vec<u8>), String> {
    use esgflow::adapters::tencent::sign::qsign;
    let base = spec
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://{}.cos.{}.myqcloud.com", spec.bucket, spec.region));
    let mut url = reqwest::Url::parse(&base).map_err(|e| format!("COS endpoint {base:?}: {e}"))?;
    url.set_path(path);
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    let host = esgflow::adapters::tencent::host_header(&url)
        .ok_or_else(|| format!("COS endpoint {base:?} has no host"))?;
    let mut signed: Vec<(&str, &str)> = vec![("host", &host)];
    if method == "PUT" {
        signed.push(("x-cos-acl", "private"));
    }
    let now = chrono::Utc::now().timestamp();
    let authorization = qsign::authorization(
        credentials,
        &qsign::Request {
            method,
            path,
            params,
            headers: &signed,
            start: now - 60,
            end: now + 600,
        },
    );
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .min(std::time::Duration::from_secs(20));
    if timeout.is_zero() {
        return Err(format!("COS bucket {}: no time left", spec.bucket));
    }
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut request = reqwest::Client::new()
        .request(method.clone(), url)
        .timeout(timeout)
        .header("Host", &host)
        .header("Authorization", authorization);
    for (name, value) in signed.iter().skip(1) {
        request = request.header(*name, *value);
    }
    if let Some(token) = &credentials.token {
        request = request.header("x-cos-security-token", token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("COS bucket {} {method}: {e}", spec.bucket))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("COS bucket {} {method}: {e}", spec.bucket))?
    {
        if body.len() + chunk.len() > MAX_BUCKET_ANSWER_BYTES {
            return Err(format!(
                "COS bucket {} {method}: the answer is over {MAX_BUCKET_ANSWER_BYTES} bytes",
                spec.bucket
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_serving_every_field_is_kept_and_a_missing_flag_is_set() {
        let rule = index_rule(HITS_INDEX);
        assert_eq!(merged_rule(Some(&rule), HITS_INDEX).1, Vec::<String>::new());
        let mut lacking = rule.clone();
        lacking["KeyValue"]["KeyValues"]
            .as_array_mut()
            .unwrap()
            .retain(|kv| kv["Key"] != "rule_uuid");
        lacking["KeyValue"]["KeyValues"][0]["Value"]["SqlFlag"] = json!(false);
        lacking["KeyValue"]["KeyValues"]
            .as_array_mut()
            .unwrap()
            .push(json!({"Key": "mine", "Value": {"Type": "text"}}));
        let (merged, changes) = merged_rule(Some(&lacking), HITS_INDEX);
        assert_eq!(changes, ["record_type: statistics on", "add rule_uuid"]);
        let keys: Vec<&str> = merged["KeyValue"]["KeyValues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| kv["Key"].as_str().unwrap())
            .collect();
        assert!(keys.contains(&"mine"), "a hand-added field is kept");
        assert_eq!(
            merged_rule(Some(&merged), HITS_INDEX).1,
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_field_of_the_wrong_type_is_replaced() {
        let mut rule = index_rule(HITS_INDEX);
        rule["KeyValue"]["KeyValues"][3]["Value"]["Type"] = json!("text");
        let (_, changes) = merged_rule(Some(&rule), HITS_INDEX);
        assert_eq!(changes, ["src_ip_num: type text → long"]);
        assert_eq!(merged_rule(None, HITS_INDEX).1, ["no index"]);
        assert_eq!(merged_rule(Some(&Value::Null), HITS_INDEX).1, ["no index"]);
    }
}
