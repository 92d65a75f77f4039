//! The `esgflow` CLI: snapshot build/show and offline explain, including bad input.

use crate::common;
use common::serve::start_serve;

use std::path::{Path, PathBuf};
use std::process::Command;

fn esgflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_esgflow"))
}

fn temp_dir(name: &str) -> PathBuf {
    // Kept after the test: a failing test's files are there to look at.
    common::scratch(&format!("cli-{name}")).keep()
}

/// `output`, which must be a success (its stderr shown if not).
fn succeeded(output: std::process::Output) -> std::process::Output {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `esgflow explain <args>` against the bundled sample snapshot, which must succeed.
fn explain_sample(args: &[&str]) -> std::process::Output {
    succeeded(
        esgflow()
            .arg("explain")
            .args(args)
            .arg("--snapshot")
            .arg(sample("samples/snapshot.json"))
            .output()
            .unwrap(),
    )
}

fn sample(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn snapshot_build_writes_a_snapshot_and_show_summarises_it() {
    let dir = temp_dir("build");
    let out = dir.join("snapshot.json");
    succeeded(
        esgflow()
            .args(["snapshot", "build", "--from"])
            .arg(sample("samples/export"))
            .arg("--out")
            .arg(&out)
            .args(["--taken-at", "2025-11-24T00:00:00Z"])
            .output()
            .unwrap(),
    );
    let show = esgflow()
        .args(["snapshot", "show"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("rules     39"), "{text}");
    assert!(text.contains("unresolvable enabled rules: 2"), "{text}");
    assert!(text.contains("rule 7023 (block exfil domain)"), "{text}");
    assert!(text.contains("shadowed or redundant rules: 3"), "{text}");
    assert!(
        text.contains("rule 7021 (on-prem to web): shadowed by 7003"),
        "{text}"
    );
    assert!(
        text.contains("rule 7010 (block other data-tier access): redundant with 7015, 9000"),
        "{text}"
    );
}

#[test]
fn snapshot_build_keeps_unreadable_rules_and_refuses_unreadable_files() {
    let dir = temp_dir("bad");
    std::fs::write(
        dir.join("rules.json"),
        r#"{"Response":{"Rules":[{"Id":"42","OrderIndex":"1","RuleAction":"accept","SourceType":"net","SourceContent":"10.0.0.0/8","DestType":"net","DestContent":"10.1.0.0/16","Protocol":"TCP","Port":"99999","Description":"bad port"}]}}"#,
    )
    .unwrap();
    let out = dir.join("snapshot.json");
    let result = esgflow()
        .args(["snapshot", "build", "--from"])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    // A rule field that cannot be read makes the rule indeterminate, with a warning naming it.
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: rule 42 (bad port): Port cannot be read: port \"99999\""),
        "{stderr}"
    );
    let built = esgflow::core::snapshot::Snapshot::load(&out).unwrap();
    assert!(built.rules[0].attributes.unreadable.contains_key("Port"));
    std::fs::remove_file(&out).unwrap();

    std::fs::write(dir.join("rules.json"), "{ not json").unwrap();
    let result = esgflow()
        .args(["snapshot", "build", "--from"])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("not valid JSON"));
    assert!(!out.exists(), "nothing may be written");

    let result = esgflow()
        .args(["snapshot", "show"])
        .arg(dir.join("rules.json"))
        .output()
        .unwrap();
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("is not a valid snapshot"));
}

