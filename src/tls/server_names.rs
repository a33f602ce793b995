//! Which certificate a handshake gets: the one whose names match the client's SNI exactly,
//! then one with a `*.` wildcard for its parent domain, then the first configured (the
//! default, also for clients that send no SNI or an IP address).

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct ServerNames {
    default: Arc<CertifiedKey>,
    /// Lowercase names, wildcards kept as `*.example.com`.
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ServerNames {
    /// `certificates` in configuration order, each with the names it serves. A name claimed
    /// twice goes to the first certificate that claims it.
    pub fn new(certificates: Vec<(Arc<CertifiedKey>, Vec<String>)>) -> Option<ServerNames> {
        let default = certificates.first()?.0.clone();
        let mut by_name = HashMap::new();
        for (key, names) in certificates {
            for name in names {
                by_name
                    .entry(name.to_ascii_lowercase())
                    .or_insert_with(|| key.clone());
            }
        }
        Some(ServerNames { default, by_name })
    }

    /// The certificate for `sni`.
    pub fn pick(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = sni.map(|name| name.trim_end_matches('.').to_ascii_lowercase()) else {
            return &self.default;
        };
        if let Some(key) = self.by_name.get(&name) {
            return key;
        }
        // A wildcard covers exactly one label: `*.example.com` serves `a.example.com`,
        // not `example.com` nor `a.b.example.com`.
        if let Some((_, parent)) = name.split_once('.') {
            if parent.contains('.') {
                if let Some(key) = self.by_name.get(&format!("*.{parent}")) {
                    return key;
                }
            }
        }
        &self.default
    }
}

impl ResolvesServerCert for ServerNames {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Certified keys told apart by their (fake) chain, which `pick` never inspects.
    fn key(tag: u8) -> Arc<CertifiedKey> {
        let signing = rustls::crypto::ring::sign::any_supported_type(
            &rcgen::KeyPair::generate()
                .unwrap()
                .serialize_der()
                .try_into()
                .unwrap(),
        )
        .unwrap();
        Arc::new(CertifiedKey::new(vec![vec![tag].into()], signing))
    }

    fn tag(key: &Arc<CertifiedKey>) -> u8 {
        key.cert[0].as_ref()[0]
    }

    #[test]
    fn exact_names_then_one_label_wildcards_then_the_first_certificate() {
        let names = ServerNames::new(vec![
            (key(1), vec!["api.example.com".into()]),
            (key(2), vec!["*.example.com".into(), "example.com".into()]),
            (key(3), vec!["api.example.com".into(), "other.test".into()]),
        ])
        .unwrap();
        let cases = [
            (Some("api.example.com"), 1),
            (Some("API.Example.COM."), 1),
            (Some("www.example.com"), 2),
            (Some("example.com"), 2),
            (Some("a.b.example.com"), 1),
            (Some("other.test"), 3),
            (Some("unknown.test"), 1),
            (None, 1),
        ];
        for (sni, expected) in cases {
            assert_eq!(tag(names.pick(sni)), expected, "{sni:?}");
        }
        assert!(ServerNames::new(Vec::new()).is_none());
    }
}
