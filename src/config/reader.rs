//! Walks the parsed YAML tree, converting each field to its type and collecting every error.

use super::duration::parse_duration;
use super::lines::LineIndex;
use super::ConfigError;
use ipnet::IpNet;
use serde_yaml_ng::{Mapping, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A mapping whose keys were checked against the known ones.
pub struct Object<'v> {
    path: String,
    map: &'v Mapping,
}

impl<'v> Object<'v> {
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The field `key`, with its path, when present and not `null`.
    pub fn get(&self, key: &str) -> Option<(&'v Value, String)> {
        self.map
            .get(key)
            .filter(|value| !value.is_null())
            .map(|value| (value, child(&self.path, key)))
    }
}

pub fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Collects errors while the schema functions read the tree.
pub struct Reader<'l> {
    lines: &'l LineIndex,
    pub errors: Vec<ConfigError>,
}

impl<'l> Reader<'l> {
    pub fn new(lines: &'l LineIndex) -> Self {
        Self {
            lines,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            line: self.lines.line_of(path),
            message: message.into(),
        });
    }

    /// Reads a mapping and reports any key not in `known`.
    pub fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<Object<'v>> {
        let Some(map) = value.as_mapping() else {
            self.error(path, format!("expected a mapping, found {}", kind(value)));
            return None;
        };
        for key in map.keys() {
            match key.as_str() {
                Some(name) if known.contains(&name) => {}
                Some(name) => self.error(
                    &child(path, name),
                    format!("unknown key \"{name}\"{}", suggestion(name, known)),
                ),
                None => self.error(path, format!("keys must be strings, found {}", kind(key))),
            }
        }
        Some(Object {
            path: path.to_string(),
            map,
        })
    }

    /// Reads the field `key` of `object` with `parse`, or returns `default` when absent.
    /// On a bad value the error is recorded and `default` is returned, so reading goes on.
    pub fn field<T>(
        &mut self,
        object: &Object<'_>,
        key: &str,
        default: T,
        parse: impl FnOnce(&mut Self, &Value, &str) -> Option<T>,
    ) -> T {
        match object.get(key) {
            Some((value, path)) => parse(self, value, &path).unwrap_or(default),
            None => default,
        }
    }

    /// Like [`Reader::field`] for a field that must be present.
    pub fn required<T>(
        &mut self,
        object: &Object<'_>,
        key: &str,
        parse: impl FnOnce(&mut Self, &Value, &str) -> Option<T>,
    ) -> Option<T> {
        match object.get(key) {
            Some((value, path)) => parse(self, value, &path),
            None => {
                self.error(&child(object.path(), key), "is required");
                None
            }
        }
    }

    pub fn string(&mut self, value: &Value, path: &str) -> Option<String> {
        match value {
            Value::String(text) => Some(text.clone()),
            other => {
                self.error(path, format!("expected a string, found {}", kind(other)));
                None
            }
        }
    }

    pub fn bool(&mut self, value: &Value, path: &str) -> Option<bool> {
        match value {
            Value::Bool(flag) => Some(*flag),
            other => {
                self.error(
                    path,
                    format!("expected true or false, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A whole number of at least 1.
    pub fn positive(&mut self, value: &Value, path: &str) -> Option<u64> {
        match value.as_u64() {
            Some(number) if number >= 1 => Some(number),
            _ => {
                self.error(
                    path,
                    format!(
                        "expected a whole number of at least 1, found {}",
                        describe(value)
                    ),
                );
                None
            }
        }
    }

    pub fn duration(&mut self, value: &Value, path: &str) -> Option<Duration> {
        let text = self.string(value, path)?;
        match parse_duration(&text) {
            Ok(duration) if !duration.is_zero() => Some(duration),
            Ok(_) => {
                self.error(path, "must be longer than zero");
                None
            }
            Err(message) => {
                self.error(path, message);
                None
            }
        }
    }

    pub fn socket_addr(&mut self, value: &Value, path: &str) -> Option<SocketAddr> {
        let text = self.string(value, path)?;
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    path,
                    format!("\"{text}\" is not an address like 127.0.0.1:8080 or [::1]:8080"),
                );
                None
            }
        }
    }

    /// An address or CIDR; a bare address becomes a /32 or /128. A CIDR with host bits set
    /// is an error: it is not clear whether the address or the network was meant.
    pub fn cidr(&mut self, value: &Value, path: &str) -> Option<IpNet> {
        let text = self.string(value, path)?;
        match parse_cidr_exact(&text) {
            Ok(net) => Some(net),
            Err(error) => {
                self.error(path, error.describe(&text));
                None
            }
        }
    }

    /// A sequence whose items are each read with `item`; bad items are reported and skipped.
    pub fn list<T>(
        &mut self,
        value: &Value,
        path: &str,
        mut item: impl FnMut(&mut Self, &Value, &str) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Some(items) = value.as_sequence() else {
            self.error(path, format!("expected a list, found {}", kind(value)));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (index, value) in items.iter().enumerate() {
            if let Some(parsed) = item(self, value, &format!("{path}[{index}]")) {
                out.push(parsed);
            }
        }
        Some(out)
    }

    /// A mapping from names to values read with `item`, in document order.
    pub fn named<T>(
        &mut self,
        value: &Value,
        path: &str,
        mut item: impl FnMut(&mut Self, &str, &Value, &str) -> Option<T>,
    ) -> Option<Vec<(String, T)>> {
        let Some(map) = value.as_mapping() else {
            self.error(path, format!("expected a mapping, found {}", kind(value)));
            return None;
        };
        let mut out = Vec::with_capacity(map.len());
        for (key, value) in map {
            let Some(name) = key.as_str() else {
                self.error(path, format!("names must be strings, found {}", kind(key)));
                continue;
            };
            if let Some(parsed) = item(self, name, value, &child(path, name)) {
                out.push((name.to_string(), parsed));
            }
        }
        Some(out)
    }
}

/// Why an address or CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Neither an address nor a CIDR.
    Invalid,
    /// A CIDR with host bits set (`10.0.0.1/8`): which of the two was meant?
    HostBits { address: IpNet, network: IpNet },
}

impl CidrError {
    /// The message for `text`, suggesting what it may have meant.
    pub fn describe(&self, text: &str) -> String {
        match self {
            CidrError::Invalid => format!("\"{text}\" is not an IP address or CIDR"),
            CidrError::HostBits { address, network } => format!(
                "\"{text}\" has host bits set, so it is ambiguous: write {address} for that \
                 address alone, or {network} for the whole network"
            ),
        }
    }
}

/// Like [`parse_cidr`], but a CIDR with host bits set is refused rather than widened to its
/// network: `10.0.0.1/8` would otherwise open a key to 16 million addresses.
pub fn parse_cidr_exact(text: &str) -> Result<IpNet, CidrError> {
    let net = parse_cidr(text).ok_or(CidrError::Invalid)?;
    let Some((address, _)) = text.trim().split_once('/') else {
        return Ok(net);
    };
    let address: IpAddr = address.parse().map_err(|_| CidrError::Invalid)?;
    let address = canonical_ip(address);
    if address != net.addr() {
        return Err(CidrError::HostBits {
            address: IpNet::from(address),
            network: net,
        });
    }
    Ok(net)
}

/// Parses `203.0.113.42`, `203.0.113.0/24`, `2001:db8::/32`; IPv4-mapped IPv6 becomes IPv4.
/// Host bits are cleared (`198.51.100.7/24` is `198.51.100.0/24`): use [`parse_cidr_exact`]
/// for what a person typed.
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(
            match net {
                IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                    Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).ok()?,
                    None => net,
                },
                _ => net,
            }
            .trunc(),
        );
    }
    let addr: IpAddr = text.parse().ok()?;
    Some(IpNet::from(canonical_ip(addr)))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are treated as the IPv4 address.
