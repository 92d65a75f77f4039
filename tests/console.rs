//! The console in a real browser: Chromium driven through chromedriver (WebDriver, with the
//! fantoccini client), against `esgflow serve` over the bundled sample replayed into the local
//! records store — as a user does it: the token typed into the page, job 1 (the rule that
//! blocked 10.0.1.11 → 10.0.3.10:3306/TCP found through the log search), the export, a second
//! deep link into the open tab, job 2 (prod's subnet matrix), job 3 (prod's inbound and outbound
//! totals against the records), the rules, a monitoring switch with the admin token, explain of
//! an ICMP flow and of a flow with "any" protocol, the page at 420 px and in the system's dark theme. Screenshots of every view go to
//! `target/test-artifacts/console-*.png`.
//!
//! chromedriver and Chromium are Debian's `chromium-driver` and `chromium` (`make setup-test`).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const TOKEN: &str = "local-token-0123456789";
const ADMIN: &str = "console-admin-token-0123";
const DAY: &str = "since=2025-11-24T00:00:00Z&until=2025-11-25T00:00:00Z";

/// chromedriver on an ephemeral port, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a port that was free a moment ago (it exits if another process took the port
/// in between: the caller starts another).
fn driver_on_free_port() -> (Driver, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Driver(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed: run `make setup-test` (Debian package `chromium-driver`)"),
    );
    (driver, port)
}

/// A Chromium session through a new chromedriver, with `extra` Chromium arguments.
async fn browser(extra: &[&str]) -> (Driver, Client) {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("Chromium is not installed: run `make setup-test`");
    let args = [
        [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,1400",
        ]
        .as_slice(),
        extra,
    ]
    .concat();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": args}),
    );
    let (mut driver, mut port) = driver_on_free_port();
    let mut restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // chromedriver speaks plain HTTP on the loopback: no TLS.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let connected = ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match connected {
            Ok(client) => return (driver, client),
            // chromedriver exited: its port was taken before it bound it.
            Err(_) if restarts < 3 && driver.0.try_wait().unwrap().is_some() => {
                (driver, port) = driver_on_free_port();
                restarts += 1;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(err) => panic!("no WebDriver session: {err}"),
        }
    }
}

/// The first element matching `css`, waiting up to 20 s for it.
async fn find(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("{css}: {err}"))
}

