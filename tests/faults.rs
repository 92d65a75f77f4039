//! Fault injection, end to end under the emulator: a CLS endpoint that is slow, hangs, throttles,
//! errors, answers garbage or drops the connection; a webhook that hangs; a snapshot store that
//! refuses at cold start or fails on refresh. For each, the documented behaviour holds, the
//! function answers before the platform's hard timeout, and across retries every record lands
//! exactly once by `record_id`.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cls_stub::{ClsStub, CLOSE, DELAY, EMPTY_200, HANG, REDIRECT};

fn lines() -> Vec<String> {
    (0..5)
        .map(|i| {
            format!(
                "2 1251762227 eni-web00001 10.0.1.{} 10.0.3.10 4000{i} 3306 6 3 180 1763942400 1763942460 REJECT OK",
                11 + i
            )
        })
        .collect()
}

fn event() -> Vec<u8> {
    let lines = lines();
    let contents: Vec<&str> = lines.iter().map(String::as_str).collect();
    common::cls_event("fl", &contents)
}

fn env(stub: &ClsStub) -> Vec<(String, String)> {
    let mut env = stub.env("hits", "hits");
    env.push(("ESGFLOW_SNAPSHOT".into(), common::sample_snapshot()));
    env
}

fn ids(stub: &ClsStub) -> (usize, BTreeSet<String>) {
    let accepted = stub.accepted();
    let ids = accepted
        .iter()
        .map(|l| l.fields["record_id"].clone())
        .collect();
    (accepted.len(), ids)
}

/// The ids one clean run writes.
async fn expected_ids() -> BTreeSet<String> {
    let stub = ClsStub::start(vec![]).await;
    let mut audit = common::emulator_timed("audit", env(&stub), Duration::from_secs(10)).await;
    assert!(audit.invoke(event()).await.unwrap().result.is_response());
    ids(&stub).1
}

#[tokio::test]
async fn a_slow_cls_within_the_deadline_is_waited_for() {
    let expected = expected_ids().await;
    let stub = ClsStub::start(vec![(DELAY, "1500")]).await;
    let mut audit = common::emulator_timed("audit", env(&stub), Duration::from_secs(5)).await;
    let invocation = audit.invoke(event()).await.unwrap();
    assert!(
        invocation.result.is_response(),
        "{}",
        invocation.result.json()
    );
    assert_eq!(ids(&stub), (expected.len(), expected));
}

