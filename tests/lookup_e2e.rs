//! The real lookup binary under the emulator, invoked with API Gateway events as SCF delivers
//! them; answers are integration responses.

use crate::common;

use serde_json::{json, Value};

const TOKEN: &str = "lookup-test-token-0123";

pub(crate) fn event(method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Vec<u8> {
    let mut headers = json!({"host": "service-x.apigateway.myqloud.com", "user-agent": "curl/8"});
    if let Some(token) = token {
        headers["authorization"] = json!(format!("Bearer {token}"));
    }
    json!({"requestContext": {"serviceId": "service-x", "path": path, "httpMethod": method, "requestId": "r", "sourceIp": "10.0.0.9", "stage": "release"},
           "headers": headers, "body": body.map(|b| b.to_string()), "path": path, "queryString": {}, "httpMethod": method, "isBase64Encoded": false})
    .to_string()
    .into_bytes()
}

async fn lookup() -> esgflow_local::emulator::Emulator {
    common::emulator(
        "lookup",
        &[
            ("ESGFLOW_SNAPSHOT", &common::sample_snapshot()),
            ("ESGFLOW_LOOKUP_TOKEN", TOKEN),
        ],
    )
    .await
}

fn response(result: &esgflow_local::emulator::InvocationResult) -> (u64, Value) {
    let wire = result.json();
    assert!(wire["statusCode"].is_u64(), "integration response: {wire}");
    assert_eq!(wire["isBase64Encoded"], false);
    assert_eq!(wire["headers"]["Content-Type"], "application/json");
    (
        wire["statusCode"].as_u64().unwrap(),
        serde_json::from_str(wire["body"].as_str().unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn explain_answers_which_rule_blocks_and_why() {
    let mut emulator = lookup().await;
    let body = json!({"src": "10.0.1.11", "dst": "10.0.3.10", "protocol": "tcp", "port": 3306});
    let (status, answer) = response(
        &emulator
            .invoke(event("POST", "/v1/explain", Some(TOKEN), Some(body)))
            .await
            .unwrap()
            .result,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "block");
    assert_eq!(answer["rule"]["uuid"], "7010");
    assert_eq!(answer["observed"][0]["uuid"], "7007");
    assert_eq!(answer["scope"], "inter_subnet");
    assert_eq!(answer["destination"]["instance"], "ins-db000000");
    // By default only the rules that matched are described; the rest are counted.
    let steps = answer["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{answer}");
    assert_eq!(
        (
            answer["rules_considered"].as_u64(),
            answer["not_matched"].as_u64()
        ),
        (Some(11), Some(9))
    );
    // `verbose` describes every rule considered, with the first part that failed.
    let body = json!({"src": "10.0.1.11", "dst": "10.0.3.10", "protocol": "tcp", "port": 3306, "verbose": true});
    let (status, verbose) = response(
        &emulator
            .invoke(event("POST", "/v1/explain", Some(TOKEN), Some(body)))
            .await
            .unwrap()
            .result,
    );
    assert_eq!(status, 200);
    let steps = verbose["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 11, "{verbose}");
    assert!(
        steps
            .iter()
            .any(|s| s["detail"] == "source 10.0.1.11 not in net 10.0.2.0/24 (10.0.2.0/24)"),
        "{verbose}"
    );
    assert_eq!(verbose["decision"], answer["decision"]);
    let (status, snapshot) = response(
        &emulator
            .invoke(event("GET", "/v1/snapshot", Some(TOKEN), None))
            .await
            .unwrap()
            .result,
    );
    assert_eq!(status, 200);
    assert_eq!(snapshot["rules"], 39);
    let (status, rule) = response(
        &emulator
            .invoke(event("GET", "/v1/rules/7016", Some(TOKEN), None))
            .await
            .unwrap()
            .result,
    );
    assert_eq!(status, 200);
    assert_eq!(
        rule["source"]["resolved"], true,
        "the tag resolved through the rule-list API: {rule}"
    );
}

#[tokio::test]
async fn requests_without_the_token_are_refused() {
    let mut emulator = lookup().await;
    let (status, answer) = response(
        &emulator
            .invoke(event("GET", "/v1/snapshot", None, None))
            .await
            .unwrap()
            .result,
    );
    assert_eq!(status, 401);
    assert_eq!(answer["error"]["code"], "unauthorized");
    assert!(answer["error"]["request_id"].is_string());
    let (status, _) = response(
        &emulator
            .invoke(event("GET", "/v1/healthz", None, None))
            .await
            .unwrap()
            .result,
    );
    assert_eq!(status, 200, "the health check is open");
}

#[tokio::test]
async fn the_function_refuses_to_start_without_a_token() {
    let output = std::process::Command::new(common::function_binary("lookup"))
        .env("ESGFLOW_SNAPSHOT", common::sample_snapshot())
        .env_remove("ESGFLOW_LOOKUP_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ESGFLOW_LOOKUP_TOKEN"));
}

#[tokio::test]
async fn the_http_gateway_serves_the_lookup_function_to_a_real_client() {
    let emulator = lookup().await;
    let gateway =
        esgflow_local::emulator::gateway::Gateway::start(emulator, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let base = format!("http://{}", gateway.addr);
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{base}/v1/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let explain = client
        .post(format!("{base}/v1/explain"))
        .bearer_auth(TOKEN)
        .json(&json!({"flows": [{"src": "203.0.113.66", "dst": "10.0.1.10", "protocol": "tcp", "port": 443}, {"src": "10.10.1.10", "dst": "10.0.2.10", "protocol": "tcp", "port": 22}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(explain.status(), 200);
    assert_eq!(explain.headers()["content-type"], "application/json");
    let answer: Value = explain.json().await.unwrap();
    assert_eq!(answer["results"][0]["rule"]["description"], "known scanner");
    assert_eq!(answer["results"][1]["decision"], "allow");
    for (method, path, token, status) in [
        ("GET", "/v1/snapshot", None, 401),
        ("GET", "/v1/snapshot", Some("wrong-token-0123456789"), 401),
        ("GET", "/v1/snapshot", Some(TOKEN), 200),
        ("GET", "/v1/nope", Some(TOKEN), 404),
        ("DELETE", "/v1/snapshot", Some(TOKEN), 405),
        ("GET", "/v1/rules/404404", Some(TOKEN), 404),
        ("GET", "/v1/rules/7021", Some(TOKEN), 200),
        ("GET", "/v1/stats/top-rules", Some(TOKEN), 503),
        ("GET", "/v1/hits", Some(TOKEN), 503),
        ("GET", "/", None, 200),
        ("PUT", "/", None, 405),
    ] {
        let mut request = client.request(method.parse().unwrap(), format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            status,
            "{method} {path}"
        );
    }
    let bad = client
        .post(format!("{base}/v1/explain"))
        .bearer_auth(TOKEN)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let huge = client
        .post(format!("{base}/v1/explain"))
        .bearer_auth(TOKEN)
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let error: Value = huge.json().await.unwrap();
    assert_eq!(error["error"]["code"], "payload_too_large");
    let page = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.text().await.unwrap().contains("Explain a flow"));
}

#[tokio::test]
async fn hits_come_from_cls_searchlog_with_a_safe_query() {
    // Write some hits through the real audit function, then search them through lookup.
    let stub = common::cls_stub::ClsStub::start(vec![]).await;
    let line = "2 1251762227 eni-web00001 10.0.1.11 10.0.3.10 40001 3306 6 3 180 1763942400 1763942460 REJECT OK";
    common::audit_into(&stub, &[line]).await;
    let mut env = stub.env("topic-hits", "topic-traffic");
    env.push(("ESGFLOW_LOOKUP_TOKEN".into(), TOKEN.into()));
    let mut lookup = common::emulator_with(
        "lookup",
        env.into_iter()
            .chain([("ESGFLOW_SNAPSHOT".to_string(), common::sample_snapshot())])
            .collect(),
    )
    .await;
    let mut request: Value =
        serde_json::from_slice(&event("GET", "/v1/hits", Some(TOKEN), None)).unwrap();
    request["queryString"] = json!({"ip": "10.0.1.11", "type": "block_hit", "since": "1763942400", "until": "1763946000", "limit": "50"});
    let (status, answer) = response(
        &lookup
            .invoke(request.to_string().into_bytes())
            .await
            .unwrap()
            .result,
    );
    assert_eq!(status, 200, "{answer}");
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
    let hits = answer["hits"].as_array().unwrap();
    assert!(
        hits.iter()
            .any(|h| h["record_type"] == "block_hit" && h["rule_uuid"] == "7010"),
        "{answer}"
    );
    assert!(
        answer["cursor"].is_null() && answer["next"].is_null(),
        "{answer}"
    );
    assert_eq!(answer["complete"], true);
    let search = &stub.searches()[0];
    assert_eq!(search["TopicId"], "topic-hits");
    assert_eq!(
        search["QueryString"],
        r#"(record_type:"block_hit") AND (src_ip:"10.0.1.11" OR dst_ip:"10.0.1.11")"#
    );
    assert_eq!(
        (
            search["From"].as_i64(),
            search["To"].as_i64(),
            search["Limit"].as_i64()
        ),
        // `To` is left out by CLS: the window's last second is in.
        (Some(1763942400000), Some(1763946001000), Some(50))
    );

    let mut hostile = request.clone();
    hostile["queryString"] = json!({"rule": "7010\" OR *"});
    let (status, answer) = response(
        &lookup
            .invoke(hostile.to_string().into_bytes())
            .await
            .unwrap()
            .result,
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        stub.searches().len(),
        1,
        "a rejected query never reaches CLS"
    );
}

/// CLS accepts a `Context` passed back only with every other parameter unchanged, for an
/// hour: a search over the default (relative) window pages through every hit with the answer's
/// `next` parameters, against a stand-in that enforces that rule; a cursor without its window, or
/// with another search's parameters, is a 400; an expired one a 410.
#[tokio::test]
async fn hits_page_with_the_first_pages_parameters() {
    let stub = common::cls_stub::ClsStub::start(vec![]).await;
    // Flows of ten minutes ago: inside the default window of the last hour.
    let end = chrono::Utc::now().timestamp() - 600;
    let lines: Vec<String> = (0..5)
        .map(|i| format!("2 1251762227 eni-web00001 10.0.1.11 10.0.3.10 4000{i} 3306 6 3 180 {} {end} REJECT OK", end - 60))
        .collect();
    common::audit_into(&stub, &lines.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut env = stub.env("topic-hits", "topic-traffic");
    env.push(("ESGFLOW_LOOKUP_TOKEN".into(), TOKEN.into()));
    env.push(("ESGFLOW_SNAPSHOT".into(), common::sample_snapshot()));
    let mut lookup = common::emulator_with("lookup", env).await;
    let ask = |query: Value| {
        let mut request: Value =
            serde_json::from_slice(&event("GET", "/v1/hits", Some(TOKEN), None)).unwrap();
        request["queryString"] = query;
        request.to_string().into_bytes()
    };
    // The stand-in evaluates the query as CLS does: every block hit it holds is a result.
    let expected: std::collections::BTreeSet<String> = stub
        .accepted()
        .iter()
        .filter(|l| l.fields["record_type"] == "block_hit")
        .map(|l| l.fields["record_id"].clone())
        .collect();
    assert!(expected.len() >= 5);
    let mut seen = Vec::new();
    let mut query = json!({"type": "block_hit", "limit": "2"});
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 20, "paging ends");
        let (status, answer) = response(&lookup.invoke(ask(query.clone())).await.unwrap().result);
        assert_eq!(status, 200, "page {pages}: {answer}");
        seen.extend(
            answer["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["record_id"].as_str().unwrap().to_string()),
        );
        if answer["complete"] == true {
            assert!(answer["next"].is_null(), "{answer}");
            break;
        }
        query = answer["next"].clone();
        assert_eq!(query["since"], answer["since"].to_string());
        assert_eq!(query["until"], answer["until"].to_string());
    }
    assert_eq!(pages, expected.len().div_ceil(2));
    assert_eq!(seen.len(), expected.len(), "no hit twice: {seen:?}");
    assert_eq!(
        seen.into_iter().collect::<std::collections::BTreeSet<_>>(),
        expected,
        "every hit"
    );
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());

    // Start again to get a cursor, then misuse it.
    let (_, first) = response(
        &lookup
            .invoke(ask(json!({"type": "block_hit", "limit": "2"})))
            .await
            .unwrap()
            .result,
    );
    let next = first["next"].clone();
    let cursor = next["cursor"].as_str().unwrap().to_string();
    let searches = stub.searches().len();
    let (status, answer) = response(
        &lookup
            .invoke(ask(
                json!({"type": "block_hit", "limit": "2", "cursor": cursor}),
            ))
            .await
            .unwrap()
            .result,
    );
    assert_eq!(status, 400, "a cursor without its window: {answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("next"),
        "{answer}"
    );
    let mut other = next.clone();
    other["ip"] = json!("10.9.9.9");
    let (status, answer) = response(&lookup.invoke(ask(other)).await.unwrap().result);
    assert_eq!(status, 400, "another search's cursor: {answer}");
    assert_eq!(stub.searches().len(), searches, "neither reached CLS");
    let mut old = next.clone();
    let (_, rest) = cursor.split_once('_').unwrap();
    old["cursor"] = json!(format!("{}_{rest}", chrono::Utc::now().timestamp() - 3700));
    let (status, answer) = response(&lookup.invoke(ask(old)).await.unwrap().result);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (410, Some("cursor_expired")),
        "{answer}"
    );
    // Pages go by Offset, which CLS does not expire: a cursor outlives CLS's search contexts.
    stub.expire_contexts();
    let (status, answer) = response(&lookup.invoke(ask(next)).await.unwrap().result);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["count"], 2, "{answer}");
}

#[tokio::test]
async fn rules_show_shadowing_and_hit_counters_and_top_rules_come_from_cls() {
    let stub = common::cls_stub::ClsStub::start(vec![]).await;
    // Flows of the last hour: inside the 30-day counters and the 24-hour top rules.
    let start = chrono::Utc::now().timestamp() - 3000;
    let lines = [
        format!(
            "2 1251762227 eni-web00001 10.0.1.11 10.0.3.10 40001 3306 6 3 180 {start} {} REJECT OK",
            start + 60
        ),
        format!(
            "2 1251762227 eni-web00001 10.0.1.12 10.0.3.10 40002 3306 6 3 180 {start} {} REJECT OK",
            start + 120
        ),
    ];
    common::audit_into(&stub, &lines.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut env = stub.env("topic-hits", "topic-traffic");
    env.push(("ESGFLOW_LOOKUP_TOKEN".into(), TOKEN.into()));
    env.push(("ESGFLOW_SNAPSHOT".into(), common::sample_snapshot()));
    let mut with_cls = common::emulator_with("lookup", env).await;
    let get = |path: &str| event("GET", path, Some(TOKEN), None);

    let (status, rule) = response(&with_cls.invoke(get("/v1/rules/7010")).await.unwrap().result);
    assert_eq!(status, 200, "{rule}");
    assert_eq!(rule["hits"]["available"], true, "{rule}");
    assert_eq!(rule["hits"]["hits"], 2);
    assert_eq!(rule["hits"]["block_hits"], 2);
    assert_eq!(rule["hits"]["first_hit"], start);
    assert_eq!(rule["hits"]["last_hit"], start + 120);
    assert_eq!(rule["hits"]["window_days"], 30);
    let search = stub.searches().pop().unwrap();
    assert!(
        search["QueryString"]
            .as_str()
            .unwrap()
            .starts_with(r#"record_type:"rule_hits" AND rule_uuid:"7010" | select"#),
        "{search}"
    );

    // The sample's rule 7021 (on-prem to web, TCP 443) can never be reached: 7003 allows TCP
    // 80,443 to the web template from anywhere first.
    let (_, shadowed) = response(&with_cls.invoke(get("/v1/rules/7021")).await.unwrap().result);
    assert_eq!(shadowed["shadowed"], true, "{shadowed}");
    assert_eq!(shadowed["shadowed_by"], json!(["7003"]));
    assert_eq!(shadowed["hygiene"]["finding"], "shadowed");
    let (_, unresolvable) = response(&with_cls.invoke(get("/v1/rules/7017")).await.unwrap().result);
    assert_eq!(unresolvable["shadowed"], false);
    assert_eq!(unresolvable["hygiene"]["finding"], "unresolvable");
    assert_eq!(
        unresolvable["hits"]["hits"], 0,
        "no hits: zero, not an error"
    );

    let (status, top) = response(
        &with_cls
            .invoke(get("/v1/stats/top-rules"))
            .await
            .unwrap()
            .result,
    );
    assert_eq!(status, 200, "{top}");
    assert_eq!(top["rules"][0]["rule_uuid"], "7010");
    assert_eq!(top["rules"][0]["hits"], 2);
    assert_eq!(
        top["rules"][0]["description"],
        "block other data-tier access"
    );
    assert_eq!(top["hours"], 24);
    let mut bad: Value = serde_json::from_slice(&get("/v1/stats/top-rules")).unwrap();
    bad["queryString"] = json!({"limit": "500"});
    let (status, error) = response(
        &with_cls
            .invoke(bad.to_string().into_bytes())
            .await
            .unwrap()
            .result,
    );
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "{error}"
    );
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());

    // Without a hits topic the counters say why they are missing; the rest still answers.
    let mut plain = lookup().await;
    let (status, rule) = response(&plain.invoke(get("/v1/rules/7010")).await.unwrap().result);
    assert_eq!(status, 200);
    assert_eq!(rule["hits"]["available"], false);
    assert!(rule["hits"]["reason"]
        .as_str()
        .unwrap()
        .contains("no records store"));
}

/// A batch explain against 10,000 rules cannot outgrow the 6 MB SCF lets a synchronous
/// invocation answer: each explanation is written out and dropped as it is made, and a batch
/// that would not fit is refused with 413 saying how many flows do (a 1,000-flow batch once
/// answered 22 MB). Asking for that many gets an answer within the limit.
#[tokio::test]
async fn batch_explain_answers_fit_the_scf_response_limit() {
    use esgflow::app::lookup::{Auth, Lookup};
    use esgflow::app::snapshot_cache::SnapshotCache;
    const LIMIT: usize = 6_000_000;
    let scratch = common::scratch("explain-size");
    let dir = scratch.path().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("snapshot.json");
    esgflow_local::testdata::synthetic::snapshot(10_000, 64, 42)
        .save(&path)
        .unwrap();
    let lookup = Lookup::new(
        Auth::Bearer("t0ken".into()),
        4 << 20,
        SnapshotCache::new(&path, std::time::Duration::from_secs(600)),
    )
    .app();
    let ask = |flows: usize, verbose: bool| {
        let flows: Vec<Value> = (0..flows)
            .map(|i| {
                json!({"src": format!("192.0.2.{}", i % 250 + 1), "dst": format!("198.51.100.{}", i % 200 + 1),
                       "protocol": "tcp", "port": 1 + i % 60000, "verbose": verbose})
            })
            .collect();
        let request: esgflow::events::ApiGatewayRequest = serde_json::from_value(json!({
            "httpMethod": "POST", "path": "/v1/explain",
            "headers": {"authorization": "Bearer t0ken"},
            "body": json!({"flows": flows}).to_string()
        }))
        .unwrap();
        let lookup = &lookup;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            let response = lookup.handle(&request, "r", deadline).await;
            // The body as the integration response carries it: a JSON string.
            let carried = serde_json::to_string(&response.body).unwrap().len();
            assert!(carried <= LIMIT, "{carried} bytes");
            (
                response.status_code,
                serde_json::from_str::<Value>(&response.body).unwrap(),
            )
        }
    };
    let (status, body) = ask(1000, true).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "answer_too_large");
    let message = body["error"]["message"].as_str().unwrap().to_string();
    let fit: usize = message
        .split("the first ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{message}"));
    assert!((1..1000).contains(&fit), "{message}");
    let (status, body) = ask(fit, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), fit);
    assert!(body["results"][0]["steps"].as_array().unwrap().len() > 100);
    // Without verbose the full batch is either answered within the limit or refused the same way.
    let (status, body) = ask(1000, false).await;
    eprintln!(
        "verbose: {fit} of 1000 flows fit; without verbose: {status}, {} bytes",
        body.to_string().len()
    );
    match status {
        200 => assert_eq!(body["results"].as_array().unwrap().len(), 1000),
        413 => assert_eq!(body["error"]["code"], "answer_too_large"),
        other => panic!("{other}: {body}"),
    }
    std::fs::remove_dir_all(dir).ok();
}

/// A request path holding line breaks cannot forge a log line (no token is needed to send
/// one): the event stays on one line, the breaks written as `\n` and `\r`.
#[tokio::test]
async fn a_request_path_cannot_forge_a_log_line() {
    let mut emulator = lookup().await;
    let forged = "/v1/x\nERROR esgflow forged: token leaked\r\nINFO fake";
    let invocation = emulator
        .invoke(event("GET", forged, None, None))
        .await
        .unwrap();
    assert_eq!(response(&invocation.result).0, 404);
    let logs = emulator
        .logs_once(std::time::Duration::from_secs(5), |l| {
            l.contains("request served")
        })
        .await;
    let served: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("request served"))
        .collect();
    assert_eq!(served.len(), 1, "{logs:?}");
    assert!(
        served[0].contains(r"/v1/x\nERROR esgflow forged: token leaked\r\nINFO fake"),
        "{}",
        served[0]
    );
    assert!(
        !logs
            .iter()
            .any(|l| l.starts_with("ERROR esgflow forged") || l.starts_with("INFO fake")),
        "{logs:?}"
    );
}

