//! The authorization server's signing keys: loaded from PEM files (Ed25519 or RSA, told by
//! the PEM), generated on first start when absent, published as a JWKS with RFC 7638 kids.

use anyhow::{anyhow, Context};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A public key and the one algorithm it verifies.
#[derive(Clone)]
pub struct VerifyingKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

pub struct SigningKeys {
    kid: String,
    algorithm: Algorithm,
    signer: EncodingKey,
    /// Every configured key by kid, the signing one included.
    public: HashMap<String, VerifyingKey>,
    jwks: serde_json::Value,
}

struct Loaded {
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl SigningKeys {
    /// Loads every key file; the first is generated (Ed25519, mode 0600) when absent.
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<SigningKeys> {
        let first = paths
            .first()
            .ok_or_else(|| anyhow!("oauth.signing_key_path: no key file"))?;
        if !first.exists() {
            generate_ed25519(first)?;
        }
        let mut loaded = Vec::with_capacity(paths.len());
        for path in paths {
            let pem = std::fs::read(path).with_context(|| {
                format!("oauth.signing_key_path: cannot read {}", path.display())
            })?;
            loaded.push(
                parse(&pem)
                    .with_context(|| format!("oauth.signing_key_path: {}", path.display()))?,
            );
        }
        let mut public = HashMap::new();
        let mut keys = Vec::new();
        let mut kids = Vec::new();
        for key in &loaded {
            let kid = key.jwk.thumbprint(ThumbprintHash::SHA256)?;
            let mut jwk = key.jwk.clone();
            jwk.common.key_id = Some(kid.clone());
            jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
            let decoding = DecodingKey::from_jwk(&jwk)?;
            public.insert(
                kid.clone(),
                VerifyingKey {
                    key: decoding,
                    algorithm: key.algorithm,
                },
            );
            keys.push(jwk);
            kids.push(kid);
        }
        let jwks = serde_json::to_value(JwkSet { keys })?;
        let signing = loaded.swap_remove(0);
        Ok(SigningKeys {
            kid: kids.swap_remove(0),
            algorithm: signing.algorithm,
            signer: signing.encoding,
            public,
            jwks,
        })
    }

    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    pub fn verifying(&self, kid: &str) -> Option<&VerifyingKey> {
        self.public.get(kid)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Signs `claims` as an RFC 9068 access token (`typ: at+jwt`).
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let mut header = Header::new(self.algorithm);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.signer)?)
    }
}

/// An Ed25519 or RSA private key; the PEM tells which.
fn parse(pem: &[u8]) -> anyhow::Result<Loaded> {
    let text = std::str::from_utf8(pem).map_err(|_| anyhow!("not a PEM file"))?;
    if text.contains("BEGIN RSA PRIVATE KEY") {
        return rsa(pem);
    }
    if !text.contains("BEGIN PRIVATE KEY") {
        return Err(anyhow!(
            "expected an Ed25519 or RSA private key in PEM (PKCS#8 or PKCS#1)"
        ));
    }
    match EncodingKey::from_ed_pem(pem)
        .and_then(|key| Ok((Jwk::from_encoding_key(&key, Algorithm::EdDSA)?, key)))
    {
        Ok((jwk, encoding)) => Ok(Loaded {
            algorithm: Algorithm::EdDSA,
            encoding,
            jwk,
        }),
        Err(_) => rsa(pem),
    }
}

fn rsa(pem: &[u8]) -> anyhow::Result<Loaded> {
    let encoding =
        EncodingKey::from_rsa_pem(pem).map_err(|e| anyhow!("not a usable RSA key: {e}"))?;
    let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)?;
    Ok(Loaded {
        algorithm: Algorithm::RS256,
        encoding,
        jwk,
    })
}

/// PKCS#8 DER as a `PRIVATE KEY` PEM block.
fn pkcs8_pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// Writes a new Ed25519 key as PKCS#8 PEM, readable by its owner only.
fn generate_ed25519(path: &Path) -> anyhow::Result<()> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::Ed25519KeyPair;
    let document = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
        .map_err(|_| anyhow!("cannot generate an Ed25519 key"))?;
    let pem = pkcs8_pem(document.as_ref());
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("oauth.signing_key_path: cannot create {}", path.display()))?;
    file.write_all(pem.as_bytes())?;
    tracing::info!(path = %path.display(), "generated an Ed25519 signing key");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_key_is_generated_private_and_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.pem");
        let keys = SigningKeys::load(std::slice::from_ref(&path)).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(keys.algorithm(), Algorithm::EdDSA);
        let jwks = keys.jwks();
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        let kid = jwks["keys"][0]["kid"].as_str().unwrap();
        assert!(keys.verifying(kid).is_some());
        // Loading again finds the same key.
        let again = SigningKeys::load(&[path]).unwrap();
        assert_eq!(again.jwks(), jwks);
    }

    #[test]
    fn several_keys_are_published_and_the_first_signs() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
        SigningKeys::load(std::slice::from_ref(&b)).unwrap();
        let keys = SigningKeys::load(&[a, b]).unwrap();
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 2);
        let token = keys
            .sign(&serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}))
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(
            header.kid.as_deref(),
            keys.jwks()["keys"][0]["kid"].as_str()
        );
    }

    #[test]
    fn an_rsa_pem_signs_rs256() {
        use aws_lc_rs::encoding::AsDer;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rsa.pem");
        std::fs::write(&path, pkcs8_pem(der.as_ref())).unwrap();
        let keys = SigningKeys::load(std::slice::from_ref(&path)).unwrap();
        assert_eq!(keys.algorithm(), Algorithm::RS256);
        assert_eq!(keys.jwks()["keys"][0]["kty"], "RSA");
        let token = keys
            .sign(&serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}))
            .unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        let verifying = keys.verifying(&kid).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.required_spec_claims.clear();
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&token, &verifying.key, &validation).is_ok()
        );
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(parse(b"hello").is_err());
        assert!(parse(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
    }
}
