//! The lookup page in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `make setup-test`) loads `/` from the local HTTP gateway in front of the real lookup binary, the
//! page's explain form is submitted by the page's own code (a `#src=…&dst=…` link fills the
//! form and calls `requestSubmit()`), and the rendered DOM must show the blocking rule and the
//! top-blocking-rules chart. A screenshot is saved to `target/test-artifacts/lookup-page.png`.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

const TOKEN: &str = "browser-test-token-0123";

fn chromium(args: &[String]) -> std::process::Output {
    let binary = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("Chromium is not installed: run `make setup-test` (Debian package `chromium`)");
    Command::new(binary)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--virtual-time-budget=15000",
        ])
        .args(args)
        .output()
        .expect("chromium runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_explains_a_flow_and_charts_the_top_blocking_rules() {
    let stub = common::cls_stub::ClsStub::start(vec![]).await;
    // A flow of ten minutes ago: inside the chart's last 24 hours.
    let end = chrono::Utc::now().timestamp() - 600;
    let line = format!(
        "2 1251762227 eni-web00001 10.0.1.11 10.0.3.10 40001 3306 6 3 180 {} {end} REJECT OK",
        end - 60
    );
    common::audit_into(&stub, &[line.as_str()]).await;
    let mut env = stub.env("topic-hits", "topic-traffic");
    env.push(("ESGFLOW_LOOKUP_TOKEN".into(), TOKEN.into()));
    env.push(("ESGFLOW_SNAPSHOT".into(), common::sample_snapshot()));
    let lookup = common::emulator_with("lookup", env).await;
    let gateway =
        esgflow_local::emulator::gateway::Gateway::start(lookup, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let url = format!(
        "http://{}/#src=10.0.1.11&dst=10.0.3.10&protocol=tcp&port=3306&token={TOKEN}",
        gateway.addr
    );
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("lookup-page.png");
    let _ = std::fs::remove_file(&screenshot);

    let dom_args = vec!["--dump-dom".to_string(), url.clone()];
    let output = tokio::task::spawn_blocking(move || chromium(&dom_args))
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains(r#"data-explained="true""#),
        "the form was not submitted:\n{dom}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        dom.contains(r#"id="verdict""#) && dom.contains("Blocked"),
        "{dom}"
    );
    assert!(dom.contains("by rule 7010"), "{dom}");
    assert!(dom.contains("block other data-tier access"), "{dom}");
    assert!(dom.contains(r#"data-chart="loaded""#), "{dom}");
    assert!(
        dom.contains(r#"data-rule="7010""#),
        "the chart has a bar for 7010:\n{dom}"
    );

    let shot_args = vec![format!("--screenshot={}", screenshot.display()), url];
    let output = tokio::task::spawn_blocking(move || chromium(&shot_args))
        .await
        .unwrap();
    assert!(
        std::fs::metadata(&screenshot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "no screenshot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stub.problems().is_empty(), "{:?}", stub.problems());
}