/// A topic holding more block hits than one `Context` chain gives.
const PAST_THE_CAP: usize = 12_345;

/// `PAST_THE_CAP` block hits of the last hour, kept in the stand-in's `topic-hits`.
fn keep_many_hits(stub: &common::cls_stub::ClsStub, end: i64) {
    stub.keep(
        "topic-hits",
        (0..PAST_THE_CAP).map(|i| {
            let time = end - (i as i64 % 3000);
            let fields = [
                ("record_type", "block_hit".to_string()),
                ("record_id", format!("{i:016x}")),
                ("time", time.to_string()),
                ("src_ip", format!("10.0.{}.{}", i / 250 % 250, i % 250 + 1)),
                ("dst_ip", "10.0.3.10".to_string()),
                ("dst_port", "3306".to_string()),
                ("protocol", "6".to_string()),
                ("rule_uuid", "esg-rule-0001".to_string()),
            ];
            let fields = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            (time * 1000, fields)
        }),
    );
}

#[tokio::test]
async fn the_stand_in_ends_a_context_chain_at_ten_thousand_logs_as_cls_does() {
    let stub = common::cls_stub::ClsStub::start(vec![]).await;
    let end = chrono::Utc::now().timestamp() - 600;
    keep_many_hits(&stub, end);
    let client =
        esgflow::adapters::tencent::api::ApiClient::new("ap-guangzhou", Some(stub.url.clone()))
            .with_credentials(common::cls_stub::credentials());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut body = json!({"TopicId": "topic-hits", "From": (end - 3600) * 1000, "To": (end + 1) * 1000,
        "QueryString": "record_type:\"block_hit\"", "QuerySyntax": 1, "Limit": 1000, "Sort": "desc"});
    let mut seen = 0;
    for _ in 0..20 {
        let answer = client
            .call("cls", "2020-10-16", "SearchLog", &body, deadline)
            .await
            .unwrap();
        seen += answer["Results"].as_array().unwrap().len();
        if answer["ListOver"] == true {
            break;
        }
        body["Context"] = answer["Context"].clone();
    }
    assert_eq!(
        seen, 10_000,
        "a Context chain stops at 10,000 and says it is over"
    );
    body.as_object_mut().unwrap().remove("Context");
    body["Offset"] = json!(12_000);
    let answer = client
        .call("cls", "2020-10-16", "SearchLog", &body, deadline)
        .await
        .unwrap();
    assert_eq!(
        answer["Results"].as_array().unwrap().len(),
        PAST_THE_CAP - 12_000
    );
    body["Context"] = json!("anything");
    let refused = client
        .call("cls", "2020-10-16", "SearchLog", &body, deadline)
        .await
        .unwrap_err();
    assert_eq!(refused.code, "InvalidParameter", "Offset with Context");
}

