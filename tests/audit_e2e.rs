//! The real audit binary under the SCF emulator.

use crate::common;

use std::time::Duration;

use esgflow_local::emulator::{InvocationResult, InvokeError};

const ACCEPT_LINE: &str = "2 1251762227 eni-lq6mkcis 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";
const REJECT_JSON: &str = r#"{"version":"2","account-id":"1251762227","interface-id":"eni-lq6mkcis","srcaddr":"172.31.9.69","dstaddr":"172.31.9.12","srcport":"49761","dstport":"3389","protocol":"6","packets":"20","bytes":"4249","start":"1418530010","end":"1418530070","action":"REJECT","log-status":"OK"}"#;
const NODATA_LINE: &str = "V1 1251762227 eni-lq6mkcis - - - - - - - 1431280876 1431280934 - NODATA";

#[tokio::test]
async fn a_real_shaped_cls_event_is_decoded_and_counted() {
    let mut emulator = common::emulator("audit", &[]).await;
    let event = common::cls_event(
        "topic-1",
        &[
            ACCEPT_LINE,
            REJECT_JSON,
            NODATA_LINE,
            "2 1 eni-a 10.0.0.1 nope 1 80 6 1 1 1 2 ACCEPT OK",
        ],
    );
    let invocation = emulator
        .invoke(event)
        .await
        .expect("the invocation completes");
    assert!(
        invocation.init_duration.is_some(),
        "the first invocation is a cold start"
    );
    let InvocationResult::Response(body) = &invocation.result else {
        panic!("expected a response, got {:?}", invocation.result);
    };
    let report: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(report["topic_id"], "topic-1");
    assert_eq!(report["records_in"], 4);
    assert_eq!(report["parsed"], 2);
    assert_eq!(report["nodata"], 1);
    assert_eq!(report["skipped"]["bad_address"], 1);
    assert_eq!(report["samples"][0]["index"], 3);

    // Every log line of the invocation carries its request id.
    let logs = emulator
        .logs_once(Duration::from_secs(5), |l| l.contains("batch done"))
        .await;
    let batch_line = logs
        .iter()
        .find(|l| l.contains("batch done"))
        .expect("a batch log line");
    assert!(batch_line.contains(&invocation.request_id), "{batch_line}");
}

#[tokio::test]
async fn a_corrupt_event_reaches_the_error_endpoint_and_the_process_keeps_serving() {
    let mut emulator = common::emulator("audit", &[]).await;
    let corrupt = br#"{"clslogs":{"data":"H4sIAAAAAAAA/this is not gzip"}}"#.to_vec();
    let first = emulator.invoke(corrupt).await.unwrap();
    let pid = emulator.pid();
    let InvocationResult::Error(body) = &first.result else {
        panic!("expected an error, got {:?}", first.result);
    };
    let err: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(err["errorType"], "InvalidBatch");
    assert!(
        err["errorMessage"].as_str().unwrap().contains("base64"),
        "{err}"
    );

    let wrong_shape = br#"{"clslogs":{"data":7}}"#.to_vec();
    let second = emulator.invoke(wrong_shape).await.unwrap();
    let err = second.result.json();
    assert_eq!(err["errorType"], "InvalidEvent");
    assert!(
        err["errorMessage"]
            .as_str()
            .unwrap()
            .contains("clslogs.data"),
        "{err}"
    );

    let third = emulator
        .invoke(common::cls_event("t", &[ACCEPT_LINE]))
        .await
        .unwrap();
    assert!(third.result.is_response());
    assert_eq!(third.result.json()["parsed"], 1);
    assert!(
        third.init_duration.is_none(),
        "the same warm process served all three"
    );
    assert_eq!(emulator.pid(), pid);
}

#[tokio::test]
async fn the_binary_without_runtime_env_exits_with_a_clear_message() {
    let output = std::process::Command::new(common::function_binary("audit"))
        .env("ESGFLOW_SNAPSHOT", common::sample_snapshot())
        .env_remove("SCF_RUNTIME_API")
        .env_remove("SCF_RUNTIME_API_PORT")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SCF_RUNTIME_API is not set"), "{stderr}");
}