#[test]
fn explain_names_the_blocking_rule_and_why_others_did_not_match() {
    let result = explain_sample(&[
        "--verbose",
        "--src",
        "10.0.1.11",
        "--dst",
        "10.0.3.10",
        "--protocol",
        "tcp",
        "--port",
        "3306",
    ]);
    let text = String::from_utf8_lossy(&result.stdout);
    assert!(
        text.contains("BLOCKED by rule 7010 (order 11, drop) \"block other data-tier access\""),
        "{text}"
    );
    assert!(text.contains("observed by rule 7007"), "{text}");
    assert!(text.contains("scope inter_subnet"), "{text}");
    assert!(
        text.contains("source 10.0.1.11 not in net 10.0.2.0/24"),
        "{text}"
    );

    let json = esgflow()
        .args(["explain", "--json", "--snapshot"])
        .arg(sample("samples/snapshot.json"))
        .args([
            "--src",
            "172.16.1.10",
            "--dst",
            "192.168.100.4",
            "--port",
            "443",
        ])
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["decision"], "none");
    assert_eq!(value["scope"], "vpc_outbound");

    let missing_port = esgflow()
        .args(["explain", "--snapshot"])
        .arg(sample("samples/snapshot.json"))
        .args(["--src", "10.0.0.1", "--dst", "10.0.0.2"])
        .output()
        .unwrap();
    assert!(!missing_port.status.success());
    assert!(String::from_utf8_lossy(&missing_port.stderr).contains("--port is required"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tick_fires_timer_events_at_the_sync_function() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_esgflow"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        bin_dir.join("esgflow-sync").exists()
            || std::process::Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "esgflow-sync"])
                .status()
                .unwrap()
                .success()
    );
    let exports = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/export");
    let stub = esgflow_local::standins::cloud::CloudStub::start(
        esgflow_local::standins::cloud::load_exports(&exports).unwrap(),
    )
    .await
    .unwrap();
    let scratch = common::scratch("tick");
    let store = scratch.path().to_path_buf();
    let mut command = esgflow();
    command
        .args([
            "tick",
            "sync",
            "--count",
            "2",
            "--message",
            "hello",
            "--timeout-ms",
            "30000",
        ])
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--env")
        .arg(format!("ESGFLOW_SNAPSHOT=dir://{}", store.display()));
    for (key, value) in stub.env() {
        command.arg("--env").arg(format!("{key}={value}"));
    }
    let result = succeeded(
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap(),
    );
    let text = String::from_utf8_lossy(&result.stdout);
    assert_eq!(text.matches("\"snapshot_version\"").count(), 2, "{text}");
    assert_eq!(text.matches("\"published\": true").count(), 1, "{text}");
    std::fs::remove_dir_all(&store).ok();
}

