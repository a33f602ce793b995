//! Works out the caller's address: the TCP peer, or the X-Forwarded-For chain behind trusted proxies.

use crate::config::canonical_ip;
use ipnet::IpNet;
use std::net::IpAddr;

/// The client address of a request from `peer`. When `peer` is a trusted proxy, the
/// `X-Forwarded-For` entries (all headers, in order) are walked right to left and the first
/// address outside `trusted` is the client. A garbage entry stops the walk at the last
/// address that was vouched for.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> IpAddr {
    let mut client = canonical_ip(peer);
    if trusted.is_empty() {
        return client;
    }
    for header in forwarded_for.rev() {
        for entry in header.rsplit(|byte| *byte == b',') {
            if !is_trusted(client, trusted) {
                return client;
            }
            match parse_entry(entry) {
                Some(addr) => client = addr,
                None => return client,
            }
        }
    }
    client
}

pub fn is_trusted(addr: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&addr))
}

fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse().ok().map(canonical_ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff: [&[u8]; 1] = [b"1.2.3.4"];
        assert_eq!(
            client_ip(ip("203.0.113.9"), xff.into_iter(), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), xff.into_iter(), &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_chain_is_walked_right_to_left() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff: [&[u8]; 2] = [b"6.6.6.6, 198.51.100.7", b"10.0.0.2"];
        assert_eq!(
            client_ip(ip("10.0.0.1"), xff.into_iter(), &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn garbage_stops_the_walk() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff: [&[u8]; 1] = [b"198.51.100.7, not-an-ip, 10.0.0.3"];
        assert_eq!(
            client_ip(ip("10.0.0.1"), xff.into_iter(), &trusted),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff: [&[u8]; 1] = [b"::ffff:198.51.100.7"];
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), xff.into_iter(), &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn an_all_trusted_chain_ends_at_its_leftmost_entry() {
        let trusted = nets(&["10.0.0.0/8"]);
        let xff: [&[u8]; 1] = [b"10.9.9.9, 10.0.0.3"];
        assert_eq!(
            client_ip(ip("10.0.0.1"), xff.into_iter(), &trusted),
            ip("10.9.9.9")
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_never_invents_addresses(header in proptest::collection::vec(any::<u8>(), 0..64)) {
            let trusted = nets(&["0.0.0.0/0"]);
            let xff: [&[u8]; 1] = [&header];
            let _ = client_ip(ip("10.0.0.1"), xff.into_iter(), &trusted);
        }
    }
}
