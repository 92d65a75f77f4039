//! SCF Custom Runtime client with the `lambda_runtime` API shape.
//!
//! A function binary calls `run(service_fn(handler)).await`. This module owns the conversation
//! with SCF's runtime API (`/runtime/init/ready`, `/runtime/invocation/next`,
//! `/runtime/invocation/response|error`, see <https://cloud.tencent.com/document/product/583/47274>) and nothing
//! else: it knows no trigger payloads and no domain types. Its contract with the platform:
//!
//! * ready is posted exactly once, after the handler has been built;
//! * `/next` is polled without a client timeout (it is a long poll);
//! * for every event exactly one of `/response` or `/error` is posted before `/next` is polled
//!   again (SCF hands back the same event if it is polled twice);
//! * an event that does not deserialize, a handler error and a handler panic all become an
//!   `/error` post with `{"errorType","errorMessage"}`, and the loop goes on;
//! * a dropped runtime API connection is retried with capped exponential backoff
//!   ([`Backoff`]); after [`GIVE_UP_AFTER`] of continuous failure the loop returns an error.

mod client;
mod context;
mod diagnostic;
mod logging;
// The musl binaries' memcpy and memmove (tested on any x86_64 build).
#[cfg(all(target_arch = "x86_64", any(target_env = "musl", test)))]
mod musl;

use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;

pub use client::{RuntimeApiClient, RuntimeApiError};
pub use context::Context;
pub use diagnostic::Diagnostic;
pub use logging::init_tracing;
pub use tower::{service_fn, Service, ServiceExt};

/// The error type handlers return: any boxed error.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How long the runtime keeps retrying an unreachable runtime API before it gives up.
pub(crate) const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// One invocation: the deserialized trigger payload and its context.
#[derive(Debug, Clone)]
pub struct LambdaEvent<T> {
    /// The trigger payload.
    pub payload: T,
    /// Request id, limits and the function's identity.
    pub context: Context,
}

impl<T> LambdaEvent<T> {
    /// Pairs a payload with its context.
    pub fn new(payload: T, context: Context) -> Self {
        Self { payload, context }
    }

    /// Splits the event into payload and context.
    pub fn into_parts(self) -> (T, Context) {
        (self.payload, self.context)
    }
}

/// Runs the invocation loop against the runtime API named by `SCF_RUNTIME_API` and
/// `SCF_RUNTIME_API_PORT`, forever. Returns only when the environment is incomplete or the runtime
/// API has been unreachable for [`GIVE_UP_AFTER`].
pub async fn run<A, R, S>(handler: S) -> Result<(), Error>
where
    S: Service<LambdaEvent<A>, Response = R>,
    S::Error: Into<Diagnostic> + Debug,
    A: DeserializeOwned,
    R: Serialize,
{
    let client = RuntimeApiClient::from_env()?;
    Runtime::new(client, handler).run().await
}

/// The invocation loop over a [`RuntimeApiClient`]; [`run`] builds one from the environment,
/// tests build one against a local server.
pub struct Runtime<S> {
    client: RuntimeApiClient,
    handler: S,
    function: context::FunctionIdentity,
}

impl<S> Runtime<S> {
    /// A runtime that will serve `handler` through `client`.
    pub fn new(client: RuntimeApiClient, handler: S) -> Self {
        Self {
            client,
            handler,
            function: context::FunctionIdentity::from_env(),
        }
    }

    /// Posts ready, then serves invocations until the runtime API is gone for good.
    pub async fn run<A, R>(mut self) -> Result<(), Error>
    where
        S: Service<LambdaEvent<A>, Response = R>,
        S::Error: Into<Diagnostic> + Debug,
        A: DeserializeOwned,
        R: Serialize,
    {
        let mut backoff = Backoff::new();
        while let Err(err) = self.client.init_ready().await {
            backoff.fail(&err, "posting /runtime/init/ready").await?;
        }
        tracing::debug!("runtime ready");
        backoff.reset();
        loop {
            let invocation = match self.client.next().await {
                Ok(invocation) => invocation,
                Err(err) => {
                    backoff
                        .fail(&err, "polling /runtime/invocation/next")
                        .await?;
                    continue;
                }
            };
            backoff.reset();
            let context =
                Context::from_headers(&invocation.headers, &self.function, Instant::now());
            let span = tracing::info_span!("invocation", request_id = %context.request_id);
            let outcome = self
                .process(invocation.body, context)
                .instrument(span.clone())
                .await;
            self.post_outcome(outcome, &mut backoff)
                .instrument(span)
                .await?;
        }
    }

