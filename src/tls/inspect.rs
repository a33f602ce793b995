//! What `tollgate check` says of the TLS files a config names: each certificate read and
//! matched to its key, each CA file read, and a warning for a certificate that expires
//! within 14 days (an error once it has expired).

use super::certificates;
use crate::config::{CertificateFiles, Config};

/// A certificate closer than this to its `notAfter` gets a warning.
pub const EXPIRY_WARNING_SECONDS: i64 = 14 * 86_400;

#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<String>,
    /// The setting, and what is wrong with its file.
    pub warnings: Vec<(String, String)>,
}

pub fn inspect(config: &Config, now: i64) -> Findings {
    let mut findings = Findings::default();
    let provider = rustls::crypto::ring::default_provider();
    let mut pairs: Vec<(String, &CertificateFiles)> = Vec::new();
    if let Some(tls) = &config.tls {
        for (index, certificate) in tls.certificates.iter().enumerate() {
            pairs.push((format!("tls.certificates[{index}]"), &certificate.files));
        }
        if let Some(path) = &tls.client_ca_path {
            if let Err(error) = certificates::read_chain(path) {
                findings.errors.push(format!("tls.client_ca_path: {error}"));
            }
        }
    }
    if let Some(files) = &config.admin.tls {
        pairs.push(("admin.tls".to_string(), files));
    }
    for (setting, files) in pairs {
        match certificates::load(files, &provider) {
            Err(error) => findings.errors.push(format!("{setting}: {error}")),
            Ok(loaded) => {
                let left = loaded.not_after - now;
                let file = files.cert_path.display();
                if left <= 0 {
                    findings.errors.push(format!(
                        "{setting}: {file} expired {} day(s) ago",
                        (-left) / 86_400
                    ));
                } else if left < EXPIRY_WARNING_SECONDS {
                    let at = chrono::DateTime::from_timestamp(loaded.not_after, 0)
                        .map(|at| at.to_rfc3339())
                        .unwrap_or_default();
                    let message = format!("{file} expires in {} day(s), at {at}", left / 86_400);
                    findings.warnings.push((setting, message));
                }
            }
        }
    }
    for (name, upstream) in &config.upstreams {
        if let Some(path) = &upstream.ca_path {
            if let Err(error) = certificates::read_chain(path) {
                findings
                    .errors
                    .push(format!("upstreams.{name}.ca_path: {error}"));
            }
        }
    }
    findings
}