#[tokio::test]
async fn a_hanging_cls_fails_the_invocation_before_the_hard_timeout_and_the_retry_lands_once() {
    let expected = expected_ids().await;
    let stub = ClsStub::start(vec![(HANG, "")]).await;
    let limit = Duration::from_secs(3);
    let mut audit = common::emulator_timed("audit", env(&stub), limit).await;
    let started = Instant::now();
    let invocation = audit
        .invoke(event())
        .await
        .expect("the function answers itself, before SCF's timeout");
    assert!(started.elapsed() < limit);
    assert!(!invocation.result.is_response());
    let error = invocation.result.json();
    assert_eq!(error["errorType"], "SinkError", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(message.contains("hits"), "the topic is named: {message}");
    // SCF retries the batch: this time CLS answers, and each record is there once.
    let retry = audit.invoke(event()).await.unwrap();
    assert!(retry.result.is_response(), "{}", retry.result.json());
    assert_eq!(ids(&stub), (expected.len(), expected));
}

#[tokio::test]
async fn the_error_says_what_was_written_before_time_ran_out() {
    let stub = ClsStub::start(vec![(200, ""), (HANG, "")]).await;
    let mut env = stub.env("hits", "traffic");
    env.push(("ESGFLOW_SNAPSHOT".into(), common::sample_snapshot()));
    let mut audit = common::emulator_timed("audit", env, Duration::from_secs(3)).await;
    let invocation = audit
        .invoke(event())
        .await
        .expect("answered before SCF's timeout");
    let error = invocation.result.json();
    let message = error["errorMessage"].as_str().unwrap();
    let hits = stub.accepted().len();
    assert!(hits > 0);
    assert!(
        message.contains(
            "writing to CLS topic traffic did not succeed before the invocation deadline"
        ) && message.contains(&format!("before that, {hits} to hits")),
        "{message}"
    );
}

/// Runs the audit against a CLS stand-in answering `script` first, and checks that the write
/// was retried until CLS answered properly (`requests` in all) and every record landed. Returns
/// how many logs CLS kept.
async fn retried_until_answered(script: Vec<(u16, &str)>, requests: usize, why: &str) -> usize {
    let expected = expected_ids().await;
    let stub = ClsStub::start(script).await;
    let mut audit = common::emulator_timed("audit", env(&stub), Duration::from_secs(15)).await;
    let invocation = audit.invoke(event()).await.unwrap();
    assert!(
        invocation.result.is_response(),
        "{}",
        invocation.result.json()
    );
    assert_eq!(stub.requests(), requests, "{why}");
    let (count, got) = ids(&stub);
    assert_eq!(got, expected, "every record landed");
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
    assert_eq!(count % expected.len(), 0);
    count / expected.len()
}

#[tokio::test]
async fn throttling_errors_garbage_and_dropped_connections_are_retried() {
    let copies = retried_until_answered(
        vec![
            (429, "slow down"),
            (500, "oops"),
            (CLOSE, ""),
            (200, "<html>a proxy said yes</html>"),
        ],
        5,
        "four failures, then the write that was answered properly",
    )
    .await;
    // The garbage answer came after the data landed: that upload was repeated, so each record
    // is there twice, with the same id (consumers deduplicate on record_id).
    assert_eq!(copies, 2);
}

#[tokio::test]
async fn a_hanging_webhook_costs_an_alert_not_the_batch() {
    let stub = ClsStub::start(vec![]).await;
    let receiver = esgflow_local::standins::alerts::AlertReceiver::start()
        .await
        .unwrap();
    receiver.hang("webhook");
    let mut env = env(&stub);
    env.extend(receiver.settings());
    let limit = Duration::from_secs(6);
    let mut audit = common::emulator_timed("audit", env, limit).await;
    let started = Instant::now();
    let invocation = audit.invoke(event()).await.unwrap();
    assert!(started.elapsed() < limit);
    let summary = invocation.result.json();
    assert!(invocation.result.is_response(), "{summary}");
    assert_eq!(summary["alerts"]["failed"]["webhook"], 1, "{summary}");
    assert_eq!(summary["alerts"]["sent"]["wecom"], 1, "{summary}");
    assert!(
        !stub.accepted().is_empty(),
        "the records were written first"
    );
}

#[tokio::test]
async fn the_snapshot_store_failing_at_cold_start_and_on_refresh() {
    let store = common::cloud_stub().await;
    // Publish the sample snapshot into the stand-in's bucket with the sync function.
    common::publish_with_sync(&store, "cos://esg-1250000000/snapshots").await;
    let mut env = store.env();
    env.push((
        "ESGFLOW_SNAPSHOT".into(),
        "cos://esg-1250000000/snapshots".into(),
    ));

    let cls = ClsStub::start(vec![]).await;
    let mut audit_env = cls.env("hits", "hits");
    audit_env.retain(|(k, _)| !k.starts_with("TENCENTCLOUD_SECRET"));
    audit_env.extend(env);
    audit_env.push(("ESGFLOW_SNAPSHOT_TTL_SECONDS".into(), "0".into()));
    // Cold start: COS refuses (403) the start-up read and the first invocation's read.
    store.fail_next_cos("GET", 403);
    store.fail_next_cos("GET", 403);
    let limit = Duration::from_secs(8);
    let mut audit = common::emulator_timed("audit", audit_env, limit).await;
    let first = audit.invoke(event()).await.unwrap();
    let error = first.result.json();
    assert_eq!(error["errorType"], "SnapshotUnavailable", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("cos://esg-1250000000/snapshots") && message.contains("403"),
        "{message}"
    );
    // The store is back: the retried batch is judged.
    let second = audit.invoke(event()).await.unwrap();
    assert!(second.result.is_response(), "{}", second.result.json());
    let version = second.result.json()["snapshot_version"].clone();
    // It loaded the engine's image published beside the snapshot, not the snapshot.
    let read: Vec<String> = store
        .state
        .lock()
        .unwrap()
        .cos_requests
        .iter()
        .filter(|(method, _, status)| method == "GET" && *status == 200)
        .map(|(_, key, _)| key.clone())
        .collect();
    assert!(read.iter().any(|key| key.ends_with(".engine")), "{read:?}");
    assert!(
        read.iter()
            .all(|key| !key.ends_with(".json") || key.ends_with("latest.json")),
        "{read:?}"
    );
    // On refresh the store fails for good (every read answers 503): the last good snapshot is
    // kept, and the refresh gives up within its short budget.
    for _ in 0..100 {
        store.fail_next_cos("GET", 503);
    }
    let started = Instant::now();
    let third = audit.invoke(event()).await.unwrap();
    assert!(third.result.is_response(), "{}", third.result.json());
    assert_eq!(third.result.json()["snapshot_version"], version);
    // Well inside the time limit: the refresh's budget is short, not the invocation's.
    assert!(started.elapsed() < limit / 2, "{:?}", started.elapsed());
    assert!(store.problems().is_empty(), "{:?}", store.problems());
}

#[tokio::test]
async fn an_unreachable_snapshot_store_at_cold_start_then_back() {
    use esgflow_local::standins::cloud::{load_exports, CloudStub};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let cls = ClsStub::start(vec![]).await;
    let mut env = cls.env("hits", "hits");
    env.extend([
        ("TENCENTCLOUD_REGION".to_string(), "ap-shanghai".to_string()),
        (
            "ESGFLOW_COS_ENDPOINT".to_string(),
            format!("http://{address}"),
        ),
        (
            "ESGFLOW_SNAPSHOT".to_string(),
            "cos://esg-1250000000/snapshots".to_string(),
        ),
    ]);
    // Nothing listens: the start-up load gives up within its budget, the invocation's own load
    // stops a second before the deadline, and the function reports it (SCF retries the batch).
    let limit = Duration::from_secs(4);
    let mut audit = common::emulator_timed("audit", env.clone(), limit).await;
    let started = Instant::now();
    let first = audit
        .invoke(event())
        .await
        .expect("the function answers itself");
    let error = first.result.json();
    assert_eq!(error["errorType"], "SnapshotUnavailable", "{error}");
    assert!(error["errorMessage"]
        .as_str()
        .unwrap()
        .contains("cos://esg-1250000000/snapshots"));
    // The cold start's own load (its budget) and the invocation's, each bounded by the limit.
    assert!(started.elapsed() < 3 * limit, "{:?}", started.elapsed());
    // The store comes back where it was, and the sync function publishes into it.
    let store = CloudStub::start_at(&address, load_exports(&common::sample_exports()).unwrap())
        .await
        .unwrap();
    common::publish_with_sync(&store, "cos://esg-1250000000/snapshots").await;
    let retried = audit.invoke(event()).await.unwrap();
    assert!(retried.result.is_response(), "{}", retried.result.json());
    assert!(!cls.accepted().is_empty());
}

/// A 204, an empty 200 and a cut-off 200 are not CLS's answer: nothing is counted as written on
/// them; the upload is sent again until CLS answers properly, and every record lands.
#[tokio::test]
async fn only_the_apis_answer_counts_as_written() {
    let copies = retried_until_answered(
        vec![(204, ""), (EMPTY_200, ""), (200, r#"{"Response":"#)],
        4,
        "three answers that are not answers, then a proper one",
    )
    .await;
    // The cut-off 200 came after the data landed (as a proxy's would): two copies, one id each.
    assert_eq!(copies, 2);
}

/// A redirect is not followed: the invocation fails naming it (so SCF retries the batch), and
/// nothing is counted as written on the word of whatever the redirect points to.
#[tokio::test]
async fn a_redirect_is_not_followed() {
    let stub = ClsStub::start(vec![(REDIRECT, "")]).await;
    let mut audit = common::emulator_timed("audit", env(&stub), Duration::from_secs(10)).await;
    let invocation = audit.invoke(event()).await.unwrap();
    let error = invocation.result.json();
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("redirect"), "{error}");
    let state = stub.state.lock().unwrap();
    assert_eq!((state.redirected, state.followed), (1, 0));
    assert!(state.accepted.is_empty());
}

/// A snapshot store that takes connections and never answers, at the lookup function's cold
/// start: start-up gives up within its budget, and a request that needs the rules is answered
/// 503 `snapshot_unavailable` before the function's time limit instead of being killed by it.
#[tokio::test]
async fn a_hanging_snapshot_store_at_cold_start_gets_lookup_a_503_inside_the_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // Accepts every connection and holds it open without a byte of answer.
    let hang = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let env = vec![
        ("TENCENTCLOUD_REGION".to_string(), "ap-shanghai".to_string()),
        (
            "TENCENTCLOUD_SECRETID".to_string(),
            esgflow_local::standins::cloud::SECRET_ID.to_string(),
        ),
        (
            "TENCENTCLOUD_SECRETKEY".to_string(),
            esgflow_local::standins::cloud::SECRET_KEY.to_string(),
        ),
        (
            "ESGFLOW_COS_ENDPOINT".to_string(),
            format!("http://{address}"),
        ),
        (
            "ESGFLOW_SNAPSHOT".to_string(),
            "cos://esg-1250000000/snapshots".to_string(),
        ),
        (
            "ESGFLOW_LOOKUP_TOKEN".to_string(),
            "lookup-test-token-0123".to_string(),
        ),
    ];
    let limit = Duration::from_secs(4);
    let mut lookup = common::emulator_timed("lookup", env, limit).await;
    let request = serde_json::json!({
        "requestContext": {"path": "/v1/snapshot", "httpMethod": "GET", "requestId": "r"},
        "headers": {"authorization": "Bearer lookup-test-token-0123"},
        "path": "/v1/snapshot", "queryString": {}, "httpMethod": "GET", "isBase64Encoded": false,
    });
    let invocation = lookup
        .invoke(request.to_string().into_bytes())
        .await
        .expect("the function answers itself");
    let wire = invocation.result.json();
    assert_eq!(wire["statusCode"], 503, "{wire}");
    let body: serde_json::Value = serde_json::from_str(wire["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "snapshot_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cos://esg-1250000000/snapshots")),
        "{body}"
    );
    // Start-up gave up within its 5 s (under the 10 s init timeout), and the answer came
    // before the time limit, its load having stopped a second short of it.
    let init = invocation.init_duration.expect("a cold start");
    assert!(init < Duration::from_secs(7), "init took {init:?}");
    assert!(
        invocation.duration < limit - Duration::from_millis(500),
        "{:?}",
        invocation.duration
    );
    hang.abort();
}
