//! `esgflow deploy`'s CLS step against the account stand-in, which refuses what the official
//! definitions refuse: the first run creates the logset, both topics and their indexes; a second
//! run with nothing changed writes nothing; an index that lost a statistics flag is modified once,
//! with a warning; a topic without an index is read the same under every reading of "no index".

use crate::common;

use std::time::{Duration, Instant};

use esgflow::adapters::tencent::api::ApiClient;
use esgflow::adapters::tencent::cls_query::{HITS_INDEX, TRAFFIC_INDEX};
use esgflow_local::release::provision::{ensure_cls, index_rule, Change, ClsNames, ClsOutcome};
use esgflow_local::standins::account::{AccountStub, Function, NoIndex, Topic};
use serde_json::json;

fn client(stub: &AccountStub) -> ApiClient {
    ApiClient::new("ap-guangzhou", Some(stub.url.clone())).with_credentials(
        esgflow::adapters::tencent::Credentials {
            secret_id: esgflow_local::standins::cloud::SECRET_ID.into(),
            secret_key: esgflow_local::standins::cloud::SECRET_KEY.into(),
            token: None,
        },
    )
}

async fn run(
    stub: &AccountStub,
    existing: (Option<&str>, Option<&str>),
    dry_run: bool,
) -> ClsOutcome {
    let deadline = Instant::now() + Duration::from_secs(30);
    ensure_cls(
        &client(stub),
        &ClsNames::for_stack("esgflow"),
        existing,
        dry_run,
        deadline,
    )
    .await
    .unwrap()
}

fn changes(outcome: &ClsOutcome) -> Vec<(&'static str, Change)> {
    outcome.steps.iter().map(|s| (s.kind, s.change)).collect()
}

/// Changes the key-value fields of `topic`'s index in the stand-in, as someone in the CLS console
/// would.
fn edit_index_fields(
    stub: &AccountStub,
    topic: &str,
    edit: impl FnOnce(&mut Vec<serde_json::Value>),
) {
    let mut state = stub.state.lock().unwrap();
    let (rule, _) = state.topics.get_mut(topic).unwrap().index.as_mut().unwrap();
    edit(rule["KeyValue"]["KeyValues"].as_array_mut().unwrap());
}

fn take_writes(stub: &AccountStub) -> Vec<String> {
    let mut state = stub.state.lock().unwrap();
    let writes = state.writes();
    state.actions.clear();
    writes
}

