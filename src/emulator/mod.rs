//! A local SCF emulator: it plays the platform side of the Custom Runtime protocol for one
//! function instance, so the real function binaries run here exactly as on SCF.
//!
//! What it implements (<https://cloud.tencent.com/document/product/583/47274>): `POST /runtime/init/ready`,
//! `GET /runtime/invocation/next` (long poll; headers `request_id`, `memory_limit_in_mb`,
//! `time_limit_in_ms`; polled again mid-invocation it hands back the same event),
//! `POST /runtime/invocation/response|error` (the first result is final). It spawns the binary
//! with SCF's environment (`SCF_RUNTIME_API`, `SCF_RUNTIME_API_PORT`, `SCF_FUNCTIONNAME`, ...),
//! enforces the init timeout and the execution time limit by killing the instance (as SCF does:
//! status 450 and 433), and reports a process that exits (439). One invocation is in flight at a
//! time, as on one SCF instance; the next invocation after a kill cold-starts a new process.

pub mod clsfeed;
pub mod functions;
pub mod gateway;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

/// How to run one function.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Function name (`SCF_FUNCTIONNAME`).
    pub name: String,
    /// The executable (the package's `bootstrap`).
    pub binary: PathBuf,
    /// Function environment variables (settings).
    pub env: Vec<(String, String)>,
    /// Memory limit, MB (`memory_limit_in_mb`).
    pub memory_mb: u32,
    /// Execution time limit (`time_limit_in_ms`).
    pub timeout: Duration,
    /// Init timeout: from process start to `/runtime/init/ready`.
    pub init_timeout: Duration,
    /// Where the function's stdout/stderr go.
    pub output: Output,
}

impl FunctionSpec {
    /// A spec with SCF-like defaults: 128 MB, 3 s timeout, 10 s init timeout, inherited output.
    pub fn new(name: &str, binary: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_string(),
            binary: binary.into(),
            env: Vec::new(),
            memory_mb: 128,
            timeout: Duration::from_secs(3),
            init_timeout: Duration::from_secs(10),
            output: Output::Inherit,
        }
    }
}

/// Where a function's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Straight to this process's stdout/stderr.
    Inherit,
    /// Collected line by line (see [`Emulator::logs`]).
    Capture,
    /// Discarded.
    Discard,
}

/// A finished invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The request id the emulator assigned.
    pub request_id: String,
    /// What the function posted.
    pub result: InvocationResult,
    /// From event handed out to result posted (the instance's ready time excluded).
    pub duration: Duration,
    /// For a cold start: process start → `/runtime/init/ready`.
    pub init_duration: Option<Duration>,
}

/// What the function posted for an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationResult {
    /// Posted to `/runtime/invocation/response`.
    Response(Vec<u8>),
    /// Posted to `/runtime/invocation/error`.
    Error(Vec<u8>),
}

impl InvocationResult {
    /// The posted body, response or error.
    pub fn body(&self) -> &[u8] {
        match self {
            InvocationResult::Response(b) | InvocationResult::Error(b) => b,
        }
    }

    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(self.body()).unwrap_or(serde_json::Value::Null)
    }

    /// Whether this is a response (not an error).
    pub fn is_response(&self) -> bool {
        matches!(self, InvocationResult::Response(_))
    }
}

/// The platform failed the invocation (SCF's status code in brackets).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The binary could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: String,
        /// Why.
        source: std::io::Error,
    },
    /// No `/runtime/init/ready` within the init timeout (SCF 450).
    #[error("init timeout: no /runtime/init/ready within {0:?} [450]")]
    InitTimeout(Duration),
    /// No result within the time limit (SCF 433).
    #[error("execution timeout: no result within {0:?} [433]")]
    Timeout(Duration),
    /// The process exited (SCF 439).
    #[error("function process exited ({status}) [439]")]
    ProcessExited {
        /// Exit status.
        status: String,
    },
}

impl InvokeError {
    /// SCF's status code for this failure.
    pub fn scf_status(&self) -> u16 {
        match self {
            InvokeError::Spawn { .. } => 445,
            InvokeError::InitTimeout(_) => 450,
            InvokeError::Timeout(_) => 433,
            InvokeError::ProcessExited { .. } => 439,
        }
    }
}

struct Pending {
    request_id: String,
    event: Bytes,
    memory_mb: u32,
    timeout: Duration,
    handed_out_at: Mutex<Option<Instant>>,
    result: Mutex<Option<oneshot::Sender<(InvocationResult, Instant)>>>,
}

struct Shared {
    ready: watch::Sender<bool>,
    current: watch::Sender<Option<Arc<Pending>>>,
    logs: Mutex<Vec<String>>,
}

/// One emulated function instance: the runtime API server and (once invoked) the process.
pub struct Emulator {
    spec: FunctionSpec,
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    child: Option<Child>,
    counter: u64,
}

