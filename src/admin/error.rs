//! Admin API refusals: one variant per reason, each with its stable code and status,
//! answered in the data-plane error shape.

use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("sign in, or send an admin token as \"Authorization: Bearer <token>\"")]
    Unauthorized,
    /// A known credential without the permission the operation needs.
    #[error("this needs the {0} permission")]
    Forbidden(crate::admin_access::Permission),
    /// Granting what the caller does not hold itself.
    #[error("you cannot grant what you do not hold yourself: {0}")]
    PermissionEscalation(String),
    #[error("a request signed in with a session cookie needs its X-CSRF-Token")]
    CsrfFailed,
    #[error("this would leave no enabled owner; make another operator an owner first")]
    LastOwner,
    #[error("wrong email or password")]
    InvalidCredentials,
    /// Sign-in throttled; the seconds until the next try.
    #[error("too many failed sign-ins for this email; try again in {0} s")]
    TooManyAttempts(u64),
    /// A unique field already taken: which one.
    #[error("{0}")]
    Taken(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("the policy blocks new legacy keys; create a fine-grained key instead")]
    LegacyKeysBlocked,
    #[error("the policy sets max_key_lifetime ({0}): expires_at is required")]
    ExpiryRequired(String),
    #[error("expires_at is beyond the policy's max_key_lifetime of {0}")]
    ExpiryBeyondMaxLifetime(String),
    #[error("expires_at cannot be changed; rotate the key to set a new expiry")]
    ExpiryImmutable,
    #[error("unknown permission \"{0}\"")]
    UnknownPermission(String),
    #[error("a fine-grained key needs at least one permission (permissions or preset)")]
    PermissionRequired,
    /// An allowlist entry, with why it was refused.
    #[error("{0}")]
    InvalidCidr(String),
    #[error("the key is revoked; revocation is final")]
    AlreadyRevoked,
    /// A second delete or revoke of a record that it ends for good (an app, a token).
    #[error("{0}")]
    AlreadyDeleted(&'static str),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInProgress,
    #[error("the record kept changing concurrently; retry")]
    Conflict,
    #[error("the store is unavailable; nothing was changed")]
    StoreUnavailable,
    #[error("the request body is over 64 KiB")]
    BodyTooLarge,
    #[error("this endpoint does not take that method")]
    MethodNotAllowed,
    /// A webhook URL that is, or resolves to, a loopback, private or link-local address.
    #[error("{0}")]
    DestinationNotAllowed(String),
}

impl AdminError {
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::InvalidRequest(_) => "invalid_request",
            AdminError::Unauthorized => "unauthorized",
            AdminError::Forbidden(_) => "forbidden",
            AdminError::PermissionEscalation(_) => "permission_escalation",
            AdminError::CsrfFailed => "csrf_failed",
            AdminError::LastOwner => "last_owner",
            AdminError::InvalidCredentials => "invalid_credentials",
            AdminError::TooManyAttempts(_) => "too_many_attempts",
            AdminError::Taken(_) => "conflict",
            AdminError::NotFound(_) => "not_found",
            AdminError::LegacyKeysBlocked => "legacy_keys_blocked",
            AdminError::ExpiryRequired(_) => "expiry_required",
            AdminError::ExpiryBeyondMaxLifetime(_) => "expiry_beyond_max_lifetime",
            AdminError::ExpiryImmutable => "expiry_immutable",
            AdminError::UnknownPermission(_) => "unknown_permission",
            AdminError::PermissionRequired => "permission_required",
            AdminError::InvalidCidr(_) => "invalid_cidr",
            AdminError::AlreadyRevoked | AdminError::AlreadyDeleted(_) => "already_revoked",
            AdminError::IdempotencyKeyReused => "idempotency_key_reused",
            AdminError::IdempotencyInProgress => "idempotency_in_progress",
            AdminError::Conflict => "conflict",
            AdminError::StoreUnavailable => "store_unavailable",
            AdminError::BodyTooLarge => "body_too_large",
            AdminError::MethodNotAllowed => "method_not_allowed",
            AdminError::DestinationNotAllowed(_) => "destination_not_allowed",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized | AdminError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden(_)
            | AdminError::PermissionEscalation(_)
            | AdminError::CsrfFailed => StatusCode::FORBIDDEN,
            AdminError::LastOwner | AdminError::Taken(_) => StatusCode::CONFLICT,
            AdminError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::LegacyKeysBlocked => StatusCode::FORBIDDEN,
            AdminError::AlreadyRevoked
            | AdminError::AlreadyDeleted(_)
            | AdminError::IdempotencyInProgress
            | AdminError::Conflict => StatusCode::CONFLICT,
            AdminError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => AdminError::NotFound("record"),
            StoreError::Conflict | StoreError::Duplicate => AdminError::Conflict,
            StoreError::LastOwner => AdminError::LastOwner,
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "admin store operation failed");
                AdminError::StoreUnavailable
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "error": {"code": self.code(), "message": self.to_string(), "request_id": request_id}
        });
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let Ok(value) = request_id.parse() {
            response.headers_mut().insert("x-request-id", value);
        }
        if matches!(self, AdminError::Unauthorized) {
            if let Ok(value) = "Bearer realm=\"tollgate-admin\"".parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::WWW_AUTHENTICATE, value);
            }
        }
        if let AdminError::TooManyAttempts(seconds) = self {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.max(1).into());
        }
        response
    }
}