#[tokio::test]
async fn a_second_run_changes_nothing_and_a_changed_index_is_modified_once() {
    let stub = AccountStub::start().await.unwrap();
    // A dry run on an empty account reads and would create everything.
    let planned = run(&stub, (None, None), true).await;
    assert_eq!(
        changes(&planned),
        [
            ("cls logset", Change::Create),
            ("cls topic", Change::Create),
            ("cls index", Change::Create),
            ("cls topic", Change::Create),
            ("cls index", Change::Create),
        ]
    );
    assert_eq!(
        take_writes(&stub),
        Vec::<String>::new(),
        "a dry run writes nothing"
    );

    let first = run(&stub, (None, None), false).await;
    assert_eq!(changes(&first), changes(&planned));
    assert_eq!(
        take_writes(&stub),
        [
            "CreateLogset",
            "CreateTopic",
            "CreateIndex",
            "CreateTopic",
            "CreateIndex"
        ]
    );
    let (hits, traffic) = (
        first.hits_topic_id.clone().unwrap(),
        first.traffic_topic_id.clone().unwrap(),
    );
    {
        let state = stub.state.lock().unwrap();
        assert_eq!(state.topics[&hits].name, "esgflow-hits");
        assert_eq!(
            state.topics[&hits].index,
            Some((index_rule(HITS_INDEX), true))
        );
        assert_eq!(state.topics[&traffic].name, "esgflow-traffic");
        assert_eq!(
            state.topics[&traffic].index,
            Some((index_rule(TRAFFIC_INDEX), true))
        );
    }

    let second = run(&stub, (None, None), false).await;
    assert!(
        second.steps.iter().all(|s| s.change == Change::Keep),
        "{:?}",
        second.steps
    );
    assert_eq!(take_writes(&stub), Vec::<String>::new());
    assert_eq!(
        (second.hits_topic_id, second.traffic_topic_id),
        (Some(hits.clone()), Some(traffic.clone()))
    );
    assert!(second.warnings.is_empty());

    // Someone switched statistics off for rule_uuid and added a field of their own.
    edit_index_fields(&stub, &hits, |key_values| {
        for kv in key_values.iter_mut() {
            if kv["Key"] == "rule_uuid" {
                kv["Value"]["SqlFlag"] = json!(false);
            }
        }
        key_values.push(json!({"Key": "team", "Value": {"Type": "text", "SqlFlag": false}}));
    });
    let third = run(&stub, (None, None), false).await;
    assert_eq!(take_writes(&stub), ["ModifyIndex"]);
    let index = third
        .steps
        .iter()
        .find(|s| s.change == Change::Update)
        .unwrap();
    assert_eq!(index.detail, "rule_uuid: statistics on");
    assert!(
        third.warnings[0].contains("only to logs written from now on"),
        "{:?}",
        third.warnings
    );
    {
        let state = stub.state.lock().unwrap();
        let rule = &state.topics[&hits].index.as_ref().unwrap().0;
        assert!(
            rule.to_string().contains("\"team\""),
            "a hand-added field is kept"
        );
    }
    assert_eq!(
        run(&stub, (None, None), false).await.warnings,
        Vec::<String>::new()
    );
    assert_eq!(take_writes(&stub), Vec::<String>::new());
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

/// Topics the operator already has, without indexes: whether `DescribeIndex` answers "not
/// found" or an empty rule, each gets the index created; no logset or topic is created.
#[tokio::test]
async fn existing_topics_without_an_index_get_one_under_every_reading() {
    for reading in [NoIndex::NotFound, NoIndex::EmptyRule] {
        let stub = AccountStub::start().await.unwrap();
        {
            let mut state = stub.state.lock().unwrap();
            state.no_index = reading;
            state.logsets.insert("theirs".into(), "their-logs".into());
            for id in ["their-hits", "their-traffic"] {
                state.topics.insert(
                    id.into(),
                    Topic {
                        id: id.into(),
                        name: id.into(),
                        logset: "theirs".into(),
                        period: 7,
                        index: None,
                    },
                );
            }
        }
        let outcome = run(&stub, (Some("their-hits"), Some("their-traffic")), false).await;
        assert_eq!(
            changes(&outcome),
            [
                ("cls topic", Change::Keep),
                ("cls index", Change::Create),
                ("cls topic", Change::Keep),
                ("cls index", Change::Create),
            ],
            "{reading:?}"
        );
        assert_eq!(
            take_writes(&stub),
            ["CreateIndex", "CreateIndex"],
            "{reading:?}"
        );
        assert_eq!(outcome.hits_topic_id.as_deref(), Some("their-hits"));
        let again = run(&stub, (Some("their-hits"), Some("their-traffic")), false).await;
        assert!(
            again.steps.iter().all(|s| s.change == Change::Keep),
            "{reading:?}"
        );
        assert!(
            stub.problems().is_empty(),
            "{reading:?}: {:?}",
            stub.problems()
        );
    }
}

/// The stand-in is the judge: a request the official definition refuses is refused (here a
/// `CreateTopic` without its required `LogsetId`), so the tests above passing means every call
/// the deploy made was one the definitions accept.
#[tokio::test]
async fn the_stand_in_refuses_what_the_definition_refuses() {
    let stub = AccountStub::start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = client(&stub)
        .call(
            "cls",
            "2020-10-16",
            "CreateTopic",
            &json!({"TopicName": "x"}),
            deadline,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code, "MissingParameter");
    let refused = client(&stub)
        .call(
            "cls",
            "2020-10-16",
            "CreateLogset",
            &json!({"LogsetName": "x", "Colour": 1}),
            deadline,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code, "UnknownParameter");
    assert_eq!(stub.problems().len(), 2);
}

fn roles(hits_topic: &str) -> Vec<esgflow_local::release::provision::RoleSpec> {
    use esgflow_local::release::deploy::{role_specs, Stack, Values};
    let stack =
        Stack::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml"))
            .unwrap();
    let topic = hits_topic.to_string();
    let values = Values::resolve(&stack, &move |name| match name {
        "ESG_HITS_TOPIC_ID" => Some(topic.clone()),
        "APPID" => Some("1250000000".into()),
        "UIN" => Some("100000000001".into()),
        _ => None,
    })
    .unwrap();
    role_specs(&stack, &values).unwrap()
}

async fn ensure_roles(
    stub: &AccountStub,
    roles: &[esgflow_local::release::provision::RoleSpec],
) -> Vec<(&'static str, Change)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    esgflow_local::release::provision::ensure_roles(&client(stub), roles, false, deadline)
        .await
        .unwrap()
        .iter()
        .map(|s| (s.kind, s.change))
        .collect()
}

/// The three execution roles: created trusting SCF with their policies attached; a second run
/// writes nothing; a changed policy becomes a new default version (the oldest other version
/// deleted first once CAM's five are used); a role that trusts something else is made to trust
/// SCF.
#[tokio::test]
async fn roles_trust_scf_and_carry_the_template_policies() {
    let stub = AccountStub::start().await.unwrap();
    let specs = roles("topic-hits-1");
    assert_eq!(
        specs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["esgflow-audit", "esgflow-lookup", "esgflow-sync"]
    );
    let first = ensure_roles(&stub, &specs).await;
    assert!(first.iter().all(|(_, c)| *c == Change::Create), "{first:?}");
    assert_eq!(
        take_writes(&stub),
        ["CreateRole", "CreatePolicy", "AttachRolePolicy"].repeat(3)
    );
    {
        let state = stub.state.lock().unwrap();
        for spec in &specs {
            assert!(state.roles[&spec.name].contains("scf.qcloud.com"));
            let id = state.attached[&spec.name][0];
            let document: serde_json::Value =
                serde_json::from_str(state.policies[&id].document()).unwrap();
            assert_eq!(document, spec.policy);
        }
        // The sync role may write the hits topic it was given, and nothing else in CLS.
        let sync = state
            .policies
            .values()
            .find(|p| p.name == "esgflow-sync-policy")
            .unwrap();
        assert!(sync.document().contains("topic/topic-hits-1"));
    }
    let second = ensure_roles(&stub, &specs).await;
    assert!(second.iter().all(|(_, c)| *c == Change::Keep), "{second:?}");
    assert_eq!(take_writes(&stub), Vec::<String>::new());

    // The hits topic changed: every policy naming it gets a new version, five times over.
    for round in 2..=6 {
        let changed = roles(&format!("topic-hits-{round}"));
        ensure_roles(&stub, &changed).await;
        let writes = take_writes(&stub);
        let expected: &[&str] = if round <= 5 {
            &["CreatePolicyVersion"]
        } else {
            &["DeletePolicyVersion", "CreatePolicyVersion"]
        };
        assert_eq!(writes, expected.repeat(3), "round {round}");
    }
    {
        let mut state = stub.state.lock().unwrap();
        let audit = state
            .policies
            .values()
            .find(|p| p.name == "esgflow-audit-policy")
            .unwrap();
        assert!(audit.document().contains("topic-hits-6"));
        assert_eq!(audit.versions.len(), 5);
        state.roles.insert(
            "esgflow-lookup".into(),
            r#"{"version":"2.0","statement":[]}"#.into(),
        );
    }
    let mended = ensure_roles(&stub, &roles("topic-hits-6")).await;
    assert_eq!(mended[3], ("cam role", Change::Update));
    assert_eq!(take_writes(&stub), ["UpdateAssumeRolePolicy"]);
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

/// The snapshot bucket: created private when absent, left alone when present, and a name that is
/// another account's is named as such (nothing else written).
#[tokio::test]
async fn the_bucket_is_created_private_once() {
    use esgflow_local::release::provision::{ensure_bucket, BucketSpec};
    let stub = AccountStub::start().await.unwrap();
    let spec = BucketSpec {
        bucket: "esg-1250000000".into(),
        region: "ap-guangzhou".into(),
        endpoint: Some(stub.url.clone()),
    };
    let credentials = esgflow::adapters::tencent::Credentials {
        secret_id: esgflow_local::standins::cloud::SECRET_ID.into(),
        secret_key: esgflow_local::standins::cloud::SECRET_KEY.into(),
        token: None,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let planned = ensure_bucket(&spec, &credentials, true, deadline)
        .await
        .unwrap();
    assert_eq!(planned.change, Change::Create);
    assert_eq!(take_writes(&stub), Vec::<String>::new());
    let created = ensure_bucket(&spec, &credentials, false, deadline)
        .await
        .unwrap();
    assert_eq!(
        (created.change, created.detail.as_str()),
        (Change::Create, "private")
    );
    assert_eq!(take_writes(&stub), ["PUT Bucket"]);
    assert_eq!(
        stub.state.lock().unwrap().bucket.as_deref(),
        Some("private")
    );
    let again = ensure_bucket(&spec, &credentials, false, deadline)
        .await
        .unwrap();
    assert_eq!(again.change, Change::Keep);
    assert_eq!(take_writes(&stub), Vec::<String>::new());

    let taken = AccountStub::start().await.unwrap();
    taken.state.lock().unwrap().bucket_taken = true;
    let spec = BucketSpec {
        endpoint: Some(taken.url.clone()),
        ..spec
    };
    let refused = ensure_bucket(&spec, &credentials, false, deadline)
        .await
        .unwrap_err();
    assert!(
        refused.contains("esg-1250000000") && refused.contains("403"),
        "{refused}"
    );
    assert_eq!(take_writes(&taken), Vec::<String>::new());
    assert!(stub.problems().is_empty() && taken.problems().is_empty());
}

/// `esgflow deploy` itself, as `make deploy` runs it, against the account stand-in, with a
/// serverless CLI that records where it was run (the real one needs Tencent's platform): the
/// first run creates the bucket, logset, topics, indexes, roles and policies, deploys the three
/// functions with the created topic ids in their settings and policies, and sets audit's retry;
/// a second run writes nothing; after an index lost a field, a third run modifies that index
/// once and says that CLS applies it to new logs only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_deploy_then_a_no_op_then_one_index_change() {
    let stub = AccountStub::start().await.unwrap();
    {
        let mut state = stub.state.lock().unwrap();
        state.topics.insert(FLOWLOG_TOPIC.into(), flowlog_topic());
        // SCF lists CLS shipping among the function's triggers (the other reading is the
        // toolkit test's).
        state.list_deliveries = true;
        for name in ["esgflow-audit", "esgflow-lookup", "esgflow-sync"] {
            state.functions.insert(
                name.into(),
                Function {
                    async_config: json!({"RetryConfig": [{"RetryNum": 2}], "MsgTTL": 86400}),
                    ..Function::default()
                },
            );
        }
    }
    let work = stack_dir("e2e");
    let cli = work.join("scf");
    let calls = work.join("cli-calls.log");
    script(
        &cli,
        &format!("#!/bin/sh\necho \"$PWD $*\" >> {}\n", calls.display()),
    );
    let esgflow = |url: String, args: &'static [&'static str]| run_esgflow(&work, &cli, url, args);

    let deploy = |url: String| esgflow(url, &["deploy"]);
    let first = deploy(stub.url.clone()).await;
    assert_eq!(
        take_writes(&stub),
        [
            vec![
                "PUT Bucket",
                "CreateLogset",
                "CreateTopic",
                "CreateIndex",
                "CreateTopic",
                "CreateIndex",
                "CreateDashboard",
            ],
            ["CreateRole", "CreatePolicy", "AttachRolePolicy"].repeat(3),
            // This serverless CLI made nothing: the deploy creates the CLS shipping.
            vec![
                "UpdateFunctionEventInvokeConfig",
                "CreateDeliverCloudFunction",
            ],
        ]
        .concat()
    );
    assert!(first.contains("cls topic"), "{first}");
    // A clean account has no SCF service role yet: the deploy says what to do.
    assert!(
        first.contains("note: SCF_QcsRole: open the SCF console once"),
        "{first}"
    );
    stub.state.lock().unwrap().roles.insert(
        "SCF_QcsRole".into(),
        esgflow_local::release::provision::SCF_TRUST.into(),
    );
    let (hits, traffic) = {
        let state = stub.state.lock().unwrap();
        let id = |name: &str| {
            state
                .topics
                .values()
                .find(|t| t.name == name)
                .unwrap()
                .id
                .clone()
        };
        assert_eq!(
            state.functions["esgflow-audit"].async_config,
            json!({"RetryConfig": [{"RetryNum": 2}], "MsgTTL": 21600})
        );
        (id("esgflow-hits"), id("esgflow-traffic"))
    };
    let ran: Vec<String> = std::fs::read_to_string(&calls)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ran.len(), 3, "{ran:?}");
    for function in ["audit", "lookup", "sync"] {
        let dir = work.join("out").join(function);
        assert!(
            ran.contains(&format!("{} deploy", dir.display())),
            "{ran:?}"
        );
        let serverless = std::fs::read_to_string(dir.join("serverless.yml")).unwrap();
        assert!(
            serverless.contains(&format!("ESGFLOW_CLS_TOPIC_ID: {hits}")),
            "{serverless}"
        );
        let policy = std::fs::read_to_string(dir.join("policy.json")).unwrap();
        assert!(!policy.contains("created by deploy"), "{policy}");
        assert!(dir.join("code/bootstrap").exists());
        if function != "sync" {
            assert!(serverless.contains(&format!("ESGFLOW_CLS_TRAFFIC_TOPIC_ID: {traffic}")));
        }
    }

    let second = deploy(stub.url.clone()).await;
    assert_eq!(take_writes(&stub), Vec::<String>::new(), "{second}");
    // The official DescribeDashboards example answers `Data: ""`: a deploy then compares the
    // fingerprint it tagged the dashboard with, and still writes nothing (issue #36).
    stub.state.lock().unwrap().dashboards_without_data = true;
    let again = deploy(stub.url.clone()).await;
    assert_eq!(take_writes(&stub), Vec::<String>::new(), "{again}");
    stub.state.lock().unwrap().dashboards_without_data = false;
    assert!(!second.contains(" create "), "{second}");
    assert!(!second.contains("note: SCF_QcsRole"), "{second}");

    edit_index_fields(&stub, &hits, |key_values| {
        key_values.retain(|kv| kv["Key"] != "dst_port")
    });
    let third = deploy(stub.url.clone()).await;
    assert_eq!(take_writes(&stub), ["ModifyIndex"]);
    assert!(third.contains("add dst_port"), "{third}");
    assert!(
        third.contains("only to logs written from now on"),
        "{third}"
    );

    // destroy: the functions, roles and policies go; the topics and the bucket stay unless asked.
    stub.state.lock().unwrap().objects.extend([
        "esgflow/snapshots/latest.json".to_string(),
        "esgflow/snapshots/0e0a7fe890b3dfe9.json".to_string(),
    ]);
    let kept = esgflow(stub.url.clone(), &["destroy"]).await;
    assert_eq!(
        take_writes(&stub),
        [
            ["DetachRolePolicy", "DeletePolicy", "DeleteRole"].repeat(3),
            vec!["DeleteDashboard"]
        ]
        .concat(),
        "{kept}"
    );
    assert!(kept.contains("--delete-logs removes it"), "{kept}");
    assert!(kept.contains("--delete-snapshots removes it"), "{kept}");
    let removes = std::fs::read_to_string(&calls)
        .unwrap()
        .matches(" remove")
        .count();
    assert_eq!(removes, 3);
    // What the real CLI's `remove` does.
    stub.state.lock().unwrap().functions.clear();
    let gone = esgflow(
        stub.url.clone(),
        &["destroy", "--delete-logs", "--delete-snapshots"],
    )
    .await;
    assert_eq!(
        take_writes(&stub),
        [
            "DeleteTopic",
            "DeleteTopic",
            "DeleteLogset",
            "DELETE Object",
            "DELETE Object",
            "DELETE Bucket"
        ],
        "{gone}"
    );
    {
        let state = stub.state.lock().unwrap();
        // The user's flow-log topic stays; esgflow's are gone.
        assert_eq!(state.topics.keys().collect::<Vec<_>>(), [FLOWLOG_TOPIC]);
        assert!(state.logsets.is_empty());
        // SCF's own service role is not the deploy's to remove.
        assert_eq!(state.roles.keys().collect::<Vec<_>>(), ["SCF_QcsRole"]);
        assert!(state.policies.is_empty() && state.bucket.is_none() && state.objects.is_empty());
    }
    assert!(gone.contains("2 object(s) with it"), "{gone}");
    let again = esgflow(
        stub.url.clone(),
        &["destroy", "--delete-logs", "--delete-snapshots"],
    )
    .await;
    assert_eq!(take_writes(&stub), Vec::<String>::new(), "{again}");
    assert!(!again.contains(" delete "), "{again}");
    let removes = std::fs::read_to_string(&calls)
        .unwrap()
        .matches(" remove")
        .count();
    assert_eq!(removes, 3, "nothing left to remove");
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
    std::fs::remove_dir_all(&work).ok();
}

