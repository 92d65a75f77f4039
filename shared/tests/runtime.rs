//! The runtime loop against a hand-written server that plays SCF's side of the protocol byte by
//! byte, so header spelling and dropped connections are under the test's control.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esgflow::runtime::{service_fn, Diagnostic, Error, LambdaEvent, Runtime, RuntimeApiClient};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: String,
}

struct Event {
    headers: Vec<(&'static str, String)>,
    body: String,
}

#[derive(Default)]
struct ServerState {
    events: Vec<Event>,
    requests: Vec<Request>,
    drop_next_polls: usize,
    served: usize,
}

/// A fake SCF runtime API on 127.0.0.1.
struct FakeScf {
    state: Arc<Mutex<ServerState>>,
    url: String,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl FakeScf {
    async fn start(events: Vec<Event>, drop_next_polls: usize) -> Self {
        Self::start_at("127.0.0.1:0", events, drop_next_polls).await
    }

    async fn start_at(addr: &str, events: Vec<Event>, drop_next_polls: usize) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ServerState {
            events,
            drop_next_polls,
            ..ServerState::default()
        }));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let (accept_state, accept_tasks) = (state.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let task = tokio::spawn(serve(stream, accept_state.clone()));
                accept_tasks.lock().unwrap().push(task);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { state, url, tasks }
    }

    /// Stops listening and drops every open connection, as a restarting runtime API would.
    fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn results(&self) -> Vec<Request> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.path.starts_with("/runtime/invocation/") && r.method == "POST")
            .cloned()
            .collect()
    }

    fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    async fn wait_for_results(&self, count: usize) -> Vec<Request> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let results = self.results();
            if results.len() >= count {
                return results;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} results arrived: {:?}",
                results.len(),
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<ServerState>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut content_length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).await.unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).await.unwrap();
        let body = String::from_utf8_lossy(&body).into_owned();
        state.lock().unwrap().requests.push(Request {
            method: method.clone(),
            path: path.clone(),
            body,
        });
        if path == "/runtime/invocation/next" {
            enum Next {
                Drop,
                Serve(Vec<(&'static str, String)>, String),
                Hold,
            }
            let next = {
                let mut s = state.lock().unwrap();
                if s.drop_next_polls > 0 {
                    s.drop_next_polls -= 1;
                    Next::Drop
                } else if s.served < s.events.len() {
                    s.served += 1;
                    let event = &s.events[s.served - 1];
                    Next::Serve(event.headers.clone(), event.body.clone())
                } else {
                    Next::Hold
                }
            };
            let (headers, body) = match next {
                // Drop the connection without answering.
                Next::Drop => return,
                // No more work: hold the long poll open, as SCF does.
                Next::Hold => std::future::pending::<(Vec<(&str, String)>, String)>().await,
                Next::Serve(headers, body) => (headers, body),
            };
            let mut response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len());
            for (name, value) in headers {
                response.push_str(&format!("{name}: {value}\r\n"));
            }
            response.push_str("\r\n");
            response.push_str(&body);
            write.write_all(response.as_bytes()).await.unwrap();
        } else {
            write
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
        }
    }
}

fn event(request_id: &str, body: &str) -> Event {
    Event {
        headers: vec![
            ("request_id", request_id.to_string()),
            ("memory_limit_in_mb", "128".to_string()),
            ("time_limit_in_ms", "3000".to_string()),
        ],
        body: body.to_string(),
    }
}

#[derive(Deserialize)]
struct Greeting {
    name: String,
    #[serde(default)]
    mode: String,
}

#[derive(Serialize)]
struct Reply {
    message: String,
    request_id: String,
    time_limit_ms: u128,
    memory_mb: u32,
}

async fn greet(event: LambdaEvent<Greeting>) -> Result<Reply, Error> {
    match event.payload.mode.as_str() {
        "fail" => return Err("the name was refused".into()),
        "typed" => {
            return Err(Box::new(Diagnostic::new(
                "SnapshotUnavailable",
                "no snapshot",
            )))
        }
        "panic" => panic!("handler exploded on {}", event.payload.name),
        _ => {}
    }
    Ok(Reply {
        message: format!("hello {}", event.payload.name),
        request_id: event.context.request_id.clone(),
        time_limit_ms: event.context.time_limit.as_millis(),
        memory_mb: event.context.memory_limit_mb,
    })
}

async fn serve_events(events: Vec<Event>, drop_next_polls: usize) -> FakeScf {
    let scf = FakeScf::start(events, drop_next_polls).await;
    let client = RuntimeApiClient::with_endpoint(&scf.url);
    tokio::spawn(Runtime::new(client, service_fn(greet)).run());
    scf
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?} is not JSON: {e}"))
}