#[tokio::test]
async fn an_export_past_ten_thousand_records_gives_every_record_once() {
    let stub = common::cls_stub::ClsStub::start(vec![]).await;
    let end = chrono::Utc::now().timestamp() - 600;
    keep_many_hits(&stub, end);
    let mut env = stub.env("topic-hits", "topic-traffic");
    env.push(("ESGFLOW_LOOKUP_TOKEN".into(), TOKEN.into()));
    env.push(("ESGFLOW_SNAPSHOT".into(), common::sample_snapshot()));
    let mut lookup = common::emulator_with("lookup", env).await;
    let mut query = json!({"type": "block_hit", "format": "jsonl",
        "since": (end - 3600).to_string(), "until": end.to_string()});
    let mut seen = std::collections::BTreeSet::new();
    let mut parts = 0;
    loop {
        parts += 1;
        assert!(parts <= 20, "the export ends");
        let mut request: Value =
            serde_json::from_slice(&event("GET", "/v1/hits/export", Some(TOKEN), None)).unwrap();
        request["queryString"] = query.clone();
        let wire = lookup
            .invoke(request.to_string().into_bytes())
            .await
            .unwrap()
            .result
            .json();
        assert_eq!(
            wire["statusCode"],
            200,
            "{}",
            &wire.to_string()[..500.min(wire.to_string().len())]
        );
        let header = |name: &str| {
            wire["headers"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str().unwrap().to_string())
        };
        for line in wire["body"].as_str().unwrap().lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            assert!(
                seen.insert(record["record_id"].as_str().unwrap().to_string()),
                "{line} given twice"
            );
        }
        match header("x-esgflow-next") {
            Some(next) => {
                assert_eq!(header("x-esgflow-complete").as_deref(), Some("false"));
                query = form_urlencoded::parse(next.as_bytes())
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            None => {
                assert_eq!(header("x-esgflow-complete").as_deref(), Some("true"));
                break;
            }
        }
    }
    assert_eq!(seen.len(), PAST_THE_CAP, "every record, in {parts} parts");
    assert!(
        stub.searches().iter().all(|s| s.get("Context").is_none()),
        "pages go by Offset"
    );
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

#[tokio::test]
async fn every_rules_counters_are_read_past_one_sql_answer() {
    use esgflow::adapters::tencent::cls_query::ClsRecords;
    const RULES: usize = 10_500;
    let stub = common::cls_stub::ClsStub::start(vec![]).await;
    let time = chrono::Utc::now().timestamp() - 600;
    stub.keep(
        "topic-hits",
        (0..RULES).map(|i| {
            let fields = [
                ("record_type", "rule_hits".to_string()),
                ("rule_uuid", format!("esg-{i:06}")),
                ("hits", (i + 1).to_string()),
                ("block_hits", "0".to_string()),
                ("observe_hits", "0".to_string()),
                ("first_hit", time.to_string()),
                ("last_hit", time.to_string()),
            ];
            let fields = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            (time * 1000, fields)
        }),
    );
    let client =
        esgflow::adapters::tencent::api::ApiClient::new("ap-guangzhou", Some(stub.url.clone()))
            .with_credentials(common::cls_stub::credentials());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // One SQL answer holds 10,000 rows, whatever its limit says.
    let capped = esgflow::adapters::tencent::search::analysis_rows(
        &client,
        "topic-hits",
        "record_type:\"rule_hits\" | select rule_uuid group by rule_uuid limit 20000",
        (time - 60) * 1000,
        (time + 60) * 1000,
        deadline,
    )
    .await
    .unwrap();
    assert_eq!(capped.len(), 10_000);
    let records = ClsRecords {
        client,
        topic: "topic-hits".into(),
        traffic_topic: "topic-hits".into(),
    };
    let totals = records
        .rule_totals(time - 60, time + 60, deadline)
        .await
        .unwrap();
    assert_eq!(totals.len(), RULES, "every rule, over two answers");
    assert_eq!(totals["esg-010499"].hits, RULES as u64);
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}

#[tokio::test]
async fn the_rules_page_analyses_the_same_rules_in_any_build() {
    use esgflow::core::engine::hygiene::{analyze_until, Budget};
    let listings = esgflow_local::testdata::reference::account(1_200, 5);
    let snapshot = esgflow_local::testdata::reference::snapshot(&listings).unwrap();
    let scratch = common::scratch("rules-any-build");
    let file = scratch.path().join("snapshot.json");
    std::fs::write(&file, serde_json::to_vec(&snapshot).unwrap()).unwrap();
    let expected = analyze_until(
        &esgflow::core::engine::Engine::compile_owned(snapshot).unwrap(),
        Budget {
            until: None,
            bytes: esgflow::app::lookup::RULES_HYGIENE_BYTES,
        },
    );
    // A short time limit: a page waits half of it at most, far less than a debug build needs
    // to analyse 1,200 rules (a budget in time would cut the analysis short).
    let mut lookup = common::emulator_timed(
        "lookup",
        vec![
            ("ESGFLOW_SNAPSHOT".into(), file.display().to_string()),
            ("ESGFLOW_LOOKUP_TOKEN".into(), TOKEN.into()),
        ],
        std::time::Duration::from_secs(1),
    )
    .await;
    let mut request: Value =
        serde_json::from_slice(&event("GET", "/v1/rules", Some(TOKEN), None)).unwrap();
    request["queryString"] = json!({"limit": "2000"});
    let started = std::time::Instant::now();
    let page = loop {
        let (status, page) = response(
            &lookup
                .invoke(request.to_string().into_bytes())
                .await
                .unwrap()
                .result,
        );
        assert_eq!(status, 200, "{page}");
        if page["hygiene_pending"] == false {
            break page;
        }
        assert_eq!(
            page["hygiene_analysed"], 0,
            "a pending analysis shows nothing"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the analysis ends"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    // What the page says is what the analysis finds without a clock: the same in a debug
    // build as in a release one.
    assert_eq!(page["total"], 1_200);
    assert_eq!(
        page["hygiene_analysed"], expected.analysed,
        "{}",
        page["hygiene_stopped"]
    );
    let found: std::collections::BTreeMap<u64, String> = page["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["hygiene"].is_null())
        .map(|r| {
            (
                r["position"].as_u64().unwrap(),
                r["hygiene"]["finding"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let wanted: std::collections::BTreeMap<u64, String> = expected
        .findings
        .iter()
        .map(|f| {
            (
                u64::from(f.rule),
                serde_json::to_value(&f.finding)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert!(
        !wanted.is_empty(),
        "the account has shadowed or redundant rules"
    );
    assert_eq!(found, wanted);
}