pub fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => format!("\"{text}\""),
        other => kind(other).to_string(),
    }
}

/// `, did you mean "x"?` when a known key is one or two edits away.
fn suggestion(name: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, candidate)| format!(", did you mean \"{candidate}\"?"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cidrs_and_bare_addresses() {
        assert_eq!(parse_cidr("203.0.113.42"), "203.0.113.42/32".parse().ok());
        assert_eq!(
            parse_cidr("198.51.100.7/24"),
            "198.51.100.0/24".parse().ok()
        );
        assert_eq!(parse_cidr("::ffff:10.0.0.0/104"), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_cidr("::ffff:10.1.2.3"), "10.1.2.3/32".parse().ok());
        assert_eq!(parse_cidr("2001:db8::1"), "2001:db8::1/128".parse().ok());
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("example.com"), None);
    }

    #[test]
    fn host_bits_are_refused_with_both_readings() {
        assert_eq!(
            parse_cidr_exact("10.0.0.1/8"),
            Err(CidrError::HostBits {
                address: "10.0.0.1/32".parse().unwrap(),
                network: "10.0.0.0/8".parse().unwrap()
            })
        );
        let message = parse_cidr_exact("10.0.0.1/8")
            .unwrap_err()
            .describe("10.0.0.1/8");
        assert!(
            message.contains("10.0.0.1/32") && message.contains("10.0.0.0/8"),
            "{message}"
        );
        assert_eq!(
            parse_cidr_exact("10.0.0.0/8"),
            Ok("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            parse_cidr_exact("203.0.113.42"),
            Ok("203.0.113.42/32".parse().unwrap())
        );
        assert_eq!(
            parse_cidr_exact("::ffff:10.0.0.0/104"),
            Ok("10.0.0.0/8".parse().unwrap())
        );
        assert!(matches!(
            parse_cidr_exact("2001:db8::1/32"),
            Err(CidrError::HostBits { .. })
        ));
        assert_eq!(parse_cidr_exact("10.0.0.0/33"), Err(CidrError::Invalid));
    }

    #[test]
    fn suggests_near_keys() {
        assert_eq!(
            suggestion("lisen", &["listen", "threads"]),
            ", did you mean \"listen\"?"
        );
        assert_eq!(suggestion("zzz", &["listen"]), "");
    }

    proptest! {
        #[test]
        fn cidr_parser_never_panics(text in ".{0,50}") {
            let _ = parse_cidr(&text);
        }

        #[test]
        fn every_v4_address_is_inside_its_own_net(a: u8, b: u8, c: u8, d: u8, prefix in 0u8..=32) {
            let addr = IpAddr::from([a, b, c, d]);
            let net = parse_cidr(&format!("{addr}/{prefix}")).unwrap();
            prop_assert!(net.contains(&addr));
        }
    }
}
