//! The OpenAPI document (openapi.json) and the lookup API stay in step: the committed document is
//! the one the code generates; every answer the API gives to a set of real requests has the status
//! the case expects and validates against the document's schema for its path, method and status
//! (no field the document does not declare); every status it answers with is declared, and every
//! documented path is exercised.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use esgflow::adapters::tencent::api::ApiClient;
use esgflow::adapters::tencent::cls_query::ClsRecords;
use esgflow::app::lookup::{Auth, Lookup};
use esgflow::app::snapshot_cache::SnapshotCache;
use esgflow::events::ApiGatewayRequest;
use serde_json::{json, Value};

const TOKEN: &str = "openapi-test-token-0123";
const ADMIN: &str = "openapi-admin-token-4567";

/// Documented path, method, request path, token, body, query string, the status expected.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<Value>,
    Value,
    u16,
);

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {reference}")),
        None => schema,
    }
}

/// The property names a schema declares, through `allOf` and references.
fn declared<'a>(doc: &'a Value, schema: &'a Value, names: &mut BTreeSet<&'a str>) -> bool {
    let schema = resolve(doc, schema);
    let mut closed = false;
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        names.extend(properties.keys().map(String::as_str));
        closed = true;
    }
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        closed |= declared(doc, part, names);
    }
    closed && schema.get("additionalProperties").is_none()
}

/// A validator for the subset of JSON Schema (2020-12, as OpenAPI 3.1 uses it) the document
/// uses. An object may carry only the properties its schema declares: an answer field the
/// document does not know fails.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    check(doc, schema, value, at, true)
}