/// Every dashboard panel's query is one CLS runs: sent as `SearchLog` to the CLS stand-in (whose
/// SQL sees only the index fields with statistics), none is refused. The panels are built by the
/// lookup API's own query builders, one per view of the console.
#[tokio::test]
async fn every_dashboard_query_is_one_cls_runs() {
    use esgflow_local::release::provision::{dashboard_data, dashboard_panels};
    let cls = esgflow_local::standins::cls::ClsStub::start(vec![]).await;
    let client = ApiClient::new("ap-guangzhou", Some(cls.url.clone())).with_credentials(
        esgflow::adapters::tencent::Credentials {
            secret_id: esgflow_local::standins::cloud::SECRET_ID.into(),
            secret_key: esgflow_local::standins::cloud::SECRET_KEY.into(),
            token: Some(esgflow_local::standins::cls::TOKEN.into()),
        },
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let panels = dashboard_panels();
    assert!(panels.len() >= 8);
    for panel in &panels {
        let body = json!({"TopicId": "t", "From": 0, "To": 1, "QueryString": panel.query,
            "QuerySyntax": 1, "UseNewAnalysis": true, "Limit": 100});
        let answer = client
            .call("cls", "2020-10-16", "SearchLog", &body, deadline)
            .await;
        assert!(answer.is_ok(), "{}: {answer:?}", panel.title);
    }
    // The check can fail: SQL over a field without statistics is refused.
    let refused = json!({"TopicId": "t", "From": 0, "To": 1, "QuerySyntax": 1, "Limit": 100,
        "QueryString": "record_type:\"block_hit\" | select src_ip_num, count(*) as n group by src_ip_num"});
    assert!(client
        .call("cls", "2020-10-16", "SearchLog", &refused, deadline)
        .await
        .is_err());
    assert!(cls.problems().is_empty(), "{:?}", cls.problems());
    // Laid out two a row, each reading its own topic, with the region's number.
    let data = dashboard_data("ap-guangzhou", "logset-1", "hits-1", "traffic-1");
    let laid_out = data["panels"].as_array().unwrap();
    assert_eq!(laid_out.len(), panels.len());
    for (panel, written) in panels.iter().zip(laid_out) {
        assert_eq!(written["target"]["Query"], panel.query);
        let topic = if panel.hits_topic {
            "hits-1"
        } else {
            "traffic-1"
        };
        assert_eq!(written["target"]["TopicId"], topic);
        assert_eq!(written["target"]["RegionId"], 1);
    }
    assert_eq!(
        laid_out[3]["gridPos"],
        json!({"x": 12, "y": 8, "w": 12, "h": 8})
    );
}

/// A working directory for one `esgflow deploy` test: the repository's template.yaml and a
/// one-file package per function in `dist/`.
fn stack_dir(tag: &str) -> std::path::PathBuf {
    let work = common::scratch(&format!("deploy-{tag}")).keep();
    std::fs::create_dir_all(work.join("dist")).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml"),
        work.join("template.yaml"),
    )
    .unwrap();
    for function in ["audit", "lookup", "sync"] {
        let file = std::fs::File::create(work.join(format!("dist/{function}.zip"))).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        zip.start_file(
            "bootstrap",
            zip::write::SimpleFileOptions::default().unix_permissions(0o755),
        )
        .unwrap();
        std::io::Write::write_all(&mut zip, b"#!/bin/sh\n").unwrap();
        zip.finish().unwrap();
    }
    work
}