/// Waits until the view the last action started has loaded: the page counts the views it starts
/// (`body[data-generation]`) and marks the latest one done (`data-ready=true`); a view marked
/// `data-seen` (by a previous `ready`, or by `click` before it acts) does not count, and a page
/// loaded anew has none.
async fn ready(client: &Client) {
    let script = "const b = document.body; \
        if (b.dataset.ready === 'true' && b.dataset.generation !== b.dataset.seen) { \
            b.dataset.seen = b.dataset.generation; return true; } \
        return false;";
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.execute(script, vec![]).await.unwrap() != json!(true) {
        assert!(
            Instant::now() < deadline,
            "the view did not load within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn screenshot(client: &Client, name: &str) {
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = client.screenshot().await.unwrap();
    assert!(png.len() > 10_000, "{name}: an empty screenshot");
    std::fs::write(artifacts.join(format!("console-{name}.png")), png).unwrap();
}

/// Clicks the first element matching `css`, waiting for it. The view shown before the click is
/// marked seen first, so a `ready` after it waits for the view the click starts.
async fn click(client: &Client, css: &str) {
    let element = find(client, css).await;
    client
        .execute(
            "document.body.dataset.seen = document.body.dataset.generation;",
            vec![],
        )
        .await
        .unwrap();
    element.click().await.unwrap();
}

async fn attribute(element: &fantoccini::elements::Element, name: &str) -> String {
    element.attr(name).await.unwrap().unwrap_or_default()
}

async fn hash(client: &Client) -> String {
    client
        .current_url()
        .await
        .unwrap()
        .fragment()
        .unwrap_or("")
        .to_string()
}

/// The sum of column `nth` (from 1) over the rows `rows` matches, as the page writes numbers.
async fn column_sum(client: &Client, rows: &str, nth: usize) -> u64 {
    let mut sum = 0;
    for row in client.find_all(Locator::Css(rows)).await.unwrap() {
        let cell = row
            .find(Locator::Css(&format!("td:nth-child({nth})")))
            .await
            .unwrap();
        sum += cell
            .text()
            .await
            .unwrap()
            .replace(',', "")
            .parse::<u64>()
            .unwrap();
    }
    sum
}

/// Types `text` into the token dialog's `field` and saves.
async fn enter_token(client: &Client, field: &str, text: &str) {
    let input = find(client, &format!("#token-dialog[open] input[name={field}]")).await;
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
    click(client, "#token-form button[value=save]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_jobs_in_the_console() {
    // The sample through the real audit function into the store, as `make run` does.
    let scratch = common::scratch("console");
    let dir = scratch.path().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let (records, store, snapshot) = (
        dir.join("records.jsonl"),
        dir.join("esgflow.db"),
        dir.join("snapshot.json"),
    );
    std::fs::copy(common::sample_snapshot(), &snapshot).unwrap();
    let replay = Command::new(env!("CARGO_BIN_EXE_esgflow"))
        .arg("replay")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/flowlogs.txt"))
        .arg("--snapshot")
        .arg(&snapshot)
        .arg("--records")
        .arg(&records)
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    assert!(replay.status.success(), "{replay:?}");
    let written: Vec<Value> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (_serve, addr) = common::serve::start_serve(&[
        std::ffi::OsStr::new("--store"),
        store.as_os_str(),
        std::ffi::OsStr::new("--snapshot"),
        snapshot.as_os_str(),
        std::ffi::OsStr::new("--admin-token"),
        std::ffi::OsStr::new(ADMIN),
    ]);
    let (_driver, client) = browser(&[]).await;
    let base = format!("http://{addr}/");

    // Job 1. The page asks for the token first; the search form is filled and sent.
    client.goto(&format!("{base}#/hits?{DAY}")).await.unwrap();
    enter_token(&client, "token", TOKEN).await;
    ready(&client).await;
    // First paint, reported (a figure, not a timed assertion).
    let paint = client
        .execute(
            "const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null",
            vec![],
        )
        .await
        .unwrap();
    eprintln!("console first contentful paint: {paint} ms");
    for (name, value) in [("src", "10.0.1.11"), ("dst", "10.0.3.10"), ("port", "3306")] {
        find(&client, &format!("#search input[name={name}]"))
            .await
            .send_keys(value)
            .await
            .unwrap();
    }
    click(&client, "#search select[name=protocol] option[value=tcp]").await;
    click(&client, "#search button[type=submit]").await;
    ready(&client).await;
    // Focus stays on the search button after the search (#37).
    let focused = client
        .execute("return document.activeElement.closest('#search') !== null && document.activeElement.type", vec![])
        .await
        .unwrap();
    assert_eq!(focused, json!("submit"), "focus after a search");
    let rows = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#hits tbody tr"))
        .await
        .map(|_| ())
        .ok();
    assert!(rows.is_some(), "no hit rows for the job-1 search");
    let rows = client
        .find_all(Locator::Css("#hits tbody tr"))
        .await
        .unwrap();
    let expected = written
        .iter()
        .filter(|r| {
            matches!(r["record_type"].as_str(), Some("block_hit" | "observe_hit"))
                && r["src_ip"] == "10.0.1.11"
                && r["dst_ip"] == "10.0.3.10"
                && r["dst_port"] == 3306
        })
        .count();
    assert_eq!(rows.len(), expected, "one row per matching record");
    let blocked: Vec<String> = {
        let mut rules = Vec::new();
        for row in &rows {
            rules.push(attribute(row, "data-rule").await);
        }
        rules
    };
    assert!(blocked.iter().any(|r| r == "7010"), "{blocked:?}");
    let fragment = hash(&client).await;
    assert!(
        fragment.contains("src=10.0.1.11") && fragment.contains("port=3306"),
        "the filter lives in the address: {fragment}"
    );
    assert!(!fragment.contains("token"), "{fragment}");
    // The table is one tab stop; the arrow keys move between its rows (#37).
    let stops = client
        .execute("return [...document.querySelectorAll('#hits tbody tr')].filter((r) => r.tabIndex === 0).length", vec![])
        .await
        .unwrap();
    assert_eq!(stops, json!(1), "one tab stop per table");
    if rows.len() > 1 {
        let moved = client
            .execute("const rows = document.querySelectorAll('#hits tbody tr'); rows[0].focus(); \
                rows[0].dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowDown', bubbles: true})); \
                return document.activeElement === rows[1] && rows[1].tabIndex === 0 && rows[0].tabIndex === -1", vec![])
            .await
            .unwrap();
        assert_eq!(moved, json!(true), "ArrowDown moves to the next row");
    }
    click(&client, "#hits tbody tr[data-rule='7010']").await;
    let verdict = find(&client, "#detail #explanation #verdict").await;
    assert_eq!(verdict.text().await.unwrap(), "Blocked");
    // The opened record is in the address: the link, opened anew, shows it (#37).
    let opened = hash(&client).await;
    assert!(
        opened.contains("record=") && opened.contains("at="),
        "{opened}"
    );
    client.goto(&format!("{base}#/explain")).await.unwrap();
    ready(&client).await;
    client.goto(&format!("{base}#{opened}")).await.unwrap();
    ready(&client).await;
    let verdict = find(&client, "#detail #explanation #verdict").await;
    assert_eq!(
        verdict.text().await.unwrap(),
        "Blocked",
        "the record from the link"
    );
    find(&client, "#hits tbody tr.selected[data-rule='7010']").await;
    let detail = find(&client, "#detail").await.text().await.unwrap();
    assert!(
        detail.contains("by rule 7010") && detail.contains("block other data-tier access"),
        "{detail}"
    );
    assert!(
        detail.contains("template ipmg-data0001"),
        "the rule's destination: {detail}"
    );
    screenshot(&client, "flow-log").await;

    // The export of the search: every record, as a download.
    click(&client, "#export-csv").await;
    let exported = find(&client, "#export-status[data-exported]").await;
    assert_eq!(
        attribute(&exported, "data-exported").await,
        expected.to_string()
    );

    // A record where the flow log and the rules disagree says both (#37): the snapshot blocks
    // the flow, the flow log says ACCEPT.
    client
        .goto(&format!("{base}#/hits?type=snapshot_drift&{DAY}"))
        .await
        .unwrap();
    ready(&client).await;
    click(&client, "#hits tbody tr").await;
    let verdict = find(&client, "#detail #explanation #verdict.warn").await;
    let text = verdict.text().await.unwrap();
    assert!(
        text.contains("block this flow") && text.contains("yet the flow log says ACCEPT"),
        "{text}"
    );
    screenshot(&client, "drift").await;
    // A search that finds nothing of its ticked types says which unticked type would (#37).
    client
        .goto(&format!(
            "{base}#/hits?protocol=icmp&type=observe_hit&{DAY}"
        ))
        .await
        .unwrap();
    ready(&client).await;
    let hint = find(&client, "#unticked-hint").await.text().await.unwrap();
    assert!(hint.contains("\"Blocked\""), "{hint}");
    // An ICMP record shows its type and code, not ports.
    client
        .goto(&format!("{base}#/hits?protocol=icmp&type=block_hit&{DAY}"))
        .await
        .unwrap();
    ready(&client).await;
    click(&client, "#hits tbody tr").await;
    find(&client, "#detail #explanation").await;
    let detail = find(&client, "#detail").await.text().await.unwrap();
    assert!(detail.contains("ICMP type "), "{detail}");

    // The default range (the last 24 hours) holds nothing of the sample: the page says where
    // its records are and goes there (#37).
    client
        .goto(&format!("{base}#/hits?rule=7010&type=block_hit"))
        .await
        .unwrap();
    ready(&client).await;
    let hint = find(&client, "#elsewhere-hint").await.text().await.unwrap();
    assert!(hint.contains("the newest is from"), "{hint}");
    click(&client, "#go-elsewhere").await;
    ready(&client).await;
    find(&client, "#hits tbody tr[data-rule='7010']").await;

    // A second deep link pasted into the open tab: all block hits of rule 7010.
    client
        .goto(&format!("{base}#/hits?rule=7010&type=block_hit&{DAY}"))
        .await
        .unwrap();
    ready(&client).await;
    find(&client, "#hits tbody tr").await;
    let rule_field = find(&client, "#search input[name=rule]").await;
    assert_eq!(
        rule_field.prop("value").await.unwrap().as_deref(),
        Some("7010")
    );
    for row in client
        .find_all(Locator::Css("#hits tbody tr"))
        .await
        .unwrap()
    {
        assert_eq!(attribute(&row, "data-rule").await, "7010");
    }
    let rule_hits = written
        .iter()
        .filter(|r| r["record_type"] == "block_hit" && r["rule_uuid"] == "7010")
        .count();
    let count = find(&client, "#hits-count").await.text().await.unwrap();
    assert!(
        count.starts_with(&format!("{rule_hits} record")),
        "{count} (expected {rule_hits})"
    );

    // Job 2: prod's subnet matrix, reached through the navigation. On the default range (the
    // last 24 hours) the page says where the VPC's records are and goes there (#37).
    client.goto(&format!("{base}#/traffic")).await.unwrap();
    ready(&client).await;
    let hint = find(&client, "#traffic-empty #elsewhere-hint")
        .await
        .text()
        .await
        .unwrap();
    assert!(hint.contains("the newest is from"), "{hint}");
    client.goto(&format!("{base}#/hits?{DAY}")).await.unwrap();
    ready(&client).await;
    click(&client, "nav a[data-view=traffic]").await;
    ready(&client).await;
    click(&client, "#traffic-vpc option[value='vpc-prod0001']").await;
    ready(&client).await;
    click(&client, ".tabs button[data-scope='inter_subnet']").await;
    ready(&client).await;
    let cells = client
        .find_all(Locator::Css("#matrix td[data-flows]"))
        .await
        .unwrap();
    assert!(!cells.is_empty(), "the matrix has cells");
    for cell in &cells {
        assert_ne!(
            attribute(cell, "data-src").await,
            attribute(cell, "data-dst").await
        );
    }
    // Rows and columns in one order: by name, the outside last (#37).
    let headers = |css: &'static str| {
        let client = client.clone();
        async move {
            let mut names = Vec::new();
            for th in client.find_all(Locator::Css(css)).await.unwrap() {
                names.push(th.text().await.unwrap());
            }
            names
        }
    };
    let columns = headers("#matrix tr:first-child th.num").await;
    let rows = headers("#matrix tr + tr > th").await;
    let order = |names: &[String]| {
        let mut sorted = names.to_vec();
        sorted.sort_by_key(|n| (n.starts_with("outside"), n.to_lowercase()));
        sorted
    };
    assert_eq!(columns, order(&columns), "columns in order");
    assert_eq!(rows, order(&rows), "rows in order");
    // A cell drills down to its host pairs, with the hosts' names (#37).
    click(&client, "#matrix td[data-src^='app'][data-dst^='db'] a").await;
    ready(&client).await;
    let cell = find(&client, "#cell h2").await.text().await.unwrap();
    assert!(cell.starts_with("app") && cell.contains("→ db"), "{cell}");
    let pairs = client
        .find_all(Locator::Css("#talkers tbody tr"))
        .await
        .unwrap();
    assert!(!pairs.is_empty());
    for pair in &pairs {
        let text = pair.text().await.unwrap();
        assert!(
            text.contains("(app-") && text.matches(" (").count() >= 2,
            "a host pair with names: {text}"
        );
    }
    let address = hash(&client).await;
    assert!(
        address.contains("src_subnet=subnet-app00001")
            && address.contains("dst_subnet=subnet-db000001"),
        "{address}"
    );
    screenshot(&client, "traffic-cell").await;
    client.back().await.unwrap();
    ready(&client).await;
    find(&client, "#series rect").await;
    find(&client, "#connections rect.total").await;
    client
        .execute("document.getElementById('series').scrollIntoView()", vec![])
        .await
        .unwrap();
    screenshot(&client, "traffic-charts").await;
    client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    screenshot(&client, "traffic-matrix").await;

    // Job 3: prod's inbound and outbound totals, against the records.
    click(&client, ".tabs button[data-scope='']").await;
    ready(&client).await;
    for scope in ["vpc_inbound", "vpc_outbound"] {
        let flows: u64 = written
            .iter()
            .filter(|r| {
                r["record_type"] == "traffic"
                    && r["scope"] == scope
                    && (r["src_vpc"] == "vpc-prod0001" || r["dst_vpc"] == "vpc-prod0001")
            })
            .map(|r| r["flows"].as_u64().unwrap())
            .sum();
        assert!(flows > 0, "the sample has {scope} traffic in prod");
        let card = find(&client, &format!("#totals .card[data-scope='{scope}']")).await;
        assert_eq!(
            attribute(&card, "data-flows").await,
            flows.to_string(),
            "{scope}"
        );
    }
    find(&client, "#talkers tr td").await;
    screenshot(&client, "traffic").await;
    // The talkers page on: the next page starts with the 21st (#37).
    let first = find(&client, "#talkers tbody tr")
        .await
        .text()
        .await
        .unwrap();
    click(&client, "#talkers-next").await;
    ready(&client).await;
    assert!(hash(&client).await.contains("talkers_offset=20"));
    let next = find(&client, "#talkers tbody tr")
        .await
        .text()
        .await
        .unwrap();
    assert_ne!(first, next, "another page");
    click(&client, "#talkers-previous").await;
    ready(&client).await;
    assert_eq!(
        find(&client, "#talkers tbody tr")
            .await
            .text()
            .await
            .unwrap(),
        first
    );
    // Where prod's inbound traffic comes from, grouped by network, against the records (#37).
    click(&client, ".tabs button[data-scope='vpc_inbound']").await;
    ready(&client).await;
    let groups = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#peer-groups tbody tr"))
        .await;
    assert!(groups.is_ok(), "no peer groups");
    let grouped = column_sum(&client, "#peer-groups tbody tr", 5).await;
    let inbound: u64 = written
        .iter()
        .filter(|r| {
            r["record_type"] == "traffic"
                && r["scope"] == "vpc_inbound"
                && r["dst_vpc"] == "vpc-prod0001"
        })
        .map(|r| r["flows"].as_u64().unwrap())
        .sum();
    assert_eq!(grouped, inbound, "every inbound flow is in one group");
    screenshot(&client, "traffic-peers").await;
    // The same traffic by instance pair: the pairs' flows add up to the inbound total too.
    find(&client, "#instance-pairs tbody tr").await;
    let paired = column_sum(&client, "#instance-pairs tbody tr", 4).await;
    let note = find(&client, "#instances p.muted")
        .await
        .text()
        .await
        .unwrap();
    let next = find(&client, "#instances-next").await;
    assert_eq!(
        next.attr("disabled").await.unwrap().as_deref(),
        Some("true"),
        "the sample's pairs fit one page: {note}"
    );
    assert_eq!(paired, inbound, "every inbound flow is in one pair: {note}");
    // Every row listed is exported.
    click(&client, "#export-instances").await;
    let rows = client
        .find_all(Locator::Css("#instance-pairs tbody tr"))
        .await
        .unwrap()
        .len();
    let exported = find(&client, "#instance-pairs[data-exported]").await;
    assert_eq!(
        attribute(&exported, "data-exported").await,
        rows.to_string()
    );

    // Rules, counted over the range in the header (the sample's day), with the hits link.
    click(&client, "nav a[data-view=rules]").await;
    ready(&client).await;
    find(&client, "#rules tr[data-rule='7010'] a").await;
    screenshot(&client, "rules").await;
    // Sorted by hits, the rule that blocked job 1 is among the first; unused ones are filtered.
    click(
        &client,
        "#rule-filters select[name=sort] option[value=hits]",
    )
    .await;
    ready(&client).await;
    let first = find(&client, "#rules tbody tr").await;
    let most: u64 = first
        .find(Locator::Css("td:nth-child(5)"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(most > 0, "the rule with the most hits in the day has hits");
    click(&client, ".tabs button[data-only='unused']").await;
    ready(&client).await;
    for row in client
        .find_all(Locator::Css("#rules tbody tr"))
        .await
        .unwrap()
    {
        assert_ne!(
            attribute(&row, "data-rule").await,
            "7010",
            "7010 blocked flows in the day"
        );
    }
    // A rule opened in full: its templates with their names and members.
    client
        .goto(&format!("{base}#/rules?rule=7010&{DAY}"))
        .await
        .unwrap();
    ready(&client).await;
    let template = find(
        &client,
        "#rule-detail #rule-templates tr[data-template='ipmg-data0001']",
    )
    .await;
    let text = template.text().await.unwrap();
    assert!(
        text.contains("data tier") && text.contains("ipm-db000001"),
        "{text}"
    );
    let detail = find(&client, "#rule-detail").await.text().await.unwrap();
    assert!(
        detail.contains("mysql hosts") && detail.contains("10.0.3.10"),
        "{detail}"
    );
    screenshot(&client, "rule").await;
    click(&client, "nav a[data-view=rules]").await;
    ready(&client).await;
    find(&client, "#rules tr[data-rule='7008'] a.whatif").await;

    // What-if from a rule (#38): without 7008 (app → db 3306, accept), the app hosts' database
    // conversations of the range would be blocked (by 7010), named; each observe rule as a drop
    // rule beside it.
    click(&client, "#rules tr[data-rule='7008'] a.whatif").await;
    ready(&client).await;
    let blocked = find(&client, "#whatif-classes tr[data-outcome='newly_blocked']").await;
    let text = blocked.text().await.unwrap();
    assert!(text.contains("app-"), "{text}");
    let first = find(&client, "#whatif-changed tr[data-outcome='newly_blocked']").await;
    let text = first.text().await.unwrap();
    assert!(
        text.contains("allow (7008)") && text.contains("block (7010)"),
        "{text}"
    );
    let address = hash(&client).await;
    assert!(
        address.contains("rule=7008") && address.contains("op=remove"),
        "the change is in the address: {address}"
    );
    find(&client, "#observe-rules tr[data-rule='7007']").await;
    screenshot(&client, "whatif").await;
    // The narrower form of 7008, tried: nothing of the range changes.
    click(&client, "#try-narrower").await;
    ready(&client).await;
    let summary = find(&client, "#whatif-summary").await;
    let text = summary.text().await.unwrap();
    assert!(text.contains("none would change"), "{text}");
    assert!(hash(&client).await.contains("op=match"));
    screenshot(&client, "whatif-narrower").await;

    // VPCs: switch prod off with the admin token; the switch is saved beside the snapshot.
    click(&client, "nav a[data-view=vpcs]").await;
    ready(&client).await;
    find(
        &client,
        "#vpcs tr[data-vpc='vpc-prod0001'][data-monitored='true']",
    )
    .await;
    click(&client, "#token-button").await;
    enter_token(&client, "admin", ADMIN).await;
    ready(&client).await;
    click(&client, "#vpcs button[data-vpc='vpc-prod0001']").await;
    // Nothing changes before it is confirmed: what the audit will do, from when, who (#37).
    let effect = find(&client, "#switch-confirm #switch-effect")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        effect.contains("writes no records") && effect.starts_with("By "),
        "{effect}"
    );
    find(
        &client,
        "#vpcs tr[data-vpc='vpc-prod0001'][data-monitored='true']",
    )
    .await;
    find(&client, "#switch-confirm input[name=by]")
        .await
        .send_keys("Li Wei")
        .await
        .unwrap();
    click(&client, "#switch-yes").await;
    let row = find(
        &client,
        "#vpcs tr[data-vpc='vpc-prod0001'][data-monitored='false']",
    )
    .await;
    let text = row.text().await.unwrap();
    assert!(text.contains("by Li Wei"), "who changed it: {text}");
    let saved = find(&client, "#vpcs tr[data-vpc='vpc-prod0001'] .switch-status").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !saved
        .text()
        .await
        .unwrap()
        .starts_with("saved: in effect by")
    {
        assert!(Instant::now() < deadline, "no saved note");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let switches: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("snapshot.monitoring.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(switches["vpcs"]["vpc-prod0001"], false, "{switches}");
    screenshot(&client, "vpcs").await;

    // Explain an ICMP flow (the protocol list has ICMPv6 too).
    client
        .goto(&format!(
            "{base}#/explain?src=10.0.1.11&dst=10.0.3.10&protocol=icmp"
        ))
        .await
        .unwrap();
    ready(&client).await;
    find(
        &client,
        "#explain select[name=protocol] option[value=icmpv6]",
    )
    .await;
    let verdict = find(&client, "#result #verdict")
        .await
        .text()
        .await
        .unwrap();
    assert!(!verdict.is_empty());
    assert!(client
        .find_all(Locator::Css("#result .error"))
        .await
        .unwrap()
        .is_empty());
    find(&client, "body[data-chart='loaded']").await;
    screenshot(&client, "explain").await;

    // A flow no rule decides walks every rule: the disabled ones are folded, counted (#37).
    client
        .goto(&format!(
            "{base}#/explain?src=192.0.2.1&dst=198.51.100.1&protocol=udp&port=9"
        ))
        .await
        .unwrap();
    ready(&client).await;
    let folded = find(&client, "#result #folded-steps")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(folded, "2 disabled rules skipped");
    assert!(client
        .find_all(Locator::Css(
            "#explanation > .scroll tr[data-outcome='disabled']"
        ))
        .await
        .unwrap()
        .is_empty());

    // "Any" protocol: the flow explained once per protocol, side by side (TCP to 3306 is blocked
    // by 7010).
    client
        .goto(&format!(
            "{base}#/explain?src=10.0.1.11&dst=10.0.3.10&protocol=any&port=3306"
        ))
        .await
        .unwrap();
    ready(&client).await;
    let tcp = find(&client, "#per-protocol tr[data-protocol='tcp']").await;
    assert_eq!(attribute(&tcp, "data-decision").await, "block");
    assert!(tcp.text().await.unwrap().contains("7010"));
    for protocol in ["udp", "icmp", "icmpv6"] {
        find(
            &client,
            &format!("#per-protocol tr[data-protocol='{protocol}']"),
        )
        .await;
    }
    screenshot(&client, "explain-any").await;

    // 420 px wide: nothing but the tables scrolls sideways.
    client.set_window_size(420, 900).await.unwrap();
    client
        .goto(&format!("{base}#/hits?rule=7010&type=block_hit&{DAY}"))
        .await
        .unwrap();
    ready(&client).await;
    find(&client, "#hits tbody tr").await;
    let width = client
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .unwrap();
    assert!(
        width.as_u64().unwrap() <= 420,
        "the page is {width} px wide at 420 px"
    );
    screenshot(&client, "narrow").await;

    client.close().await.unwrap();

    // The system's dark theme is followed.
    let (_dark_driver, dark) = browser(&["--force-dark-mode"]).await;
    dark.goto(&format!("{base}#/hits?rule=7010&type=block_hit&{DAY}"))
        .await
        .unwrap();
    enter_token(&dark, "token", TOKEN).await;
    ready(&dark).await;
    find(&dark, "#hits tbody tr").await;
    let background = dark
        .execute(
            "return getComputedStyle(document.body).backgroundColor",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(background, json!("rgb(18, 22, 28)"), "the dark background");
    screenshot(&dark, "dark").await;
    dark.close().await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}

/// Milliseconds from a view's start (`location.hash` set) to its first result drawn.
async fn time_view(client: &Client, base: &str, fragment: &str, result: &str) -> f64 {
    // From another view first (an address of its own each time, so the page draws it).
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    client
        .goto(&format!("{base}#/explain?n={nonce}"))
        .await
        .unwrap();
    ready(client).await;
    let started = Instant::now();
    client.goto(&format!("{base}#{fragment}")).await.unwrap();
    ready(client).await;
    find(client, result).await;
    started.elapsed().as_secs_f64() * 1000.0
}

/// The three jobs on the reference account's data (60 VPCs, 20,000 rules, 100,000 lines of its
/// day replayed into the local store), as a user does them, with the time each view takes to
/// its first result printed (`make test-long`; screenshots `console-reference-*.png`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by `make test-long`"]
async fn the_three_jobs_on_the_reference_account() {
    let scratch = common::scratch("console-reference");
    let dir = scratch.path().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let (snapshot, flowlog, records, store) = (
        dir.join("snapshot.json"),
        dir.join("day.txt"),
        dir.join("records.jsonl"),
        dir.join("esgflow.db"),
    );
    let esgflow = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_esgflow"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    esgflow(&[
        "synthetic".as_ref(),
        "--flows".as_ref(),
        "100000".as_ref(),
        "--snapshot".as_ref(),
        snapshot.as_os_str(),
        "--flowlog".as_ref(),
        flowlog.as_os_str(),
    ]);
    esgflow(&[
        "replay".as_ref(),
        flowlog.as_os_str(),
        "--snapshot".as_ref(),
        snapshot.as_os_str(),
        "--records".as_ref(),
        records.as_os_str(),
        "--store".as_ref(),
        store.as_os_str(),
    ]);
    let written: Vec<Value> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let blocked = written
        .iter()
        .find(|r| r["record_type"] == "block_hit" && r["src_vpc"].is_string())
        .expect("the reference day has blocked flows");
    let time = blocked["time"].as_i64().unwrap();
    let range = format!("since={}&until={}", time - 43_200, time + 43_200);
    let (_serve, addr) = common::serve::start_serve(&[
        std::ffi::OsStr::new("--store"),
        store.as_os_str(),
        std::ffi::OsStr::new("--snapshot"),
        snapshot.as_os_str(),
    ]);
    let (_driver, client) = browser(&[]).await;
    let base = format!("http://{addr}/");
    client.goto(&format!("{base}#/explain")).await.unwrap();
    enter_token(&client, "token", TOKEN).await;
    ready(&client).await;

    // Job 1: the blocked connection, by source and destination; the record names its rule.
    let (src, dst, rule) = (
        blocked["src_ip"].as_str().unwrap(),
        blocked["dst_ip"].as_str().unwrap(),
        blocked["rule_uuid"].as_str().unwrap(),
    );
    let job1 = time_view(
        &client,
        &base,
        &format!("/hits?src={src}&dst={dst}&type=block_hit&{range}"),
        "#hits tbody tr",
    )
    .await;
    let row = find(&client, &format!("#hits tbody tr[data-rule='{rule}']")).await;
    row.click().await.unwrap();
    let verdict = find(&client, "#detail #explanation #verdict").await;
    assert!(!verdict.text().await.unwrap().is_empty());
    screenshot(&client, "reference-flow-log").await;

    // Job 2: the VPC's traffic between its subnets, the matrix, a cell's host pairs.
    let vpc = blocked["src_vpc"].as_str().unwrap();
    let job2 = time_view(
        &client,
        &base,
        &format!("/traffic?vpc={vpc}&scope=inter_subnet&{range}"),
        "#matrix td[data-flows]",
    )
    .await;
    click(&client, "#matrix td[data-flows] a").await;
    ready(&client).await;
    find(&client, "#cell").await;
    find(&client, "#talkers tbody tr").await;
    screenshot(&client, "reference-traffic").await;

    // Job 3: its inbound private traffic.
    let job3 = time_view(
        &client,
        &base,
        &format!("/traffic?vpc={vpc}&scope=vpc_inbound&{range}"),
        "#totals .card[data-scope='vpc_inbound']",
    )
    .await;
    // The rules over the range, most hits first.
    let rules = time_view(
        &client,
        &base,
        &format!("/rules?sort=hits&{range}"),
        "#rules tbody tr",
    )
    .await;
    screenshot(&client, "reference-rules").await;
    eprintln!(
        "reference account, {} records: time to first result — job 1 {job1:.0} ms, job 2 {job2:.0} ms, job 3 {job3:.0} ms, rules by hits {rules:.0} ms",
        written.len()
    );
    client.close().await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}