/// [`validate`]; `whole` is false for a part of an `allOf`, which may not know every property.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, whole: bool) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            check(doc, part, value, at, false)?;
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let passing = one
            .iter()
            .filter(|s| validate(doc, s, value, at).is_ok())
            .count();
        if passing != 1 {
            return Err(format!("{at}: matches {passing} of the oneOf schemas"));
        }
    }
    let kinds: Vec<&str> = match schema.get("type") {
        None => vec![],
        Some(Value::String(kind)) => vec![kind.as_str()],
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
        Some(other) => return Err(format!("{at}: unsupported type {other}")),
    };
    let kind_ok = kinds.is_empty()
        || kinds.iter().any(|kind| match *kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => false,
        });
    if !kind_ok {
        return Err(format!("{at}: {value} is not of type {}", schema["type"]));
    }
    if let (Some(minimum), Some(number)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) {
        if number < minimum {
            return Err(format!("{at}: {value} is below the minimum {minimum}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if value.get(key).is_none() {
                return Err(format!("{at}: missing required {key}"));
            }
        }
    }
    if let Some(object) = value.as_object() {
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (key, property) in properties {
                if let Some(inner) = object.get(key) {
                    validate(doc, property, inner, &format!("{at}.{key}"))?;
                }
            }
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|e| e.is_object()) {
            for (key, inner) in object {
                validate(doc, extra, inner, &format!("{at}.{key}"))?;
            }
        }
        let mut names = BTreeSet::new();
        if whole && declared(doc, schema, &mut names) {
            if let Some(key) = object.keys().find(|key| !names.contains(key.as_str())) {
                return Err(format!("{at}: {key} is not in the document"));
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            validate(doc, items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    query: Value,
) -> ApiGatewayRequest {
    let mut headers = json!({});
    if let Some(token) = token {
        headers["authorization"] = json!(format!("Bearer {token}"));
    }
    serde_json::from_value(json!({"httpMethod": method, "path": path, "headers": headers, "body": body.map(|b| b.to_string()), "queryString": query})).unwrap()
}

/// `openapi.json` is the document the code generates (`esgflow::app::lookup::api`): a route,
/// a parameter or an answer field changed in the code and not in the committed file fails here.
/// `UPDATE_OPENAPI=1 cargo test --test integration openapi::` (`make openapi`) rewrites the file.
#[test]
fn the_committed_document_is_the_generated_one() {
    let generated = esgflow::app::lookup::api::document();
    let path = format!("{}/openapi.json", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == generated,
        "openapi.json is not the document the code generates: run `make openapi` and commit it"
    );
}

/// The query parameters each route documents are exactly those it reads, in the same order:
/// asked with a name no route reads, every route refuses it (400 `unknown_parameter`) and names
/// what it does read, which must be what the document lists for it.
#[tokio::test]
async fn documented_query_parameters_are_the_ones_each_route_reads() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/openapi.json", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .unwrap();
    let app = Lookup::new(
        Auth::Bearer(TOKEN.into()),
        4096,
        SnapshotCache::new(common::sample_snapshot(), Duration::from_secs(60)),
    )
    .with_monitoring(
        Default::default(),
        Some(ADMIN.into()),
        Duration::from_secs(300),
    )
    .app();
    let mut checked = 0;
    for (template, operations) in doc["paths"].as_object().unwrap() {
        if template == "/" || template == "/v1/healthz" {
            continue; // open routes: no query parameters and no token
        }
        for (method, operation) in operations.as_object().unwrap() {
            let documented: Vec<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let path = template
                .replace("{uuid}", "7010")
                .replace("{record_id}", "0123456789abcdef")
                .replace("{id}", "vpc-prod0001");
            let token = if method == "put" { ADMIN } else { TOKEN };
            let event: ApiGatewayRequest = serde_json::from_value(json!({
                "httpMethod": method.to_uppercase(),
                "path": path,
                "headers": {"Authorization": format!("Bearer {token}")},
                "queryString": {"zzz": "1"},
                "body": "{}",
            }))
            .unwrap();
            let answer = app
                .handle(&event, "r", Instant::now() + Duration::from_secs(5))
                .await;
            let body: Value = serde_json::from_str(&answer.body).unwrap();
            assert_eq!(
                (answer.status_code, body["error"]["code"].as_str()),
                (400, Some("unknown_parameter")),
                "{method} {template}: {body}"
            );
            let message = body["error"]["message"].as_str().unwrap();
            let reads = message.split("; it reads ").nth(1).unwrap();
            let reads: Vec<&str> = if reads == "no query parameters" {
                Vec::new()
            } else {
                reads.split(", ").collect()
            };
            assert_eq!(reads, documented, "{method} {template}");
            checked += 1;
        }
    }
    assert!(checked >= 11, "only {checked} routes checked");
}

#[tokio::test]
async fn every_answer_validates_against_the_document() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/openapi.json", env!("CARGO_MANIFEST_DIR"))).unwrap(),
    )
    .unwrap();
    let stub = common::cls_stub::ClsStub::start(vec![]).await;
    // A copy of the sample: a monitoring switch is saved beside the snapshot file.
    let scratch = common::scratch("openapi");
    let dir = scratch.path().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let snapshot = dir.join("snapshot.json");
    std::fs::copy(common::sample_snapshot(), &snapshot).unwrap();
    let lookup = Lookup::new(
        Auth::Bearer(TOKEN.into()),
        4096,
        SnapshotCache::new(&snapshot, Duration::from_secs(60)),
    )
    .with_monitoring(
        Default::default(),
        Some(ADMIN.into()),
        Duration::from_secs(300),
    )
    .with_store(std::sync::Arc::new(ClsRecords {
        client: ApiClient::new("ap-guangzhou", Some(stub.url.clone()))
            .with_credentials(common::cls_stub::credentials()),
        topic: "hits".into(),
        traffic_topic: "hits".into(),
    }))
    .app();
    let cases: Vec<Case> = vec![
        (
            "/v1/healthz",
            "GET",
            "/v1/healthz",
            None,
            None,
            json!({}),
            200,
        ),
        (
            "/v1/healthz",
            "post",
            "/v1/healthz",
            None,
            None,
            json!({}),
            405,
        ),
        (
            "/v1/explain",
            "post",
            "/v1/explain",
            Some(TOKEN),
            Some(json!({"src": "10.0.1.11", "dst": "10.0.3.10", "protocol": "tcp", "port": 3306})),
            json!({}),
            200,
        ),
        (
            "/v1/explain",
            "post",
            "/v1/explain",
            Some(TOKEN),
            Some(
                json!({"src": "172.16.1.10", "dst": "192.168.100.4", "protocol": "tcp", "port": 443, "verbose": true}),
            ),
            json!({}),
            200,
        ),
        (
            "/v1/explain",
            "post",
            "/v1/explain",
            Some(TOKEN),
            Some(
                json!({"flows": [{"src": "10.0.1.11", "dst": "10.0.3.10", "protocol": "udp", "port": 53}]}),
            ),
            json!({}),
            200,
        ),
        (
            "/v1/explain",
            "post",
            "/v1/explain",
            Some(TOKEN),
            Some(json!({"src": "x"})),
            json!({}),
            400,
        ),
        (
            "/v1/explain",
            "post",
            "/v1/explain",
            None,
            None,
            json!({}),
            401,
        ),
        (
            "/v1/explain",
            "get",
            "/v1/explain",
            Some(TOKEN),
            None,
            json!({}),
            405,
        ),
        (
            "/v1/explain",
            "post",
            "/v1/explain",
            Some(TOKEN),
            Some(json!({"src": "1".repeat(5000)})),
            json!({}),
            413,
        ),
        (
            "/v1/rules/{uuid}",
            "get",
            "/v1/rules/7010",
            Some(TOKEN),
            None,
            json!({}),
            200,
        ),
        (
            "/v1/rules/{uuid}",
            "get",
            "/v1/rules/7017",
            Some(TOKEN),
            None,
            json!({}),
            200,
        ),
        (
            "/v1/rules/{uuid}",
            "get",
            "/v1/rules/nope",
            Some(TOKEN),
            None,
            json!({}),
            404,
        ),
        (
            "/v1/snapshot",
            "get",
            "/v1/snapshot",
            Some(TOKEN),
            None,
            json!({}),
            200,
        ),
        ("/", "get", "/", None, None, json!({}), 200),
        ("/", "post", "/", None, None, json!({}), 405),
        (
            "/v1/stats/top-rules",
            "get",
            "/v1/stats/top-rules",
            Some(TOKEN),
            None,
            json!({"hours": "24"}),
            200,
        ),
        (
            "/v1/stats/top-rules",
            "get",
            "/v1/stats/top-rules",
            Some(TOKEN),
            None,
            json!({"hours": "9999"}),
            400,
        ),
        (
            "/v1/snapshot",
            "get",
            "/v1/snapshot",
            None,
            None,
            json!({}),
            401,
        ),
        (
            "/v1/hits",
            "get",
            "/v1/hits",
            Some(TOKEN),
            None,
            json!({"ip": "10.0.1.11"}),
            200,
        ),
        (
            "/v1/hits",
            "get",
            "/v1/hits",
            Some(TOKEN),
            None,
            json!({"limit": "0"}),
            400,
        ),
        (
            "/v1/hits/export",
            "get",
            "/v1/hits/export",
            Some(TOKEN),
            None,
            json!({"format": "csv", "src": "10.0.1.0/24"}),
            200,
        ),
        (
            "/v1/hits/export",
            "get",
            "/v1/hits/export",
            Some(TOKEN),
            None,
            json!({"format": "xlsx"}),
            400,
        ),
        (
            "/v1/hits/export",
            "get",
            "/v1/hits/export",
            None,
            None,
            json!({}),
            401,
        ),
        (
            "/v1/traffic",
            "get",
            "/v1/traffic",
            Some(TOKEN),
            None,
            json!({"vpc": "vpc-prod0001", "scope": "inter_subnet", "talkers": "5"}),
            200,
        ),
        (
            "/v1/traffic",
            "get",
            "/v1/traffic",
            Some(TOKEN),
            None,
            json!({"scope": "sideways"}),
            400,
        ),
        (
            "/v1/traffic",
            "get",
            "/v1/traffic",
            None,
            None,
            json!({}),
            401,
        ),
        (
            "/v1/traffic/peers",
            "get",
            "/v1/traffic/peers",
            Some(TOKEN),
            None,
            json!({"vpc": "vpc-prod0001", "scope": "vpc_inbound", "prefix": "16"}),
            200,
        ),
        (
            "/v1/traffic/peers",
            "get",
            "/v1/traffic/peers",
            Some(TOKEN),
            None,
            json!({"scope": "vpc_inbound"}),
            400,
        ),
        (
            "/v1/traffic/instances",
            "get",
            "/v1/traffic/instances",
            Some(TOKEN),
            None,
            json!({"vpc": "vpc-prod0001", "limit": "5"}),
            200,
        ),
        (
            "/v1/traffic/instances",
            "get",
            "/v1/traffic/instances",
            Some(TOKEN),
            None,
            json!({"prefix6": "0"}),
            400,
        ),
        (
            "/v1/vpcs",
            "get",
            "/v1/vpcs",
            Some(TOKEN),
            None,
            json!({}),
            200,
        ),
        (
            "/v1/rules",
            "get",
            "/v1/rules",
            Some(TOKEN),
            None,
            json!({"limit": "5"}),
            200,
        ),
        (
            "/v1/rules",
            "get",
            "/v1/rules",
            Some(TOKEN),
            None,
            json!({"days": "90"}),
            400,
        ),
        (
            "/v1/hits/{record_id}",
            "get",
            "/v1/hits/0123456789abcdef",
            Some(TOKEN),
            None,
            json!({}),
            404,
        ),
        (
            "/v1/hits/{record_id}",
            "get",
            "/v1/hits/0123456789abcdef",
            Some(TOKEN),
            None,
            json!({"since": "yesterday"}),
            400,
        ),
        ("/v1/vpcs", "get", "/v1/vpcs", None, None, json!({}), 401),
        (
            "/v1/vpcs/{id}/monitoring",
            "put",
            "/v1/vpcs/vpc-prod0001/monitoring",
            Some(ADMIN),
            Some(json!({"monitored": false})),
            json!({}),
            200,
        ),
        (
            "/v1/vpcs/{id}/monitoring",
            "put",
            "/v1/vpcs/vpc-prod0001/monitoring",
            Some(TOKEN),
            Some(json!({"monitored": true})),
            json!({}),
            401,
        ),
        (
            "/v1/vpcs/{id}/monitoring",
            "put",
            "/v1/vpcs/vpc-nope/monitoring",
            Some(ADMIN),
            Some(json!({"monitored": true})),
            json!({}),
            404,
        ),
        (
            "/v1/vpcs/{id}/monitoring",
            "put",
            "/v1/vpcs/vpc-prod0001/monitoring",
            Some(ADMIN),
            Some(json!({"on": true})),
            json!({}),
            400,
        ),
        (
            "/v1/vpcs/{id}/monitoring",
            "get",
            "/v1/vpcs/vpc-prod0001/monitoring",
            Some(ADMIN),
            None,
            json!({}),
            405,
        ),
        (
            "/v1/traffic",
            "post",
            "/v1/traffic",
            Some(TOKEN),
            None,
            json!({}),
            405,
        ),
        (
            "/v1/whatif",
            "post",
            "/v1/whatif",
            Some(TOKEN),
            Some(
                json!({"edits": [{"op": "set", "rule": "7008", "action": "drop"}, {"op": "move", "rule": "7010", "to": 1}]}),
            ),
            json!({"vpc": "vpc-prod0001", "limit": "10"}),
            200,
        ),
        (
            "/v1/whatif",
            "post",
            "/v1/whatif",
            Some(TOKEN),
            Some(json!({"edits": [{"op": "remove", "rule": "no-such-rule"}]})),
            json!({}),
            400,
        ),
        (
            "/v1/whatif",
            "post",
            "/v1/whatif",
            None,
            Some(json!({"edits": []})),
            json!({}),
            401,
        ),
        (
            "/v1/whatif",
            "get",
            "/v1/whatif",
            Some(TOKEN),
            None,
            json!({}),
            405,
        ),
        (
            "/v1/whatif/observe",
            "get",
            "/v1/whatif/observe",
            Some(TOKEN),
            None,
            json!({"vpc": "vpc-prod0001"}),
            200,
        ),
        (
            "/v1/whatif/observe",
            "get",
            "/v1/whatif/observe",
            Some(TOKEN),
            None,
            json!({"since": "yesterday"}),
            400,
        ),
        (
            "/v1/whatif/tighten",
            "get",
            "/v1/whatif/tighten",
            Some(TOKEN),
            None,
            json!({"rule": "7008"}),
            200,
        ),
        (
            "/v1/whatif/tighten",
            "get",
            "/v1/whatif/tighten",
            Some(TOKEN),
            None,
            json!({"rule": "7007"}),
            400,
        ),
        (
            "/v1/whatif/tighten",
            "get",
            "/v1/whatif/tighten",
            Some(TOKEN),
            None,
            json!({"rule": "nope"}),
            404,
        ),
    ];
    let mut exercised = BTreeSet::new();
    for (template, method, path, token, body, query, expected) in cases {
        let response = lookup
            .handle(
                &request(&method.to_uppercase(), path, token, body, query),
                "req",
                Instant::now() + Duration::from_secs(5),
            )
            .await;
        let status = response.status_code.to_string();
        assert_eq!(
            response.status_code, expected,
            "{method} {path}: {}",
            response.body
        );
        assert!(
            doc["paths"][template].is_object(),
            "{template} is not documented"
        );
        if let Some(html) = doc["paths"][template]
            .get(method.to_lowercase())
            .and_then(|o| o["responses"][&status]["content"].get("text/html"))
        {
            assert!(html.is_object());
            assert_eq!(
                response.headers.get("Content-Type").map(String::as_str),
                Some("text/html; charset=utf-8")
            );
            assert!(response.body.starts_with("<!doctype html>"));
            exercised.insert(template.to_string());
            continue;
        }
        // An export answers text: its documented media type, never an undeclared one.
        let content_type = response
            .headers
            .get("Content-Type")
            .map_or("", |t| t.split(';').next().unwrap_or(""));
        if matches!(content_type, "text/csv" | "application/x-ndjson") {
            let declared = &doc["paths"][template][method.to_lowercase()]["responses"][&status];
            assert!(
                declared["content"][content_type].is_object(),
                "{method} {path} answered {status} {content_type}, which the document does not declare"
            );
            for header in ["X-Esgflow-Count", "X-Esgflow-Complete"] {
                assert!(response.headers.contains_key(header), "{header}");
                assert!(declared["headers"][header].is_object(), "{header}");
            }
            exercised.insert(template.to_string());
            continue;
        }
        let body: Value = serde_json::from_str(&response.body).unwrap();
        let schema = match doc["paths"][template].get(method.to_lowercase()) {
            Some(operation) => {
                let declared = &operation["responses"][&status];
                assert!(
                    declared.is_object(),
                    "{method} {path} answered {status}, which the document does not declare"
                );
                declared["content"]["application/json"]["schema"].clone()
            }
            None => {
                // An undocumented method must be refused with the documented error shape.
                assert_eq!(
                    status, "405",
                    "{method} {path} is not documented but answered {status}"
                );
                json!({"$ref": "#/components/schemas/ErrorBody"})
            }
        };
        validate(&doc, &schema, &body, "$")
            .unwrap_or_else(|e| panic!("{method} {path} → {status}: {e}\n{body}"));
        exercised.insert(template.to_string());
    }
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        exercised, documented,
        "every documented path is exercised, and only those"
    );
    std::fs::remove_dir_all(&dir).ok();
}