/// The flow-log topic the stack reads (the user's, not the deploy's).
const FLOWLOG_TOPIC: &str = "0f8e1b42-8c6a-4b56-9b3e-2d5c1a7e9f00";

/// The user's flow-log topic, in a logset of theirs.
fn flowlog_topic() -> Topic {
    Topic {
        id: FLOWLOG_TOPIC.into(),
        name: "vpc-flow-logs".into(),
        logset: "the-users-logset".into(),
        period: 30,
        index: None,
    }
}

/// The stack's required parameters, each of the right form.
const PARAMETERS: &[(&str, &str)] = &[
    ("APPID", "1250000000"),
    ("UIN", "100000000001"),
    ("FLOWLOG_TOPIC_ID", FLOWLOG_TOPIC),
    ("SNAPSHOT_BUCKET", "esg-1250000000"),
    ("LOOKUP_TOKEN", "very-secret-token-0123456789abcdef"),
];

/// Writes an executable shell script (a stand-in serverless CLI).
fn script(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Runs the `esgflow` binary with `args` in `work`, against the stand-in at `url`, with `cli` as
/// the serverless CLI; its standard output, after asserting it succeeded.
async fn run_esgflow(
    work: &std::path::Path,
    cli: &std::path::Path,
    url: String,
    args: &'static [&'static str],
) -> String {
    let (work, cli) = (work.to_path_buf(), cli.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_esgflow"));
        command
            .args(args)
            .arg("--template")
            .arg(work.join("template.yaml"))
            .arg("--out")
            .arg(work.join("out"))
            .arg("--cli")
            .arg(&cli);
        against(&mut command, url)
            .env_remove("TENCENT_TOKEN")
            .env_remove("ESG_HITS_TOPIC_ID")
            .env_remove("ESG_TRAFFIC_TOPIC_ID");
        command.envs(PARAMETERS.iter().copied());
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    })
    .await
    .unwrap()
}

