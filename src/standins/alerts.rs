//! A local stand-in for the alert platforms: WeCom, DingTalk and Feishu robots and a generic
//! webhook, on 127.0.0.1. It checks what each real platform checks (the robot key or token,
//! DingTalk's and Feishu's signatures and timestamp window, the webhook's HMAC header), answers
//! as the platform does, and keeps every message, so `make run` can show the alerts it would
//! send and tests can inspect them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use esgflow::adapters::chat::{dingtalk_sign, feishu_sign, webhook_signature};
use serde_json::{json, Value};

/// The credentials the receiver accepts.
pub const WECOM_KEY: &str = "local-wecom-key";
/// DingTalk access token.
pub const DINGTALK_TOKEN: &str = "local-dingtalk-token";
/// DingTalk signing secret.
pub const DINGTALK_SECRET: &str = "SEClocal0123456789";
/// Feishu hook token.
pub const FEISHU_TOKEN: &str = "local-feishu-token";
/// Feishu signing secret.
pub const FEISHU_SECRET: &str = "local-feishu-secret";
/// Webhook secret.
pub const WEBHOOK_SECRET: &str = "local-webhook-secret";

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `wecom`, `dingtalk`, `feishu` or `webhook`.
    pub channel: &'static str,
    /// Whether every check passed.
    pub verified: bool,
    /// What failed, if anything.
    pub problem: Option<String>,
    /// The message body as JSON.
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    /// Channels told to fail: answer with this status.
    failing: HashMap<&'static str, u16>,
    /// Channels told to hang: never answer.
    hanging: std::collections::HashSet<&'static str>,
}

