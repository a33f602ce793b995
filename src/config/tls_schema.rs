//! The YAML of SPEC section 13: the `tls` section, `admin.tls` and the certificate files
//! they name. Files are only named here; `tollgate check` and the start read them.

use super::reader::{Object, Reader};
use super::*;
use serde_yaml_ng::Value;

const TLS_KEYS: &[&str] = &[
    "listen",
    "certificates",
    "min_version",
    "http2",
    "client_ca_path",
    "hsts",
];

/// `tls`, when present: absent means no HTTPS listener.
pub fn read_tls(r: &mut Reader<'_>, top: &Object<'_>) -> Option<TlsConfig> {
    let (value, path) = top.get("tls")?;
    let object = r.object(value, &path, TLS_KEYS)?;
    let listen = r.required(&object, "listen", |r, value, path| match value {
        Value::Sequence(_) => r.list(value, path, Reader::socket_addr).filter(|list| {
            if list.is_empty() {
                r.error(path, "needs at least one address");
            }
            !list.is_empty()
        }),
        _ => r.socket_addr(value, path).map(|addr| vec![addr]),
    });
    let certificates = r.required(&object, "certificates", |r, value, path| {
        let list = r.list(value, path, |r, value, path| {
            let object = r.object(value, path, &["cert_path", "key_path", "server_names"])?;
            let names = r.field(&object, "server_names", Vec::new(), |r, value, path| {
                r.list(value, path, server_name_pattern)
            });
            certificate_files(r, value, path, &["server_names"]).map(|files| ServerCertificate {
                files,
                server_names: names,
            })
        })?;
        if list.is_empty() {
            r.error(path, "needs at least one certificate");
            return None;
        }
        Some(list)
    });
    let min_version = r.field(&object, "min_version", TlsVersion::V1_2, |r, value, path| {
        // `1.2` unquoted is a YAML number: accept it as the text it looks like.
        let text = match value {
            Value::Number(number) => number.to_string(),
            other => r.string(other, path)?,
        };
        match text.as_str() {
            "1.2" => Some(TlsVersion::V1_2),
            "1.3" => Some(TlsVersion::V1_3),
            _ => {
                r.error(
                    path,
                    format!("expected \"1.2\" or \"1.3\", found \"{text}\" (TLS 1.0 and 1.1 are never offered)"),
                );
                None
            }
        }
    });
    let http2 = r.field(&object, "http2", true, Reader::bool);
    let client_ca_path = r.field(
        &object,
        "client_ca_path",
        None,
        |r, value, path| match value {
            Value::Null => Some(None),
            other => r.string(other, path).map(|p| Some(PathBuf::from(p))),
        },
    );
    let hsts = r.field(&object, "hsts", None, |r, value, path| match value {
        Value::Null => Some(None),
        other => {
            let text = r.string(other, path)?;
            let valid =
                text.starts_with("max-age=") && text.bytes().all(|b| (0x20..0x7f).contains(&b));
            if !valid {
                r.error(
                    path,
                    "expected a header value such as \"max-age=31536000; includeSubDomains\"",
                );
                return None;
            }
            Some(Some(text))
        }
    });
    Some(TlsConfig {
        listen: listen?,
        certificates: certificates?,
        min_version,
        http2,
        client_ca_path,
        hsts,
    })
}

/// `cert_path` and `key_path` of a mapping whose other keys are `also`.
pub fn certificate_files(
    r: &mut Reader<'_>,
    value: &Value,
    path: &str,
    also: &[&str],
) -> Option<CertificateFiles> {
    let mut known = vec!["cert_path", "key_path"];
    known.extend_from_slice(also);
    let object = r.object(value, path, &known)?;
    let file = |r: &mut Reader<'_>, value: &Value, path: &str| {
        let text = r.string(value, path)?;
        if text.is_empty() {
            r.error(path, "must name a file");
            return None;
        }
        Some(PathBuf::from(text))
    };
    let cert_path = r.required(&object, "cert_path", file);
    let key_path = r.required(&object, "key_path", file);
    Some(CertificateFiles {
        cert_path: cert_path?,
        key_path: key_path?,
    })
}

/// A DNS name an upstream's certificate is checked against, or an IP address.
pub fn server_name(r: &mut Reader<'_>, value: &Value, path: &str) -> Option<String> {
    let text = r.string(value, path)?;
    if text.parse::<std::net::IpAddr>().is_ok() || is_dns_name(&text) {
        return Some(text.to_ascii_lowercase());
    }
    r.error(path, format!("\"{text}\" is not a host name"));
    None
}

/// A name a certificate serves: a DNS name, or `*.` followed by one.
fn server_name_pattern(r: &mut Reader<'_>, value: &Value, path: &str) -> Option<String> {
    let text = r.string(value, path)?;
    let base = text.strip_prefix("*.").unwrap_or(&text);
    if is_dns_name(base) && !base.contains('*') {
        return Some(text.to_ascii_lowercase());
    }
    r.error(
        path,
        format!("\"{text}\" is not a server name (a host name, or *. and a host name)"),
    );
    None
}

fn is_dns_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
