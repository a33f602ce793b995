//! GitHub's secret-scanning public keys, as GitHub serves them, and the check of a
//! report's signature: ECDSA P-256 with SHA-256 over the raw body, DER-encoded and base64
//! in `Github-Public-Key-Signature`, by the key `Github-Public-Key-Identifier` names.

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::HashMap;

/// The keys by identifier, each as its DER SubjectPublicKeyInfo.
#[derive(Debug, Clone, Default)]
pub struct GithubKeys(HashMap<String, Vec<u8>>);

#[derive(serde::Deserialize)]
struct Document {
    public_keys: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    key_identifier: String,
    key: String,
}

/// Why a report is not taken as GitHub's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error(
        "the Github-Public-Key-Identifier and Github-Public-Key-Signature headers are required"
    )]
    Missing,
    #[error("no public key has the identifier of Github-Public-Key-Identifier")]
    UnknownKey,
    #[error("Github-Public-Key-Signature does not verify over the body with that key")]
    BadSignature,
}

impl GithubKeys {
    /// Reads the public-keys document; every key must be a PEM public key.
    pub fn parse(document: &str) -> Result<GithubKeys, String> {
        let document: Document = serde_json::from_str(document).map_err(|e| {
            format!("not GitHub's public-keys document ({{\"public_keys\": [...]}}): {e}")
        })?;
        let mut keys = HashMap::new();
        for entry in document.public_keys {
            let der = pem_body(&entry.key).ok_or_else(|| {
                format!(
                    "the key {} is not a PEM \"PUBLIC KEY\"",
                    entry.key_identifier
                )
            })?;
            keys.insert(entry.key_identifier, der);
        }
        if keys.is_empty() {
            return Err("the document lists no public keys".into());
        }
        Ok(GithubKeys(keys))
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<GithubKeys> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "leak_reports.github_public_keys_path: cannot read {}: {e}",
                path.display()
            )
        })?;
        GithubKeys::parse(&text).map_err(|e| {
            anyhow::anyhow!(
                "leak_reports.github_public_keys_path: {}: {e}",
                path.display()
            )
        })
    }

    /// Whether `signature` (the header's base64) is the named key's over `body`.
    pub fn verify(
        &self,
        identifier: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), Unverified> {
        let (Some(identifier), Some(signature)) = (identifier, signature) else {
            return Err(Unverified::Missing);
        };
        let key = self
            .0
            .get(identifier.trim())
            .ok_or(Unverified::UnknownKey)?;
        let signature = STANDARD
            .decode(signature.trim())
            .map_err(|_| Unverified::BadSignature)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
            .verify(body, &signature)
            .map_err(|_| Unverified::BadSignature)
    }
}

/// The DER inside a PEM `PUBLIC KEY` block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let begin = "-----BEGIN PUBLIC KEY-----";
    let end = "-----END PUBLIC KEY-----";
    let start = pem.find(begin)? + begin.len();
    let stop = start + pem[start..].find(end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok().filter(|der| !der.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    fn pem(der: &[u8]) -> String {
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        )
    }

    #[test]
    fn verifies_what_the_named_key_signed() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("a key");
        let public = pair.public_key().as_der().expect("DER");
        let document = serde_json::json!({"public_keys": [
            {"key_identifier": "abc", "key": pem(public.as_ref()), "is_current": true}
        ]});
        let keys = GithubKeys::parse(&document.to_string()).expect("parses");
        let body = br#"[{"token":"x","type":"t","url":"u","source":"content"}]"#;
        let signed = pair.sign(&SystemRandom::new(), body).expect("signs");
        let signature = STANDARD.encode(signed.as_ref());
        assert_eq!(keys.verify(Some("abc"), Some(&signature), body), Ok(()));
        assert_eq!(
            keys.verify(Some("abc"), Some(&signature), b"[]"),
            Err(Unverified::BadSignature)
        );
        assert_eq!(
            keys.verify(Some("other"), Some(&signature), body),
            Err(Unverified::UnknownKey)
        );
        assert_eq!(
            keys.verify(None, Some(&signature), body),
            Err(Unverified::Missing)
        );
        assert_eq!(
            keys.verify(Some("abc"), Some("not base64!"), body),
            Err(Unverified::BadSignature)
        );
    }

    #[test]
    fn a_document_that_is_not_githubs_is_refused() {
        assert!(GithubKeys::parse("{}").is_err());
        assert!(GithubKeys::parse(r#"{"public_keys": []}"#).is_err());
        assert!(GithubKeys::parse(
            r#"{"public_keys": [{"key_identifier": "a", "key": "garbage", "is_current": true}]}"#
        )
        .is_err());
    }
}
