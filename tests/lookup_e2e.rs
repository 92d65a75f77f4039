//! The real lookup binary under the emulator, invoked with API Gateway events as SCF delivers
//! them; answers are integration responses.

mod common;

use serde_json::{json, Value};

const TOKEN: &str = "lookup-test-token-0123";

fn event(method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Vec<u8> {
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
    let gateway = esgflow_local::gateway::Gateway::start(emulator, "127.0.0.1:0".parse().unwrap())
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
        ("GET", "/v1/nope", Some(TOKEN), 404),
        ("DELETE", "/v1/snapshot", Some(TOKEN), 405),
        ("GET", "/v1/rules/404404", Some(TOKEN), 404),
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
}

#[tokio::test]
async fn hits_come_from_cls_searchlog_with_a_safe_query() {
    // Write some hits through the real audit function, then search them through lookup.
    let stub = common::cls_stub::ClsStub::start(vec![]).await;
    let mut audit = common::emulator_with("audit", stub.env("topic-hits", "topic-traffic")).await;
    let line = "2 1251762227 eni-web00001 10.0.1.11 10.0.3.10 40001 3306 6 3 180 1763942400 1763942460 REJECT OK";
    audit
        .invoke(common::cls_event("fl", &[line]))
        .await
        .unwrap();
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
    assert_eq!(answer["cursor"], "next-page-ctx");
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
        (Some(1763942400000), Some(1763946000000), Some(50))
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
