//! Parameters of the OAuth endpoints (form-encoded or JSON, each at most once) and the
//! RFC 6749 error form.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use std::collections::HashMap;

/// An error of RFC 6749 (section 5.2 at the token endpoint, 4.1.2.1 at authorize), one
/// variant per code, each with the description sent beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    InvalidRequest(String),
    InvalidClient(String),
    InvalidGrant(String),
    UnauthorizedClient(String),
    UnsupportedGrantType(String),
    InvalidScope(String),
    ServerError(String),
    /// The store cannot be reached: the client may try again shortly.
    TemporarilyUnavailable,
}

impl OAuthError {
    pub fn invalid_request(description: impl Into<String>) -> Self {
        OAuthError::InvalidRequest(description.into())
    }

    pub fn invalid_client(description: impl Into<String>) -> Self {
        OAuthError::InvalidClient(description.into())
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        OAuthError::InvalidGrant(description.into())
    }

    pub fn unavailable() -> Self {
        OAuthError::TemporarilyUnavailable
    }

    /// The `error` code of the RFC.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType(_) => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::ServerError(_) => "server_error",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> &str {
        match self {
            OAuthError::InvalidRequest(text)
            | OAuthError::InvalidClient(text)
            | OAuthError::InvalidGrant(text)
            | OAuthError::UnauthorizedClient(text)
            | OAuthError::UnsupportedGrantType(text)
            | OAuthError::InvalidScope(text)
            | OAuthError::ServerError(text) => text,
            OAuthError::TemporarilyUnavailable => "the store is unavailable; try again shortly",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            OAuthError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::ServerError(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::warn!(%error, "OAuth store operation failed");
        OAuthError::unavailable()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({"error": self.code(), "error_description": self.description()});
        let mut response = no_store((self.status(), Json(body)).into_response());
        if matches!(self, OAuthError::InvalidClient(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tollgate\""),
            );
        }
        response
    }
}

/// Token responses must not be cached (RFC 6749 section 5.1).
pub fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The request's parameters by name. A repeated parameter is refused (RFC 6749 section 3.1).
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses a form-encoded body, or a JSON object of strings when the content type says
    /// JSON.
    pub fn from_body(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
        if json {
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
                .map_err(|e| {
                OAuthError::invalid_request(format!("the JSON body is not an object: {e}"))
            })?;
            let mut map = HashMap::new();
            for (name, value) in object {
                let value = match value {
                    serde_json::Value::String(text) => text,
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => {
                        return Err(OAuthError::invalid_request(format!(
                            "{name} must be a string"
                        )))
                    }
                };
                map.insert(name, value);
            }
            return Ok(Params(map));
        }
        Self::from_pairs(url::form_urlencoded::parse(body))
    }

    pub fn from_query(query: Option<&str>) -> Result<Params, OAuthError> {
        Self::from_pairs(url::form_urlencoded::parse(
            query.unwrap_or_default().as_bytes(),
        ))
    }

    fn from_pairs<'a>(
        pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
    ) -> Result<Params, OAuthError> {
        let mut map = HashMap::new();
        for (name, value) in pairs {
            if map.insert(name.to_string(), value.into_owned()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "{name} is given more than once"
                )));
            }
        }
        Ok(Params(map))
    }

    /// A parameter; an empty value counts as absent (RFC 6749 section 3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
    }
}

/// `client_id` and `client_secret` from HTTP Basic (RFC 6749 section 2.3.1), if sent.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Err(OAuthError::invalid_client(
            "client authentication must use HTTP Basic",
        ));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
    let unescape = |text: &str| {
        percent_encoding::percent_decode_str(&text.replace('+', " "))
            .decode_utf8()
            .map(|t| t.into_owned())
            .map_err(|_| OAuthError::invalid_client("malformed Basic credentials"))
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        let headers = HeaderMap::new();
        assert!(Params::from_body(&headers, b"grant_type=a&grant_type=b").is_err());
        let ok = Params::from_body(&headers, b"grant_type=client_credentials&scope=a+b").unwrap();
        assert_eq!(ok.get("scope"), Some("a b"));
        assert_eq!(ok.get("missing"), None);
    }

    #[test]
    fn json_bodies_are_accepted() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let params =
            Params::from_body(&headers, br#"{"grant_type": "client_credentials"}"#).unwrap();
        assert_eq!(params.get("grant_type"), Some("client_credentials"));
        assert!(Params::from_body(&headers, b"[1]").is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode("cid_a%3Ab:s%2Fecret");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers).unwrap(),
            Some(("cid_a:b".into(), "s/ecret".into()))
        );
    }
}
