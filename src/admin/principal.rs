//! Who is calling the admin API, and what they may do: the bootstrap token, an admin token
//! or a console session, each resolved to an actor and a set of admin permissions. Tokens
//! and sessions are read from the store on every call, so a revocation, a sign-out or a
//! disabled operator holds on every replica at once.

use super::{AdminError, AdminState};
use crate::admin_access::{built_in_role, Permissions};
use crate::auth::api_key::{self, Digest};
use crate::store::records::{Actor, AdminTokenRecord, OperatorRecord};
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// The console's session cookie (SPEC section 10).
pub const SESSION_COOKIE: &str = "tollgate_session";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub actor: Actor,
    /// The operator's role, or the token's.
    pub role: Option<String>,
    pub permissions: Permissions,
    /// Set when the caller came with a session cookie: the CSRF token's digest that every
    /// state-changing request must match, and the session's own.
    pub session: Option<SessionAuth>,
}

#[derive(Debug, Clone)]
pub struct SessionAuth {
    pub id_digest: Digest,
    pub csrf_digest: Digest,
}

impl Principal {
    /// `GET /me`.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.actor.kind, "id": self.actor.id, "name": self.actor.name,
            "role": self.role, "permissions": self.permissions.names(),
        })
    }

    /// Refuses to grant what the caller does not hold.
    pub fn may_grant(&self, wanted: Permissions) -> Result<(), AdminError> {
        let missing = self.permissions.missing(wanted);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(AdminError::PermissionEscalation(missing.names().join(", ")))
        }
    }
}

/// The permissions of a role: built-in, or one of `admin.roles`. An unknown role (removed
/// from the config since) grants nothing.
pub fn role_permissions(state: &AdminState, role: &str) -> Option<Permissions> {
    built_in_role(role).or_else(|| state.roles.get(role).copied())
}

/// The value of a cookie in the request.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The caller of a request, or `401 unauthorized`. A bearer credential comes first; a
/// data-plane key is never an admin credential.
pub async fn authenticate(
    state: &AdminState,
    headers: &HeaderMap,
) -> Result<Principal, AdminError> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| crate::auth::credential::bearer_token(value.as_bytes()));
    if let Some(presented) = bearer {
        if let Some(bootstrap) = &state.token {
            if bool::from(bootstrap.as_bytes().ct_eq(presented)) {
                return Ok(Principal {
                    actor: Actor::bootstrap(),
                    role: Some("owner".into()),
                    permissions: Permissions::all(),
                    session: None,
                });
            }
        }
        if api_key::is_admin_token(presented, &state.rules.key_prefix) {
            return admin_token(state, api_key::digest(presented)).await;
        }
        return Err(AdminError::Unauthorized);
    }
    match cookie(headers, SESSION_COOKIE) {
        Some(session) if !session.is_empty() => {
            session_of(state, api_key::digest(session.as_bytes())).await
        }
        _ => Err(AdminError::Unauthorized),
    }
}

/// The permissions an admin token holds: its role's, or its own list.
pub fn token_permissions(state: &AdminState, token: &AdminTokenRecord) -> Permissions {
    match &token.role {
        Some(role) => role_permissions(state, role).unwrap_or_default(),
        None => Permissions::parse(&token.permissions).unwrap_or_default(),
    }
}

async fn admin_token(state: &AdminState, digest: Digest) -> Result<Principal, AdminError> {
    let store = state.store()?;
    let now = state.now();
    let token = state
        .call(store.token_by_digest(&digest))
        .await?
        .filter(|token| token.revoked_at.is_none())
        .filter(|token| token.expires_at.is_none_or(|at| now < at.0))
        .ok_or(AdminError::Unauthorized)?;
    if let Err(error) = store.touch_token(&token.id, now).await {
        tracing::debug!(%error, "could not note an admin token's use");
    }
    Ok(Principal {
        actor: Actor::token(&token.id, &token.name),
        role: token.role.clone(),
        permissions: token_permissions(state, &token),
        session: None,
    })
}

async fn session_of(state: &AdminState, digest: Digest) -> Result<Principal, AdminError> {
    let store = state.store()?;
    let now = state.now();
    let session = state
        .call(store.session(&digest))
        .await?
        .filter(|session| session.ended_at.is_none() && now < session.expires_at)
        .ok_or(AdminError::Unauthorized)?;
    let operator: OperatorRecord = match state.call(store.get_operator(&session.operator_id)).await
    {
        Ok(operator) if !operator.disabled => operator,
        Ok(_) | Err(AdminError::NotFound(_)) => return Err(AdminError::Unauthorized),
        Err(error) => return Err(error),
    };
    Ok(Principal {
        actor: Actor::operator(&operator.id, &operator.name),
        permissions: role_permissions(state, &operator.role).unwrap_or_default(),
        role: Some(operator.role),
        session: Some(SessionAuth {
            id_digest: digest,
            csrf_digest: session.csrf_digest,
        }),
    })
}