impl Emulator {
    /// Starts the runtime API server on an ephemeral 127.0.0.1 port. The function process starts
    /// at the first invocation (or [`Emulator::start_instance`]).
    pub async fn new(spec: FunctionSpec) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            ready: watch::channel(false).0,
            current: watch::channel(None).0,
            logs: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/runtime/init/ready", post(init_ready))
            .route("/runtime/invocation/next", get(next))
            .route("/runtime/invocation/response", post(respond))
            .route("/runtime/invocation/error", post(fail))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_POSTED_BYTES))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            spec,
            shared,
            addr,
            server,
            child: None,
            counter: 0,
        })
    }

    /// The runtime API address the function is pointed at.
    pub fn runtime_api(&self) -> SocketAddr {
        self.addr
    }

    /// Lines the function wrote, when the spec captures output.
    pub fn logs(&self) -> Vec<String> {
        self.shared.logs.lock().unwrap().clone()
    }

    /// The log lines so far, once one of them satisfies `wanted` or `within` has passed (the
    /// process writes its lines after it answers, so a test that reads them polls): the caller
    /// asserts on what came.
    pub async fn logs_once(&self, within: Duration, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let logs = self.logs();
            if logs.iter().any(|line| wanted(line)) || tokio::time::Instant::now() >= deadline {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Peak resident memory of the running instance so far (`VmHWM`), in KiB (Linux only).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The function process id, when an instance is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts the function process if none is running and waits for `/runtime/init/ready`.
    /// Returns the init duration for a cold start, `None` if an instance was already warm.
    pub async fn start_instance(&mut self) -> Result<Option<Duration>, InvokeError> {
        if let Some(child) = self.child.as_mut() {
            if child.try_wait().ok().flatten().is_none() {
                return Ok(None);
            }
            self.child = None;
        }
        self.shared.ready.send_replace(false);
        let started = Instant::now();
        let mut child = self.spawn()?;
        let mut ready = self.shared.ready.subscribe();
        let outcome = tokio::select! {
            r = ready.wait_for(|ready| *ready) => r.map(|_| ()).map_err(|_| InvokeError::InitTimeout(self.spec.init_timeout)),
            _ = tokio::time::sleep(self.spec.init_timeout) => Err(InvokeError::InitTimeout(self.spec.init_timeout)),
            status = child.wait() => Err(InvokeError::ProcessExited { status: describe(status) }),
        };
        match outcome {
            Ok(()) => {
                self.child = Some(child);
                Ok(Some(started.elapsed()))
            }
            Err(err) => {
                let _ = child.kill().await;
                Err(err)
            }
        }
    }

    /// Stops the function process (a reclaimed instance); the next invocation cold-starts.
    pub async fn stop_instance(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        self.shared.current.send_replace(None);
    }

    /// Invokes the function with a raw event, as SCF's Invoke API would, and waits for its result
    /// within the time limit.
    pub async fn invoke(&mut self, event: impl Into<Bytes>) -> Result<Invocation, InvokeError> {
        let init_duration = self.start_instance().await?;
        self.counter += 1;
        let request_id = request_id(self.counter);
        let (tx, rx) = oneshot::channel();
        let pending = Arc::new(Pending {
            request_id: request_id.clone(),
            event: event.into(),
            memory_mb: self.spec.memory_mb,
            timeout: self.spec.timeout,
            handed_out_at: Mutex::new(None),
            result: Mutex::new(Some(tx)),
        });
        self.shared.current.send_replace(Some(pending.clone()));
        let queued = Instant::now();
        let timeout = self.spec.timeout;
        let child = self.child.as_mut().expect("an instance was just started");
        let outcome = tokio::select! {
            result = rx => result.map_err(|_| InvokeError::Timeout(timeout)),
            _ = sleep_until_deadline(&pending, timeout) => Err(InvokeError::Timeout(timeout)),
            status = child.wait() => Err(InvokeError::ProcessExited { status: describe(status) }),
        };
        self.shared.current.send_replace(None);
        match outcome {
            Ok((result, posted_at)) => {
                let handed_out = pending.handed_out_at.lock().unwrap().unwrap_or(queued);
                Ok(Invocation {
                    request_id,
                    result,
                    duration: posted_at.saturating_duration_since(handed_out),
                    init_duration,
                })
            }
            Err(err) => {
                // SCF recycles an instance that timed out or died.
                self.stop_instance().await;
                Err(err)
            }
        }
    }

    fn spawn(&mut self) -> Result<Child, InvokeError> {
        let mut command = Command::new(&self.spec.binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SCF_RUNTIME_API", self.addr.ip().to_string())
            .env("SCF_RUNTIME_API_PORT", self.addr.port().to_string())
            .env("SCF_FUNCTIONNAME", &self.spec.name)
            .env("SCF_FUNCTIONVERSION", "$LATEST")
            .env("SCF_NAMESPACE", "default")
            .env("SCF_RUNTIME", "CustomRuntime")
            .env("TENCENTCLOUD_REGION", "ap-guangzhou")
            .env("TENCENTCLOUD_RUNENV", "SCF")
            .env("TENCENTCLOUD_TZ", "UTC")
            .env("_HANDLER", "bootstrap")
            .env("USER_CODE_ROOT", "/var/user/")
            .kill_on_drop(true)
            .stdin(Stdio::null());
        for (key, value) in &self.spec.env {
            command.env(key, value);
        }
        let (stdout, stderr) = match self.spec.output {
            Output::Inherit => (Stdio::inherit(), Stdio::inherit()),
            Output::Capture => (Stdio::piped(), Stdio::piped()),
            Output::Discard => (Stdio::null(), Stdio::null()),
        };
        command.stdout(stdout).stderr(stderr);
        let mut child = command.spawn().map_err(|source| InvokeError::Spawn {
            binary: self.spec.binary.display().to_string(),
            source,
        })?;
        if let Some(out) = child.stdout.take() {
            self.collect(out, "");
        }
        if let Some(err) = child.stderr.take() {
            self.collect(err, "stderr: ");
        }
        Ok(child)
    }

    fn collect(
        &self,
        stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        prefix: &'static str,
    ) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                shared.logs.lock().unwrap().push(format!("{prefix}{line}"));
            }
        });
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Sleeps until `timeout` after the event was handed out (or queued, if it never is).
async fn sleep_until_deadline(pending: &Pending, timeout: Duration) {
    let queued = Instant::now();
    loop {
        let start = pending.handed_out_at.lock().unwrap().unwrap_or(queued);
        let deadline = start + timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(
            deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
        )
        .await;
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(err) => err.to_string(),
    }
}