#[tokio::test]
async fn a_bad_setting_fails_the_start_with_its_name() {
    let mut emulator = common::emulator("audit", &[("ESGFLOW_MAX_DECODED_BYTES", "lots")]).await;
    let err = emulator
        .invoke(common::cls_event("t", &[ACCEPT_LINE]))
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::ProcessExited { .. }), "{err}");
    assert_eq!(err.scf_status(), 439);
    let logs = emulator
        .logs_once(Duration::from_secs(5), |l| {
            l.contains("ESGFLOW_MAX_DECODED_BYTES")
        })
        .await
        .join("\n");
    assert!(logs.contains("ESGFLOW_MAX_DECODED_BYTES"), "{logs}");
}

#[tokio::test]
async fn the_decoded_size_cap_is_enforced() {
    let mut emulator = common::emulator("audit", &[("ESGFLOW_MAX_DECODED_BYTES", "2048")]).await;
    let lines: Vec<&str> = std::iter::repeat_n(ACCEPT_LINE, 100).collect();
    let result = emulator
        .invoke(common::cls_event("t", &lines))
        .await
        .unwrap()
        .result;
    let err = result.json();
    assert_eq!(err["errorType"], "InvalidBatch");
    assert!(
        err["errorMessage"].as_str().unwrap().contains("2048"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_snapshot_setting_stops_the_start_with_its_name() {
    let output = std::process::Command::new(common::function_binary("audit"))
        .env_remove("ESGFLOW_SNAPSHOT")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("setting ESGFLOW_SNAPSHOT: required, and not set"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_unreadable_snapshot_fails_each_invocation_until_it_appears() {
    let scratch = common::scratch("late-snapshot");
    let dir = scratch.path().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("snapshot.json");
    let path_text = path.display().to_string();
    let mut emulator = common::emulator("audit", &[("ESGFLOW_SNAPSHOT", &path_text)]).await;
    let first = emulator
        .invoke(common::cls_event("t", &[ACCEPT_LINE]))
        .await
        .unwrap();
    let err = first.result.json();
    assert_eq!(err["errorType"], "SnapshotUnavailable");
    assert!(
        err["errorMessage"]
            .as_str()
            .unwrap()
            .contains("snapshot.json"),
        "{err}"
    );
    std::fs::copy(common::sample_snapshot(), &path).unwrap();
    let second = emulator
        .invoke(common::cls_event("t", &[ACCEPT_LINE]))
        .await
        .unwrap();
    assert!(second.result.is_response(), "{:?}", second.result.json());
    assert!(
        second.init_duration.is_none(),
        "the same warm instance recovered"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A monitored VPC id the snapshot does not have (here a typo beside a real one) is named in
/// every summary and logged once per snapshot, never a silent zero; the real one is still judged.
#[tokio::test]
async fn an_unknown_monitored_vpc_is_reported() {
    let mut emulator = common::emulator(
        "audit",
        &[("ESGFLOW_MONITORED_VPCS", "vpc-prod0001, vpc-prd00001")],
    )
    .await;
    let line = "2 1251762227 eni-web00001 10.0.1.11 10.0.3.10 40001 3306 6 3 180 1763942400 1763942460 REJECT OK";
    for _ in 0..2 {
        let invocation = emulator
            .invoke(common::cls_event("topic-1", &[line]))
            .await
            .unwrap();
        let InvocationResult::Response(body) = &invocation.result else {
            panic!("expected a response, got {:?}", invocation.result);
        };
        let summary: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            summary["unknown_monitored_vpcs"],
            serde_json::json!(["vpc-prd00001"]),
            "{summary}"
        );
        assert_eq!(summary["records"]["block_hit"], 1, "{summary}");
        assert_eq!(summary["unmonitored"], 0, "{summary}");
    }
    let is_warning = |l: &str| {
        l.contains("ESGFLOW_MONITORED_VPCS or the monitoring switches name VPCs")
            && l.contains("vpc-prd00001")
    };
    let logs = emulator.logs_once(Duration::from_secs(5), is_warning).await;
    let warnings = logs.iter().filter(|l| is_warning(l)).count();
    assert_eq!(warnings, 1, "{logs:?}");
}
