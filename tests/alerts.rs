//! Alerts from the real audit binary under the emulator to a local receiver that checks what each
//! platform checks (robot key/token, DingTalk and Feishu signatures and timestamps, the webhook
//! HMAC).

use crate::common;

use esgflow_local::standins::alerts::{self, AlertReceiver};

/// Two rules block: 7010 (web → db MySQL, twice) and 7002 (ssh from app to db).
const LINES: &[&str] = &[
    "2 1251762227 eni-web00001 10.0.1.11 10.0.3.10 40001 3306 6 3 180 1763942400 1763942460 REJECT OK",
    "2 1251762227 eni-web00002 10.0.1.12 10.0.3.11 40002 3306 6 3 180 1763942400 1763942460 REJECT OK",
    "2 1251762227 eni-app00000 10.0.2.10 10.0.3.10 40003 22 6 2 120 1763942400 1763942460 REJECT OK",
    "2 1251762227 eni-app00001 10.0.2.11 10.0.3.10 40004 3306 6 9 900 1763942400 1763942460 ACCEPT OK",
];

/// One invocation of `emulator` with the test's flow-log lines; its summary.
async fn judge(emulator: &mut esgflow_local::emulator::Emulator) -> serde_json::Value {
    emulator
        .invoke(common::cls_event("t", LINES))
        .await
        .unwrap()
        .result
        .json()
}

async fn audit_with(
    receiver: &AlertReceiver,
    extra: &[(&str, &str)],
) -> esgflow_local::emulator::Emulator {
    let mut env = receiver.settings();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    common::emulator_with("audit", env).await
}

#[tokio::test]
async fn every_channel_gets_each_rule_once_and_signatures_verify() {
    let receiver = AlertReceiver::start().await.unwrap();
    let mut emulator = audit_with(&receiver, &[]).await;
    let summary = judge(&mut emulator).await;
    assert_eq!(summary["alerts"]["alerts"], 2, "{summary}");
    assert_eq!(summary["alerts_sent"], 8);
    for channel in ["wecom", "dingtalk", "feishu", "webhook"] {
        assert_eq!(
            summary["alerts"]["sent"][channel], 2,
            "{channel}: {summary}"
        );
    }
    let received = receiver.received();
    assert_eq!(received.len(), 8);
    assert!(
        received.iter().all(|m| m.verified),
        "{:?}",
        received
            .iter()
            .filter_map(|m| m.problem.clone())
            .collect::<Vec<_>>()
    );
    let wecom: Vec<&str> = received
        .iter()
        .filter(|m| m.channel == "wecom")
        .filter_map(|m| m.body.pointer("/markdown/content").and_then(|c| c.as_str()))
        .collect();
    assert!(
        wecom[0].contains("rule 7010 \"block other data-tier access\" (2 flows)"),
        "{}",
        wecom[0]
    );
    assert!(
        wecom[0].contains("10.0.1.11 (web-02) → 10.0.3.10 (db-01):3306"),
        "{}",
        wecom[0]
    );
    let webhook = received.iter().find(|m| m.channel == "webhook").unwrap();
    assert_eq!(webhook.body["alert"]["rule_uuid"], "7010");
    assert_eq!(webhook.body["records"].as_array().unwrap().len(), 2);
    assert_eq!(webhook.body["records"][0]["record_type"], "block_hit");
    let feishu = received.iter().find(|m| m.channel == "feishu").unwrap();
    assert_eq!(feishu.body["msg_type"], "text");
}

#[tokio::test]
async fn a_failing_channel_is_counted_and_does_not_stop_the_others_or_the_records() {
    let receiver = AlertReceiver::start().await.unwrap();
    receiver.fail("wecom", 500);
    let scratch = common::scratch("alerts");
    let records = scratch.path().join("records.jsonl");
    let _ = std::fs::remove_file(&records);
    let mut emulator = audit_with(
        &receiver,
        &[("ESGFLOW_JSONL_PATH", records.to_str().unwrap())],
    )
    .await;
    let invocation = emulator
        .invoke(common::cls_event("t", LINES))
        .await
        .unwrap();
    let summary = invocation.result.json();
    assert!(invocation.result.is_response(), "{summary}");
    assert_eq!(summary["alerts"]["failed"]["wecom"], 2, "{summary}");
    assert_eq!(summary["alerts"]["sent"]["dingtalk"], 2);
    assert_eq!(summary["alerts"]["sent"]["webhook"], 2);
    assert_eq!(
        receiver
            .received()
            .iter()
            .filter(|m| m.channel == "wecom")
            .count(),
        6,
        "three attempts per alert"
    );
    let written = std::fs::read_to_string(&records).unwrap();
    assert!(
        written.lines().count() > 3,
        "the records were written regardless"
    );
    std::fs::remove_file(&records).ok();
}

