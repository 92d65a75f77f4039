//! Alert channels: WeCom group robot, DingTalk robot (signed), Feishu/Lark bot (signed), and a
//! generic HMAC-signed webhook (<https://developer.work.weixin.qq.com/document/path/91770>,
//! <https://open.dingtalk.com/document/robots/customize-robot-security-settings>,
//! <https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot>): each message's form and
//! signature, what counts as accepted, and the send with its timeout and retries ([`Robot`], the
//! [`AlertChannel`] the alert use case sends to). Channel URLs carry credentials (keys, tokens),
//! so a channel is only ever named by its kind in logs and summaries.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::adapters::bounded;
use crate::adapters::retry::Retry;
use crate::core::alert::{Alert, AlertChannel, RateLimit, Undelivered, DEADLINE_MARGIN};
use crate::core::ports::BoxFuture;
use crate::core::records::Record;
use crate::core::text::truncate_utf8;

/// Largest WeCom markdown message, bytes of UTF-8.
pub(crate) const WECOM_MAX_BYTES: usize = 4096;

/// Kinds of channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelKind {
    /// WeCom (企业微信) group robot: key in the URL, no signature, 20 messages a minute.
    WeCom,
    /// DingTalk custom robot with signing: 20 messages a minute.
    DingTalk,
    /// Feishu/Lark custom bot with signature verification: 5 a second and 100 a minute.
    Feishu,
    /// Generic webhook: JSON body, `X-Esgflow-Signature: sha256=<hex HMAC of the body>`.
    Webhook,
}

impl ChannelKind {
    /// The name used in logs and summaries.
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::WeCom => "wecom",
            ChannelKind::DingTalk => "dingtalk",
            ChannelKind::Feishu => "feishu",
            ChannelKind::Webhook => "webhook",
        }
    }

    /// The platform's published per-robot rate limits: WeCom and DingTalk 20 a minute,
    /// Feishu 5 a second and 100 a minute
    /// (<https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot>); our own webhook 60
    /// a minute.
    pub(crate) fn limits(self) -> &'static [RateLimit] {
        const TWENTY_A_MINUTE: &[RateLimit] = &[RateLimit::per_minute(20)];
        const FEISHU: &[RateLimit] = &[RateLimit::per_second(5), RateLimit::per_minute(100)];
        const WEBHOOK: &[RateLimit] = &[RateLimit::per_minute(60)];
        match self {
            ChannelKind::WeCom | ChannelKind::DingTalk => TWENTY_A_MINUTE,
            ChannelKind::Feishu => FEISHU,
            ChannelKind::Webhook => WEBHOOK,
        }
    }
}

/// A configured channel.
#[derive(Clone, PartialEq, Eq)]
pub struct Channel {
    /// Its kind.
    pub kind: ChannelKind,
    /// The robot or webhook URL (a secret: it carries the key or token).
    pub url: String,
    /// The signing secret, for DingTalk, Feishu and the webhook.
    pub secret: Option<String>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("kind", &self.kind)
            .field("url", &"<redacted>")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// DingTalk: `base64(HMAC-SHA256(key = secret, message = "{timestamp_ms}\n{secret}"))`, before
/// URL encoding.
pub fn dingtalk_sign(secret: &str, timestamp_ms: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
        secret.as_bytes(),
        format!("{timestamp_ms}\n{secret}").as_bytes(),
    ))
}

/// Feishu: `base64(HMAC-SHA256(key = "{timestamp_s}\n{secret}", message = ""))`.
pub fn feishu_sign(secret: &str, timestamp_s: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
        format!("{timestamp_s}\n{secret}").as_bytes(),
        b"",
    ))
}

/// Generic webhook: `sha256=<hex HMAC-SHA256(key = secret, message = body)>`.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    )
}

/// Percent-encodes a query value (unreserved characters kept, everything else `%XX`).
pub(crate) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// One HTTP request a channel sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Full URL (secret).
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: Vec<u8>,
}

