//! HTTP client for SCF's runtime API. Paths have no version prefix and no request id
//! (<https://cloud.tencent.com/document/product/583/47274>).

use bytes::Bytes;
use http::HeaderMap;

use super::Diagnostic;

/// Something went wrong talking to the runtime API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeApiError {
    /// A required environment variable is missing or malformed.
    #[error("{name} is not set: a Custom Runtime function must be started by SCF (or `esgflow invoke`), which sets SCF_RUNTIME_API and SCF_RUNTIME_API_PORT")]
    MissingEnv {
        /// The variable's name.
        name: &'static str,
    },
    /// `SCF_RUNTIME_API_PORT` is not a port number.
    #[error("SCF_RUNTIME_API_PORT is {value:?}, not a port number")]
    BadPort {
        /// What the variable held.
        value: String,
    },
    /// The request never got an answer (connection refused, dropped, ...).
    #[error("{path}: {source}")]
    Transport {
        /// The runtime API path.
        path: &'static str,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The runtime API answered with an unexpected status.
    #[error("{path}: runtime API answered {status}: {body}")]
    Status {
        /// The runtime API path.
        path: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
}

/// One event fetched from `/runtime/invocation/next`.
#[derive(Debug)]
pub struct Invocation {
    /// Response headers (`request_id`, `memory_limit_in_mb`, `time_limit_in_ms`).
    pub headers: HeaderMap,
    /// The raw event JSON.
    pub body: Bytes,
}

/// A client for one runtime API endpoint.
#[derive(Debug, Clone)]
pub struct RuntimeApiClient {
    http: reqwest::Client,
    base: String,
}

const READY: &str = "/runtime/init/ready";
const NEXT: &str = "/runtime/invocation/next";
const RESPONSE: &str = "/runtime/invocation/response";
const ERROR: &str = "/runtime/invocation/error";

impl RuntimeApiClient {
    /// A client for `http://$SCF_RUNTIME_API:$SCF_RUNTIME_API_PORT`.
    pub fn from_env() -> Result<Self, RuntimeApiError> {
        let host = std::env::var("SCF_RUNTIME_API")
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or(RuntimeApiError::MissingEnv {
                name: "SCF_RUNTIME_API",
            })?;
        let port = std::env::var("SCF_RUNTIME_API_PORT")
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or(RuntimeApiError::MissingEnv {
                name: "SCF_RUNTIME_API_PORT",
            })?;
        let port: u16 = port
            .parse()
            .map_err(|_| RuntimeApiError::BadPort { value: port })?;
        Ok(Self::with_endpoint(&format!("http://{host}:{port}")))
    }

    /// A client for an explicit base URL such as `http://127.0.0.1:9001` (tests, the emulator).
    pub fn with_endpoint(base: &str) -> Self {
        // No request timeout: `/next` is a long poll and SCF's docs forbid a client timeout on it.
        // No proxy: the runtime API is local and must never go through HTTP_PROXY.
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .build()
            .expect("a plain HTTP client with no TLS options always builds");
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// `POST /runtime/init/ready`.
    pub async fn init_ready(&self) -> Result<(), RuntimeApiError> {
        self.post(READY, "application/json", Bytes::from_static(b" "))
            .await
    }

    /// `GET /runtime/invocation/next`, waiting as long as it takes.
    pub async fn next(&self) -> Result<Invocation, RuntimeApiError> {
        let response = self
            .http
            .get(format!("{}{NEXT}", self.base))
            .send()
            .await
            .map_err(|source| RuntimeApiError::Transport { path: NEXT, source })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|source| RuntimeApiError::Transport { path: NEXT, source })?;
        if !status.is_success() {
            return Err(RuntimeApiError::Status {
                path: NEXT,
                status: status.as_u16(),
                body: excerpt(&body),
            });
        }
        Ok(Invocation { headers, body })
    }

    /// `POST /runtime/invocation/response` with the handler's JSON result.
    pub async fn respond(&self, body: Vec<u8>) -> Result<(), RuntimeApiError> {
        self.post(RESPONSE, "application/json", Bytes::from(body))
            .await
    }

    /// `POST /runtime/invocation/error` with `{"errorType","errorMessage"}`.
    pub async fn fail(&self, diagnostic: &Diagnostic) -> Result<(), RuntimeApiError> {
        let body = serde_json::to_vec(diagnostic).expect("a Diagnostic always serializes");
        self.post(ERROR, "application/json", Bytes::from(body))
            .await
    }

    async fn post(
        &self,
        path: &'static str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(), RuntimeApiError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|source| RuntimeApiError::Transport { path, source })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.bytes().await.unwrap_or_default();
        if status.is_client_error() {
            // SCF locks an invocation at its first result and may refuse later posts; retrying
            // a refusal would loop forever, so it is logged and the loop moves on.
            tracing::warn!(path, status = status.as_u16(), body = %excerpt(&body), "runtime API refused the post");
            return Ok(());
        }
        Err(RuntimeApiError::Status {
            path,
            status: status.as_u16(),
            body: excerpt(&body),
        })
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.into_owned()
}
