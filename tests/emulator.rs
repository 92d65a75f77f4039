//! The emulator enforces SCF's rules against misbehaving functions, written here as Bash Custom
//! Runtime functions in the style of SCF's own Bash sample (curl against the runtime API).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use esgflow_local::emulator::{Emulator, FunctionSpec, InvocationResult, InvokeError, Output};

fn script(name: &str, body: &str) -> PathBuf {
    let dir = common::scratch("emulator").keep();
    let path = dir.join(name);
    let api = "http://$SCF_RUNTIME_API:$SCF_RUNTIME_API_PORT/runtime";
    std::fs::write(&path, format!("#!/bin/bash\nAPI={api}\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn emulator(name: &str, body: &str, timeout: Duration, init_timeout: Duration) -> Emulator {
    let mut spec = FunctionSpec::new(name, script(name, body));
    spec.timeout = timeout;
    spec.init_timeout = init_timeout;
    spec.output = Output::Capture;
    Emulator::new(spec).await.unwrap()
}

const ECHO_LOOP: &str = r#"
curl -s -X POST -d " " "$API/init/ready"
while true; do
  HEADERS=$(mktemp)
  EVENT=$(curl -s -D "$HEADERS" "$API/invocation/next")
  RID=$(grep -i '^request_id:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)
  LIMIT=$(grep -i '^time_limit_in_ms:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)
  MEM=$(grep -i '^memory_limit_in_mb:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)
  curl -s -X POST -d "{\"event\":$EVENT,\"rid\":\"$RID\",\"limit\":$LIMIT,\"mem\":$MEM,\"fn\":\"$SCF_FUNCTIONNAME\"}" "$API/invocation/response"
done
"#;

#[tokio::test]
async fn serves_the_protocol_with_scf_headers_and_environment() {
    let mut emulator = emulator(
        "echo",
        ECHO_LOOP,
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .await;
    let first = emulator.invoke(&br#"{"n":1}"#[..]).await.unwrap();
    let second = emulator.invoke(&br#"{"n":2}"#[..]).await.unwrap();
    assert!(first.init_duration.is_some());
    assert!(
        second.init_duration.is_none(),
        "the second invocation is warm"
    );
    let reply = first.result.json();
    assert_eq!(reply["event"]["n"], 1);
    assert_eq!(reply["rid"], first.request_id.as_str());
    assert_eq!(reply["limit"], 5000);
    assert_eq!(reply["mem"], 128);
    assert_eq!(reply["fn"], "echo");
    assert_eq!(second.result.json()["event"]["n"], 2);
    assert_ne!(first.request_id, second.request_id);
}

#[tokio::test]
async fn polling_next_twice_in_one_invocation_returns_the_same_event() {
    let body = r#"
curl -s -X POST -d " " "$API/init/ready"
A=$(curl -s "$API/invocation/next")
B=$(curl -s "$API/invocation/next")
curl -s -X POST -d "[$A,$B]" "$API/invocation/response"
curl -s -X POST -d "\"second post\"" "$API/invocation/error"
sleep 30
"#;
    let mut emulator = emulator(
        "twice",
        body,
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .await;
    let invocation = emulator.invoke(&br#"{"same":true}"#[..]).await.unwrap();
    assert_eq!(
        invocation.result.json(),
        serde_json::json!([{"same": true}, {"same": true}])
    );
    assert!(invocation.result.is_response(), "the first result is final");
}

#[tokio::test]
async fn the_time_limit_kills_the_instance_and_the_next_invocation_cold_starts() {
    let body = r#"
curl -s -X POST -d " " "$API/init/ready"
while true; do
  EVENT=$(curl -s "$API/invocation/next")
  if [ "$EVENT" = '"slow"' ]; then sleep 30; fi
  curl -s -X POST -d "$EVENT" "$API/invocation/response"
done
"#;
    let mut emulator = emulator(
        "slow",
        body,
        // Long enough for bash and three curls on a loaded machine; short enough to stay quick.
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
    .await;
    let err = emulator.invoke(&br#""slow""#[..]).await.unwrap_err();
    assert!(matches!(err, InvokeError::Timeout(_)), "{err}");
    assert_eq!(err.scf_status(), 433);
    let after = emulator.invoke(&br#""fast""#[..]).await.unwrap();
    assert!(
        after.init_duration.is_some(),
        "a timed-out instance is recycled"
    );
    assert_eq!(
        after.result,
        InvocationResult::Response(br#""fast""#.to_vec())
    );
}

#[tokio::test]
async fn a_function_that_never_posts_ready_hits_the_init_timeout() {
    let mut emulator = emulator(
        "sleepy",
        "sleep 30",
        Duration::from_secs(1),
        Duration::from_millis(300),
    )
    .await;
    let err = emulator.invoke(&b"{}"[..]).await.unwrap_err();
    assert!(matches!(err, InvokeError::InitTimeout(_)), "{err}");
    assert_eq!(err.scf_status(), 450);
}

#[tokio::test]
async fn a_process_that_exits_mid_invocation_is_reported() {
    let body = r#"
echo "starting" >&2
curl -s -X POST -d " " "$API/init/ready"
curl -s "$API/invocation/next" > /dev/null
exit 3
"#;
    let mut emulator = emulator(
        "crash",
        body,
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .await;
    let err = emulator.invoke(&b"{}"[..]).await.unwrap_err();
    assert!(
        matches!(err, InvokeError::ProcessExited { ref status } if status.contains('3')),
        "{err}"
    );
    assert_eq!(err.scf_status(), 439);
    let logs = emulator
        .logs_once(Duration::from_secs(5), |l| l == "stderr: starting")
        .await;
    assert!(logs.iter().any(|l| l == "stderr: starting"), "{logs:?}");
}

/// A result up to SCF's 6 MB comes back whole (the runtime API once refused anything over
/// 2 MiB and handed the same event back until the time limit); a larger one fails that
/// invocation with `ResponseSizeTooLarge`, and the instance serves the next.
#[tokio::test]
async fn results_up_to_six_megabytes_come_back_and_larger_ones_fail_the_invocation() {
    let body = r#"
curl -s -X POST -d " " "$API/init/ready"
while true; do
  HEADERS=$(mktemp)
  N=$(curl -s -D "$HEADERS" "$API/invocation/next" | tr -dc '0-9')
  OUT=$(mktemp)
  { printf '"'; head -c "$N" /dev/zero | tr '\0' 'a'; printf '"'; } > "$OUT"
  curl -s -X POST --data-binary @"$OUT" "$API/invocation/response"
  rm -f "$OUT" "$HEADERS"
done
"#;
    let mut emulator = emulator("big", body, Duration::from_secs(20), Duration::from_secs(5)).await;
    let big = emulator.invoke(&b"5900000"[..]).await.unwrap();
    let InvocationResult::Response(bytes) = &big.result else {
        panic!("expected a response, got an error: {:?}", big.result.json());
    };
    assert_eq!(bytes.len(), 5_900_002);
    let over = emulator.invoke(&b"6100000"[..]).await.unwrap();
    assert!(!over.result.is_response());
    assert_eq!(over.result.json()["errorType"], "ResponseSizeTooLarge");
    let small = emulator.invoke(&b"3"[..]).await.unwrap();
    assert_eq!(small.result.json(), "aaa");
}