/// The serverless files `esgflow deploy` writes, turned into API calls by the code Tencent's scf
/// component runs (`tencent-component-toolkit`, driven by `tests/toolkit/scf`), against the
/// account stand-in, which refuses what the official definitions refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_component_toolkit_deploys_the_generated_functions() {
    let toolkit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/toolkit");
    assert!(
        toolkit
            .join("node_modules/tencent-component-toolkit")
            .exists(),
        "the toolkit is not installed: run `make setup-test` (npm ci --prefix tests/toolkit)"
    );
    let stub = AccountStub::start().await.unwrap();
    stub.state
        .lock()
        .unwrap()
        .topics
        .insert(FLOWLOG_TOPIC.into(), flowlog_topic());
    let work = stack_dir("toolkit");
    let cli = toolkit.join("scf");
    let deploy = || run_esgflow(&work, &cli, stub.url.clone(), &["deploy"]);
    let first = deploy().await;
    let (hits, traffic) = {
        let state = stub.state.lock().unwrap();
        assert!(state.problems.is_empty(), "{:?}\n{first}", state.problems);
        let id = |name: &str| {
            let topic = state.topics.values().find(|t| t.name == name);
            topic.unwrap().id.clone()
        };
        (id("esgflow-hits"), id("esgflow-traffic"))
    };
    let trigger = |function: &str| {
        let state = stub.state.lock().unwrap();
        let triggers = &state.functions[function].triggers;
        assert_eq!(triggers.len(), 1, "{function}: {triggers:?}");
        triggers[0].clone()
    };
    {
        let state = stub.state.lock().unwrap();
        for (name, memory, timeout) in [
            ("esgflow-audit", 64, 60),
            ("esgflow-lookup", 128, 15),
            ("esgflow-sync", 256, 120),
        ] {
            let config = &state.functions[name].config;
            for (key, value) in [
                ("Runtime", json!("CustomRuntime")),
                ("Handler", json!("bootstrap")),
                ("Type", json!("Event")),
                ("Role", json!(name)),
                ("MemorySize", json!(memory)),
                ("Timeout", json!(timeout)),
                ("InitTimeout", json!(10)),
            ] {
                assert_eq!(config[key], value, "{name}.{key}: {config}");
            }
            let env = |key: &str| {
                config["Environment"]["Variables"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|v| v["Key"] == key)
                    .map(|v| v["Value"].clone())
            };
            assert_eq!(env("ESGFLOW_CLS_TOPIC_ID"), Some(json!(hits)), "{name}");
            assert_eq!(
                env("ESGFLOW_SNAPSHOT"),
                Some(json!("cos://esg-1250000000/esgflow/snapshots"))
            );
            assert!(config["Code"]["CosObjectName"].is_string(), "{config}");
        }
        let lookup = &state.functions["esgflow-lookup"].config;
        assert!(
            lookup["Environment"]["Variables"].as_array().unwrap().iter().any(
                |v| v["Key"] == "ESGFLOW_CLS_TRAFFIC_TOPIC_ID" && v["Value"] == json!(traffic)
            ),
            "{lookup}"
        );
        // audit's retry: 2 retries, events kept 6 h, set after the CLI by the deploy.
        assert_eq!(
            state.functions["esgflow-audit"].async_config,
            json!({"RetryConfig": [{"RetryNum": 2}], "MsgTTL": 21600})
        );
        // The CLS trigger is CLS shipping the flow-log topic to audit.
        assert_eq!(
            state.deliveries[FLOWLOG_TOPIC],
            json!({"topic_id": FLOWLOG_TOPIC, "name_space": "default",
                "function_name": "esgflow-audit", "qualifier": "$DEFAULT", "max_wait": 60,
                "effective": true})
        );
        assert!(state.functions["esgflow-audit"].triggers.is_empty());
        // What the toolkit sends beyond tccli's definitions: listed, so a change shows.
        assert_eq!(
            state.undocumented.iter().collect::<Vec<_>>(),
            [
                "CreateFunction.DeployMode",
                "CreateFunction.DiskSize",
                "CreateFunction.L5Enable",
                "GetFunction.ShowTriggers"
            ]
        );
    }
    // lookup: a Function URL reachable from VPCs only, no authentication of its own.
    let url = trigger("esgflow-lookup");
    assert_eq!(
        (url["Type"].clone(), url["Qualifier"].clone()),
        (json!("http"), json!("$DEFAULT"))
    );
    let desc: serde_json::Value =
        serde_json::from_str(url["TriggerDesc"].as_str().unwrap()).unwrap();
    assert_eq!(
        desc,
        json!({"AuthType": "NONE", "NetConfig": {"EnableIntranet": true, "EnableExtranet": false}})
    );
    let timer = trigger("esgflow-sync");
    assert_eq!(
        (
            timer["Type"].clone(),
            timer["TriggerDesc"].clone(),
            timer["Enable"].clone()
        ),
        (json!("timer"), json!("0 */5 * * * * *"), json!("OPEN"))
    );
    // The component's writes: per function, the code bucket (made once, then found made), its
    // lifecycle and the zip, then the function and its trigger; last, audit's retry by the deploy.
    let code = |then: &[&'static str]| {
        [
            vec![
                "PUT Bucket sls-cloudfunction-ap-guangzhou-code-1250000000",
                "PUT Bucket?lifecycle=",
                "PUT Object",
            ],
            then.to_vec(),
        ]
        .concat()
    };
    let component_writes = || -> Vec<String> {
        take_writes(&stub)
            .into_iter()
            .filter(|w| {
                [
                    "Function",
                    "Trigger",
                    "deliver",
                    "sls-",
                    "lifecycle",
                    "Object",
                ]
                .iter()
                .any(|part| w.contains(part))
            })
            .collect()
    };
    assert_eq!(
        component_writes(),
        [
            code(&["CreateFunction", "POST /deliverfunction"]),
            code(&["CreateFunction", "CreateTrigger"]),
            code(&["CreateFunction", "CreateTrigger"]),
            // Not listed by SCF here: the deploy cannot read the shipping's settings, and
            // creating it through API 3.0 is refused because it exists.
            vec![
                "UpdateFunctionEventInvokeConfig",
                "CreateDeliverCloudFunction",
            ],
        ]
        .concat()
    );
    {
        // Each function's Code names a zip in the code bucket with an executable bootstrap
        // at its root (the stand-in refuses any other), and the bucket expires them.
        let state = stub.state.lock().unwrap();
        let bucket = &state.named_buckets["sls-cloudfunction-ap-guangzhou-code-1250000000"];
        assert_eq!(bucket.objects.len(), 3);
        let lifecycle = bucket.lifecycle.as_deref().unwrap();
        assert!(lifecycle.contains("<Days>10</Days>"), "{lifecycle}");
        for function in state.functions.values() {
            let object = function.config["Code"]["CosObjectName"].as_str().unwrap();
            // SCF's CosObjectName is the object's path: `/` and its key.
            let key = object.strip_prefix('/').unwrap();
            assert!(
                bucket.objects.contains_key(key),
                "{object} {:?}",
                bucket.objects.keys()
            );
        }
    }

    // Whether or not SCF lists the CLS shipping among the function's triggers (undocumented),
    // the component updates it in place (which only switches it on); listed, the deploy reads
    // its settings and keeps it; not listed, creating it through API 3.0 is refused and it is
    // kept, with a note that its settings could not be compared.
    let update = |then: &[&'static str]| {
        code(&[&["UpdateFunctionCode", "UpdateFunctionConfiguration"], then].concat())
    };
    for listed in [false, true] {
        stub.state.lock().unwrap().list_deliveries = listed;
        let again = deploy().await;
        let shipping: &[&str] = if listed {
            &[]
        } else {
            &["CreateDeliverCloudFunction"]
        };
        assert_eq!(
            take_writes(&stub),
            [
                update(&["PUT /deliverfunction"]),
                update(&["UpdateTrigger"]),
                update(&[]),
                shipping.to_vec(),
            ]
            .concat(),
            "listed {listed}: {again}"
        );
        assert_eq!(
            again.contains("settings could not be compared"),
            !listed,
            "{again}"
        );
        assert_eq!(trigger("esgflow-lookup")["TriggerDesc"], url["TriggerDesc"]);
        assert_eq!(trigger("esgflow-sync"), timer);
        assert_eq!(stub.state.lock().unwrap().deliveries.len(), 1);
    }
    // A changed maximum wait reaches the shipping (issue #36: the component's update never
    // applied it): listed, it is removed and made again through API 3.0.
    let template = work.join("template.yaml");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(&template, text.replace("maxWait: 60", "maxWait: 30")).unwrap();
    let changed = deploy().await;
    assert_eq!(
        take_writes(&stub),
        [
            update(&["PUT /deliverfunction"]),
            update(&["UpdateTrigger"]),
            update(&[]),
            vec!["DeleteTrigger", "CreateDeliverCloudFunction"],
        ]
        .concat(),
        "{changed}"
    );
    assert_eq!(
        stub.state.lock().unwrap().deliveries[FLOWLOG_TOPIC]["max_wait"],
        30
    );
    std::fs::write(&template, text).unwrap();
    stub.state.lock().unwrap().list_deliveries = false;

    // destroy: the toolkit removes each function.
    let gone = run_esgflow(&work, &cli, stub.url.clone(), &["destroy"]).await;
    let writes = take_writes(&stub);
    assert_eq!(
        writes
            .iter()
            .filter(|w| w.contains("Function"))
            .collect::<Vec<_>>(),
        ["DeleteFunction"; 3],
        "{gone}"
    );
    {
        let state = stub.state.lock().unwrap();
        assert!(state.functions.is_empty(), "{gone}");
        assert!(state.problems.is_empty(), "{:?}", state.problems);
    }

    // The check can fail: a timer the API would refuse (5 cron fields) stops the CLI, and so
    // does a package whose bootstrap is not executable (the Custom Runtime could not start it).
    let sync = work.join("out/sync");
    let run_cli = || {
        let (cli, dir, url) = (cli.clone(), sync.clone(), stub.url.clone());
        tokio::task::spawn_blocking(move || {
            let mut command = std::process::Command::new(&cli);
            command
                .arg("deploy")
                .current_dir(dir)
                .env("APPID", "1250000000");
            let output = against(&mut command, url).output().unwrap();
            assert!(!output.status.success());
            String::from_utf8_lossy(&output.stderr).into_owned()
        })
    };
    let yml = std::fs::read_to_string(sync.join("serverless.yml")).unwrap();
    let five_fields = yml.replace("0 */5 * * * * *", "0 */5 * * *");
    std::fs::write(sync.join("serverless.yml"), five_fields).unwrap();
    let stderr = run_cli().await.unwrap();
    assert!(
        stderr.contains("is not a 7-field cron expression"),
        "{stderr}"
    );
    std::fs::write(sync.join("serverless.yml"), yml).unwrap();
    std::fs::set_permissions(
        sync.join("code/bootstrap"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let stderr = run_cli().await.unwrap();
    assert!(stderr.contains("has no executable bootstrap"), "{stderr}");
    std::fs::remove_dir_all(&work).ok();
}

/// `command` pointed at the stand-in at `url`, with its credentials.
fn against(command: &mut std::process::Command, url: String) -> &mut std::process::Command {
    command
        .env("ESGFLOW_DEPLOY_ENDPOINT", url)
        .env(
            "TENCENT_SECRET_ID",
            esgflow_local::standins::cloud::SECRET_ID,
        )
        .env(
            "TENCENT_SECRET_KEY",
            esgflow_local::standins::cloud::SECRET_KEY,
        )
}

/// A serverless CLI that hangs is stopped at `--cli-timeout`, and the deploy fails saying so
/// instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_serverless_cli_is_stopped_at_its_timeout() {
    let stub = AccountStub::start().await.unwrap();
    let work = stack_dir("hang");
    let cli = work.join("scf");
    let pid = work.join("cli.pid");
    script(
        &cli,
        &format!("#!/bin/sh\necho $$ > {}\nexec sleep 120\n", pid.display()),
    );
    let url = stub.url.clone();
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_esgflow"));
        command
            .args(["deploy", "--cli-timeout", "1", "--cli"])
            .arg(&cli)
            .arg("--template")
            .arg(work.join("template.yaml"))
            .arg("--out")
            .arg(work.join("out"));
        command.envs(PARAMETERS.iter().copied());
        let output = against(&mut command, url).output().unwrap();
        // The CLI was stopped, not left running.
        let pid = std::fs::read_to_string(&pid).unwrap();
        assert!(
            !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "the CLI {pid} still runs"
        );
        std::fs::remove_dir_all(&work).ok();
        output
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`deploy` did not finish within 1 s and was stopped"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
