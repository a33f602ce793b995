//! Keys of external identity providers, fetched from their JWKS. An unknown `kid` triggers
//! at most one refetch at a time, and not more often than the cooldown; a failing
//! endpoint keeps the last good keys.

use crate::auth::signing::VerifyingKey;
use crate::config::ExternalIssuer;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shortest time between two fetches caused by unknown kids.
pub const REFETCH_COOLDOWN: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

pub struct IssuerKeys {
    pub config: ExternalIssuer,
    keys: ArcSwap<HashMap<String, VerifyingKey>>,
    /// Held while fetching, so concurrent unknown kids wait for one fetch. Holds when the
    /// last fetch started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl IssuerKeys {
    pub fn new(config: ExternalIssuer) -> Self {
        IssuerKeys {
            config,
            keys: ArcSwap::from_pointee(HashMap::new()),
            fetching: tokio::sync::Mutex::new(None),
            http: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn get(&self, kid: &str) -> Option<VerifyingKey> {
        self.keys.load().get(kid).cloned()
    }

    /// The key `kid`, fetching the JWKS again if it is unknown and the cooldown allows.
    pub async fn get_or_refetch(&self, kid: &str) -> Option<VerifyingKey> {
        if let Some(key) = self.get(kid) {
            return Some(key);
        }
        let mut last = self.fetching.lock().await;
        // Whoever held the lock may have fetched it meanwhile.
        if let Some(key) = self.get(kid) {
            return Some(key);
        }
        if last.is_some_and(|at| at.elapsed() < REFETCH_COOLDOWN) {
            return None;
        }
        *last = Some(Instant::now());
        self.fetch().await;
        self.get(kid)
    }

    /// Fetches now (at start and periodically), whatever the cooldown.
    pub async fn refresh(&self) {
        let mut last = self.fetching.lock().await;
        *last = Some(Instant::now());
        self.fetch().await;
    }

    async fn fetch(&self) {
        let result = async {
            let response = self
                .http
                .get(&self.config.jwks_url)
                .send()
                .await?
                .error_for_status()?;
            response.json::<JwkSet>().await
        }
        .await;
        match result {
            Ok(set) => {
                let keys: HashMap<String, VerifyingKey> = set
                    .keys
                    .iter()
                    .filter_map(|jwk| Some((jwk.common.key_id.clone()?, verifying_key(jwk)?)))
                    .collect();
                if keys.is_empty() {
                    tracing::warn!(issuer = %self.config.issuer, "JWKS has no usable signing key; keeping the last good keys");
                } else {
                    self.keys.store(Arc::new(keys));
                }
            }
            Err(error) => {
                tracing::warn!(issuer = %self.config.issuer, %error, "JWKS fetch failed; keeping the last good keys")
            }
        }
    }
}

/// The key of a JWK and the one algorithm it may verify: the JWK's `alg` when given,
/// otherwise the usual one for its type. Encryption keys are skipped.
pub fn verifying_key(jwk: &Jwk) -> Option<VerifyingKey> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(alg), _) => serde_json::to_value(alg).ok()?.as_str()?.parse().ok()?,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
        // Symmetric keys never verify tokens here.
        _ => return None,
    };
    if matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey { key, algorithm })
}
