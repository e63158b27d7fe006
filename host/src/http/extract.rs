//! Request extractors whose failures are API errors naming the field, instead of
//! axum's plain-text rejections.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest accepted request body (task data is at most 64 KiB; this leaves room for
/// the JSON around it and for bulk id lists).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON request body. The body must be `application/json`; a field that is missing,
/// unknown or of the wrong type is answered with 422 naming it.
pub struct JsonBody<T>(pub T);

/// Like [`JsonBody`], but an empty body (or none) is `T::default()`.
pub struct OptionalJson<T>(pub T);

async fn read_body(req: Request) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        })
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// The 400 for a body that is not JSON.
fn invalid_json(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!("the request body is not valid JSON: {e}"),
    )
}

/// Parses a JSON request body into `T`, naming the field of a mismatch. Every body of
/// this API is a JSON object: anything else (an array, which serde would otherwise
/// read into a struct field by field, a string, a number, `null`) is refused with 422
/// naming `body`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Well-formed JSON of another kind is a body of the wrong shape; malformed JSON
        // is a 400 whatever it starts with.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::invalid(
                    "body",
                    "invalid_field",
                    "the request body must be a JSON object ({\"field\": value, ...})",
                ),
                Err(e) => invalid_json(&e),
            },
        );
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let inner = e.inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(invalid_json(inner));
            }
            let path = e.path().to_string();
            let text = inner.to_string();
            // serde reports missing and unknown fields at their parent; name the field.
            let named = ["missing field `", "unknown field `"]
                .iter()
                .find_map(|p| text.strip_prefix(p))
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned);
            let field = match (named, path.as_str()) {
                // An unknown field's path already ends with it; a missing one's is its
                // parent.
                (Some(f), p) if p == f || p.ends_with(&format!(".{f}")) => p.to_owned(),
                (Some(f), "." | "") => f,
                (Some(f), parent) => format!("{parent}.{f}"),
                (None, p) if p != "." => p.to_owned(),
                (None, _) => "body".to_owned(),
            };
            let message = match text.find(" at line ") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            Err(ApiError::invalid(
                &field,
                "invalid_field",
                format!("{field}: {message}"),
            ))
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        if !is_json(&req) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the request body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = read_body(req).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let json = is_json(&req);
        let bytes = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the request body as JSON with Content-Type: application/json",
            ));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// For an optional body field (`#[serde(default, deserialize_with = "not_null")]` on an
/// `Option<T>`) that may be left out but not sent as `null`: a `null` is refused like
/// any other value of the wrong type, naming the field (a client that sends `null`
/// for a value it means to leave out learns so instead of getting the default).
pub fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Query parameters, checked by name: unknown ones are refused (a misspelt filter must
/// not silently list everything). A parameter with a fixed form (a name from a list, a
/// number, a date: [`Params::value`], [`Params::int`]) is left out or given a value,
/// never empty (`?status=` is refused, not read as "any status"); an empty free-text
/// filter ([`Params::text`], [`Params::literal`]) is no filter.
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query)?;
        let mut map = HashMap::new();
        for (k, v) in pairs {
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::bad_field(
                    &k,
                    "repeated_parameter",
                    format!("query parameter '{k}' is given more than once"),
                ));
            }
        }
        Ok(Params(map))
    }
}

/// Decodes `a=1&b=x%20y` (the same rules as HTML forms).
fn serde_urlencoded_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}").parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "the query string is malformed",
            )
        })?,
    )
    .map(|q| q.0)
    .map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query string is malformed",
        )
    })
}

impl Params {
    /// Refuses parameters other than `allowed`.
    pub fn allow(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let mut unknown: Vec<&String> = self
            .0
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect();
        unknown.sort();
        match unknown.first() {
            None => Ok(()),
            Some(k) => Err(ApiError::bad_field(
                k,
                "unknown_parameter",
                format!(
                    "unknown query parameter '{k}'; this endpoint takes: {}",
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ),
            )),
        }
    }

    /// A parameter with a fixed form (a name from a list, a number, a date) exactly as
    /// given, so that spaces around it are refused like any other wrong value; an
    /// empty value is refused (400 `empty_parameter`), not taken as absent.
    pub fn value(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(name).map(String::as_str) {
            Some("") => Err(ApiError::bad_field(
                name,
                "empty_parameter",
                format!("query parameter '{name}' is empty; leave it out or give it a value"),
            )),
            v => Ok(v),
        }
    }

    /// A free-text parameter (surrounding white space removed; empty or only white
    /// space counts as absent: no filter).
    pub fn text(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A free-text parameter, kept as given but for surrounding spaces: tabs, line
    /// breaks and other control characters are part of the text (a search for one
    /// matches it literally). Empty counts as absent.
    pub fn literal(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .map(|v| v.trim_matches(' ').to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A whole-number parameter within `[min, max]`.
    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.value(name)? else {
            return Ok(None);
        };
        let n: i64 = v.parse().map_err(|_| {
            ApiError::bad_field(
                name,
                "invalid_parameter",
                format!("{name} must be a whole number between {min} and {max}, not '{v}'"),
            )
        })?;
        if n < min || n > max {
            return Err(ApiError::bad_field(
                name,
                "invalid_parameter",
                format!("{name} must be between {min} and {max}, got {n}"),
            ));
        }
        Ok(Some(n))
    }
}

/// A path parameter that must be a task or token id: a whole number from 1 to
/// `i64::MAX` (what the OpenAPI description says); anything else, a larger number
/// included, is refused with 400 naming `id`.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_field("id", "invalid_id", "the id in the path is malformed")
            })?;
        let raw = params.get("id").cloned().unwrap_or_default();
        match raw.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Id(n)),
            _ => Err(ApiError::bad_field(
                "id",
                "invalid_id",
                format!(
                    "'{raw}' is not an id: ids are whole numbers from 1 to {}",
                    i64::MAX
                ),
            )),
        }
    }
}

/// The path parameters as text (worker identifiers, user names, file names).
pub struct PathText(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for PathText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| PathText(p))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path",
                    "the path is malformed (not valid UTF-8 after decoding)",
                )
            })
    }
}

impl PathText {
    /// One parameter (empty when missing).
    pub fn get(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default, deserialize_with = "not_null")]
        age: Option<String>,
        #[serde(default)]
        all: bool,
    }

    #[test]
    fn only_a_json_object_is_a_body() {
        for text in ["[]", "[\"1d\", true]", " null", "\"x\"", "3", "true"] {
            let e = parse_json::<Body>(text.as_bytes()).unwrap_err();
            assert_eq!(
                (e.status, e.field.as_deref()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some("body")),
                "{text}"
            );
        }
        // Broken JSON stays a 400, whatever it starts with.
        for text in ["[1,", "{", "nul", ""] {
            let e = parse_json::<Body>(text.as_bytes()).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (StatusCode::BAD_REQUEST, "invalid_json"),
                "{text}"
            );
        }
        let b: Body = parse_json(b" {\"age\": \"1d\", \"all\": true}").unwrap();
        assert_eq!((b.age.as_deref(), b.all), (Some("1d"), true));
    }

    #[test]
    fn an_optional_field_is_left_out_not_null() {
        let b: Body = parse_json(b"{}").unwrap();
        assert_eq!(b.age, None);
        let e = parse_json::<Body>(b"{\"age\": null}").unwrap_err();
        assert_eq!(
            (e.status, e.field.as_deref()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("age"))
        );
    }
}