    async fn process<A, R>(&mut self, body: bytes::Bytes, context: Context) -> Outcome
    where
        S: Service<LambdaEvent<A>, Response = R>,
        S::Error: Into<Diagnostic> + Debug,
        A: DeserializeOwned,
        R: Serialize,
    {
        let payload: A = match deserialize_event(&body) {
            Ok(payload) => payload,
            Err(diagnostic) => {
                tracing::error!(error = %diagnostic.error_message, "event rejected before the handler");
                return Outcome::Failure(diagnostic);
            }
        };
        if let Err(err) = std::future::poll_fn(|cx| self.handler.poll_ready(cx)).await {
            return Outcome::Failure(handler_failure(err));
        }
        let event = LambdaEvent::new(payload, context);
        let call = std::panic::catch_unwind(AssertUnwindSafe(|| self.handler.call(event)));
        let result = match call {
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
            Err(panic) => Err(panic),
        };
        match result {
            Ok(Ok(response)) => match serde_json::to_vec(&response) {
                Ok(body) => Outcome::Success(body),
                Err(err) => Outcome::Failure(Diagnostic::new(
                    "ResponseSerialization",
                    format!("the handler's response could not be serialized: {err}"),
                )),
            },
            Ok(Err(err)) => Outcome::Failure(handler_failure(err)),
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(panic = %message, "handler panicked");
                Outcome::Failure(Diagnostic::new(
                    "Panic",
                    format!("handler panicked: {message}"),
                ))
            }
        }
    }

    async fn post_outcome(&self, outcome: Outcome, backoff: &mut Backoff) -> Result<(), Error> {
        loop {
            let posted = match &outcome {
                Outcome::Success(body) => self.client.respond(body.clone()).await,
                Outcome::Failure(diagnostic) => self.client.fail(diagnostic).await,
            };
            match posted {
                Ok(()) => {
                    backoff.reset();
                    return Ok(());
                }
                Err(err) => backoff.fail(&err, "posting the invocation result").await?,
            }
        }
    }
}

enum Outcome {
    Success(Vec<u8>),
    Failure(Diagnostic),
}

fn handler_failure<E: Into<Diagnostic> + Debug>(err: E) -> Diagnostic {
    let diagnostic: Diagnostic = err.into();
    tracing::error!(error_type = %diagnostic.error_type, error = %diagnostic.error_message, "handler failed");
    diagnostic
}

/// Deserializes an event, naming the path of the first field that does not fit.
pub fn deserialize_event<A: DeserializeOwned>(body: &[u8]) -> Result<A, Diagnostic> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        Diagnostic::new(
            "InvalidEvent",
            format!(
                "the event does not match the expected shape at `{path}`: {}",
                err.inner()
            ),
        )
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Capped exponential backoff for the runtime API connection: 50 ms doubling up to 2 s, giving
/// up after [`GIVE_UP_AFTER`] of continuous failure. Never a busy loop.
struct Backoff {
    delay: Duration,
    failing_since: Option<Instant>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(2);

    fn new() -> Self {
        Self {
            delay: Self::FIRST,
            failing_since: None,
        }
    }

    fn reset(&mut self) {
        self.delay = Self::FIRST;
        self.failing_since = None;
    }

    async fn fail(&mut self, err: &RuntimeApiError, doing: &str) -> Result<(), Error> {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= GIVE_UP_AFTER {
            return Err(format!(
                "the SCF runtime API has been unreachable for {}s while {doing}: {err}",
                GIVE_UP_AFTER.as_secs()
            )
            .into());
        }
        tracing::warn!(error = %err, retry_in_ms = self.delay.as_millis() as u64, "runtime API call failed while {doing}");
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Self::MAX);
        Ok(())
    }
}
