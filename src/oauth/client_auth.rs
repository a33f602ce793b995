//! Who is asking at the token, revoke and introspect endpoints: an API key acting as a
//! client (its `client_id` and the key as secret), or a registered app.

use super::params::{basic_credentials, OAuthError, Params};
use super::OAuthServer;
use crate::auth::api_key::{self, Digest};
use crate::short_id::IdText;
use crate::store::records::{ClientRecord, ClientType};
use crate::store::snapshot::{KeyEntry, KeyRef};
use crate::store::StoreError;
use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

pub enum Client {
    /// An API key: the client of the client-credentials grant.
    Key(KeyRef),
    /// A registered app of the authorization-code flow.
    App(ClientRecord),
}

impl Client {
    pub fn client_id(&self) -> IdText<'_> {
        match self {
            Client::Key(credential) => credential.client_id.as_str(),
            Client::App(app) => IdText::Borrowed(&app.client_id),
        }
    }
}

const UNKNOWN: &str = "unknown client, or wrong client secret";

/// Authenticates by HTTP Basic or by `client_id`/`client_secret` in the body, never both.
pub async fn authenticate(
    server: &OAuthServer,
    headers: &HeaderMap,
    params: &Params,
    now: i64,
) -> Result<Client, OAuthError> {
    let basic = basic_credentials(headers)?;
    let (id, secret) = match basic {
        Some((id, secret)) => {
            if params.get("client_secret").is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not two",
                ));
            }
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(OAuthError::invalid_client(
                    "client_id differs between Basic and body",
                ));
            }
            (id, Some(secret))
        }
        None => {
            let id = params
                .get("client_id")
                .ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?;
            (
                id.to_string(),
                params.get("client_secret").map(str::to_string),
            )
        }
    };
    if id.starts_with("cid_") {
        return key_client(server, &id, secret.as_deref(), now).map(Client::Key);
    }
    let store = server.store()?;
    let app = match store.get_client(&id).await {
        Ok(app) if app.deleted_at.is_none() => app,
        Ok(_) | Err(StoreError::NotFound) => return Err(OAuthError::invalid_client(UNKNOWN)),
        Err(error) => return Err(error.into()),
    };
    match (app.client_type, secret) {
        (ClientType::Public, None) => Ok(Client::App(app)),
        (ClientType::Public, Some(_)) => {
            Err(OAuthError::invalid_client("a public client has no secret"))
        }
        (ClientType::Confidential, Some(secret)) => {
            let presented = api_key::digest(secret.as_bytes());
            let matches = app
                .secret_digest
                .is_some_and(|stored| bool::from(stored.0.ct_eq(&presented.0)));
            if matches {
                Ok(Client::App(app))
            } else {
                Err(OAuthError::invalid_client(UNKNOWN))
            }
        }
        (ClientType::Confidential, None) => {
            Err(OAuthError::invalid_client("client_secret is required"))
        }
    }
}

/// A key is a client when its `client_id` matches and it would authenticate on the data
/// plane right now.
fn key_client(
    server: &OAuthServer,
    id: &str,
    secret: Option<&str>,
    now: i64,
) -> Result<KeyRef, OAuthError> {
    let secret = secret
        .ok_or_else(|| OAuthError::invalid_client("client_secret (the API key) is required"))?;
    api_key::check_format(secret.as_bytes(), &server.key_prefix, server.environments)
        .map_err(|_| OAuthError::invalid_client(UNKNOWN))?;
    let digest: Digest = api_key::digest(secret.as_bytes());
    let snapshot = server.syncer.snapshot.load();
    match snapshot.by_digest(&digest) {
        Some(KeyEntry::Secret { credential, grace })
            if credential.client_id == *id
                && !credential.revoked
                && grace.is_none_or(|grace| now < grace.until)
                && credential.expires_at().is_none_or(|expires| now < expires) =>
        {
            Ok(credential)
        }
        _ => Err(OAuthError::invalid_client(UNKNOWN)),
    }
}
