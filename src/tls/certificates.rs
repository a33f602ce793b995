//! Reads a PEM certificate chain and its private key into what rustls serves: the key must
//! match the certificate, and the leaf's names and expiry are kept for SNI and the expiry
//! metric. Every error names the file it is about.

use crate::config::CertificateFiles;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate ready to serve.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// The DNS names of the leaf's subject alternative names (or its CN when it has none).
    pub names: Vec<String>,
    /// The leaf's `notAfter`, in seconds since the epoch.
    pub not_after: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: cannot read: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}: no PEM certificate in the file", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no PEM private key in the file", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: the private key is not usable: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: the certificate cannot be parsed: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{} does not match the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// Reads the chain and key of `files`, checking that they belong together.
pub fn load(files: &CertificateFiles, provider: &CryptoProvider) -> Result<Loaded, CertError> {
    let chain = read_chain(&files.cert_path)?;
    let key = read_key(&files.key_path)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| CertError::BadKey {
            path: files.key_path.clone(),
            reason: error.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        // rustls cannot tell for some key types; the handshake will.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(CertError::Mismatch {
                cert: files.cert_path.clone(),
                key: files.key_path.clone(),
            })
        }
    }
    let leaf = leaf_facts(&certified.cert[0]).map_err(|reason| CertError::BadCertificate {
        path: files.cert_path.clone(),
        reason,
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        names: leaf.names,
        not_after: leaf.not_after,
    })
}

/// Every certificate of a PEM file, in order (a CA bundle, or a chain leaf first).
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read(path)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|error| CertError::Read {
            path: path.to_path_buf(),
            reason: format!("invalid PEM: {error}"),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = read(path)?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|error| CertError::Read {
            path: path.to_path_buf(),
            reason: format!("invalid PEM: {error}"),
        })?
        .ok_or_else(|| CertError::NoKey {
            path: path.to_path_buf(),
        })
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|error| CertError::Read {
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

struct LeafFacts {
    names: Vec<String>,
    not_after: i64,
}

fn leaf_facts(der: &CertificateDer<'_>) -> Result<LeafFacts, String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|error| error.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
        {
            names.push(cn.to_ascii_lowercase());
        }
    }
    Ok(LeafFacts {
        names,
        not_after: cert.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn self_signed(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let made = rcgen::generate_simple_self_signed(names).unwrap();
        (made.cert.pem(), made.key_pair.serialize_pem())
    }

    #[test]
    fn a_matching_pair_loads_with_its_names_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(&["api.example.com", "Other.Example.com"]);
        let files = CertificateFiles {
            cert_path: write(dir.path(), "c.pem", &cert),
            key_path: write(dir.path(), "k.pem", &key),
        };
        let loaded = load(&files, &provider()).unwrap();
        assert_eq!(loaded.names, ["api.example.com", "other.example.com"]);
        let now = chrono::Utc::now().timestamp();
        assert!(
            loaded.not_after > now + 86_400 * 365,
            "{}",
            loaded.not_after
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed(&["a.example"]);
        let (_, other_key) = self_signed(&["b.example"]);
        let files = CertificateFiles {
            cert_path: write(dir.path(), "c.pem", &cert),
            key_path: write(dir.path(), "k.pem", &other_key),
        };
        let error = load(&files, &provider()).unwrap_err().to_string();
        assert!(error.contains("k.pem does not match"), "{error}");
        assert!(error.contains("c.pem"), "{error}");
    }

    #[test]
    fn missing_empty_and_swapped_files_say_which_file_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(&["a.example"]);
        let cert_path = write(dir.path(), "c.pem", &cert);
        let key_path = write(dir.path(), "k.pem", &key);
        let empty = write(dir.path(), "empty.pem", "");
        let cases = [
            (
                dir.path().join("absent.pem"),
                key_path.clone(),
                "absent.pem: cannot read",
            ),
            (
                empty.clone(),
                key_path.clone(),
                "empty.pem: no PEM certificate",
            ),
            (cert_path.clone(), empty, "empty.pem: no PEM private key"),
            (
                key_path.clone(),
                cert_path.clone(),
                "k.pem: no PEM certificate",
            ),
        ];
        for (cert_path, key_path, expected) in cases {
            let files = CertificateFiles {
                cert_path,
                key_path,
            };
            let error = load(&files, &provider()).unwrap_err().to_string();
            assert!(error.contains(expected), "{error} lacks {expected}");
        }
    }
}