impl Channel {
    /// The request for `alert` at `now`.
    pub fn request(&self, alert: &Alert, now: SystemTime) -> Request {
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        match self.kind {
            ChannelKind::WeCom => {
                let content = truncate_utf8(&alert.markdown(), WECOM_MAX_BYTES).to_string();
                Request {
                    url: self.url.clone(),
                    headers: Vec::new(),
                    body: json!({"msgtype": "markdown", "markdown": {"content": content}})
                        .to_string()
                        .into_bytes(),
                }
            }
            ChannelKind::DingTalk => {
                let mut url = self.url.clone();
                if let Some(secret) = &self.secret {
                    let timestamp = since_epoch.as_millis() as u64;
                    let separator = if url.contains('?') { '&' } else { '?' };
                    url = format!(
                        "{url}{separator}timestamp={timestamp}&sign={}",
                        url_encode(&dingtalk_sign(secret, timestamp))
                    );
                }
                Request { url, headers: Vec::new(), body: json!({"msgtype": "markdown", "markdown": {"title": alert.title(), "text": alert.markdown()}}).to_string().into_bytes() }
            }
            ChannelKind::Feishu => {
                let mut body = json!({"msg_type": "text", "content": {"text": alert.text()}});
                if let Some(secret) = &self.secret {
                    let timestamp = since_epoch.as_secs();
                    body["timestamp"] = json!(timestamp.to_string());
                    body["sign"] = json!(feishu_sign(secret, timestamp));
                }
                Request {
                    url: self.url.clone(),
                    headers: Vec::new(),
                    body: body.to_string().into_bytes(),
                }
            }
            ChannelKind::Webhook => {
                let timestamp = since_epoch.as_secs();
                let records: Vec<&Record> = alert.records.iter().collect();
                let body = json!({"sent_at": timestamp, "alert": alert, "records": records})
                    .to_string()
                    .into_bytes();
                let mut headers = vec![("X-Esgflow-Timestamp", timestamp.to_string())];
                if let Some(secret) = &self.secret {
                    headers.push(("X-Esgflow-Signature", webhook_signature(secret, &body)));
                }
                Request {
                    url: self.url.clone(),
                    headers,
                    body,
                }
            }
        }
    }

    /// Whether the platform accepted the message: a 2xx status, and for the robots `errcode`
    /// (WeCom, DingTalk) or `code` (Feishu) equal to 0.
    pub fn accepted(&self, status: u16, body: &str) -> Result<(), String> {
        if !(200..300).contains(&status) {
            return Err(format!("HTTP {status}"));
        }
        let code_key = match self.kind {
            ChannelKind::WeCom | ChannelKind::DingTalk => "errcode",
            ChannelKind::Feishu => "code",
            ChannelKind::Webhook => return Ok(()),
        };
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|_| "the answer is not JSON".to_string())?;
        match value.get(code_key).and_then(|c| c.as_i64()) {
            Some(0) => Ok(()),
            Some(code) => Err(format!(
                "{code_key} {code}: {}",
                value
                    .get("errmsg")
                    .or(value.get("msg"))
                    .and_then(|m| m.as_str())
                    .unwrap_or("")
            )),
            None if self.kind == ChannelKind::Feishu
                && value.get("StatusCode").and_then(|c| c.as_i64()) == Some(0) =>
            {
                Ok(())
            }
            None => Err(format!("no {code_key} in the answer")),
        }
    }
}

/// Longest single send.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest answer read from a robot or webhook (they answer a few dozen bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Most attempts per message.
const MAX_ATTEMPTS: u32 = 3;

/// A configured channel with the HTTP client it sends through.
pub(crate) struct Robot {
    channel: Channel,
    http: reqwest::Client,
}

impl Robot {
    /// Every configured channel, sending through one HTTP client.
    pub(crate) fn all(channels: &[Channel]) -> Vec<Box<dyn AlertChannel>> {
        // A redirect is not followed: reqwest would turn the POST into a body-less GET, which a
        // webhook answers 200, and the alert would count as delivered.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client without TLS settings builds");
        channels
            .iter()
            .map(|channel| {
                Box::new(Robot {
                    channel: channel.clone(),
                    http: http.clone(),
                }) as Box<dyn AlertChannel>
            })
            .collect()
    }
}

impl AlertChannel for Robot {
    fn name(&self) -> &'static str {
        self.channel.kind.name()
    }

    fn limits(&self) -> &'static [RateLimit] {
        self.channel.kind.limits()
    }

    fn deliver<'a>(
        &'a self,
        alert: &'a Alert,
        now: SystemTime,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), Undelivered>> {
        Box::pin(async move {
            let request = self.channel.request(alert, now);
            send(&self.http, &self.channel, &request, deadline).await
        })
    }
}

