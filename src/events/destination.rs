//! Where a webhook may be delivered. A URL whose host is, or resolves to, a loopback,
//! private, link-local or otherwise internal address is refused unless
//! `webhooks.allow_private_destinations`: at registration, and again at every delivery on
//! the addresses the connection actually uses, so a name that resolves elsewhere later
//! (DNS rebinding) is caught too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotAllowed(String),
}

/// An address no webhook may reach unless private destinations are allowed.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || compatible_v4(v6).is_some_and(internal_v4)
        }
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64.0.0/10
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18.0.0/15
        || a >= 240 // reserved
}

/// The IPv4 address of an IPv4-compatible (`::a.b.c.d`) or NAT64 (`64:ff9b::/96`) address.
fn compatible_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6].iter().all(|&x| x == 0);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0);
    (compatible || nat64).then_some(tail)
}

/// Parses and checks a webhook URL: absolute `http` or `https`, with a host, without
/// credentials or a fragment. A host given as an address is checked here; a name is
/// resolved by [`check_resolved`].
pub fn parse(url: &str, allow_private: bool) -> Result<url::Url, Refused> {
    let parsed = url::Url::parse(url)
        .map_err(|_| Refused::Invalid(format!("url \"{url}\" is not an absolute URL")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Refused::Invalid("url must be http:// or https://".into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Refused::Invalid(
            "url must not carry a user name or password".into(),
        ));
    }
    if parsed.fragment().is_some() {
        return Err(Refused::Invalid("url must not have a fragment".into()));
    }
    if url.len() > 2048 {
        return Err(Refused::Invalid("url is over 2048 characters".into()));
    }
    if let Some(ip) = literal(&parsed) {
        check_address(ip, allow_private)?;
    } else if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Refused::Invalid("url must have a host".into()));
    }
    Ok(parsed)
}

/// The host of a URL when it is an address.
pub fn literal(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

fn check_address(ip: IpAddr, allow_private: bool) -> Result<(), Refused> {
    if !allow_private && is_internal(ip) {
        return Err(Refused::NotAllowed(format!(
            "the destination {ip} is a loopback, private or link-local address; \
             set webhooks.allow_private_destinations to deliver there"
        )));
    }
    Ok(())
}

/// How long registration waits for a name to resolve before taking it unchecked.
const REGISTRATION_LOOKUP: std::time::Duration = std::time::Duration::from_secs(2);

/// At registration: a host name must not resolve to an internal address. A name that does
/// not resolve now is accepted; every delivery resolves it again and checks what it finds.
pub async fn check_resolved(url: &url::Url, allow_private: bool) -> Result<(), Refused> {
    let (Some(host), None) = (url.host_str(), literal(url)) else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::net::lookup_host((host, port));
    if let Ok(Ok(addresses)) = tokio::time::timeout(REGISTRATION_LOOKUP, lookup).await {
        for address in addresses {
            check_address(address.ip(), allow_private)?;
        }
    }
    Ok(())
}

/// The resolver of the delivery client: the addresses a name resolves to, each checked,
/// so that the connection can only go to an address that passed.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allow_private || !is_internal(a.ip()))
                .collect();
            if allowed.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = if found.is_empty() {
                    format!("{host} does not resolve").into()
                } else {
                    Box::new(Refused::NotAllowed(format!(
                        "{host} resolves to a loopback, private or link-local address"
                    )))
                };
                return Err(error);
            }
            let addresses: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}

impl GuardedResolver {
    pub fn shared(allow_private: bool) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { allow_private })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    #[test]
    fn internal_addresses_are_named() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.3.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_internal(ip.parse().expect("an address")), "{ip}");
        }
        for ip in ["93.184.215.14", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert!(!is_internal(ip.parse().expect("an address")), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(parse("https://hooks.example.com/in", false).is_ok());
        for refused in [
            "http://127.0.0.1:9/x",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8080/",
        ] {
            assert!(
                matches!(parse(refused, false), Err(Refused::NotAllowed(_))),
                "{refused}"
            );
            assert!(parse(refused, true).is_ok(), "{refused}");
        }
        for invalid in [
            "ftp://example.com/",
            "not a url",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
        ] {
            assert!(
                matches!(parse(invalid, true), Err(Refused::Invalid(_))),
                "{invalid}"
            );
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_registration_and_connect() {
        let url = parse("http://localhost:9/hook", false).expect("a name passes parsing");
        assert!(matches!(
            check_resolved(&url, false).await,
            Err(Refused::NotAllowed(_))
        ));
        assert!(check_resolved(&url, true).await.is_ok());
        let name = || "localhost".parse::<reqwest::dns::Name>().expect("a name");
        assert!(GuardedResolver {
            allow_private: false
        }
        .resolve(name())
        .await
        .is_err());
        let found: Vec<SocketAddr> = GuardedResolver {
            allow_private: true,
        }
        .resolve(name())
        .await
        .expect("resolves when allowed")
        .collect();
        assert!(found.iter().all(|a| a.ip().is_loopback()) && !found.is_empty());
    }
}
