//! Local servers that stand in for the cloud services esgflow talks to, for the end-to-end tests
//! and local runs: cfw/vpc API 3.0 and COS ([`cloud`]), CLS `UploadLog` and `SearchLog` ([`cls`]),
//! with the CQL its searches are evaluated by ([`cql`]), and the chat robots and webhooks alerts
//! go to ([`alerts`]). Each speaks the real wire format
//! and runs on a [`Server`]; the API 3.0 stand-ins check every request against the action's
//! official definition ([`contract`]).

pub mod account;
pub mod alerts;
pub mod cloud;
pub mod cls;
pub mod contract;
pub mod cql;

use std::net::SocketAddr;

use axum::http::HeaderMap;
use axum::Router;
use tokio::task::JoinHandle;

/// A request header as text, empty when absent or not text.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The service an API 3.0 request was signed for: the third part of the `Authorization`
/// header's credential scope (`Credential=<id>/<date>/<service>/tc3_request`); empty if none.
pub(crate) fn signed_service(headers: &HeaderMap) -> &str {
    header(headers, "authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or("")
}

/// An HTTP server serving a router on a local address until it is dropped. Stand-ins start one
/// on `127.0.0.1:0` (an ephemeral port) so tests never collide.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `addr` (`127.0.0.1:0` for an ephemeral port) and serves `app` on it.
    pub async fn start(addr: &str, app: Router) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // A server that fails stops answering; the test that uses it then fails on its calls.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    /// `http://<address>`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
