//! Why a request was refused: one variant per reason, each with its stable code and status.

use std::fmt;
use std::sync::Arc;

/// A refusal on the data plane. The code, the status and the metric label come from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Both `X-API-Key` and `Authorization` were sent.
    BothCredentials,
    /// An `Authorization` header that is not `Bearer <credential>`.
    MalformedAuthorization,
    /// A path that cannot be normalised, or framing we refuse to guess about.
    BadRequest(&'static str),
    MissingCredentials,
    InvalidApiKey,
    InvalidToken,
    TokenExpired,
    KeyExpired,
    KeyRevoked,
    WrongEnvironment,
    IpNotAllowed,
    /// The key is bound to a client certificate the connection did not present.
    ClientCertificateRequired,
    InsufficientPermission {
        missing: Arc<str>,
    },
    RouteNotFound,
    RateLimited,
    QuotaExceeded,
    /// The key's or its owner's credits are below the route's cost.
    CreditsExhausted,
    UpstreamUnavailable,
    StoreUnavailable,
    UpstreamTimeout,
    /// The request head took longer than the head deadline.
    HeadTimeout,
    /// More than the allowed header bytes or header count.
    HeadersTooLarge,
    UriTooLong,
    BodyTooLarge,
    /// A fault of the gateway itself.
    Internal,
}

impl Denial {
    /// The stable error code of SPEC section 4.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::BothCredentials | Denial::MalformedAuthorization | Denial::BadRequest(_) => {
                "invalid_request"
            }
            Denial::MissingCredentials => "missing_credentials",
            Denial::InvalidApiKey => "invalid_api_key",
            Denial::InvalidToken => "invalid_token",
            Denial::TokenExpired => "token_expired",
            Denial::KeyExpired => "key_expired",
            Denial::KeyRevoked => "key_revoked",
            Denial::WrongEnvironment => "wrong_environment",
            Denial::IpNotAllowed => "ip_not_allowed",
            Denial::ClientCertificateRequired => "client_certificate_required",
            Denial::InsufficientPermission { .. } => "insufficient_permission",
            Denial::RouteNotFound => "route_not_found",
            Denial::RateLimited => "rate_limited",
            Denial::QuotaExceeded => "quota_exceeded",
            Denial::CreditsExhausted => "credits_exhausted",
            Denial::UpstreamUnavailable => "upstream_unavailable",
            Denial::StoreUnavailable => "store_unavailable",
            Denial::UpstreamTimeout => "upstream_timeout",
            Denial::HeadTimeout => "request_timeout",
            Denial::HeadersTooLarge => "headers_too_large",
            Denial::UriTooLong => "uri_too_long",
            Denial::BodyTooLarge => "body_too_large",
            Denial::Internal => "internal_error",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Denial::BothCredentials | Denial::MalformedAuthorization | Denial::BadRequest(_) => 400,
            Denial::MissingCredentials
            | Denial::InvalidApiKey
            | Denial::InvalidToken
            | Denial::TokenExpired
            | Denial::KeyExpired
            | Denial::KeyRevoked
            | Denial::WrongEnvironment => 401,
            Denial::IpNotAllowed
            | Denial::ClientCertificateRequired
            | Denial::InsufficientPermission { .. } => 403,
            Denial::RouteNotFound => 404,
            Denial::HeadTimeout => 408,
            Denial::BodyTooLarge => 413,
            Denial::UriTooLong => 414,
            Denial::RateLimited | Denial::QuotaExceeded | Denial::CreditsExhausted => 429,
            Denial::HeadersTooLarge => 431,
            Denial::Internal => 500,
            Denial::UpstreamUnavailable => 502,
            Denial::StoreUnavailable => 503,
            Denial::UpstreamTimeout => 504,
        }
    }

    /// Whether the caller presented a credential that was refused (RFC 6750 `invalid_token`).
    pub fn credential_refused(&self) -> bool {
        self.status() == 401 && *self != Denial::MissingCredentials
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::BothCredentials => {
                f.write_str("send one credential: either X-API-Key or Authorization, not both")
            }
            Denial::MalformedAuthorization => {
                f.write_str("the Authorization header must be \"Bearer <api key or access token>\"")
            }
            Denial::BadRequest(why) => f.write_str(why),
            Denial::MissingCredentials => {
                f.write_str("this route needs an API key (X-API-Key) or a bearer token")
            }
            Denial::InvalidApiKey => f.write_str("the API key is not valid"),
            Denial::InvalidToken => f.write_str("the access token is not valid"),
            Denial::TokenExpired => f.write_str("the access token has expired"),
            Denial::KeyExpired => f.write_str("the API key has expired"),
            Denial::KeyRevoked => f.write_str("the API key has been revoked or rotated"),
            Denial::WrongEnvironment => {
                f.write_str("the key belongs to another environment than this gateway")
            }
            Denial::IpNotAllowed => {
                f.write_str("requests from this address are not allowed for this credential")
            }
            Denial::ClientCertificateRequired => f.write_str(
                "this credential works only over a connection that presents its client certificate",
            ),
            Denial::InsufficientPermission { missing } => {
                write!(f, "this route requires the permission \"{missing}\"")
            }
            Denial::RouteNotFound => f.write_str("no route matches this method and path"),
            Denial::RateLimited => f.write_str("too many requests; retry after the window resets"),
            Denial::QuotaExceeded => {
                f.write_str("the daily quota is used up; it resets at 00:00 UTC")
            }
            Denial::CreditsExhausted => f.write_str(
                "no credits left for this request; they come back with a refill or a top-up",
            ),
            Denial::UpstreamUnavailable => f.write_str("the upstream could not be reached"),
            Denial::StoreUnavailable => {
                f.write_str("the credential store is unreachable; try again shortly")
            }
            Denial::UpstreamTimeout => f.write_str("the upstream did not answer in time"),
            Denial::HeadTimeout => f.write_str("the request head was not received in time"),
            Denial::HeadersTooLarge => f.write_str("the request headers are too large or too many"),
            Denial::UriTooLong => f.write_str("the request URI is too long"),
            Denial::BodyTooLarge => f.write_str("the request body is too large"),
            Denial::Internal => f.write_str("the gateway failed to handle the request"),
        }
    }
}

/// The JSON error body of SPEC section 4.
pub fn error_body(denial: &Denial, request_id: &str) -> String {
    serde_json::json!({
        "error": {
            "code": denial.code(),
            "message": denial.to_string(),
            "request_id": request_id,
        }
    })
    .to_string()
}