/// `esgflow explain --json` answers exactly what `POST /v1/explain` answers for the same flow
/// and snapshot, with and without `--verbose`, for a decided flow, an undecided one and an ICMP
/// flow.
#[tokio::test]
async fn explain_json_is_the_lookup_answer() {
    use esgflow::app::lookup::{Auth, Lookup};
    use esgflow::app::snapshot_cache::SnapshotCache;
    let snapshot = sample("samples/snapshot.json");
    let lookup = Lookup::new(
        Auth::Bearer("t0ken".into()),
        1 << 20,
        SnapshotCache::new(&snapshot, std::time::Duration::from_secs(60)),
    )
    .app();
    for (src, dst, protocol, port) in [
        ("10.0.1.11", "10.0.3.10", "tcp", Some("3306")),
        ("172.16.1.10", "192.168.100.4", "tcp", Some("443")),
        ("198.51.100.7", "10.0.1.12", "icmp", None),
    ] {
        for verbose in [false, true] {
            let mut args = vec!["--json", "--src", src, "--dst", dst, "--protocol", protocol];
            if let Some(port) = port {
                args.extend(["--port", port]);
            }
            if verbose {
                args.push("--verbose");
            }
            let output = explain_sample(&args);
            let cli: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

            let mut body = serde_json::json!({"src": src, "dst": dst, "protocol": protocol, "verbose": verbose});
            if let Some(port) = port {
                body["port"] = serde_json::json!(port.parse::<u16>().unwrap());
            }
            let request: esgflow::events::ApiGatewayRequest =
                serde_json::from_value(serde_json::json!({
                    "httpMethod": "POST", "path": "/v1/explain",
                    "headers": {"authorization": "Bearer t0ken"}, "body": body.to_string()
                }))
                .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let response = lookup.handle(&request, "r", deadline).await;
            assert_eq!(response.status_code, 200, "{}", response.body);
            let api: serde_json::Value = serde_json::from_str(&response.body).unwrap();
            assert_eq!(cli, api, "{src} → {dst} {protocol} verbose={verbose}");
            assert!(
                cli["steps"].as_array().is_some_and(|s| !s.is_empty()) || cli["decision"] == "none"
            );
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.1.11`) is the IPv4 address, offline as in lookup
/// and audit: the explanation is the same.
#[test]
fn explain_reads_ipv4_mapped_addresses_as_ipv4() {
    let explain = |src: &str, dst: &str| {
        let output = explain_sample(&[
            "--json",
            "--src",
            src,
            "--dst",
            dst,
            "--protocol",
            "tcp",
            "--port",
            "3306",
        ]);
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let plain = explain("10.0.1.11", "10.0.3.10");
    assert_eq!(plain["rule"]["uuid"], "7010");
    assert_eq!(explain("::ffff:10.0.1.11", "::ffff:10.0.3.10"), plain);
}

/// `esgflow serve` stopped with SIGTERM (a service manager, `kill`) stops its lookup function
/// process too; it once stayed behind for about a minute.
#[test]
fn serve_stops_its_function_process_on_sigterm() {
    let (mut serving, _) = start_serve(&[]);
    let child = serve_children(&serving.0)[0];
    terminate_and_expect_gone(&mut serving.0, child);
}

/// A SIGTERM that arrives while serve is still starting its lookup process (or just as it
/// announces its address) is honoured once start-up ends: serve stops and takes the process
/// with it. The handler was once installed only after the announcement, so a signal before it
/// killed serve outright and left the lookup process running.
#[test]
fn serve_signalled_while_starting_still_stops_its_function_process() {
    use std::time::{Duration, Instant};
    common::function_binary("lookup");
    let mut serving = common::serve::Serving(
        Command::new(env!("CARGO_BIN_EXE_esgflow"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--token", "local-token-0123456789", "--snapshot"])
            .arg(common::sample_snapshot())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The moment the lookup process exists, before it has said it is ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    let child = loop {
        if let Some(&child) = serve_children(&serving.0).first() {
            break child;
        }
        assert!(Instant::now() < deadline, "serve never started lookup");
        std::thread::sleep(Duration::from_millis(1));
    };
    terminate_and_expect_gone(&mut serving.0, child);
}

/// The processes `serve` has started, whichever of its threads spawned them.
fn serve_children(serve: &std::process::Child) -> Vec<u32> {
    let children: Vec<u32> = std::fs::read_dir(format!("/proc/{}/task", serve.id()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    assert!(children.len() <= 1, "one lookup process: {children:?}");
    children
}

/// Sends SIGTERM to `serve`; it must exit by itself and `child` must be gone (or at most a zombie
/// waiting for init to reap it) soon after.
fn terminate_and_expect_gone(serve: &mut std::process::Child, child: u32) {
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};
    let killed = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "esgflow serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.signal(),
        None,
        "esgflow serve was killed by the signal instead of handling it"
    );
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(child) {
        assert!(
            Instant::now() < deadline,
            "the lookup process {child} outlived esgflow serve"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `make run` and the README's next step do: the sample replayed into the local records
/// store, then searched through `esgflow serve --store` with a real HTTP client — job 1 (the
/// rule that blocked 10.0.1.11 → 10.0.3.10:3306/TCP), cursor paging over three pages, the export,
/// rule counters and the top-rules chart answering from the store, jobs 2 and 3 (prod's traffic
/// against the records), and every other route of the API.
#[test]
fn the_replayed_sample_is_searched_through_serve() {
    let dir = temp_dir("store");
    let (records, store) = (dir.join("records.jsonl"), dir.join("esgflow.db"));
    let replay = succeeded(
        esgflow()
            .arg("replay")
            .arg(sample("samples/flowlogs.txt"))
            .arg("--snapshot")
            .arg(sample("samples/snapshot.json"))
            .arg("--records")
            .arg(&records)
            .arg("--store")
            .arg(&store)
            .output()
            .unwrap(),
    );
    let written = std::fs::read_to_string(&records).unwrap().lines().count();
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert!(
        stdout.contains(&format!(
            "{written} records loaded into {}",
            store.display()
        )),
        "{stdout}"
    );
    // The report, summed while the store took the records in, counts every record.
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for line in std::fs::read_to_string(&records).unwrap().lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        *kinds
            .entry(record["record_type"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for (kind, count) in &kinds {
        assert!(
            stdout.contains(&format!("  {kind:<20} {count}\n")),
            "{kind} {count}: {stdout}"
        );
    }

    // A store that is not there is named before anything starts.
    let missing = esgflow()
        .args(["serve", "--token", "local-token-0123456789", "--snapshot"])
        .arg(sample("samples/snapshot.json"))
        .arg("--store")
        .arg(dir.join("absent.db"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("absent.db"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    let (serve, addr) = start_serve(&[std::ffi::OsStr::new("--store"), store.as_os_str()]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let get = |path: &str, query: &serde_json::Value| {
        let request = client
            .get(format!("http://{addr}{path}"))
            .bearer_auth("local-token-0123456789")
            .query(query)
            .timeout(std::time::Duration::from_secs(30));
        runtime.block_on(async {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        })
    };
    let day = serde_json::json!({"since": "2025-11-24T00:00:00Z", "until": "2025-11-25T00:00:00Z"});
    let mut query = day.clone();
    for (k, v) in [
        ("src", "10.0.1.11"),
        ("dst", "10.0.3.10"),
        ("port", "3306"),
        ("protocol", "tcp"),
        ("type", "block_hit"),
        ("limit", "1"),
    ] {
        query[k] = serde_json::json!(v);
    }
    let mut pages = 0;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let (status, answer) = get("/v1/hits", &query);
        assert_eq!(status, 200, "{answer}");
        pages += 1;
        for hit in answer["hits"].as_array().unwrap() {
            assert_eq!(hit["rule_uuid"], "7010", "{hit}");
            assert_eq!(hit["src_ip"], "10.0.1.11");
            seen.insert(hit["record_id"].as_str().unwrap().to_string());
        }
        if answer["complete"] == true || pages == 3 {
            break;
        }
        query = answer["next"].clone();
    }
    assert_eq!((pages, seen.len()), (3, 3), "three pages of one hit each");

    // The same search exported as CSV: a header and one row per hit, as a download.
    let mut job1 = day.clone();
    for (k, v) in [
        ("src", "10.0.1.11"),
        ("dst", "10.0.3.10"),
        ("port", "3306"),
        ("type", "block_hit"),
    ] {
        job1[k] = serde_json::json!(v);
    }
    let (status, all) = get("/v1/hits", &job1);
    assert_eq!(status, 200, "{all}");
    job1["format"] = serde_json::json!("csv");
    job1.as_object_mut().unwrap().remove("limit");
    let export = runtime.block_on(async {
        client
            .get(format!("http://{addr}/v1/hits/export"))
            .bearer_auth("local-token-0123456789")
            .query(&job1)
            .send()
            .await
            .unwrap()
    });
    assert_eq!(export.status().as_u16(), 200);
    assert_eq!(export.headers()["x-esgflow-complete"], "true");
    assert!(export.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"esgflow-hits-"));
    let csv = runtime.block_on(export.text()).unwrap();
    let rows: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert!(
        rows[0].starts_with("time_utc,time,record_type,src_ip,"),
        "{}",
        rows[0]
    );
    assert_eq!(
        rows.len() - 1,
        all["count"].as_u64().unwrap() as usize,
        "{csv}"
    );
    assert!(rows[1..].iter().all(|r| r.contains(",7010,")), "{csv}");

    let (status, answer) = get("/v1/hits", &serde_json::json!({"source": "10.0.1.11"}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("unknown_parameter"))
    );
    let (status, rule) = get("/v1/rules/7010", &serde_json::json!({}));
    assert_eq!(status, 200, "{rule}");
    assert_eq!(rule["hits"]["available"], true, "{rule}");
    let (status, top) = get("/v1/stats/top-rules", &serde_json::json!({}));
    assert_eq!(status, 200, "{top}");

    // Jobs 2 and 3: the prod VPC's traffic, summed as the records say.
    let mut prod = day.clone();
    prod["vpc"] = serde_json::json!("vpc-prod0001");
    let (status, traffic) = get("/v1/traffic", &prod);
    assert_eq!(status, 200, "{traffic}");
    let written: Vec<serde_json::Value> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| {
            r["record_type"] == "traffic"
                && (r["src_vpc"] == "vpc-prod0001" || r["dst_vpc"] == "vpc-prod0001")
        })
        .collect();
    for scope in [
        "vpc_inbound",
        "vpc_outbound",
        "inter_subnet",
        "intra_subnet",
    ] {
        let flows: u64 = written
            .iter()
            .filter(|r| r["scope"] == scope)
            .map(|r| r["flows"].as_u64().unwrap())
            .sum();
        let answered: u64 = traffic["totals"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["scope"] == scope)
            .map(|t| t["flows"].as_u64().unwrap())
            .sum();
        assert!(flows > 0, "the sample has {scope} traffic in prod");
        assert_eq!(answered, flows, "{scope}: {traffic}");
    }
    let matrix = traffic["matrix"].as_array().unwrap();
    assert!(
        matrix.iter().any(|c| c["src_subnet"].is_string()
            && c["dst_subnet"].is_string()
            && c["src_subnet"] != c["dst_subnet"]),
        "{traffic}"
    );
    prod["scope"] = serde_json::json!("sideways");
    let (status, refused) = get("/v1/traffic", &prod);
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_field")),
        "{refused}"
    );

    // The other routes through serve: one record explained against the snapshot that judged
    // it, the rules page, the VPCs with coverage, the snapshot, explain, health and the page.
    let first = seen.iter().next().unwrap();
    let (status, hit) = get(&format!("/v1/hits/{first}"), &day);
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["explanation"]["rule"]["uuid"], "7010", "{hit}");
    assert_eq!(hit["judged_with"], hit["explained_with"], "{hit}");
    assert!(hit["note"].is_null(), "{hit}");
    let (status, rules) = get("/v1/rules", &serde_json::json!({"limit": "50"}));
    assert_eq!(status, 200, "{rules}");
    assert!(
        rules["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["uuid"] == "7010"),
        "{rules}"
    );
    let (status, vpcs) = get("/v1/vpcs", &serde_json::json!({}));
    assert_eq!(status, 200, "{vpcs}");
    let prod_state = vpcs["vpcs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "vpc-prod0001")
        .unwrap_or_else(|| panic!("{vpcs}"));
    assert_eq!(
        (
            &prod_state["monitored"],
            &prod_state["coverage"]["available"]
        ),
        (&serde_json::json!(true), &serde_json::json!(true)),
        "{vpcs}"
    );
    let (status, snapshot) = get("/v1/snapshot", &serde_json::json!({}));
    assert_eq!(status, 200, "{snapshot}");
    assert!(snapshot["rules"].as_u64() > Some(0), "{snapshot}");
    let (explained, health, page) = runtime.block_on(async {
        let explained = client
            .post(format!("http://{addr}/v1/explain"))
            .bearer_auth("local-token-0123456789")
            .json(&serde_json::json!({"src": "10.0.1.11", "dst": "10.0.3.10", "protocol": "tcp", "port": 3306}))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        let health = client
            .get(format!("http://{addr}/v1/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let page = client.get(format!("http://{addr}/")).send().await.unwrap();
        let html = page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html");
        (explained, health, html)
    });
    assert_eq!(
        (
            explained["decision"].as_str(),
            explained["rule"]["uuid"].as_str()
        ),
        (Some("block"), Some("7010")),
        "{explained}"
    );
    assert_eq!((health, page), (200, true));

    // What-if (#38): turning 7008 (app → db 3306, accept) into a drop, offline with `esgflow
    // whatif` and through `POST /v1/whatif`: the same report from both, each change what
    // explain says of the flow before.
    let whatif = |args: &[&str]| {
        succeeded(
            esgflow()
                .arg("whatif")
                .arg("--snapshot")
                .arg(sample("samples/snapshot.json"))
                .arg("--store")
                .arg(&store)
                .args(args)
                .output()
                .unwrap(),
        )
        .stdout
    };
    let the_day = [
        "--since",
        "2025-11-24T00:00:00Z",
        "--until",
        "2025-11-25T00:00:00Z",
    ];
    let offline: serde_json::Value = serde_json::from_slice(&whatif(
        &[
            &["--set", "7008=drop", "--limit", "1000", "--json"][..],
            &the_day,
        ]
        .concat(),
    ))
    .unwrap();
    let mut query = day.clone();
    query["limit"] = serde_json::json!("1000");
    let (status, online) = runtime.block_on(async {
        let response = client
            .post(format!("http://{addr}/v1/whatif"))
            .bearer_auth("local-token-0123456789")
            .query(&query)
            .json(&serde_json::json!({"edits": [{"op": "set", "rule": "7008", "action": "drop"}]}))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<serde_json::Value>().await.unwrap(),
        )
    });
    assert_eq!(status, 200, "{online}");
    // `--json` prints what the API answers, in the same shape.
    let report = &offline;
    for key in ["judged", "unchanged", "changed_total", "classes", "changed"] {
        assert_eq!(report[key], online[key], "{key}");
    }
    assert_eq!(offline["proposed_version"], online["proposed_version"]);
    let blocked = &report["classes"][0];
    assert_eq!(blocked["outcome"], "newly_blocked", "{report}");
    assert!(blocked["conversations"].as_u64() > Some(5), "{blocked}");
    for changed in report["changed"].as_array().unwrap().iter().take(3) {
        let explained = runtime.block_on(async {
            client
                .post(format!("http://{addr}/v1/explain"))
                .bearer_auth("local-token-0123456789")
                .json(&serde_json::json!({"src": changed["src_ip"], "dst": changed["dst_ip"], "protocol": "tcp", "port": changed["dst_port"]}))
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        });
        assert_eq!(
            explained["decision"], changed["before"]["decision"],
            "{changed}"
        );
        assert_eq!(
            explained["rule"]["uuid"], changed["before"]["rule"],
            "{changed}"
        );
    }
    let text = String::from_utf8_lossy(&whatif(&["--set", "7008=drop"])).into_owned();
    assert!(text.contains("newly_blocked:"), "{text}");
    assert!(text.contains("app-"), "names beside addresses: {text}");
    // Each observe rule promoted in thought: the same from the command line and the API.
    let promoted: serde_json::Value = serde_json::from_slice(&whatif(
        &[&["--observe-as-drop", "--json"][..], &the_day].concat(),
    ))
    .unwrap();
    // A narrower 7008, from the command line and the API alike, changing nothing of the day.
    let narrower: serde_json::Value = serde_json::from_slice(&whatif(
        &[&["--tighten", "7008", "--json"][..], &the_day].concat(),
    ))
    .unwrap();
    assert_eq!(narrower["changes"], 0, "{narrower}");
    assert_eq!(narrower["seen"]["sources"], 6, "{narrower}");
    let mut query = day.clone();
    query["rule"] = serde_json::json!("7008");
    let (status, online) = get("/v1/whatif/tighten", &query);
    assert_eq!(status, 200, "{online}");
    assert_eq!(online["proposed"], narrower["proposed"]);
    let (status, online) = get("/v1/whatif/observe", &day);
    assert_eq!(status, 200, "{online}");
    assert_eq!(promoted["rules"], online["rules"]);
    let rules = online["rules"].as_array().unwrap();
    assert!(
        rules.iter().any(|r| r["newly_blocked"].as_u64() > Some(0)),
        "{online}"
    );
    drop(serve);
    std::fs::remove_dir_all(dir).ok();
}

/// "Switch monitoring off for this VPC" through `esgflow serve` with the admin token, and the
/// audit function (reading the same snapshot) stops judging that VPC's flows after its snapshot
/// TTL; dropping the switch brings them back.
#[test]
fn a_switch_changed_through_the_api_is_honoured_by_the_next_audit_batch() {
    let dir = temp_dir("switches");
    let snapshot = dir.join("snapshot.json");
    std::fs::copy(sample("samples/snapshot.json"), &snapshot).unwrap();
    let admin = "admin-token-0123456789";
    let (serve, addr) = start_serve(&[
        std::ffi::OsStr::new("--snapshot"),
        snapshot.as_os_str(),
        std::ffi::OsStr::new("--admin-token"),
        std::ffi::OsStr::new(admin),
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let snapshot_env = snapshot.display().to_string();
    let mut audit = runtime.block_on(common::emulator(
        "audit",
        &[
            ("ESGFLOW_SNAPSHOT", snapshot_env.as_str()),
            ("ESGFLOW_SNAPSHOT_TTL_SECONDS", "1"),
        ],
    ));
    let line = "2 1251762227 eni-web00001 10.0.1.11 10.0.3.10 40001 3306 6 3 180 1763942400 1763942460 REJECT OK";
    let mut judge = || {
        let invocation = runtime
            .block_on(audit.invoke(common::cls_event("topic-1", &[line])))
            .unwrap();
        let esgflow_local::emulator::InvocationResult::Response(body) = &invocation.result else {
            panic!("expected a response, got {:?}", invocation.result);
        };
        serde_json::from_slice::<serde_json::Value>(body).unwrap()
    };
    let before = judge();
    assert_eq!(
        (&before["records"]["block_hit"], &before["unmonitored"]),
        (&serde_json::json!(1), &serde_json::json!(0)),
        "{before}"
    );
    let client = reqwest::Client::new();
    let switch = |body: &str| {
        let request = client
            .put(format!("http://{addr}/v1/vpcs/vpc-prod0001/monitoring"))
            .bearer_auth(admin)
            .header("content-type", "application/json")
            .body(body.to_string());
        runtime.block_on(async {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        })
    };
    // The audit instance re-reads the switches once its snapshot TTL (1 s) has passed: judge
    // until it has, within a deadline well past the TTL.
    let ttl = std::time::Duration::from_secs(1);
    let mut judge_until = |honoured: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = std::time::Instant::now() + 10 * ttl;
        loop {
            let summary = judge();
            if honoured(&summary) || std::time::Instant::now() >= deadline {
                return summary;
            }
            std::thread::sleep(ttl / 10);
        }
    };
    let (status, answer) = switch(r#"{"monitored": false}"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["vpc"]["monitored"], false, "{answer}");
    let after = judge_until(&|s| s["unmonitored"] == 1);
    assert_eq!(
        (
            &after["records"]["block_hit"],
            &after["unmonitored"],
            &after["monitoring_switches"]
        ),
        (
            &serde_json::Value::Null,
            &serde_json::json!(1),
            &serde_json::json!(1)
        ),
        "{after}"
    );
    let (status, answer) = switch(r#"{"monitored": null}"#);
    assert_eq!(status, 200, "{answer}");
    let again = judge_until(&|s| s["records"]["block_hit"] == 1);
    assert_eq!(again["records"]["block_hit"], 1, "{again}");
    drop(serve);
    std::fs::remove_dir_all(dir).ok();
}
