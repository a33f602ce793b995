//! Permission names as compact bit sets, so "does the caller hold every required one" is a few word ANDs.

use std::collections::HashMap;
use std::sync::Arc;

/// The permissions named in the config, each given a bit.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    names: Vec<Arc<str>>,
    bits: HashMap<Arc<str>, usize>,
}

/// A set of permissions from one [`Catalog`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet {
    words: Box<[u64]>,
}

impl Catalog {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        let names: Vec<Arc<str>> = names.iter().map(|name| Arc::from(name.as_ref())).collect();
        let bits = names
            .iter()
            .enumerate()
            .map(|(bit, name)| (name.clone(), bit))
            .collect();
        Catalog { names, bits }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.bits.contains_key(name)
    }

    /// The set of `names`; names the catalog does not know are returned as the error.
    pub fn set<'a, S: AsRef<str> + 'a>(
        &self,
        names: impl IntoIterator<Item = &'a S>,
    ) -> Result<PermissionSet, String> {
        let mut words = vec![0u64; self.names.len().div_ceil(64)];
        for name in names {
            let name = name.as_ref();
            let bit = *self.bits.get(name).ok_or_else(|| name.to_string())?;
            words[bit / 64] |= 1 << (bit % 64);
        }
        Ok(PermissionSet {
            words: words.into_boxed_slice(),
        })
    }

    /// The names in `set`, in catalog order.
    pub fn names<'a>(&'a self, set: &'a PermissionSet) -> impl Iterator<Item = &'a Arc<str>> + 'a {
        self.names
            .iter()
            .enumerate()
            .filter(|(bit, _)| set.has_bit(*bit))
            .map(|(_, name)| name)
    }

    /// The names in `set`, space-separated, as the `X-Tollgate-Permissions` value. Built
    /// once per set (per snapshot, token or narrowing), never per request.
    pub fn header(&self, set: &PermissionSet) -> http::HeaderValue {
        let mut text = String::new();
        for name in self.names(set) {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(name);
        }
        // Config names are checked to be header text when the config is read; a name that
        // somehow is not yields an empty value rather than a broken head.
        http::HeaderValue::from_str(&text).unwrap_or(http::HeaderValue::from_static(""))
    }
}

impl PermissionSet {
    fn has_bit(&self, bit: usize) -> bool {
        self.words
            .get(bit / 64)
            .is_some_and(|word| word & (1 << (bit % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|word| *word == 0)
    }

    /// The first permission of `required` that `self` lacks, by bit.
    pub fn first_missing(&self, required: &PermissionSet) -> Option<usize> {
        for (index, need) in required.words.iter().enumerate() {
            let have = self.words.get(index).copied().unwrap_or(0);
            let missing = need & !have;
            if missing != 0 {
                return Some(index * 64 + missing.trailing_zeros() as usize);
            }
        }
        None
    }

    pub fn intersect(&self, other: &PermissionSet) -> PermissionSet {
        let words = self
            .words
            .iter()
            .zip(other.words.iter().chain(std::iter::repeat(&0)))
            .map(|(a, b)| a & b)
            .collect();
        PermissionSet { words }
    }
}

impl Catalog {
    /// Every permission of the catalog.
    pub fn all(&self) -> PermissionSet {
        self.set(self.names.iter()).unwrap_or_default()
    }

    pub fn name_of(&self, bit: usize) -> Option<&Arc<str>> {
        self.names.get(bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_missing_permission() {
        let catalog = Catalog::new(&["accounts:read", "accounts:write", "billing:read"]);
        let held = catalog.set(&["accounts:read"]).unwrap();
        let need = catalog.set(&["accounts:read", "accounts:write"]).unwrap();
        let missing = held.first_missing(&need).unwrap();
        assert_eq!(
            catalog.name_of(missing).map(|n| &**n),
            Some("accounts:write")
        );
        assert_eq!(need.first_missing(&held), None);
        assert_eq!(held.first_missing(&PermissionSet::default()), None);
    }

    #[test]
    fn the_header_lists_names_in_catalog_order() {
        let catalog = Catalog::new(&["a:read", "b:write", "c:read"]);
        let set = catalog.set(&["c:read", "a:read"]).unwrap();
        assert_eq!(catalog.header(&set), "a:read c:read");
        assert_eq!(catalog.header(&PermissionSet::default()), "");
    }

    #[test]
    fn unknown_names_are_refused() {
        let catalog = Catalog::new(&["a"]);
        assert_eq!(catalog.set(&["a", "b"]), Err("b".to_string()));
    }

    #[test]
    fn works_beyond_one_word() {
        let names: Vec<String> = (0..130).map(|i| format!("p{i}")).collect();
        let catalog = Catalog::new(&names);
        let held = catalog.set(&["p0", "p129"]).unwrap();
        let need = catalog.set(&["p129", "p64"]).unwrap();
        assert_eq!(held.first_missing(&need), Some(64));
        let listed: Vec<&str> = catalog.names(&held).map(|n| &**n).collect();
        assert_eq!(listed, ["p0", "p129"]);
    }
}
