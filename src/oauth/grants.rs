//! `POST /oauth/token` (client credentials, authorization code with PKCE, refresh with
//! rotation), `POST /oauth/revoke` (RFC 7009) and `POST /oauth/introspect` (RFC 7662).

use super::client_auth::{authenticate, Client};
use super::params::{no_store, OAuthError, Params};
use super::{ClientIp, OAuthServer};
use crate::auth::api_key;
use crate::auth::base62;
use crate::auth::jwt::{Issuer, VerifiedToken};
use crate::clock;
use crate::store::records::{ClientType, Grant};
use crate::store::Redeemed;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::net::IpAddr;
use std::sync::Arc;

/// The claims of an access token (RFC 9068), plus the grant it belongs to and, for a key,
/// the secret version it was issued under.
#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    client_id: &'a str,
    scope: &'a str,
    exp: i64,
    iat: i64,
    jti: String,
    gid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tg_sv: Option<i64>,
}

/// What one issuance covers.
struct Issue<'a> {
    subject: &'a str,
    client_id: &'a str,
    scope: &'a str,
    grant_id: &'a str,
    key_version: Option<i64>,
}

impl OAuthServer {
    fn access_token(&self, issue: &Issue<'_>, now: i64) -> Result<(String, i64), OAuthError> {
        let ttl = self.config.access_token_ttl.as_secs() as i64;
        let claims = AccessClaims {
            iss: &self.config.issuer,
            aud: &self.audience,
            sub: issue.subject,
            client_id: issue.client_id,
            scope: issue.scope,
            exp: now / 1000 + ttl,
            iat: now / 1000,
            jti: base62::random(22),
            gid: issue.grant_id,
            tg_sv: issue.key_version,
        };
        let token = self.keys.sign(&claims).map_err(|error| {
            tracing::error!(%error, "cannot sign an access token");
            OAuthError::ServerError("cannot sign the token".into())
        })?;
        Ok((token, ttl))
    }

    /// Access and refresh token for a user grant; the refresh token is stored as a digest.
    async fn user_tokens(
        &self,
        grant: &Grant,
        scope: &str,
        now: i64,
    ) -> Result<Response, OAuthError> {
        let issue = Issue {
            subject: &grant.user_id,
            client_id: &grant.client_id,
            scope,
            grant_id: &grant.grant_id,
            key_version: None,
        };
        let (access, expires_in) = self.access_token(&issue, now)?;
        let refresh = format!("tgr_{}", base62::random(43));
        let stored = Grant {
            scope: scope.to_string(),
            expires_at: now + self.config.refresh_token_ttl.as_millis() as i64,
            redirect_uri: String::new(),
            code_challenge: String::new(),
            ..grant.clone()
        };
        self.store()?
            .insert_refresh(api_key::digest(refresh.as_bytes()), &stored)
            .await?;
        Ok(token_response(access, expires_in, scope, Some(refresh)))
    }

    /// Space-separated scope names in catalog order, each required to be in `allowed`.
    pub(super) fn narrow(
        &self,
        requested: Option<&str>,
        allowed: &[String],
    ) -> Result<String, OAuthError> {
        let Some(requested) = requested else {
            return Ok(allowed.join(" "));
        };
        let mut wanted = Vec::new();
        for scope in requested.split_whitespace() {
            if !allowed.iter().any(|a| a == scope) {
                return Err(OAuthError::InvalidScope(format!(
                    "scope \"{scope}\" is not granted to this client"
                )));
            }
            wanted.push(scope.to_string());
        }
        let set = self
            .catalog
            .set(&wanted)
            .map_err(|s| OAuthError::InvalidScope(format!("unknown scope \"{s}\"")))?;
        Ok(self
            .catalog
            .names(&set)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" "))
    }

    fn count(&self, grant: &str) {
        self.tokens_issued.with_label_values(&[grant]).inc();
    }
}

fn token_response(
    access: String,
    expires_in: i64,
    scope: &str,
    refresh: Option<String>,
) -> Response {
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    no_store(Json(body).into_response())
}

fn client_ip(extension: Option<Extension<ClientIp>>) -> IpAddr {
    extension.map_or(IpAddr::from([0, 0, 0, 0]), |Extension(ClientIp(ip))| ip)
}