#[tokio::test]
async fn a_wrong_signing_secret_is_refused_by_the_platform_and_reported() {
    let receiver = AlertReceiver::start().await.unwrap();
    let mut emulator = audit_with(
        &receiver,
        &[
            ("ESGFLOW_ALERT_DINGTALK_SECRET", "SECwrong"),
            ("ESGFLOW_ALERT_FEISHU_SECRET", "wrong"),
        ],
    )
    .await;
    let summary = judge(&mut emulator).await;
    assert_eq!(summary["alerts"]["failed"]["dingtalk"], 2, "{summary}");
    assert_eq!(summary["alerts"]["failed"]["feishu"], 2, "{summary}");
    assert_eq!(summary["alerts"]["sent"]["wecom"], 2);
    let problems: Vec<String> = receiver
        .received()
        .iter()
        .filter_map(|m| m.problem.clone())
        .collect();
    assert!(
        problems.iter().any(|p| p == "sign not match"),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("sign match fail")),
        "{problems:?}"
    );
}

#[tokio::test]
async fn the_cooldown_holds_back_repeats_in_a_warm_instance() {
    let receiver = AlertReceiver::start().await.unwrap();
    let mut emulator = audit_with(&receiver, &[]).await;
    emulator
        .invoke(common::cls_event("t", LINES))
        .await
        .unwrap();
    let second = judge(&mut emulator).await;
    assert_eq!(second["alerts"]["suppressed"], 2, "{second}");
    assert_eq!(second["alerts_sent"], 0);
    assert_eq!(receiver.received().len(), 8, "nothing new was sent");
}

#[tokio::test]
async fn secrets_never_reach_logs_or_summaries() {
    let receiver = AlertReceiver::start().await.unwrap();
    receiver.fail("feishu", 503);
    let stub = common::cls_stub::ClsStub::start(vec![]).await;
    let mut env = receiver.settings();
    env.extend(stub.env("hits", "traffic"));
    env.push(("RUST_LOG".into(), "debug".into()));
    let mut emulator = common::emulator_with("audit", env).await;
    let summary = judge(&mut emulator).await.to_string();
    let logs = emulator
        .logs_once(std::time::Duration::from_secs(5), |l| {
            l.contains("alert not delivered")
        })
        .await
        .join("\n");
    assert!(
        logs.contains("alert not delivered"),
        "the failing channel is logged"
    );
    for secret in [
        alerts::WECOM_KEY,
        alerts::DINGTALK_TOKEN,
        alerts::DINGTALK_SECRET,
        alerts::FEISHU_TOKEN,
        alerts::FEISHU_SECRET,
        alerts::WEBHOOK_SECRET,
        common::cls_stub::SECRET_KEY,
        common::cls_stub::TOKEN,
    ] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
        assert!(!summary.contains(secret), "{secret} appears in the summary");
    }
}

#[tokio::test]
async fn a_redis_cooldown_is_shared_by_two_function_processes() {
    let redis = common::RedisServer::start();
    let url = redis.url();
    let receiver = AlertReceiver::start().await.unwrap();
    let mut first = audit_with(&receiver, &[("ESGFLOW_ALERT_STATE", &url)]).await;
    let mut second = audit_with(&receiver, &[("ESGFLOW_ALERT_STATE", &url)]).await;
    let one = judge(&mut first).await;
    assert_eq!(one["alerts_sent"], 8, "{one}");
    let two = judge(&mut second).await;
    assert_ne!(first.pid(), second.pid());
    assert_eq!(
        two["alerts"]["suppressed"], 2,
        "the other process saw the cooldown: {two}"
    );
    assert_eq!(two["alerts_sent"], 0);
}

#[tokio::test]
async fn an_unreachable_redis_fails_open() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let receiver = AlertReceiver::start().await.unwrap();
    let url = format!("redis://127.0.0.1:{closed}");
    let mut emulator = audit_with(&receiver, &[("ESGFLOW_ALERT_STATE", &url)]).await;
    let summary = judge(&mut emulator).await;
    assert_eq!(summary["alerts_sent"], 8, "alerts still go out: {summary}");
}

/// With the cooldown in Redis, an alert no channel delivered leaves no cooldown behind: another
/// process tries it again instead of holding it back.
#[tokio::test]
async fn an_undelivered_alert_leaves_no_cooldown_in_redis() {
    let redis = common::RedisServer::start();
    let url = redis.url();
    let receiver = AlertReceiver::start().await.unwrap();
    for channel in ["wecom", "dingtalk", "feishu", "webhook"] {
        receiver.fail(channel, 500);
    }
    let mut first = audit_with(&receiver, &[("ESGFLOW_ALERT_STATE", &url)]).await;
    let mut second = audit_with(&receiver, &[("ESGFLOW_ALERT_STATE", &url)]).await;
    for process in [&mut first, &mut second] {
        let summary = judge(process).await;
        assert_eq!(summary["alerts"]["undelivered"], 2, "{summary}");
        assert_eq!(summary["alerts"]["suppressed"], 0, "{summary}");
        assert_eq!(summary["alerts_sent"], 0, "{summary}");
    }
}
