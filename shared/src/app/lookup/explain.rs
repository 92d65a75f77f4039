//! `POST /v1/explain`: one flow or a batch explained against the current snapshot, within the
//! answer budget.

use axum::body::Bytes;
use axum::extract::State;

use super::request::{body_json, json_text};
use super::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/explain`: one flow, or `{"flows": [...]}`.
#[utoipa::path(post, path = "/v1/explain", tag = "lookup",
    summary = "Which rule decides a flow, and why",
    description = "One flow, or `{\"flows\": [...]}` with up to 1,000: each explained against the current snapshot.",
    request_body = ExplainBody,
    responses(
        (status = 200, description = "the explanation, or one per flow for the batch form", body = ExplainAnswer),
        (status = 400, description = "malformed JSON or an invalid field (named in the message)", body = ErrorBody), (status = 401, description = "missing or invalid token", body = ErrorBody), (status = 405, description = "wrong method", body = ErrorBody),
        (status = 413, description = "body over the cap; or an answer that would not fit the 6 MB SCF lets a function return (`answer_too_large`, naming how many flows fit)", body = ErrorBody),
        (status = 503, description = "no snapshot", body = ErrorBody),
    ))]
pub(crate) async fn explain_flows(
    State(lookup): State<Lookup>,
    call: Invocation,
    _: Query<NoParameters>,
    body: Bytes,
) -> Result<Response, Failure> {
    let engine = lookup.engine(call.deadline).await?;
    explain(&engine, &body).map(json_text)
}

pub(crate) fn parse_flow(
    value: &Value,
    prefix: &str,
) -> Result<(FlowKey, Option<String>, bool), Failure> {
    let query: FlowQuery = serde_json::from_value(value.clone())
        .map_err(|e| fail(400, "invalid_body", format!("{prefix}{e}")))?;
    let address = |name: &str, text: &str| {
        text.trim().parse::<IpAddr>().map_err(|_| {
            field_error(
                &format!("{prefix}{name}"),
                format!("{} is not an IP address", shown(text)),
            )
        })
    };
    let src = address("src", &query.src)?;
    let dst = address("dst", &query.dst)?;
    let protocol = match &query.protocol {
        Value::String(text) => {
            crate::core::flowlog::protocol::requested(text).ok_or_else(|| {
                field_error(
                    &format!("{prefix}protocol"),
                    format!("{} is not tcp, udp, icmp, icmpv6 or 0-255", shown(text)),
                )
            })?
        }
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| {
                field_error(&format!("{prefix}protocol"), format!("{n} is not 0-255"))
            })?,
        other => {
            return Err(field_error(
                &format!("{prefix}protocol"),
                format!("{other} is not a protocol"),
            ))
        }
    };
    let port =
        match &query.port {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| {
                        field_error(&format!("{prefix}port"), format!("{n} is not 0-65535"))
                    })?,
            ),
            Some(Value::String(s)) => Some(s.trim().parse::<u16>().map_err(|_| {
                field_error(&format!("{prefix}port"), format!("{s:?} is not 0-65535"))
            })?),
            Some(other) => {
                return Err(field_error(
                    &format!("{prefix}port"),
                    format!("{other} is not a port"),
                ))
            }
        };
    if matches!(protocol, 6 | 17) && port.is_none() {
        return Err(field_error(
            &format!("{prefix}port"),
            "required for TCP and UDP",
        ));
    }
    Ok((
        FlowKey::requested(src, dst, protocol, port),
        query.eni,
        query.verbose,
    ))
}

