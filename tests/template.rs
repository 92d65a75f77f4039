//! `template.yaml` never drifts from the code: every setting a function reads is declared for it
//! (and nothing else), packages are where `make package` puts them, each trigger matches the
//! event type the function's handler deserializes, and each memory size is above the peak the
//! function reaches here. Plus the `make deploy DRY_RUN=1` output.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use esgflow::app::config::{Function, SETTINGS};
use esgflow_local::release::deploy::{generate, Stack, Values};
use serde_json::{json, Value};

/// Variables SCF itself sets; the template must not declare them.
const PLATFORM: &[&str] = &["TENCENTCLOUD_REGION"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn stack() -> Stack {
    Stack::load(&root().join("template.yaml")).unwrap()
}

#[test]
fn every_setting_is_declared_for_the_functions_that_read_it() {
    let stack = stack();
    let names: BTreeSet<&str> = Function::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(
        stack
            .functions
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        names
    );
    for function in Function::ALL {
        let declared: BTreeSet<&str> = stack.functions[function.name()]
            .environment
            .keys()
            .map(String::as_str)
            .collect();
        let read: BTreeSet<&str> = SETTINGS
            .iter()
            .filter(|s| s.functions.contains(function) && !PLATFORM.contains(&s.name))
            .map(|s| s.name)
            .collect();
        let undeclared: Vec<_> = read.difference(&declared).collect();
        let unread: Vec<_> = declared.difference(&read).collect();
        assert!(
            undeclared.is_empty() && unread.is_empty(),
            "{}: read but not declared {undeclared:?}; declared but read by nothing {unread:?}",
            function.name()
        );
    }
}

#[test]
fn packages_are_where_make_package_puts_them() {
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    assert!(makefile.contains("package --bin-dir $(RELEASE_DIR) --out-dir dist"));
    for (name, function) in &stack().functions {
        assert_eq!(function.package, format!("dist/{name}.zip"));
        assert_eq!(function.runtime, "CustomRuntime");
        assert_eq!(function.handler, "bootstrap");
        assert!(
            (3..=300).contains(&function.init_timeout),
            "{name}: initTimeout"
        );
    }
}

#[test]
fn triggers_match_the_event_each_handler_deserializes() {
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("ClsTriggerEvent", &["cls"][..]),
        ("ApiGatewayRequest", &["apigw", "http"][..]),
        ("TimerEvent", &["timer"][..]),
    ]);
    for (name, function) in &stack().functions {
        let main =
            std::fs::read_to_string(root().join(format!("functions/{name}/src/main.rs"))).unwrap();
        let event = main
            .split("LambdaEvent<")
            .nth(1)
            .and_then(|rest| rest.split('>').next())
            .unwrap_or_else(|| panic!("{name}: no LambdaEvent<…> in its handler"));
        let kinds = allowed
            .get(event)
            .unwrap_or_else(|| panic!("{name}: unknown event type {event}"));
        assert!(!function.events.is_empty(), "{name} has no trigger");
        for trigger in &function.events {
            for kind in trigger.keys() {
                assert!(
                    kinds.contains(&kind.as_str()),
                    "{name}: a {kind} trigger, but its handler takes {event}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_sizes_are_above_the_measured_peaks() {
    let stack = stack();
    let mut peaks = BTreeMap::new();
    // audit: the largest events CLS sends, against the sample snapshot.
    let mut audit = common::emulator("audit", &[]).await;
    let lines = esgflow_local::release::measure::synthetic_lines(12_000);
    let events = esgflow_local::emulator::clsfeed::cut_events(
        lines.iter().map(String::as_str),
        &Default::default(),
    )
    .unwrap();
    for event in events.iter().take(3) {
        assert!(audit
            .invoke(event.clone())
            .await
            .unwrap()
            .result
            .is_response());
    }
    peaks.insert("audit", audit.peak_rss_kib().unwrap());
    // lookup: a batch explain of 1,000 flows.
    let mut lookup = common::emulator(
        "lookup",
        &[
            ("ESGFLOW_SNAPSHOT", &common::sample_snapshot()),
            ("ESGFLOW_LOOKUP_TOKEN", "template-test-token-0123"),
        ],
    )
    .await;
    let flows: Vec<Value> = (0..1000)
        .map(|i| json!({"src": format!("10.0.1.{}", i % 250), "dst": "10.0.3.10", "protocol": "tcp", "port": 3306}))
        .collect();
    let request = json!({"httpMethod": "POST", "path": "/v1/explain", "headers": {"authorization": "Bearer template-test-token-0123"}, "body": json!({"flows": flows}).to_string()});
    let answer = lookup
        .invoke(request.to_string().into_bytes())
        .await
        .unwrap();
    assert_eq!(answer.result.json()["statusCode"], 200);
    peaks.insert("lookup", lookup.peak_rss_kib().unwrap());
    // sync: a full run against the local stand-in.
    let stub = common::cloud_stub().await;
    let mut env = stub.env();
    let scratch = common::scratch("template");
    let store = scratch.path().to_path_buf();
    env.push((
        "ESGFLOW_SNAPSHOT".into(),
        format!("dir://{}", store.display()),
    ));
    let mut sync = common::emulator_with("sync", env).await;
    assert!(sync
        .invoke(common::timer_event())
        .await
        .unwrap()
        .result
        .is_response());
    peaks.insert("sync", sync.peak_rss_kib().unwrap());
    std::fs::remove_dir_all(&store).ok();

    for (name, peak_kib) in peaks {
        let memory_mb = stack.functions[name].memory_size;
        assert!(
            u64::from(memory_mb) * 1024 > peak_kib,
            "{name}: memorySize {memory_mb} MB is below the measured peak of {} MB",
            peak_kib / 1024
        );
        eprintln!(
            "{name}: peak {:.1} MB of {memory_mb} MB",
            peak_kib as f64 / 1024.0
        );
    }
}

/// `make measure` holds the sync run to 200 MB of the sync function's deployed memory, and the
/// sync function reckons with that memory when the platform does not say it.
#[test]
fn the_sync_measurement_checks_against_the_deployed_memory() {
    let deployed = stack().functions["sync"].memory_size;
    assert_eq!(
        esgflow_local::release::measure::MAX_SYNC_RSS_KIB,
        200 * 1024
    );
    assert!(u64::from(deployed) * 1024 > esgflow_local::release::measure::MAX_SYNC_RSS_KIB);
    for function in Function::ALL {
        assert_eq!(
            stack().functions[function.name()].memory_size,
            function.deployed_memory_mb(),
            "{}",
            function.name()
        );
    }
}

#[test]
fn generated_serverless_yml_carries_the_template() {
    let stack = stack();
    let values = Values::resolve(&stack, &|name| match name {
        "ESG_HITS_TOPIC_ID" => Some("topic-hits-1".into()),
        "LOOKUP_TOKEN" => Some("very-secret-token-0123".into()),
        _ => None,
    })
    .unwrap();
    for (name, function) in &stack.functions {
        let generated = generate(&stack, name, &values, false).unwrap();
        let document: Value = serde_yaml_ng::from_str(&generated.serverless_yml).unwrap();
        assert_eq!(document["component"], "scf");
        let inputs = &document["inputs"];
        assert_eq!(inputs["name"], format!("esgflow-{name}"));
        assert_eq!(inputs["memorySize"], function.memory_size);
        assert_eq!(inputs["initTimeout"], function.init_timeout);
        let variables = inputs["environment"]["variables"].as_object().unwrap();
        assert_eq!(
            variables.keys().collect::<BTreeSet<_>>(),
            function.environment.keys().collect::<BTreeSet<_>>()
        );
        if let Some(topic) = variables.get("ESGFLOW_CLS_TOPIC_ID") {
            assert_eq!(topic, "topic-hits-1");
        }
        let kinds: Vec<String> = inputs["events"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e.as_object().unwrap().keys().cloned())
            .collect();
        let declared: Vec<String> = function
            .events
            .iter()
            .flat_map(|e| e.keys().cloned())
            .collect();
        assert_eq!(kinds, declared);
        let policy: Value = serde_json::from_str(&generated.policy_json).unwrap();
        assert!(!policy["statement"].as_array().unwrap().is_empty());
    }
    let audit: Value = serde_yaml_ng::from_str(
        &generate(&stack, "audit", &values, false)
            .unwrap()
            .serverless_yml,
    )
    .unwrap();
    // Applied through the SCF API after the deploy: the component ignores them without
    // asyncRunEnable.
    assert!(audit["inputs"].get("retryNum").is_none());
    assert!(audit["inputs"].get("msgTTL").is_none());
    assert_eq!(
        audit["inputs"]["events"][0]["cls"]["parameters"]["enable"],
        true
    );
    let sync: Value = serde_yaml_ng::from_str(
        &generate(&stack, "sync", &values, false)
            .unwrap()
            .serverless_yml,
    )
    .unwrap();
    let cron = sync["inputs"]["events"][0]["timer"]["parameters"]["cronExpression"]
        .as_str()
        .unwrap();
    assert_eq!(cron.split_whitespace().count(), 7, "SCF cron has 7 fields");
}

/// The CLS endpoint and API domain follow the placement and the site (issue #36: every function
/// used the internal CLS domain, documented for access from inside the region's network, even
/// outside a VPC): public outside a VPC, internal in one on the China site, the international
/// domain for SITE=intl; the environment cannot set them.
#[test]
fn endpoints_follow_the_vpc_placement_and_the_site() {
    let stack = stack();
    let variables = |given: &[(&str, &str)]| {
        let given: Vec<(String, String)> = given
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let values = Values::resolve(&stack, &|name| {
            given
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        ["audit", "lookup", "sync"].map(|function| {
            let yml = generate(&stack, function, &values, false)
                .unwrap()
                .serverless_yml;
            let document: Value = serde_yaml_ng::from_str(&yml).unwrap();
            document["inputs"]["environment"]["variables"].clone()
        })
    };
    let vpc = [("VPC_ID", "vpc-abcd1234"), ("SUBNET_ID", "subnet-abcd1234")];
    for (given, cls, domain) in [
        (
            &[][..],
            "https://cls.tencentcloudapi.com",
            "tencentcloudapi.com",
        ),
        (
            &[("CLS_ENDPOINT", "https://elsewhere.example")][..],
            "https://cls.tencentcloudapi.com",
            "tencentcloudapi.com",
        ),
        (
            &vpc[..],
            "https://cls.internal.tencentcloudapi.com",
            "tencentcloudapi.com",
        ),
        (
            &[("SITE", "intl")][..],
            "https://cls.intl.tencentcloudapi.com",
            "intl.tencentcloudapi.com",
        ),
        (
            &[("SITE", "intl"), vpc[0], vpc[1]][..],
            "https://cls.intl.tencentcloudapi.com",
            "intl.tencentcloudapi.com",
        ),
    ] {
        let [audit, lookup, sync] = variables(given);
        for env in [&audit, &lookup, &sync] {
            assert_eq!(env["ESGFLOW_CLS_ENDPOINT"], cls, "{given:?}");
        }
        assert_eq!(sync["ESGFLOW_API_DOMAIN"], domain, "{given:?}");
    }
}

fn esgflow(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_esgflow"));
    command.args(args).current_dir(root());
    for name in [
        "TENCENT_SECRET_ID",
        "TENCENT_SECRET_KEY",
        "TENCENT_TOKEN",
        "ESGFLOW_DEPLOY_ENDPOINT",
    ] {
        command.env_remove(name);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// Values for every required parameter, each of the right form.
const GOOD: &[(&str, &str)] = &[
    ("APPID", "1250000000"),
    ("UIN", "100000000001"),
    ("FLOWLOG_TOPIC_ID", "0f8e1b42-8c6a-4b56-9b3e-2d5c1a7e9f00"),
    ("SNAPSHOT_BUCKET", "esg-1250000000"),
    ("LOOKUP_TOKEN", "very-secret-token-0123456789abcdef"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env: Vec<_> = GOOD
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .copied()
        .collect();
    env.extend_from_slice(extra);
    env
}

#[test]
fn dry_run_prints_the_resources_table_then_what_would_be_deployed_and_no_secret() {
    let scratch = common::scratch("deploy");
    let out = scratch.path().join("out");
    let output = esgflow(
        &["deploy", "--dry-run", "--out", out.to_str().unwrap()],
        &with(&[("WEBHOOK_SECRET", "hmac-secret-never-shown")]),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The table first: without credentials nothing is read, so every prerequisite is `create`.
    let table = text.split("\n## ").next().unwrap();
    for row in [
        "cos bucket      esg-1250000000",
        "cls logset      esgflow",
        "cls topic       esgflow-hits",
        "cls index       esgflow-traffic",
        "cam role        esgflow-sync",
        "scf function    esgflow-lookup",
    ] {
        assert!(table.contains(row), "{row:?} not in\n{table}");
    }
    for name in ["audit", "lookup", "sync"] {
        assert!(
            text.contains(&format!("## {name} → esgflow-{name}")),
            "{text}"
        );
    }
    assert!(text.contains("component: scf"));
    assert!(text.contains("ESGFLOW_SNAPSHOT: cos://esg-1250000000/esgflow/snapshots"));
    // Secrets show as set or unset, never their values.
    assert!(
        text.contains("ESGFLOW_LOOKUP_TOKEN: '<secret LOOKUP_TOKEN: set>'"),
        "{text}"
    );
    assert!(text.contains("ESGFLOW_ALERT_WEBHOOK_SECRET: '<secret WEBHOOK_SECRET: set>'"));
    assert!(text.contains("ESGFLOW_ALERT_WECOM_URL: '<secret WECOM_ROBOT_URL: unset>'"));
    assert!(text.contains("ESGFLOW_CLS_TOPIC_ID: '<created by deploy: ESG_HITS_TOPIC_ID>'"));
    for secret in [
        "very-secret-token-0123456789abcdef",
        "hmac-secret-never-shown",
    ] {
        assert!(!text.contains(secret), "a secret was printed");
    }
    // lookup is a Function URL, reachable from VPCs only by default; no API Gateway.
    assert!(text.contains("enableExtranet: false"), "{text}");
    assert!(!text.contains("apigw"), "{text}");
    assert!(text.contains("cronExpression: 0 */5 * * * * *"));
    assert!(!out.exists(), "a dry run writes nothing");
}

/// Every bad or missing value is named, with exit code 2, before anything is built or called —
/// the dry run included; a secret's value is never echoed.
#[test]
fn bad_parameters_are_named_before_anything_happens() {
    let scratch = common::scratch("deploy-bad");
    let out = scratch.path().join("out");
    let long: &'static str = "q".repeat(1025).leak();
    let vpcs: &'static str = (0..78)
        .map(|i| format!("vpc-{i:08}"))
        .collect::<Vec<_>>()
        .join(",")
        .leak();
    let url: &'static str = format!("https://example.com/{}", "u".repeat(980)).leak();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("LOOKUP_TOKEN", "short")],
            "LOOKUP_TOKEN (secret) must be at least 24 characters of visible ASCII",
        ),
        (
            &[("SNAPSHOT_BUCKET", "My_Bucket")],
            "SNAPSHOT_BUCKET \"My_Bucket\" is not a COS bucket name",
        ),
        (
            &[("SNAPSHOT_BUCKET", "esg-1300000000")],
            "SNAPSHOT_BUCKET ends in 1300000000, not APPID 1250000000",
        ),
        (
            &[("FLOWLOG_TOPIC_ID", "topic one")],
            "FLOWLOG_TOPIC_ID \"topic one\" is not a CLS topic id",
        ),
        (
            &[("REGION", "Guangzhou")],
            "REGION \"Guangzhou\" is not a region id",
        ),
        (
            &[("MONITORED_VPCS", "vpc-abcd1234,vpc-xyz")],
            "MONITORED_VPCS \"vpc-abcd1234,vpc-xyz\" must be VPC ids",
        ),
        (
            &[("VPC_ID", "vpc-abcd1234")],
            "VPC_ID and SUBNET_ID go together",
        ),
        (
            &[("WECOM_ROBOT_URL", "http://qyapi.weixin.qq.com/x")],
            "WECOM_ROBOT_URL (secret) must be an https:// URL",
        ),
        (
            &[("LOOKUP_EXTRANET", "yes")],
            "LOOKUP_EXTRANET \"yes\" must be true or false",
        ),
        // Issue #36: what the serverless files would interpret, over-long values, and a token
        // a client cannot send in a header.
        (
            &[("DINGTALK_SECRET", "${env:HOME}")],
            "DINGTALK_SECRET (secret) holds `${`",
        ),
        (
            &[("DEAD_LETTER_QUEUE", long)],
            "is 1025 characters long, over the 1024",
        ),
        (
            &[("LOOKUP_TOKEN", "токен-0123456789abcdef-0123456789")],
            "LOOKUP_TOKEN (secret) must be at least 24 characters of visible ASCII",
        ),
        (
            &[("ADMIN_TOKEN", "very-secret-token-0123456789abcdef")],
            "ADMIN_TOKEN equals LOOKUP_TOKEN",
        ),
        // Each value within its limit, together over the 4 KB of a function's environment.
        (
            &[
                ("MONITORED_VPCS", vpcs),
                ("WEBHOOK_URL", url),
                ("WECOM_ROBOT_URL", url),
                ("FEISHU_ROBOT_URL", url),
            ],
            "the audit function's environment would be",
        ),
        (
            &[
                ("MONITORED_VPCS", vpcs),
                ("WEBHOOK_URL", url),
                ("WECOM_ROBOT_URL", url),
                ("FEISHU_ROBOT_URL", url),
            ],
            "over the 4096 SCF allows a function: shorten MONITORED_VPCS (1013 bytes), FEISHU_ROBOT_URL (1000 bytes), WEBHOOK_URL (1000 bytes)",
        ),
    ];
    assert!(cases.len() >= 10);
    for (env, expected) in cases {
        for dry in [true, false] {
            let mut args = vec!["deploy", "--out", out.to_str().unwrap()];
            if dry {
                args.push("--dry-run");
            }
            let output = esgflow(&args, &with(env));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
            assert!(
                stderr.contains(expected),
                "{env:?} (dry run {dry}): {stderr}"
            );
            assert!(
                !stderr.contains("very-secret-token-0123456789abcdef")
                    || !expected.contains("secret")
            );
            assert!(
                output.stdout.is_empty(),
                "nothing is printed before the problems are fixed"
            );
        }
    }
    // Required parameters unset are each named, dry run or not.
    let output = esgflow(
        &["deploy", "--dry-run", "--out", out.to_str().unwrap()],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in [
        "APPID",
        "UIN",
        "FLOWLOG_TOPIC_ID",
        "SNAPSHOT_BUCKET",
        "LOOKUP_TOKEN",
    ] {
        assert!(stderr.contains(&format!("{name} is not set")), "{stderr}");
    }
    assert!(!out.exists());
}

#[test]
fn deploying_without_credentials_stops_with_a_clear_message() {
    let scratch = common::scratch("deploy-nocred");
    let out = scratch.path().join("out");
    let output = esgflow(&["deploy", "--out", out.to_str().unwrap()], GOOD);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no Tencent Cloud credentials"), "{stderr}");
    assert!(stderr.contains("TENCENT_SECRET_ID"), "{stderr}");
    assert!(!out.exists());
}

/// The generated serverless.yml files say only what the `scf` component reads, in its documented
/// ranges: the inputs of serverless-components/tencent-scf `docs/configure.md`
/// (<https://github.com/serverless-components/tencent-scf/blob/master/docs/configure.md>) and,
/// per trigger, the parameters serverless-tencent/tencent-component-toolkit reads
/// (`src/modules/triggers/{cls,timer,http}.ts`; `http` is the Function URL).
#[test]
fn generated_serverless_yml_says_only_what_the_component_reads() {
    const INPUTS: &[&str] = &[
        "name",
        "namespace",
        "role",
        "src",
        "type",
        "handler",
        "entryFile",
        "runtime",
        "region",
        "description",
        "memorySize",
        "timeout",
        "initTimeout",
        "environment",
        "publicAccess",
        "eip",
        "vpcConfig",
        "cfs",
        "deadLetter",
        "asyncRunEnable",
        "traceEnable",
        "msgTTL",
        "retryNum",
        "layers",
        "cls",
        "installDependency",
        "tags",
        "ignoreTriggers",
        "image",
        "protocolType",
        "protocolParams",
        "provisionedNum",
        "qualifier",
        "events",
    ];
    let triggers: BTreeMap<&str, &[&str]> = BTreeMap::from([
        (
            "cls",
            &["qualifier", "topicId", "maxWait", "maxSize", "enable"][..],
        ),
        (
            "timer",
            &["name", "qualifier", "cronExpression", "enable", "argument"][..],
        ),
        (
            "http",
            &[
                "name",
                "qualifier",
                "authType",
                "netConfig",
                "corsConfig",
                "enable",
            ][..],
        ),
    ]);
    let stack = stack();
    let values = Values::resolve(&stack, &|name| match name {
        "ESG_HITS_TOPIC_ID" | "ESG_TRAFFIC_TOPIC_ID" | "FLOWLOG_TOPIC_ID" => {
            Some("0f8e1b42-8c6a-4b56-9b3e-2d5c1a7e9f00".into())
        }
        "VPC_ID" => Some("vpc-abcd1234".into()),
        "SUBNET_ID" => Some("subnet-abcd1234".into()),
        "DEAD_LETTER_QUEUE" => Some("esgflow-dead".into()),
        _ => None,
    })
    .unwrap();
    for name in stack.functions.keys() {
        let document: Value = serde_yaml_ng::from_str(
            &generate(&stack, name, &values, false)
                .unwrap()
                .serverless_yml,
        )
        .unwrap();
        assert_eq!(
            document.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["app", "component", "inputs", "name"]
        );
        let inputs = document["inputs"].as_object().unwrap();
        for key in inputs.keys() {
            assert!(
                INPUTS.contains(&key.as_str()),
                "{name}: input {key} is not the component's"
            );
        }
        let memory = inputs["memorySize"].as_u64().unwrap();
        assert!(memory == 64 || (128..=3072).contains(&memory) && memory % 128 == 0);
        assert!((1..=900).contains(&inputs["timeout"].as_u64().unwrap()));
        assert!((3..=300).contains(&inputs["initTimeout"].as_u64().unwrap()));
        assert_eq!(
            inputs["vpcConfig"],
            json!({"vpcId": "vpc-abcd1234", "subnetId": "subnet-abcd1234"})
        );
        for event in inputs["events"].as_array().unwrap() {
            let (kind, settings) = event.as_object().unwrap().iter().next().unwrap();
            let allowed = triggers
                .get(kind.as_str())
                .unwrap_or_else(|| panic!("{name}: trigger {kind} is not one esgflow may use"));
            for key in settings["parameters"].as_object().unwrap().keys() {
                assert!(allowed.contains(&key.as_str()), "{name}: {kind}.{key}");
            }
            if kind == "cls" {
                let wait = settings["parameters"]["maxWait"].as_u64().unwrap();
                assert!((3..=300).contains(&wait), "maxWait {wait}");
            }
            if kind == "http" {
                assert_eq!(settings["parameters"]["authType"], "NONE");
                assert!(settings["parameters"]["netConfig"]["enableExtranet"].is_boolean());
            }
        }
    }
}

/// A deploy with credentials but without the serverless CLI stops before anything is called,
/// saying where the CLI was looked for and how to install it.
#[test]
fn deploying_without_the_serverless_cli_stops_with_a_clear_message() {
    let scratch = common::scratch("deploy-nocli");
    let out = scratch.path().join("out");
    let mut env = GOOD.to_vec();
    env.extend([
        ("TENCENT_SECRET_ID", "AKIDexample"),
        ("TENCENT_SECRET_KEY", "example-key"),
        // Nothing listens here: a call would fail, not succeed, if one were made.
        ("ESGFLOW_DEPLOY_ENDPOINT", "http://127.0.0.1:9"),
    ]);
    let output = esgflow(
        &[
            "deploy",
            "--out",
            out.to_str().unwrap(),
            "--cli",
            "/nonexistent/scf",
        ],
        &env,
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "the serverless CLI is not installed at /nonexistent/scf (run `make setup-deploy`)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was built or called"), "{stderr}");
    assert!(!out.exists());
}
