//! Access-token validation on the data plane. The algorithm comes from the key, never from
//! the token; `iss`, `aud`, `exp` and `typ` are checked; verified tokens are cached until
//! their `exp`, so a repeated token costs one hash and one lookup.

use super::jwks::IssuerKeys;
use crate::auth::signing::SigningKeys;
use crate::config::OAuthConfig;
use crate::denial::Denial;
use crate::policy::permissions::{Catalog, PermissionSet};
use base64::Engine;
use jsonwebtoken::Validation;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longer tokens are refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Allowed clock skew on `exp` and `nbf`.
pub const LEEWAY_MS: i64 = 30_000;
const CACHE_ENTRIES: u64 = 100_000;

/// Who issued a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuer {
    /// This gateway: the token is tied to a key or a user, checked at every request.
    Own {
        grant_id: Arc<str>,
        /// The secret version of the key it was issued to, for client-credentials tokens.
        key_version: Option<i64>,
    },
    External,
}

#[derive(Debug)]
pub struct VerifiedToken {
    pub issuer: Issuer,
    pub subject: Arc<str>,
    pub client_id: Arc<str>,
    /// The token's scopes that name known permissions.
    pub scope: PermissionSet,
    pub scope_header: http::HeaderValue,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// The claims tollgate reads. Duplicate keys are refused by the deserializer.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Scopes>,
    #[serde(default)]
    gid: Option<String>,
    #[serde(default)]
    tg_sv: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scopes {
    Text(String),
    List(Vec<String>),
}

/// The header fields tollgate accepts; `jku`, `x5u`, `jwk`, `x5c`, `crit` and anything
/// else unknown make the token invalid.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    cty: Option<String>,
}

#[derive(Deserialize)]
struct IssuerOnly {
    iss: String,
}

struct TokenExpiry;

impl moka::Expiry<[u8; 32], Arc<VerifiedToken>> for TokenExpiry {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        token: &Arc<VerifiedToken>,
        _: Instant,
    ) -> Option<Duration> {
        let left = token
            .expires_at
            .saturating_add(LEEWAY_MS)
            .saturating_sub(crate::clock::now_ms());
        Some(Duration::from_millis(left.max(0) as u64))
    }
}

pub struct TokenVerifier {
    issuer: String,
    audience: String,
    own: Arc<SigningKeys>,
    external: Vec<Arc<IssuerKeys>>,
    catalog: Catalog,
    cache: moka::sync::Cache<[u8; 32], Arc<VerifiedToken>>,
}

fn b64(segment: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .ok()
}

impl TokenVerifier {
    pub fn new(
        config: &OAuthConfig,
        own: Arc<SigningKeys>,
        external: Vec<Arc<IssuerKeys>>,
        catalog: Catalog,
    ) -> Self {
        TokenVerifier {
            issuer: config.issuer.clone(),
            audience: config
                .audience
                .clone()
                .unwrap_or_else(|| config.issuer.clone()),
            own,
            external,
            catalog,
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .expire_after(TokenExpiry)
                .build(),
        }
    }

    pub fn external(&self) -> &[Arc<IssuerKeys>] {
        &self.external
    }

    /// Verifies `token` (or finds it verified in the cache). Expiry against `now` is the
    /// caller's check, so a cached token expires exactly.
    pub async fn verify(&self, token: &[u8], now: i64) -> Result<Arc<VerifiedToken>, Denial> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Denial::InvalidToken);
        }
        let hash: [u8; 32] = Sha256::digest(token).into();
        if let Some(hit) = self.cache.get(&hash) {
            return Ok(hit);
        }
        let verified = Arc::new(self.verify_uncached(token, now).await?);
        self.cache.insert(hash, verified.clone());
        Ok(verified)
    }

    async fn verify_uncached(&self, token: &[u8], now: i64) -> Result<VerifiedToken, Denial> {
        let text = std::str::from_utf8(token).map_err(|_| Denial::InvalidToken)?;
        let segments: Vec<&str> = text.split('.').collect();
        // Exactly a JWS in compact form: JWE (5 segments) and anything else are refused.
        let [header, payload, _signature] = segments[..] else {
            return Err(Denial::InvalidToken);
        };
        let header: RawHeader = b64(header.as_bytes())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(Denial::InvalidToken)?;
        let issuer: IssuerOnly = b64(payload.as_bytes())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(Denial::InvalidToken)?;
        let kid = header.kid.as_deref().ok_or(Denial::InvalidToken)?;
        let typ = header.typ.as_deref().map(str::to_ascii_lowercase);
        let own = issuer.iss == self.issuer;
        let (key, audience, external) = if own {
            if !matches!(typ.as_deref(), Some("at+jwt" | "application/at+jwt")) {
                return Err(Denial::InvalidToken);
            }
            (
                self.own.verifying(kid).cloned(),
                self.audience.clone(),
                None,
            )
        } else {
            let source = self
                .external
                .iter()
                .find(|source| source.config.issuer == issuer.iss)
                .ok_or(Denial::InvalidToken)?;
            if !matches!(
                typ.as_deref(),
                None | Some("at+jwt" | "application/at+jwt" | "jwt")
            ) {
                return Err(Denial::InvalidToken);
            }
            (
                source.get_or_refetch(kid).await,
                source.config.audience.clone(),
                Some(source),
            )
        };
        let key = key.ok_or(Denial::InvalidToken)?;
        // The algorithm is the key's; a token naming another one is refused.
        if header.alg.parse::<jsonwebtoken::Algorithm>().ok() != Some(key.algorithm) {
            return Err(Denial::InvalidToken);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.validate_exp = false;
        validation.required_spec_claims =
            HashSet::from(["exp".to_string(), "iss".to_string(), "sub".to_string()]);
        validation.set_issuer(&[issuer.iss.as_str()]);
        validation.set_audience(&[audience.as_str()]);
        let claims = jsonwebtoken::decode::<Claims>(text, &key.key, &validation)
            .map_err(|_| Denial::InvalidToken)?
            .claims;
        let expires_at = claims.exp.saturating_mul(1000);
        // `exp` is the issuer's number: far-future values saturate, never wrap.
        if now >= expires_at.saturating_add(LEEWAY_MS) {
            return Err(Denial::TokenExpired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf.saturating_mul(1000) > now.saturating_add(LEEWAY_MS))
        {
            return Err(Denial::InvalidToken);
        }
        let scopes: Vec<String> = match (&claims.scope, &claims.scp) {
            (Some(scope), _) => scope.split_whitespace().map(str::to_string).collect(),
            (None, Some(Scopes::Text(text))) => {
                text.split_whitespace().map(str::to_string).collect()
            }
            (None, Some(Scopes::List(list))) => list.clone(),
            (None, None) => Vec::new(),
        };
        let known = scopes.iter().filter(|s| self.catalog.contains(s));
        let scope = self.catalog.set(known).unwrap_or_default();
        let scope_header = self.catalog.header(&scope);
        let issuer = match external {
            None => Issuer::Own {
                grant_id: Arc::from(claims.gid.as_deref().ok_or(Denial::InvalidToken)?),
                key_version: claims.tg_sv,
            },
            Some(_) => Issuer::External,
        };
        let client_id = claims.client_id.or(claims.azp).unwrap_or_default();
        Ok(VerifiedToken {
            issuer,
            subject: Arc::from(claims.sub),
            client_id: Arc::from(client_id),
            scope,
            scope_header,
            expires_at,
        })
    }
}