#[tokio::test]
async fn happy_path_posts_ready_then_the_response() {
    let scf = serve_events(vec![event("req-1", r#"{"name":"esg"}"#)], 0).await;
    let results = scf.wait_for_results(1).await;
    let requests = scf.requests();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/runtime/init/ready");
    assert_eq!(requests[1].path, "/runtime/invocation/next");
    assert_eq!(results[0].path, "/runtime/invocation/response");
    let reply = json(&results[0].body);
    assert_eq!(reply["message"], "hello esg");
    assert_eq!(reply["request_id"], "req-1");
    assert_eq!(reply["time_limit_ms"], 3000);
    assert_eq!(reply["memory_mb"], 128);
    let ready_count = requests
        .iter()
        .filter(|r| r.path == "/runtime/init/ready")
        .count();
    assert_eq!(ready_count, 1);
}

#[tokio::test]
async fn header_names_match_in_any_case() {
    let scf = serve_events(
        vec![Event {
            headers: vec![
                ("Request_Id", "req-CASE".to_string()),
                ("Memory_Limit_In_Mb", "256".to_string()),
                ("TIME_LIMIT_IN_MS", "900000".to_string()),
            ],
            body: r#"{"name":"x"}"#.to_string(),
        }],
        0,
    )
    .await;
    let reply = json(&scf.wait_for_results(1).await[0].body);
    assert_eq!(reply["request_id"], "req-CASE");
    assert_eq!(reply["memory_mb"], 256);
    assert_eq!(reply["time_limit_ms"], 900000);
}

#[tokio::test]
async fn bad_event_names_the_field_and_the_loop_goes_on() {
    let scf = serve_events(
        vec![
            event("bad", r#"{"name": 42}"#),
            event("good", r#"{"name":"after"}"#),
        ],
        0,
    )
    .await;
    let results = scf.wait_for_results(2).await;
    assert_eq!(results[0].path, "/runtime/invocation/error");
    let err = json(&results[0].body);
    assert_eq!(err["errorType"], "InvalidEvent");
    assert!(
        err["errorMessage"].as_str().unwrap().contains("`name`"),
        "{err}"
    );
    assert_eq!(results[1].path, "/runtime/invocation/response");
    assert_eq!(json(&results[1].body)["message"], "hello after");
}

#[tokio::test]
async fn handler_errors_are_posted_as_diagnostics() {
    let scf = serve_events(
        vec![
            event("e1", r#"{"name":"a","mode":"fail"}"#),
            event("e2", r#"{"name":"b","mode":"typed"}"#),
        ],
        0,
    )
    .await;
    let results = scf.wait_for_results(2).await;
    assert!(results
        .iter()
        .all(|r| r.path == "/runtime/invocation/error"));
    assert_eq!(
        json(&results[0].body),
        serde_json::json!({"errorType":"HandlerError","errorMessage":"the name was refused"})
    );
    assert_eq!(json(&results[1].body)["errorType"], "SnapshotUnavailable");
}

#[tokio::test]
async fn a_panic_is_caught_posted_and_the_process_keeps_serving() {
    let scf = serve_events(
        vec![
            event("p1", r#"{"name":"boom","mode":"panic"}"#),
            event("p2", r#"{"name":"still here"}"#),
        ],
        0,
    )
    .await;
    let results = scf.wait_for_results(2).await;
    assert_eq!(results[0].path, "/runtime/invocation/error");
    let err = json(&results[0].body);
    assert_eq!(err["errorType"], "Panic");
    assert!(err["errorMessage"]
        .as_str()
        .unwrap()
        .contains("handler exploded on boom"));
    assert_eq!(json(&results[1].body)["message"], "hello still here");
}

#[tokio::test]
async fn dropped_connections_are_retried_with_backoff_not_a_busy_loop() {
    let started = Instant::now();
    let scf = serve_events(vec![event("late", r#"{"name":"patient"}"#)], 4).await;
    let results = scf.wait_for_results(1).await;
    assert_eq!(json(&results[0].body)["message"], "hello patient");
    let polls = scf
        .requests()
        .iter()
        .take_while(|r| r.path != "/runtime/invocation/response")
        .filter(|r| r.path == "/runtime/invocation/next")
        .count();
    assert_eq!(polls, 5, "four dropped polls, then one that got the event");
    // Backoff of 50 + 100 + 200 + 400 ms before the fifth poll.
    assert!(
        started.elapsed() >= Duration::from_millis(750),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn each_event_gets_exactly_one_result() {
    let events = (0..20)
        .map(|i| event(&format!("r{i}"), &format!(r#"{{"name":"n{i}"}}"#)))
        .collect();
    let scf = serve_events(events, 0).await;
    let results = scf.wait_for_results(20).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(scf.results().len(), 20);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(json(&result.body)["request_id"], format!("r{i}"));
    }
}

#[tokio::test]
async fn a_restarting_runtime_api_is_waited_for() {
    let first = FakeScf::start(vec![event("before", r#"{"name":"one"}"#)], 0).await;
    let client = RuntimeApiClient::with_endpoint(&first.url);
    tokio::spawn(Runtime::new(client, service_fn(greet)).run());
    assert_eq!(
        json(&first.wait_for_results(1).await[0].body)["message"],
        "hello one"
    );
    // The runtime API goes away (its held /next connection is dropped) and comes back on the
    // same address a moment later; the process keeps polling with backoff and serves the next
    // event without a restart of its own.
    first.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let address = first.url.trim_start_matches("http://").to_string();
    let second = FakeScf::start_at(&address, vec![event("after", r#"{"name":"two"}"#)], 0).await;
    let results = second.wait_for_results(1).await;
    assert_eq!(json(&results[0].body)["message"], "hello two");
    assert!(
        second
            .requests()
            .iter()
            .all(|r| r.path != "/runtime/init/ready"),
        "the process did not start over"
    );
}
