//! What a verified client certificate tells the upstream (SPEC section 13): its SHA-256
//! fingerprint (lowercase hex, no colons) and its subject as an RFC 4514 string. The
//! subject is read once per handshake and found again by fingerprint, because an HTTP/2
//! stream sees only the digest pingora keeps of its connection.

use moka::sync::Cache;
use std::sync::Arc;

/// Subjects of the client certificates seen lately, by SHA-256 of the leaf.
pub struct ClientSubjects {
    by_fingerprint: Cache<[u8; 32], Arc<str>>,
}

impl Default for ClientSubjects {
    fn default() -> Self {
        ClientSubjects {
            by_fingerprint: Cache::builder().max_capacity(65_536).build(),
        }
    }
}

impl ClientSubjects {
    /// Reads the subject of a leaf the handshake verified.
    pub fn remember(&self, leaf_der: &[u8]) {
        let fingerprint = fingerprint(leaf_der);
        if self.by_fingerprint.contains_key(&fingerprint) {
            return;
        }
        if let Some(subject) = subject(leaf_der) {
            self.by_fingerprint.insert(fingerprint, Arc::from(subject));
        }
    }

    /// The subject of the certificate whose SHA-256 is `digest`.
    pub fn subject(&self, digest: &[u8]) -> Option<Arc<str>> {
        let fingerprint: [u8; 32] = digest.try_into().ok()?;
        self.by_fingerprint.get(&fingerprint)
    }
}

pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(der).into()
}

/// The subject of a DER certificate as RFC 4514 writes it: the last RDN first, attributes
/// by their short names where RFC 4514 has one (else the dotted OID), values escaped.
pub fn subject(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type();
                    let name = short_name(&oid.to_id_string())
                        .map(str::to_string)
                        .unwrap_or_else(|| oid.to_id_string());
                    let value = match attribute.as_str() {
                        Ok(text) => escape(text),
                        // Not a string type: RFC 4514's `#` and the DER in hex.
                        Err(_) => format!("#{}", hex::encode(attribute.attr_value().data)),
                    };
                    format!("{name}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// The attribute types RFC 4514 section 3 names.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 4514 section 2.4: `,+"\<>;` and a leading `#` or space or a trailing space are
/// escaped with a backslash; control characters as `\XX`.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if index == 0 => out.push_str("\\#"),
            ' ' if index == 0 || index == last => out.push_str("\\ "),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Lowercase hex, no colons.
pub fn hex_fingerprint(digest: &[u8]) -> String {
    hex::encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(dn: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in dn {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subjects_are_written_last_rdn_first_with_special_characters_escaped() {
        let der = certificate(&[
            (rcgen::DnType::CountryName, "DE"),
            (rcgen::DnType::OrganizationName, "Acme, Inc."),
            (rcgen::DnType::CommonName, "#billing worker "),
        ]);
        assert_eq!(
            subject(&der).unwrap(),
            "CN=\\#billing worker\\ ,O=Acme\\, Inc.,C=DE"
        );
    }

    #[test]
    fn a_remembered_subject_is_found_by_the_fingerprint_pingora_keeps() {
        let der = certificate(&[(rcgen::DnType::CommonName, "svc-a")]);
        let subjects = ClientSubjects::default();
        subjects.remember(&der);
        let digest = fingerprint(&der);
        assert_eq!(subjects.subject(&digest).as_deref(), Some("CN=svc-a"));
        assert_eq!(subjects.subject(&[0u8; 32]), None);
        assert_eq!(subjects.subject(b"short"), None);
        assert_eq!(hex_fingerprint(&digest).len(), 64);
        assert!(hex_fingerprint(&digest)
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
