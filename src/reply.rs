//! What an answer carries, as data: the status, headers and JSON body of a refusal, and the
//! identity, limit and grace headers of an admitted request. The proxy's `respond.rs`
//! writes them to the client, the upstream request gets the identity, and forward auth
//! answers with the very same values, so no header rule is written twice.

use crate::denial::{error_body, Denial};
use crate::gate::Caller;
use crate::policy::rate_limit::{headers as limit_headers, Verdict};
use crate::store::snapshot::Grace;
use bytes::Bytes;
use http::HeaderValue;

/// A caller's standing in its windows, with the cached `RateLimit-Policy` value.
pub type Limits = (Verdict, HeaderValue);

/// Header names and values, in the order they are written.
pub type Headers = Vec<(&'static str, HeaderValue)>;

/// A refusal as the client sees it (SPEC section 4).
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub headers: Headers,
    pub body: Bytes,
}

pub fn refusal(
    denial: &Denial,
    request_id: &str,
    limits: Option<&Limits>,
    grace: Option<&Grace>,
) -> Refusal {
    let body = Bytes::from(error_body(denial, request_id));
    let mut headers: Headers = Vec::with_capacity(12);
    headers.push(("content-type", HeaderValue::from_static("application/json")));
    headers.push(("content-length", HeaderValue::from(body.len())));
    headers.push(("cache-control", HeaderValue::from_static("no-store")));
    headers.push(("x-request-id", text(request_id)));
    headers.extend(limit(limits));
    headers.extend(deprecation(grace));
    if denial.status() == 401 {
        let challenge = if denial.credential_refused() {
            "Bearer realm=\"tollgate\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"tollgate\""
        };
        headers.push(("www-authenticate", HeaderValue::from_static(challenge)));
    }
    Refusal {
        status: denial.status(),
        headers,
        body,
    }
}

/// `X-RateLimit-*`, `RateLimit-Policy`, `RateLimit` and, when refused, `Retry-After`.
pub fn limit(limits: Option<&Limits>) -> Headers {
    limits.map_or_else(Vec::new, |(verdict, policy)| {
        limit_headers::headers(verdict, policy)
    })
}

/// The identity an admitted request carries upstream (SPEC section 4).
pub fn identity(caller: Option<&Caller>) -> Headers {
    let method = caller.map_or("anonymous", Caller::method);
    let mut headers: Headers = vec![("x-tollgate-auth-method", HeaderValue::from_static(method))];
    if let Some(identity) = caller.and_then(Caller::identity) {
        headers.push(("x-tollgate-subject", text(&identity.subject)));
        headers.push(("x-tollgate-client-id", text(&identity.client_id)));
        headers.push(("x-tollgate-permissions", identity.permissions.clone()));
    }
    if let Some(key) = caller.and_then(Caller::key) {
        headers.push((
            "x-tollgate-environment",
            HeaderValue::from_static(key.environment.as_str()),
        ));
        if let Some(owner) = key.owner() {
            headers.push(("x-tollgate-owner-id", owner.header.clone()));
        }
    }
    headers
}

/// A request made with a key's previous secret, during its grace period: `Deprecation`
/// (RFC 9745) dates the rotation and `Sunset` (RFC 8594) the end of the grace, so an
/// integration can see that it must switch to the new secret.
pub fn deprecation(grace: Option<&Grace>) -> Headers {
    let Some(grace) = grace else {
        return Vec::new();
    };
    vec![
        (
            "deprecation",
            text(&format!("@{}", grace.since.div_euclid(1000))),
        ),
        ("sunset", text(&crate::clock::http_date(grace.until))),
    ]
}

/// The request id: a client-sent `X-Request-Id` is kept when it is 1–128 of
/// `A-Za-z0-9._:-`, else a new UUID.
pub fn request_id(sent: Option<&[u8]>) -> String {
    match sent {
        Some(value)
            if (1..=128).contains(&value.len())
                && value.iter().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
                }) =>
        {
            String::from_utf8_lossy(value).into_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// Values that come from ids, names and dates the gateway made: always valid header text,
/// and anything else is left out rather than sent half.
pub fn text(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}
