//! Per-key IP allowlists: a caller address is allowed when the list is empty or holds it.
//! A key that asks for the infrastructure addresses gets them beside its own; with no
//! addresses of its own, it gets exactly them (ticking only that box means "only there").

use crate::config::canonical_ip;
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist(Option<Arc<[IpNet]>>);

impl Allowlist {
    /// What tells two allowlists apart once built from interned entries: the address of
    /// their networks (0 for the list that allows every address).
    pub fn identity(&self) -> usize {
        self.0
            .as_ref()
            .map_or(0, |nets| Arc::as_ptr(nets).cast::<IpNet>() as usize)
    }

    /// An allowlist of `nets`, plus `infrastructure` when asked for. An empty list
    /// without the infrastructure addresses allows every address; an empty list with them
    /// allows exactly them.
    pub fn new(nets: Vec<IpNet>, infrastructure: Option<&[IpNet]>) -> Self {
        if nets.is_empty() && infrastructure.is_none() {
            return Allowlist(None);
        }
        let mut all = nets;
        all.extend(infrastructure.unwrap_or_default().iter().copied());
        Allowlist(Some(all.into()))
    }

    /// Allows no address: what a stored list that cannot be read becomes, so damage to
    /// the store closes a key instead of opening it to every address.
    pub fn nothing() -> Self {
        Allowlist(Some(Arc::from([])))
    }

    pub fn allows(&self, addr: IpAddr) -> bool {
        match &self.0 {
            None => true,
            Some(nets) => {
                let addr = canonical_ip(addr);
                nets.iter().any(|net| net.contains(&addr))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|n| crate::config::parse_cidr(n).unwrap())
            .collect()
    }

    #[test]
    fn empty_allows_everyone() {
        assert!(Allowlist::new(vec![], None).allows("203.0.113.1".parse().unwrap()));
    }

    #[test]
    fn addresses_and_ranges_in_both_families() {
        let list = Allowlist::new(
            nets(&["203.0.113.42", "198.51.100.0/24", "2001:db8::/32"]),
            None,
        );
        assert!(list.allows("203.0.113.42".parse().unwrap()));
        assert!(!list.allows("203.0.113.43".parse().unwrap()));
        assert!(list.allows("198.51.100.250".parse().unwrap()));
        assert!(list.allows("2001:db8::7".parse().unwrap()));
        assert!(!list.allows("2001:db9::7".parse().unwrap()));
        // IPv4-mapped IPv6 matches the IPv4 rule.
        assert!(list.allows("::ffff:203.0.113.42".parse().unwrap()));
    }

    #[test]
    fn infrastructure_ranges_are_added_on_request() {
        let infra = nets(&["10.0.0.0/8"]);
        let with = Allowlist::new(nets(&["203.0.113.42"]), Some(&infra));
        let without = Allowlist::new(nets(&["203.0.113.42"]), None);
        assert!(with.allows("10.1.2.3".parse().unwrap()));
        assert!(!without.allows("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn infrastructure_alone_means_only_the_infrastructure() {
        let infra = nets(&["10.0.0.0/8"]);
        let only = Allowlist::new(vec![], Some(&infra));
        assert!(only.allows("10.1.2.3".parse().unwrap()));
        assert!(!only.allows("203.0.113.1".parse().unwrap()));
        // With no infrastructure addresses configured, such a key is usable from nowhere.
        assert!(!Allowlist::new(vec![], Some(&[])).allows("10.1.2.3".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn a_v4_address_is_allowed_exactly_by_the_nets_containing_it(a: u8, b: u8, c: u8, d: u8, prefix in 8u8..=32) {
            let addr = IpAddr::from([a, b, c, d]);
            let net: IpNet = IpNet::new(IpAddr::from([a, b, 0, 0]), prefix).unwrap().trunc();
            let list = Allowlist::new(vec![net], None);
            prop_assert_eq!(list.allows(addr), net.contains(&addr));
        }
    }
}