/// Explains one flow or a batch. Each explanation is written out as soon as it is made and
/// dropped, so memory holds one explanation and the answer; an answer that would pass
/// [`MAX_ANSWER_BYTES`] is refused with 413, saying how many flows do fit.
pub(crate) fn explain(engine: &Engine, body: &[u8]) -> Result<Box<RawValue>, Failure> {
    let too_large = |fit: usize, total: usize| {
        fail(
            413,
            "answer_too_large",
            if fit == 0 {
                "the explanation is over the 6 MB an answer may carry: ask without \"verbose\""
                    .to_string()
            } else {
                format!(
                    "the explanations of the first {fit} of {total} flows fill the 6 MB an answer may carry: send at most {fit} flows per request, or without \"verbose\""
                )
            },
        )
    };
    let parsed: ExplainBody = body_json(body, "invalid_json", "")?;
    let text = match parsed {
        ExplainBody::Batch { flows } => {
            if flows.len() > MAX_BATCH {
                return Err(field_error(
                    "flows",
                    format!("{} flows, more than {MAX_BATCH}", flows.len()),
                ));
            }
            let flows = flows
                .iter()
                .enumerate()
                .map(|(i, value)| parse_flow(value, &format!("flows[{i}].")))
                .collect::<Result<Vec<_>, _>>()?;
            let mut text = format!(
                "{{\"snapshot_version\":{},\"results\":[",
                json!(engine.version())
            );
            let mut weight = escaped_len(&text);
            for (i, (flow, eni, verbose)) in flows.iter().enumerate() {
                let mut view = ExplainView::of(engine, flow, eni.as_deref(), detail(*verbose));
                // The batch names its snapshot once.
                view.snapshot_version = None;
                let item = serde_json::to_string(&view).expect("plain data serializes");
                weight += escaped_len(&item) + 1;
                if weight + 2 > MAX_ANSWER_BYTES {
                    return Err(too_large(i, flows.len()));
                }
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&item);
            }
            text.push_str("]}");
            text
        }
        ExplainBody::One(value) => {
            let (flow, eni, verbose) = parse_flow(&value, "")?;
            let view = ExplainView::of(engine, &flow, eni.as_deref(), detail(verbose));
            let text = serde_json::to_string(&ExplainAnswer::One(Box::new(view)))
                .expect("plain data serializes");
            if escaped_len(&text) > MAX_ANSWER_BYTES {
                return Err(too_large(0, 1));
            }
            text
        }
    };
    Ok(RawValue::from_string(text).expect("the answer is JSON"))
}

pub(crate) fn detail(verbose: bool) -> Detail {
    if verbose {
        Detail::Full
    } else {
        Detail::Summary
    }
}

/// Most flows in one batch explain.
pub(crate) const MAX_BATCH: usize = 1000;

/// A flow to explain (`POST /v1/explain`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlowQuery {
    /// The source address.
    pub src: String,
    /// The destination address.
    pub dst: String,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `any`, or a protocol number 0-255 (a string or a number).
    #[schema(value_type = String)]
    pub protocol: Value,
    /// The destination port (a number or a string); required for TCP and UDP.
    #[serde(default)]
    #[schema(value_type = Option<u16>)]
    pub port: Option<Value>,
    /// The ENI that recorded the flow, when known.
    #[serde(default)]
    pub eni: Option<String>,
    /// Describe every rule considered, not only those that matched.
    #[serde(default)]
    pub verbose: bool,
}

/// The body of `POST /v1/explain`: a batch of up to 1,000 flows, or one flow.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum ExplainBody {
    /// Up to 1,000 flows, each read as one flow is (a bad one is named by its index).
    Batch {
        /// The flows.
        #[schema(value_type = Vec<FlowQuery>, max_items = 1000)]
        flows: Vec<Value>,
    },
    /// One flow.
    #[schema(value_type = FlowQuery)]
    One(Value),
}

/// The answer of `POST /v1/explain`: one explanation, or one per flow of a batch (a batch's
/// answer is written out one explanation at a time, in this shape, to hold one in memory).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ExplainAnswer<'a> {
    /// One flow's explanation.
    One(Box<ExplainView<'a>>),
    /// A batch's explanations, in the order of its flows.
    Batch(ExplainBatch<'a>),
}

/// A batch's explanations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainBatch<'a> {
    /// The snapshot every flow was judged against.
    pub snapshot_version: &'a str,
    /// One explanation per flow (without `snapshot_version`).
    pub results: Vec<ExplainView<'a>>,
}