pub async fn token(
    State(server): State<Arc<OAuthServer>>,
    ip: Option<Extension<ClientIp>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match token_grant(&server, client_ip(ip), &headers, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn token_grant(
    server: &OAuthServer,
    ip: IpAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let params = Params::from_body(headers, body)?;
    let grant_type = params.require("grant_type")?.to_string();
    let now = clock::now_ms();
    let client = authenticate(server, headers, &params, now).await?;
    match grant_type.as_str() {
        "client_credentials" => client_credentials(server, client, &params, ip, now),
        "authorization_code" => authorization_code(server, client, &params, now).await,
        "refresh_token" => refresh_token(server, client, &params, now).await,
        other => Err(OAuthError::UnsupportedGrantType(format!(
            "grant_type \"{other}\" is not supported"
        ))),
    }
}

fn client_credentials(
    server: &OAuthServer,
    client: Client,
    params: &Params,
    ip: IpAddr,
    now: i64,
) -> Result<Response, OAuthError> {
    let Client::Key(key) = client else {
        return Err(OAuthError::UnauthorizedClient(
            "apps use the authorization_code grant; client_credentials is for API keys".into(),
        ));
    };
    if !key.allowlist().allows(ip) {
        return Err(OAuthError::UnauthorizedClient(
            "this key may not be used from this address".into(),
        ));
    }
    let allowed: Vec<String> = server
        .catalog
        .names(key.permissions())
        .map(|n| n.to_string())
        .collect();
    let scope = server.narrow(params.get("scope"), &allowed)?;
    let grant_id = format!("gr_{}", base62::random(20));
    let (subject, client_id) = (key.id.as_str(), key.client_id.as_str());
    let issue = Issue {
        subject: &subject,
        client_id: &client_id,
        scope: &scope,
        grant_id: &grant_id,
        key_version: Some(key.secret_version()),
    };
    let (access, expires_in) = server.access_token(&issue, now)?;
    server.count("client_credentials");
    Ok(token_response(access, expires_in, &scope, None))
}

/// `BASE64URL(SHA256(verifier)) == challenge`, with a verifier of 43–128 unreserved characters.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let valid = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    valid && computed == challenge
}

async fn authorization_code(
    server: &OAuthServer,
    client: Client,
    params: &Params,
    now: i64,
) -> Result<Response, OAuthError> {
    let Client::App(app) = client else {
        return Err(OAuthError::UnauthorizedClient(
            "API keys use the client_credentials grant".into(),
        ));
    };
    let code = params.require("code")?;
    let redirect_uri = params.require("redirect_uri")?;
    let verifier = params.require("code_verifier")?;
    let store = server.store()?;
    let grant = match store
        .redeem_code(api_key::digest(code.as_bytes()), now)
        .await?
    {
        Redeemed::Unknown => return Err(OAuthError::invalid_grant("unknown authorization code")),
        Redeemed::Replayed(grant) => {
            // A replayed code may be stolen: whatever its first exchange issued is revoked.
            store
                .revoke_grant(
                    &grant.grant_id,
                    now + server.config.refresh_token_ttl.as_millis() as i64,
                    now,
                )
                .await?;
            server.syncer.sync_now().await.ok();
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used; its tokens are revoked",
            ));
        }
        Redeemed::Fresh(grant) => grant,
    };
    if grant.client_id != app.client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if store.grant_revoked(&grant.grant_id).await? {
        return Err(OAuthError::invalid_grant(
            "the authorization code was revoked",
        ));
    }
    if now >= grant.expires_at {
        return Err(OAuthError::invalid_grant(
            "the authorization code has expired",
        ));
    }
    if grant.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    if !pkce_matches(verifier, &grant.code_challenge) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code challenge",
        ));
    }
    let user = store
        .get_user(&grant.user_id)
        .await
        .map_err(|_| OAuthError::invalid_grant("unknown user"))?;
    if user.disabled {
        return Err(OAuthError::invalid_grant("the user is disabled"));
    }
    let response = server.user_tokens(&grant, &grant.scope, now).await?;
    server.count("authorization_code");
    Ok(response)
}

async fn refresh_token(
    server: &OAuthServer,
    client: Client,
    params: &Params,
    now: i64,
) -> Result<Response, OAuthError> {
    let Client::App(app) = client else {
        return Err(OAuthError::UnauthorizedClient(
            "client-credentials tokens are not refreshed; ask for a new one".into(),
        ));
    };
    let presented = params.require("refresh_token")?;
    let digest = api_key::digest(presented.as_bytes());
    let store = server.store()?;
    // Everything that refuses the token is checked before it is used, so a refusal never
    // spends it; only a second use of a spent token is a replay.
    let Some((grant, used)) = store.peek_refresh(digest).await? else {
        return Err(OAuthError::invalid_grant("unknown refresh token"));
    };
    if grant.client_id != app.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if store.grant_revoked(&grant.grant_id).await? {
        return Err(OAuthError::invalid_grant("the refresh token was revoked"));
    }
    if now >= grant.expires_at {
        return Err(OAuthError::invalid_grant("the refresh token has expired"));
    }
    let user = store
        .get_user(&grant.user_id)
        .await
        .map_err(|_| OAuthError::invalid_grant("unknown user"))?;
    if user.disabled {
        return Err(OAuthError::invalid_grant("the user is disabled"));
    }
    let fresh = !used && matches!(store.redeem_refresh(digest, now).await?, Redeemed::Fresh(_));
    if !fresh {
        // Refresh tokens rotate: a second use means a copy exists. End the family.
        store
            .revoke_grant(&grant.grant_id, grant.expires_at, now)
            .await?;
        server.syncer.sync_now().await.ok();
        return Err(OAuthError::invalid_grant(
            "the refresh token was already used; the whole grant is revoked",
        ));
    }
    let granted: Vec<String> = grant.scope.split_whitespace().map(str::to_string).collect();
    let scope = server.narrow(params.get("scope"), &granted)?;
    let response = server.user_tokens(&grant, &scope, now).await?;
    server.count("refresh_token");
    Ok(response)
}

