//! The header rules of a forwarded request (SPEC sections 4 and 12): what the client sent
//! that could pass for the gateway's own is removed, names with `_` are dropped as nginx
//! drops them, the credential is stripped, and the identity, request id and forwarding
//! headers are set.

use super::context::ClientCert;
use crate::auth::credential::bearer_token;
use crate::gate::Caller;
use crate::policy::client_addr::is_trusted;
use crate::reply;
use ipnet::IpNet;
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType, Result};
use std::net::IpAddr;

/// What the rules need to know besides the request.
pub struct Forwarding<'a> {
    pub caller: Option<&'a Caller>,
    pub request_id: &'a str,
    /// The address the connection came from.
    pub peer: IpAddr,
    /// The client's address, through `trusted_proxies`.
    pub client_ip: IpAddr,
    pub trusted_proxies: &'a [IpNet],
    /// The normalised path, when it differs from what the client sent.
    pub path: Option<String>,
    /// The request arrived over TLS.
    pub https: bool,
    /// A client certificate the handshake verified.
    pub client_cert: Option<&'a ClientCert>,
}

pub fn rewrite(upstream: &mut RequestHeader, forwarding: Forwarding<'_>) -> Result<()> {
    if upstream.headers.keys().any(|name| dropped(name.as_str())) {
        let doomed: Vec<http::HeaderName> = upstream
            .headers
            .keys()
            .filter(|name| dropped(name.as_str()))
            .cloned()
            .collect();
        for name in doomed {
            upstream.remove_header(&name);
        }
    }
    // A client may list header names in Connection to have them dropped as hop-by-hop;
    // only the standard tokens are kept, so it can never remove the identity headers.
    if let Some(connection) = upstream.headers.get(http::header::CONNECTION) {
        let kept = hop_by_hop_tokens(connection.as_bytes());
        if kept.len() != connection.len() {
            match kept.is_empty() {
                true => {
                    upstream.remove_header(&http::header::CONNECTION);
                }
                false => upstream.insert_header(http::header::CONNECTION, kept)?,
            }
        }
    }
    if upstream
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| bearer_token(value.as_bytes()))
        .is_some()
    {
        upstream.remove_header(&http::header::AUTHORIZATION);
    }
    for (name, value) in reply::identity(forwarding.caller) {
        upstream.insert_header(name, value)?;
    }
    upstream.insert_header("x-request-id", forwarding.request_id)?;
    if let Some(cert) = forwarding.client_cert {
        if let Some(subject) = cert.subject.as_deref() {
            upstream.insert_header("x-tollgate-client-cert-subject", subject)?;
        }
        let sha256 = crate::tls::client_cert::hex_fingerprint(&cert.fingerprint);
        upstream.insert_header("x-tollgate-client-cert-sha256", sha256)?;
    }

    let peer = forwarding.peer;
    let trusted = is_trusted(peer, forwarding.trusted_proxies);
    let mut forwarded_for = Vec::with_capacity(64);
    if let Some(existing) = upstream.headers.get("x-forwarded-for").filter(|_| trusted) {
        forwarded_for.extend_from_slice(existing.as_bytes());
        forwarded_for.extend_from_slice(b", ");
    }
    write_address(&mut forwarded_for, peer);
    upstream.insert_header("x-forwarded-for", forwarded_for)?;
    let mut real_ip = Vec::with_capacity(15);
    write_address(&mut real_ip, forwarding.client_ip);
    upstream.insert_header("x-real-ip", real_ip)?;
    let proto = if forwarding.https { "https" } else { "http" };
    if !trusted {
        if upstream.headers.contains_key("forwarded") {
            upstream.remove_header("forwarded");
        }
        upstream.insert_header("x-forwarded-proto", proto)?;
    } else if !upstream.headers.contains_key("x-forwarded-proto") {
        upstream.insert_header("x-forwarded-proto", proto)?;
    }
    if let Some(path) = forwarding.path {
        let uri = match upstream.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let uri = uri.parse().map_err(|_| {
            Error::explain(ErrorType::InvalidHTTPHeader, "normalised path is not a URI")
        })?;
        upstream.set_uri(uri);
    }
    Ok(())
}

/// Appends `ip` as text. An IPv4 address (nearly every request's) is written digit by digit:
/// `Display` goes through the formatting machinery, about 1.3k instructions an address.
fn write_address(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => out.extend_from_slice(ip.to_string().as_bytes()),
    }
}

/// Client headers that never reach the upstream: any name with `_` (ignored, as nginx
/// ignores it, so `X_Tollgate_Subject` or `x_api_key` can never be read as ours by an
/// upstream framework that folds `_` into `-`), `x-tollgate-*`, the key header and
/// `X-Real-IP`, which the gateway sets itself.
fn dropped(name: &str) -> bool {
    name.contains('_')
        || name.starts_with("x-tollgate-")
        || name == "x-api-key"
        || name == "x-real-ip"
}

/// The `Connection` tokens a client may send through: close, keep-alive and upgrade.
fn hop_by_hop_tokens(value: &[u8]) -> String {
    value
        .split(|b| *b == b',')
        .map(|token| String::from_utf8_lossy(token.trim_ascii()).to_ascii_lowercase())
        .filter(|token| matches!(token.as_str(), "close" | "keep-alive" | "upgrade"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscored_and_spoofable_names_are_dropped() {
        for name in [
            "x_api_key",
            "x-tollgate_subject",
            "x_tollgate_subject",
            "x-tollgate-subject",
            "x-api-key",
            "x-real-ip",
            "x_real_ip",
            "custom_header",
        ] {
            assert!(dropped(name), "{name}");
        }
        for name in ["x-api-version", "x-tollgatex", "authorization", "x-custom"] {
            assert!(!dropped(name), "{name}");
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.7",
            "1.20.100.9",
            "192.168.10.200",
            "::1",
            "2001:db8::7",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = Vec::new();
            write_address(&mut out, ip);
            assert_eq!(out, ip.to_string().into_bytes(), "{text}");
        }
    }

    #[test]
    fn only_standard_connection_tokens_pass() {
        assert_eq!(hop_by_hop_tokens(b"close, x-tollgate-subject"), "close");
        assert_eq!(
            hop_by_hop_tokens(b"Keep-Alive, Upgrade"),
            "keep-alive, upgrade"
        );
        assert_eq!(hop_by_hop_tokens(b"x-api-key"), "");
    }
}