fn request_id(counter: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(counter);
    let random = hasher.finish();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (random >> 32) as u32,
        (random >> 16) as u16,
        random as u16 & 0xfff,
        (counter >> 48) as u16 & 0xfff,
        counter & 0xffff_ffff_ffff
    )
}

async fn init_ready(State(shared): State<Arc<Shared>>) -> StatusCode {
    // Only the first ready of an instance counts; later ones are accepted and ignored.
    shared.ready.send_replace(true);
    StatusCode::OK
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let mut current = shared.current.subscribe();
    let pending = match current.wait_for(Option::is_some).await {
        Ok(pending) => pending.clone().expect("waited for Some"),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    pending
        .handed_out_at
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    let mut headers = HeaderMap::new();
    let header =
        |v: String| HeaderValue::from_str(&v).expect("ids and numbers are valid header values");
    headers.insert("request_id", header(pending.request_id.clone()));
    headers.insert("memory_limit_in_mb", header(pending.memory_mb.to_string()));
    headers.insert(
        "time_limit_in_ms",
        header(pending.timeout.as_millis().to_string()),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, pending.event.clone()).into_response()
}

/// The largest result SCF returns from an invocation: 6 MB ("Quota Limits",
/// <https://www.tencentcloud.com/document/product/583/11637>). A larger one fails the
/// invocation.
pub const MAX_RESULT_BYTES: usize = 6 * 1000 * 1000;

/// The largest body the runtime API reads from the function; past [`MAX_RESULT_BYTES`] it is
/// read only to be refused, so the function hears a clear answer instead of a reset.
const MAX_POSTED_BYTES: usize = 64 * 1024 * 1024;

async fn respond(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    if body.len() > MAX_RESULT_BYTES {
        let error = serde_json::json!({
            "errorType": "ResponseSizeTooLarge",
            "errorMessage": format!(
                "the function returned {} bytes, over the {MAX_RESULT_BYTES} SCF returns",
                body.len()
            ),
        });
        return finish(
            &shared,
            InvocationResult::Error(error.to_string().into_bytes()),
        );
    }
    finish(&shared, InvocationResult::Response(body.to_vec()))
}

async fn fail(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    finish(&shared, InvocationResult::Error(body.to_vec()))
}

fn finish(shared: &Shared, result: InvocationResult) -> StatusCode {
    let pending = shared.current.borrow().clone();
    let Some(pending) = pending else {
        return StatusCode::BAD_REQUEST;
    };
    let sender = pending.result.lock().unwrap().take();
    match sender {
        Some(sender) => {
            // Clear the slot before answering, so a `/next` that follows at once waits for the
            // next event instead of getting this one again.
            shared.current.send_if_modified(|current| {
                let same = current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &pending));
                if same {
                    *current = None;
                }
                same
            });
            let _ = sender.send((result, Instant::now()));
            StatusCode::OK
        }
        // The first result is final; later posts are refused.
        None => StatusCode::BAD_REQUEST,
    }
}

/// A Timer trigger event as SCF sends it, fired now.
pub fn timer_event(trigger: &str, message: &str) -> Vec<u8> {
    serde_json::json!({
        "Type": "Timer",
        "TriggerName": trigger,
        "Time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "Message": message,
    })
    .to_string()
    .into_bytes()
}