pub async fn revoke(
    State(server): State<Arc<OAuthServer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match revoke_token(&server, &headers, &body).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(error) => error.into_response(),
    }
}

/// RFC 7009: a token of another client, or an unknown one, is answered 200 as well.
async fn revoke_token(
    server: &OAuthServer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), OAuthError> {
    let params = Params::from_body(headers, body)?;
    let now = clock::now_ms();
    let client = authenticate(server, headers, &params, now).await?;
    let token = params.require("token")?;
    let store = server.store()?;
    let target = if token.starts_with("tgr_") {
        store
            .peek_refresh(api_key::digest(token.as_bytes()))
            .await?
            .filter(|(grant, _)| grant.client_id == *client.client_id())
            .map(|(grant, _)| (grant.grant_id, grant.expires_at))
    } else {
        match server.verifier.verify(token.as_bytes(), now).await {
            Ok(verified) if *verified.client_id == *client.client_id() => match &verified.issuer {
                Issuer::Own { grant_id, .. } => Some((grant_id.to_string(), verified.expires_at)),
                Issuer::External => None,
            },
            _ => None,
        }
    };
    if let Some((grant_id, expires_at)) = target {
        store.revoke_grant(&grant_id, expires_at, now).await?;
        server.syncer.sync_now().await.ok();
    }
    Ok(())
}

pub async fn introspect(
    State(server): State<Arc<OAuthServer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match introspect_token(&server, &headers, &body).await {
        Ok(answer) => no_store(Json(answer).into_response()),
        Err(error) => error.into_response(),
    }
}

/// RFC 7662, for tokens of the asking client; anything else is `{"active": false}`.
async fn introspect_token(
    server: &OAuthServer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, OAuthError> {
    let params = Params::from_body(headers, body)?;
    let now = clock::now_ms();
    let client = authenticate(server, headers, &params, now).await?;
    if matches!(&client, Client::App(app) if matches!(app.client_type, ClientType::Public)) {
        return Err(OAuthError::invalid_client(
            "introspection needs client authentication, and a public client has no secret",
        ));
    }
    let token = params.require("token")?;
    let inactive = json!({"active": false});
    if token.starts_with("tgr_") {
        let store = server.store()?;
        let Some((grant, used)) = store
            .peek_refresh(api_key::digest(token.as_bytes()))
            .await?
        else {
            return Ok(inactive);
        };
        let live = !used && now < grant.expires_at && !store.grant_revoked(&grant.grant_id).await?;
        if !live || grant.client_id != *client.client_id() {
            return Ok(inactive);
        }
        return Ok(json!({
            "active": true, "token_type": "refresh_token", "scope": grant.scope, "client_id": grant.client_id,
            "sub": grant.user_id, "exp": grant.expires_at / 1000, "iss": server.config.issuer,
        }));
    }
    let Ok(verified) = server.verifier.verify(token.as_bytes(), now).await else {
        return Ok(inactive);
    };
    if *verified.client_id != *client.client_id() || !still_valid(server, &verified, now) {
        return Ok(inactive);
    }
    Ok(json!({
        "active": true, "token_type": "Bearer", "scope": verified.scope_header.to_str().unwrap_or_default(),
        "client_id": &*verified.client_id, "sub": &*verified.subject, "exp": verified.expires_at / 1000,
        "iss": server.config.issuer,
    }))
}

/// The data plane's own check of a token against the snapshot, reused.
fn still_valid(server: &OAuthServer, token: &Arc<VerifiedToken>, now: i64) -> bool {
    let snapshot = server.syncer.snapshot.load();
    crate::gate::resolve_token(&snapshot, &server.catalog, token, now).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_is_s256_only_with_a_valid_verifier() {
        let verifier = "dBjftJeZ4CVP-mJ0kq6pS3-5-a3Lt-2dWKIw1qNpKqB";
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        assert_eq!(challenge, "kAIBSt6BEjsDvcp77sUpW8kx1U1FkUNhunhdZhOvOlM");
        assert!(pkce_matches(verifier, &challenge));
        assert!(!pkce_matches(verifier, verifier), "plain is never accepted");
        assert!(!pkce_matches(&verifier[..42], &challenge), "too short");
        assert!(
            !pkce_matches("x".repeat(129).as_str(), &challenge),
            "too long"
        );
    }
}
