//! An id as the snapshot keeps it: up to 30 bytes inline (every id tollgate mints, such as
//! `key_` or `cid_` and 20 base62 characters), longer ones shared on the heap. A million
//! keys carry two ids each, so this saves two allocations a key; a clone copies 32 bytes
//! or, for a long id, counts a reference.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

const INLINE: usize = 30;

#[derive(Clone)]
pub struct ShortId(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Arc<str>),
}

impl ShortId {
    pub fn new(text: &str) -> ShortId {
        if text.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            ShortId(Repr::Inline {
                len: text.len() as u8,
                bytes,
            })
        } else {
            ShortId(Repr::Heap(Arc::from(text)))
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                // Only `new` fills `bytes`, from a `str` cut at its own length.
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Heap(text) => text,
        }
    }
}

impl Deref for ShortId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ShortId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ShortId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ShortId {
    fn from(text: &str) -> ShortId {
        ShortId::new(text)
    }
}

/// Equal, hashed and ordered as the text it holds, so a `&str` finds it in a map.
impl PartialEq for ShortId {
    fn eq(&self, other: &ShortId) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ShortId {}

impl PartialEq<str> for ShortId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl Hash for ShortId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for ShortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn short_and_long_ids_read_back_and_compare_as_their_text() {
        let minted = "key_0123456789abcdefghij";
        let long = "an-imported-id-much-longer-than-thirty-bytes";
        for text in [
            "",
            "k",
            minted,
            &"x".repeat(30),
            &"y".repeat(31),
            long,
            "ключ_ünïcode",
        ] {
            let id = ShortId::new(text);
            assert_eq!(&*id, text);
            assert_eq!(id, ShortId::from(text));
            assert_eq!(id.to_string(), text);
            let hasher = std::collections::hash_map::RandomState::new();
            assert_eq!(hasher.hash_one(&id), hasher.hash_one(text));
        }
        assert!(matches!(ShortId::new(minted).0, Repr::Inline { .. }));
        assert!(matches!(ShortId::new(long).0, Repr::Heap(_)));
        assert_ne!(ShortId::new("a"), ShortId::new("b"));
        assert!(std::mem::size_of::<ShortId>() <= 32);
        let mut map = std::collections::HashMap::new();
        map.insert(ShortId::new(minted), 1);
        assert_eq!(map.get(minted), Some(&1));
    }
}
