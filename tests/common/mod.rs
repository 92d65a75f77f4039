//! Shared helpers for the end-to-end tests: the real function binaries, real-shaped events.

#![allow(dead_code)]

pub use esgflow_local::standins::cls as cls_stub;

pub mod serve;

use std::path::PathBuf;
use std::sync::OnceLock;

use esgflow_local::emulator::{Emulator, FunctionSpec, Output};

/// The directory cargo put this package's binaries in (target/debug).
pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_esgflow"))
        .parent()
        .expect("binaries live in a directory")
        .to_path_buf()
}

/// Path to a function binary, built (once per test process) with the same cargo and profile
/// that built the tests, so the tests never run a stale binary.
pub fn function_binary(function: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        // The same selection `make test` builds with: the three packages alone (or the binaries
        // without the tests) would unify features differently and compile the shared crate and
        // its dependencies a second time.
        let status = cargo()
            .args(["build", "--quiet", "--workspace", "--bins", "--tests"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the function binaries failed");
    });
    esgflow_local::emulator::functions::binary_path(&bin_dir(), function)
}

/// A cargo command in the workspace root, without the `CARGO_*` variables cargo sets for a
/// test process: build scripts watch some of them, and inheriting them would make every nested
/// build look dirty and recompile from scratch.
pub fn cargo() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO"));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let keep = matches!(
            key.as_ref(),
            "CARGO_HOME" | "CARGO_TARGET_DIR" | "CARGO_INCREMENTAL"
        );
        if (key.starts_with("CARGO_") && !keep) || key == "OUT_DIR" || key.starts_with("RUSTC") {
            command.env_remove(key.as_ref());
        }
    }
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// A new empty directory of the test's own, removed when the guard is dropped.
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("esgflow-{name}-"))
        .tempdir()
        .expect("a temporary directory")
}

/// The bundled sample snapshot.
pub fn sample_snapshot() -> String {
    format!("{}/samples/snapshot.json", env!("CARGO_MANIFEST_DIR"))
}

/// The bundled exports of the cfw/vpc APIs (what the cloud stand-in serves).
pub fn sample_exports() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/export")
}

/// The local cfw/vpc/COS stand-in serving the bundled exports.
pub async fn cloud_stub() -> esgflow_local::standins::cloud::CloudStub {
    esgflow_local::standins::cloud::CloudStub::start(
        esgflow_local::standins::cloud::load_exports(&sample_exports()).unwrap(),
    )
    .await
    .unwrap()
}

/// A Timer trigger event, as SCF sends it.
pub fn timer_event() -> Vec<u8> {
    serde_json::json!({"Type": "Timer", "TriggerName": "every-5-min", "Time": "2026-11-24T05:00:00Z", "Message": ""})
        .to_string()
        .into_bytes()
}

/// Runs the sync function once against `store` (the stand-in), publishing the sample snapshot
/// at `location`.
pub async fn publish_with_sync(store: &esgflow_local::standins::cloud::CloudStub, location: &str) {
    let mut env = store.env();
    env.push(("ESGFLOW_SNAPSHOT".into(), location.into()));
    let mut sync = emulator_with("sync", env).await;
    let run = sync.invoke(timer_event()).await.unwrap();
    assert!(run.result.is_response(), "{}", run.result.json());
}

/// Judges flow-log `lines` with the real audit function, writing its records to `stub`'s
/// `topic-hits` and `topic-traffic`.
pub async fn audit_into(stub: &cls_stub::ClsStub, lines: &[&str]) {
    let mut audit = emulator_with("audit", stub.env("topic-hits", "topic-traffic")).await;
    let invocation = audit.invoke(cls_event("fl", lines)).await.unwrap();
    assert!(
        invocation.result.is_response(),
        "{}",
        invocation.result.json()
    );
}

/// An emulator for `function` with captured output; the audit function gets the sample
/// snapshot unless `env` names another.
pub async fn emulator(function: &str, env: &[(&str, &str)]) -> Emulator {
    emulator_with(
        function,
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .await
}

/// Like [`emulator`], with owned settings.
pub async fn emulator_with(function: &str, mut env: Vec<(String, String)>) -> Emulator {
    let mut spec = FunctionSpec::new(function, function_binary(function));
    spec.output = Output::Capture;
    // Generous, so a slow, loaded CI machine never turns retries with backoff into timeouts.
    spec.timeout = std::time::Duration::from_secs(15);
    if function == "audit" && !env.iter().any(|(k, _)| k == "ESGFLOW_SNAPSHOT") {
        env.push(("ESGFLOW_SNAPSHOT".to_string(), sample_snapshot()));
    }
    spec.env = env;
    Emulator::new(spec).await.expect("the emulator starts")
}

/// Like [`emulator_with`], with the function time limit `timeout`.
pub async fn emulator_timed(
    function: &str,
    env: Vec<(String, String)>,
    timeout: std::time::Duration,
) -> Emulator {
    let mut spec = FunctionSpec::new(function, function_binary(function));
    spec.output = Output::Capture;
    spec.timeout = timeout;
    spec.env = env;
    Emulator::new(spec).await.expect("the emulator starts")
}

/// A flow-log line of the bundled sample moved into the last two hours (the sample's day starts
/// at 1763942400), for searches whose window ends now.
pub fn recent(line: &str) -> String {
    let shift = chrono::Utc::now().timestamp() - 7200 - 1_763_942_400;
    let mut fields: Vec<String> = line.split(' ').map(str::to_string).collect();
    for i in [10, 11] {
        if let Some(Ok(t)) = fields.get(i).map(|f| f.parse::<i64>()) {
            fields[i] = (t + shift).to_string();
        }
    }
    fields.join(" ")
}

/// A CLS trigger event holding `records` (content strings), gzip+base64 as CLS ships them.
pub fn cls_event(topic_id: &str, contents: &[&str]) -> Vec<u8> {
    let records: Vec<serde_json::Value> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| serde_json::json!({"timestamp": format!("{}", 1_700_000_000_000_000u64 + i as u64), "content": c}))
        .collect();
    let batch =
        serde_json::json!({"topic_id": topic_id, "topic_name": "flowlog", "records": records});
    esgflow_local::emulator::clsfeed::encode_batch_json(batch.to_string().as_bytes())
}

/// A real `redis-server` on a free 127.0.0.1 port, stopped on drop.
pub struct RedisServer {
    pub port: u16,
    child: std::process::Child,
}

impl RedisServer {
    /// Starts redis on a port that was free a moment ago; if another process took the port in
    /// between (redis then exits), it tries again on another one.
    pub fn start() -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::try_start() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    fn try_start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (make setup-test installs it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(Self { port, child })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
