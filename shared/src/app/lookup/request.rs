//! What every route takes and gives: who asked and by when ([`Invocation`]), the query
//! parameters as sent ([`Params`]) and as the route's typed struct ([`Query`]), and the answer
//! forms (a typed JSON answer, a JSON text already written, a [`Failure`] as a status the error
//! layer turns into the JSON error body).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::{fail, Failure};
use crate::events::apigw::QueryValue;
use serde::Serialize;
use utoipa::ToSchema;

/// Who asked and by when the answer is due: the SCF invocation's request id and deadline, put
/// in the request's extensions by whoever hands the request to the router. Without one a
/// request gets a fresh id and [`DEFAULT_TIMEOUT`].
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The id error answers carry (SCF's request id).
    pub request_id: String,
    /// When the answer must be made by.
    pub deadline: Instant,
}

/// How long a request without an [`Invocation`] may take: the lookup function's deployed limit
/// (`template.yaml`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

impl Invocation {
    pub(crate) fn fresh() -> Self {
        Self {
            request_id: format!("{:016x}", fastrand::u64(..)),
            deadline: Instant::now() + DEFAULT_TIMEOUT,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Invocation {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Invocation>()
            .cloned()
            .unwrap_or_else(Invocation::fresh))
    }
}

/// A request's query parameters: names and values percent-decoded once, `+` kept as `+` (an
/// RFC 3339 offset, as the SCF event carries it), a name given twice kept with every value (the
/// routes refuse it, naming it), a bare name (`?verbose`) read as the empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pub(crate) query_string: BTreeMap<String, QueryValue>,
}

impl Params {
    /// The parameters of a URI's query text.
    pub fn parse(query: &str) -> Self {
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut query_string: BTreeMap<String, QueryValue> = BTreeMap::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (decode(name), decode(value)),
                None => (decode(pair), String::new()),
            };
            let merged = match query_string.remove(&name) {
                None => QueryValue::One(value),
                Some(QueryValue::Many(mut values)) => {
                    values.push(value);
                    QueryValue::Many(values)
                }
                Some(earlier) => {
                    let first = earlier.first().unwrap_or_default().to_string();
                    QueryValue::Many(vec![first, value])
                }
            };
            query_string.insert(name, merged);
        }
        Self { query_string }
    }

    /// A parameter's first value.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_string.get(name).and_then(QueryValue::first)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query().unwrap_or("")))
    }
}

impl IntoResponse for Failure {
    /// The status alone; the error layer writes the body, with the request id.
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// A request body as `T`, with `code` and the `hint` on any refusal. A key given twice in any
/// object is refused by name: JSON leaves duplicates undefined and serde_json would keep the
/// last one silently.
pub(crate) fn body_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    code: &'static str,
    hint: &str,
) -> Result<T, Failure> {
    let refuse = |e: serde_json::Error| fail(400, code, format!("the body: {e}{hint}"));
    serde_json::from_slice::<UniqueKeys>(body).map_err(refuse)?;
    serde_json::from_slice(body).map_err(refuse)
}

/// Walks a JSON value, refusing an object that names a key twice.
struct UniqueKeys;

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "the key {} is given twice",
                    crate::core::text::shown(&key)
                )));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(self)
    }
}

/// A JSON answer already written out.
pub(crate) fn json_text(text: Box<serde_json::value::RawValue>) -> Response {
    let text: Box<str> = text.into();
    (
        [(header::CONTENT_TYPE, "application/json")],
        String::from(text),
    )
        .into_response()
}

pub(crate) type Answer<T> = Result<Json<T>, Failure>;

/// A route's query parameters as its typed struct: the same struct that describes them in
/// `openapi.json` (utoipa's `IntoParams`) names what the route reads, so nothing is described
/// that is not read. A name the route does not read, or a name given twice, is refused before
/// anything is parsed (`unknown_parameter`, `repeated_parameter`): a filter the route would
/// ignore must not silently widen an auditor's search. An empty value counts as not given.
#[derive(Debug)]
pub(crate) struct Query<T>(pub T);

/// What [`Query`] can read: a parameter struct, or two side by side.
pub(crate) trait QueryParams: Sized {
    /// The names the struct documents, in the document's order.
    fn names() -> Vec<String>;
    /// The struct, from the given (single, non-empty) values.
    fn read(values: &serde_json::Map<String, serde_json::Value>) -> Result<Self, Failure>;
}

/// The names an `IntoParams` struct documents.
pub(crate) fn documented<T: IntoParams>() -> Vec<String> {
    T::into_params(|| None)
        .into_iter()
        .map(|parameter| parameter.name)
        .collect()
}