/// Sends one message, each attempt within [`SEND_TIMEOUT`], up to [`MAX_ATTEMPTS`] with
/// backoff, within `deadline`; a timeout ends it at once.
async fn send(
    http: &reqwest::Client,
    channel: &Channel,
    request: &Request,
    deadline: Instant,
) -> Result<(), Undelivered> {
    let failed = |message: String| Undelivered {
        message,
        timed_out: false,
    };
    let mut retry = Retry::new(
        deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline),
        Duration::from_millis(200),
        Duration::from_secs(1),
    );
    let mut attempt = 0;
    loop {
        attempt += 1;
        let timeout = retry.remaining().min(SEND_TIMEOUT);
        if timeout.is_zero() {
            return Err(Undelivered {
                message: "no time left before the invocation deadline".to_string(),
                timed_out: true,
            });
        }
        let mut builder = http
            .post(&request.url)
            .timeout(timeout)
            .header("Content-Type", "application/json");
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        // Errors are reported without the URL: it carries the robot's key or token.
        let outcome = match builder.body(request.body.clone()).send().await {
            Ok(response) if response.status().is_redirection() => {
                return Err(failed(format!(
                    "HTTP {}: the channel's URL redirects, and a redirect is not followed (set the URL it redirects to)",
                    response.status().as_u16()
                )))
            }
            Ok(response) => {
                let status = response.status().as_u16();
                match bounded::read_text(response, MAX_ANSWER_BYTES).await {
                    Ok(body) => channel.accepted(status, &body),
                    Err(error) => Err(error.to_string()),
                }
            }
            // A channel that does not answer in time is not tried again in this batch.
            Err(err) if err.is_timeout() => {
                return Err(Undelivered {
                    message: format!("timed out after {} ms", timeout.as_millis()),
                    timed_out: true,
                })
            }
            Err(err) if err.is_connect() => Err("connection failed".to_string()),
            Err(_) => Err("request failed".to_string()),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(error) if attempt >= MAX_ATTEMPTS => {
                return Err(failed(format!("{error} (after {attempt} attempts)")))
            }
            Err(error) => {
                if !retry.wait(Duration::from_millis(100)).await {
                    return Err(failed(format!(
                        "{error} (after {attempt} attempts; deadline)"
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A robot on 127.0.0.1 that answers `answer` (status and body) to every message, or with
    /// `None` takes the connection and never answers; counts the messages it answered.
    async fn robot(
        answer: Option<(u16, &'static str)>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        robot_with(answer, String::new()).await
    }

    /// [`robot`], adding `headers` (each line ending in CRLF) to its answers.
    async fn robot_with(
        answer: Option<(u16, &'static str)>,
        headers: String,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let answered = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = answered.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (counter, headers) = (counter.clone(), headers.clone());
                tokio::spawn(async move {
                    // Read the whole request: the head, then Content-Length bytes of body.
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&chunk[..n]);
                        let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                    let Some((status, body)) = answer else {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        (url, answered)
    }

    /// One alert: a block hit of rule 7001.
    fn block_alert() -> Alert {
        crate::core::alert::group(
            &[crate::core::alert::tests::hit(
                crate::core::records::RecordType::BlockHit,
                "7001",
                "block",
                "10.0.1.5",
                "10.0.3.10",
                3306,
            )],
            &crate::core::alert::AlertPolicy::default(),
        )
        .remove(0)
    }

    /// A robot that takes the connection and never answers costs one send timeout, reported
    /// as a timeout (the alert use case then skips it for the rest of the batch).
    #[tokio::test]
    async fn a_robot_that_never_answers_times_out_once() {
        let (hung, _) = robot(None).await;
        let channels = Robot::all(&[Channel {
            kind: ChannelKind::WeCom,
            url: hung,
            secret: None,
        }]);
        let alert = block_alert();
        let started = Instant::now();
        let outcome = channels[0]
            .deliver(&alert, SystemTime::now(), started + Duration::from_secs(30))
            .await;
        let error = outcome.unwrap_err();
        assert!(error.timed_out, "{error:?}");
        let took = started.elapsed();
        assert!(
            took >= SEND_TIMEOUT && took < SEND_TIMEOUT + Duration::from_secs(2),
            "{took:?}"
        );
    }

    /// A channel whose URL redirects (an http → https move, a 302) is a failed delivery naming
    /// the redirect, tried once: the redirect is not followed, so the alert does not reach a
    /// body-less GET there that would answer 200 and count as sent (issue #36).
    #[tokio::test]
    async fn a_redirect_is_a_failed_delivery_not_followed() {
        let (target, reached) = robot(Some((200, r#"{"errcode":0}"#))).await;
        for kind in [ChannelKind::Webhook, ChannelKind::WeCom] {
            let (moved, asked) =
                robot_with(Some((302, "")), format!("Location: {target}\r\n")).await;
            let channels = Robot::all(&[Channel {
                kind,
                url: moved,
                secret: None,
            }]);
            let alert = block_alert();
            let error = channels[0]
                .deliver(
                    &alert,
                    SystemTime::now(),
                    Instant::now() + Duration::from_secs(30),
                )
                .await
                .unwrap_err();
            assert!(
                error.message.contains("HTTP 302") && error.message.contains("redirect"),
                "{error:?}"
            );
            assert_eq!(
                asked.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "tried once"
            );
        }
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    /// The reference's self-computed DingTalk vector.
    #[test]
    fn dingtalk_vector() {
        let sign = dingtalk_sign("SEC0123456789abcdef", 1700000000000);
        assert_eq!(sign, "TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk=");
        assert_eq!(
            url_encode(&sign),
            "TSZbRFUuvaSQaRKUpF970OPCb2%2FLcQAP3wOvwZIzBZk%3D"
        );
    }

    /// The reference's Feishu vector, and the known-wrong variant (key = secret) is not produced.
    #[test]
    fn feishu_vector_and_the_wrong_variant() {
        let sign = feishu_sign("demo-secret", 1700000000);
        assert_eq!(sign, "mYHw2R2SOm8Rw/sne3lQdmz4sOfntKR+1P/8RKKTwmA=");
        let wrong = base64::engine::general_purpose::STANDARD
            .encode(hmac_sha256(b"demo-secret", b"1700000000\ndemo-secret"));
        assert_eq!(wrong, "QpuQa+geSeGNFIceuqIn2wMB7bl/MUclyiNJmHCj0uU=");
        assert_ne!(sign, wrong);
    }

    #[test]
    fn utf8_truncation_never_splits_a_character() {
        let text = "阻断".repeat(1000);
        let cut = truncate_utf8(&text, 4096);
        assert!(cut.len() <= 4096 && cut.len() > 4090);
        assert!(std::str::from_utf8(cut.as_bytes()).is_ok());
        assert_eq!(truncate_utf8("short", 4096), "short");
    }

    #[test]
    fn channel_debug_hides_url_and_secret() {
        let channel = Channel {
            kind: ChannelKind::DingTalk,
            url: "https://oapi.dingtalk.com/robot/send?access_token=SECRETTOKEN".into(),
            secret: Some("SECabc".into()),
        };
        let shown = format!("{channel:?}");
        assert!(
            !shown.contains("SECRETTOKEN") && !shown.contains("SECabc"),
            "{shown}"
        );
    }

    #[test]
    fn platform_answers() {
        let wecom = Channel {
            kind: ChannelKind::WeCom,
            url: String::new(),
            secret: None,
        };
        assert!(wecom
            .accepted(200, r#"{"errcode":0,"errmsg":"ok"}"#)
            .is_ok());
        assert_eq!(
            wecom
                .accepted(200, r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#)
                .unwrap_err(),
            "errcode 45009: api freq out of limit"
        );
        let feishu = Channel {
            kind: ChannelKind::Feishu,
            url: String::new(),
            secret: None,
        };
        assert!(feishu
            .accepted(200, r#"{"code":19021,"msg":"sign match fail"}"#)
            .unwrap_err()
            .contains("19021"));
        assert!(feishu.accepted(200, r#"{"StatusCode":0}"#).is_ok());
        assert!(feishu.accepted(502, "").is_err());
    }
}
