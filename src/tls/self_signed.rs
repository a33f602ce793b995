//! A self-signed certificate for names given (DNS names or IP addresses), written as PEM
//! files with the key readable by its owner only: the demo's HTTPS listener.

use crate::config::CertificateFiles;
use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// Writes `{stem}.pem` and `{stem}.key` into `folder`.
pub fn write(names: &[&str], folder: &Path, stem: &str) -> anyhow::Result<CertificateFiles> {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).context("cannot make a certificate")?;
    let files = CertificateFiles {
        cert_path: folder.join(format!("{stem}.pem")),
        key_path: folder.join(format!("{stem}.key")),
    };
    std::fs::write(&files.cert_path, made.cert.pem())
        .with_context(|| format!("cannot write {}", files.cert_path.display()))?;
    let mut key = std::fs::OpenOptions::new();
    key.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut key, 0o600);
    key.open(&files.key_path)
        .and_then(|mut file| file.write_all(made.key_pair.serialize_pem().as_bytes()))
        .with_context(|| format!("cannot write {}", files.key_path.display()))?;
    Ok(files)
}