/// Holds requests to a hanging channel forever (the client's timeout must end them).
async fn hang_if_told(
    State(shared): State<Arc<Mutex<Shared>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let channel = request
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let hanging = shared.lock().unwrap().hanging.iter().any(|c| *c == channel);
    if hanging {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
    next.run(request).await
}

/// The running receiver.
pub struct AlertReceiver {
    shared: Arc<Mutex<Shared>>,
    base: String,
    _server: super::Server,
}

impl AlertReceiver {
    /// Starts on an ephemeral 127.0.0.1 port.
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/wecom/cgi-bin/webhook/send", post(wecom))
            .route("/dingtalk/robot/send", post(dingtalk))
            .route("/feishu/open-apis/bot/v2/hook/{token}", post(feishu))
            .route("/webhook", post(webhook))
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                hang_if_told,
            ))
            .with_state(shared.clone());
        let server = super::Server::start("127.0.0.1:0", app).await?;
        Ok(Self {
            shared,
            base: server.url(),
            _server: server,
        })
    }

    /// The audit function's settings for all four channels, pointing here.
    pub fn settings(&self) -> Vec<(String, String)> {
        let base = &self.base;
        [
            (
                "ESGFLOW_ALERT_WECOM_URL",
                format!("{base}/wecom/cgi-bin/webhook/send?key={WECOM_KEY}"),
            ),
            (
                "ESGFLOW_ALERT_DINGTALK_URL",
                format!("{base}/dingtalk/robot/send?access_token={DINGTALK_TOKEN}"),
            ),
            ("ESGFLOW_ALERT_DINGTALK_SECRET", DINGTALK_SECRET.to_string()),
            (
                "ESGFLOW_ALERT_FEISHU_URL",
                format!("{base}/feishu/open-apis/bot/v2/hook/{FEISHU_TOKEN}"),
            ),
            ("ESGFLOW_ALERT_FEISHU_SECRET", FEISHU_SECRET.to_string()),
            ("ESGFLOW_ALERT_WEBHOOK_URL", format!("{base}/webhook")),
            ("ESGFLOW_ALERT_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Makes `channel` accept connections and never answer (a hanging robot).
    pub fn hang(&self, channel: &'static str) {
        self.shared.lock().unwrap().hanging.insert(channel);
    }

    /// Makes `channel` answer every message with `status`.
    pub fn fail(&self, channel: &'static str, status: u16) {
        self.shared.lock().unwrap().failing.insert(channel, status);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// A readable account of the alerts received: each WeCom message's text with the channels
    /// that got it and whether their signatures verified.
    pub fn render(&self) -> String {
        let received = self.received();
        let mut by_channel: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for message in &received {
            let entry = by_channel.entry(message.channel).or_default();
            entry.0 += 1;
            entry.1 += usize::from(message.verified);
        }
        let mut out = String::from("== Alerts delivered to the local receiver ==\n");
        for (channel, (count, verified)) in &by_channel {
            out.push_str(&format!("  {channel:<9} {count} messages, {verified} passed the platform's checks (key/token, signature, timestamp)\n"));
        }
        for message in received.iter().filter(|m| m.channel == "wecom") {
            if let Some(content) = message
                .body
                .pointer("/markdown/content")
                .and_then(Value::as_str)
            {
                out.push('\n');
                out.push_str(content);
            }
        }
        for problem in received
            .iter()
            .filter_map(|m| m.problem.as_ref().map(|p| (m.channel, p)))
        {
            out.push_str(&format!("\nREJECTED by {}: {}\n", problem.0, problem.1));
        }
        out
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn record(
    shared: &Arc<Mutex<Shared>>,
    channel: &'static str,
    problem: Option<String>,
    body: &[u8],
) -> Option<u16> {
    let mut shared = shared.lock().unwrap();
    let body = serde_json::from_slice(body).unwrap_or(Value::Null);
    shared.received.push(Received {
        channel,
        verified: problem.is_none(),
        problem,
        body,
    });
    shared.failing.get(channel).copied()
}

/// Records the message, then answers as the platform would: failing on purpose if told to,
/// `accepted` when every check passed, `refused(problem)` otherwise.
fn answer(
    shared: &Arc<Mutex<Shared>>,
    channel: &'static str,
    problem: Option<String>,
    body: &[u8],
    accepted: Value,
    refused: impl FnOnce(String) -> (StatusCode, Value),
) -> (StatusCode, String) {
    if let Some(status) = record(shared, channel, problem.clone(), body) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, "failing on purpose".to_string());
    }
    match problem {
        None => (StatusCode::OK, accepted.to_string()),
        Some(problem) => {
            let (status, body) = refused(problem);
            (status, body.to_string())
        }
    }
}

async fn wecom(
    State(shared): State<Arc<Mutex<Shared>>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> (StatusCode, String) {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let problem = if query.get("key").map(String::as_str) != Some(WECOM_KEY) {
        Some("invalid webhook key".to_string())
    } else if value["msgtype"] != "markdown" {
        Some("msgtype is not markdown".to_string())
    } else if value
        .pointer("/markdown/content")
        .and_then(Value::as_str)
        .is_none_or(|c| c.len() > 4096)
    {
        Some("markdown.content missing or over 4096 bytes".to_string())
    } else {
        None
    };
    answer(
        &shared,
        "wecom",
        problem,
        &body,
        json!({"errcode": 0, "errmsg": "ok"}),
        |p| (StatusCode::OK, json!({"errcode": 93000, "errmsg": p})),
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn dingtalk(
    State(shared): State<Arc<Mutex<Shared>>>,
    raw: axum::extract::RawQuery,
    body: Bytes,
) -> (StatusCode, String) {
    let query: HashMap<String, String> = raw
        .0
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), percent_decode(v)))
        })
        .collect();
    let timestamp: i64 = query
        .get("timestamp")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let problem = if query.get("access_token").map(String::as_str) != Some(DINGTALK_TOKEN) {
        Some("token is not exist".to_string())
    } else if (timestamp / 1000 - now_secs()).abs() > 3600 {
        Some("timestamp is not within one hour".to_string())
    } else if query.get("sign").map(String::as_str)
        != Some(dingtalk_sign(DINGTALK_SECRET, timestamp as u64).as_str())
    {
        Some("sign not match".to_string())
    } else {
        None
    };
    answer(
        &shared,
        "dingtalk",
        problem,
        &body,
        json!({"errcode": 0, "errmsg": "ok"}),
        |p| (StatusCode::OK, json!({"errcode": 310000, "errmsg": p})),
    )
}

async fn feishu(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(token): Path<String>,
    body: Bytes,
) -> (StatusCode, String) {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let timestamp: i64 = value["timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let problem = if token != FEISHU_TOKEN {
        Some("incoming webhook access token invalid".to_string())
    } else if (timestamp - now_secs()).abs() > 3600
        || value["sign"].as_str() != Some(feishu_sign(FEISHU_SECRET, timestamp as u64).as_str())
    {
        Some("sign match fail or timestamp is not within one hour from current time".to_string())
    } else {
        None
    };
    answer(
        &shared,
        "feishu",
        problem,
        &body,
        json!({"code": 0, "msg": "success", "data": {}}),
        |p| (StatusCode::OK, json!({"code": 19021, "msg": p})),
    )
}

async fn webhook(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let signature = headers
        .get("x-esgflow-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let timestamp = headers
        .get("x-esgflow-timestamp")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(0);
    let problem = if signature != webhook_signature(WEBHOOK_SECRET, &body) {
        Some("bad X-Esgflow-Signature".to_string())
    } else if (timestamp - now_secs()).abs() > 300 {
        Some("X-Esgflow-Timestamp more than 5 minutes off".to_string())
    } else {
        None
    };
    answer(&shared, "webhook", problem, &body, json!({}), |p| {
        (StatusCode::UNAUTHORIZED, json!({"error": p}))
    })
}