/// `T` from the values (its fields are text; the route validates each, naming it).
pub(crate) fn deserialize<T: DeserializeOwned>(
    values: &serde_json::Map<String, serde_json::Value>,
) -> Result<T, Failure> {
    serde_json::from_value(serde_json::Value::Object(values.clone()))
        .map_err(|error| fail(400, "bad_request", error.to_string()))
}

/// Makes each named `IntoParams` struct a [`QueryParams`]: the resource modules name their
/// parameter structs with it.
macro_rules! query_params {
    ($($params:ty),* $(,)?) => {$(
        impl $crate::app::lookup::request::QueryParams for $params {
            fn names() -> Vec<String> {
                // Read from the document once, not on every request.
                static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
                NAMES
                    .get_or_init($crate::app::lookup::request::documented::<$params>)
                    .clone()
            }
            fn read(
                values: &serde_json::Map<String, serde_json::Value>,
            ) -> Result<Self, $crate::app::lookup::Failure> {
                $crate::app::lookup::request::deserialize(values)
            }
        }
    )*};
}
pub(crate) use query_params;

query_params!(NoParameters);

impl<A: QueryParams, B: QueryParams> QueryParams for (A, B) {
    fn names() -> Vec<String> {
        let mut names = A::names();
        for name in B::names() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    fn read(values: &serde_json::Map<String, serde_json::Value>) -> Result<Self, Failure> {
        Ok((A::read(values)?, B::read(values)?))
    }
}

/// A route that reads no query parameter.
#[derive(Debug, Default, serde::Deserialize, IntoParams)]
pub(crate) struct NoParameters {}

impl Params {
    /// The values given once and not empty, for [`QueryParams::read`].
    pub(crate) fn values(&self) -> serde_json::Map<String, serde_json::Value> {
        self.query_string
            .iter()
            .filter_map(|(name, value)| match value {
                QueryValue::One(text) if !text.trim().is_empty() => {
                    Some((name.clone(), serde_json::Value::String(text.clone())))
                }
                _ => None,
            })
            .collect()
    }

    /// The parameters as `T`, after refusing a name `T` does not document or a name given
    /// twice; `path` is the route, for the message.
    pub(crate) fn typed<T: QueryParams>(&self, path: &str) -> Result<T, Failure> {
        let accepted = T::names();
        let unknown: Vec<&str> = self
            .query_string
            .keys()
            .map(String::as_str)
            .filter(|name| !accepted.iter().any(|a| a == name))
            .collect();
        if !unknown.is_empty() {
            let reads = if accepted.is_empty() {
                "no query parameters".to_string()
            } else {
                accepted.join(", ")
            };
            return Err(fail(
                400,
                "unknown_parameter",
                format!(
                    "{path} does not read {}; it reads {reads}",
                    unknown.join(", ")
                ),
            ));
        }
        let repeated: Vec<&str> = self
            .query_string
            .iter()
            .filter(|(_, value)| matches!(value, QueryValue::Many(v) if v.len() > 1))
            .map(|(name, _)| name.as_str())
            .collect();
        if !repeated.is_empty() {
            return Err(fail(
                400,
                "repeated_parameter",
                format!("{} given more than once", repeated.join(", ")),
            ));
        }
        T::read(&self.values())
    }
}

impl<S: Send + Sync, T: QueryParams> FromRequestParts<S> for Query<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let path = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
        Params::parse(parts.uri.query().unwrap_or(""))
            .typed(&path)
            .map(Query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Query text is read as the SCF event carries it: decoded once, `+` kept (an RFC 3339
    /// offset), a repeated name kept with every value, a bare name as the empty string.
    #[test]
    fn query_text_is_decoded_once_and_keeps_plus() {
        let params = Params::parse("until=2025-11-25T00%3A00%3A00+08:00&%69p=1&ip=2&verbose&&=x");
        assert_eq!(params.query("until"), Some("2025-11-25T00:00:00+08:00"));
        assert_eq!(
            params.query_string["ip"],
            QueryValue::Many(vec!["1".into(), "2".into()])
        );
        assert_eq!(params.query("verbose"), Some(""));
        assert_eq!(params.query(""), Some("x"));
        assert_eq!(Params::parse(""), Params::default());
    }
}

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code (`unknown_parameter`, `unauthorized`, …).
    pub code: String,
    /// In words, naming the field or parameter at fault (500: only "internal error").
    pub message: String,
    /// The invocation's request id, for the function's logs.
    pub request_id: String,
}
