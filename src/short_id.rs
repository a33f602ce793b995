//! An id as the snapshot keeps it, in 16 bytes: an id tollgate mints (`key_`, `cid_` or
//! `own_` and 20 base62 characters) packed at six bits a character, any other id of up to
//! 15 bytes inline, a longer one shared on the heap. A million keys carry two ids each, so
//! packing saves 32 bytes a key against 30 bytes inline; reading a minted id as text
//! decodes its 24 characters onto the stack.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The prefixes of the ids tollgate mints, each followed by [`DIGITS`] base62 characters.
const PREFIXES: [&str; 3] = ["key_", "cid_", "own_"];
const DIGITS: usize = 20;
/// Bytes of text kept inline, and of packed digits (20 × 6 bits).
const BODY: usize = 15;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Equal and hashed as its text: each text has exactly one form (minted ids are always
/// packed, other short ones always inline), so comparing forms compares texts.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ShortId(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// `tag` says which: the length of an inline text, or the prefix of packed digits.
    /// It also leaves `Heap` room in the same 16 bytes.
    Body {
        tag: Tag,
        bytes: [u8; BODY],
    },
    Heap(Arc<String>),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
enum Tag {
    Len0,
    Len1,
    Len2,
    Len3,
    Len4,
    Len5,
    Len6,
    Len7,
    Len8,
    Len9,
    Len10,
    Len11,
    Len12,
    Len13,
    Len14,
    Len15,
    Key,
    Cid,
    Own,
}

const LENGTHS: [Tag; BODY + 1] = [
    Tag::Len0,
    Tag::Len1,
    Tag::Len2,
    Tag::Len3,
    Tag::Len4,
    Tag::Len5,
    Tag::Len6,
    Tag::Len7,
    Tag::Len8,
    Tag::Len9,
    Tag::Len10,
    Tag::Len11,
    Tag::Len12,
    Tag::Len13,
    Tag::Len14,
    Tag::Len15,
];

const PREFIX_TAGS: [Tag; PREFIXES.len()] = [Tag::Key, Tag::Cid, Tag::Own];

fn digit_value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 36),
        _ => None,
    }
}

/// Twenty base62 characters as 15 bytes: four characters to each three bytes.
fn pack(digits: &[u8]) -> Option<[u8; BODY]> {
    if digits.len() != DIGITS {
        return None;
    }
    let mut out = [0u8; BODY];
    for (group, chars) in digits.chunks_exact(4).enumerate() {
        let mut bits = 0u32;
        for &c in chars {
            bits = (bits << 6) | digit_value(c)?;
        }
        out[group * 3..group * 3 + 3].copy_from_slice(&bits.to_be_bytes()[1..]);
    }
    Some(out)
}

fn unpack(bytes: &[u8; BODY], out: &mut [u8]) {
    for (group, three) in bytes.chunks_exact(3).enumerate() {
        let bits = u32::from_be_bytes([0, three[0], three[1], three[2]]);
        for k in 0..4 {
            out[group * 4 + k] = BASE62[((bits >> (18 - 6 * k)) & 63) as usize];
        }
    }
}

impl ShortId {
    pub fn new(text: &str) -> ShortId {
        for (prefix, tag) in PREFIXES.iter().zip(PREFIX_TAGS) {
            if let Some(bytes) = text.strip_prefix(prefix).and_then(|d| pack(d.as_bytes())) {
                return ShortId(Repr::Body { tag, bytes });
            }
        }
        if text.len() <= BODY {
            let mut bytes = [0u8; BODY];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            return ShortId(Repr::Body {
                tag: LENGTHS[text.len()],
                bytes,
            });
        }
        ShortId(Repr::Heap(Arc::new(text.to_owned())))
    }

    /// The id as text: borrowed when it is kept as text, decoded when it is packed.
    pub fn as_str(&self) -> IdText<'_> {
        match &self.0 {
            Repr::Body { tag, bytes } => match *tag as usize {
                len @ 0..=BODY => {
                    // Only `new` fills an inline body, from a `str` cut at its own length.
                    IdText::Borrowed(std::str::from_utf8(&bytes[..len]).unwrap_or_default())
                }
                index => {
                    let prefix = PREFIXES[index - BODY - 1].as_bytes();
                    let mut minted = [0u8; MINTED];
                    minted[..prefix.len()].copy_from_slice(prefix);
                    unpack(bytes, &mut minted[prefix.len()..]);
                    IdText::Minted(minted)
                }
            },
            Repr::Heap(text) => IdText::Borrowed(text),
        }
    }
}

/// The length of a minted id: its prefix and its digits.
const MINTED: usize = 4 + DIGITS;

/// An id's text, for as long as it is read.
pub enum IdText<'a> {
    Minted([u8; MINTED]),
    Borrowed(&'a str),
}

impl Deref for IdText<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            // Prefixes and base62 digits are ASCII.
            IdText::Minted(bytes) => std::str::from_utf8(bytes).unwrap_or_default(),
            IdText::Borrowed(text) => text,
        }
    }
}

impl From<&str> for ShortId {
    fn from(text: &str) -> ShortId {
        ShortId::new(text)
    }
}

impl PartialEq<str> for ShortId {
    fn eq(&self, other: &str) -> bool {
        *self.as_str() == *other
    }
}

impl fmt::Debug for ShortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.as_str(), f)
    }
}

impl fmt::Display for ShortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_form_reads_back_as_its_text() {
        let minted = "key_0123456789abcdefghij";
        let long = "an-imported-id-much-longer-than-thirty-bytes";
        for text in [
            "",
            "k",
            minted,
            "cid_ZZZZZZZZZZZZZZZZZZZZ",
            "cid_00000000000000000000",
            "own_0123456789ABCDEFGHIJ",
            // Shaped like a minted id but not one: packing would have to refuse each.
            "key_0123456789abcdefghi",
            "key_0123456789abcdefghijk",
            "key_0123456789abcdefgh-j",
            "usr_0123456789abcdefghij",
            &"x".repeat(15),
            &"y".repeat(16),
            long,
            "ключ_ünïcode",
        ] {
            let id = ShortId::new(text);
            assert_eq!(&*id.as_str(), text);
            assert_eq!(id, ShortId::from(text));
            assert!(id == *text);
            assert_eq!(id.to_string(), text);
            assert_eq!(format!("{id:?}"), format!("{text:?}"));
        }
        assert!(matches!(
            ShortId::new(minted).0,
            Repr::Body { tag: Tag::Key, .. }
        ));
        assert!(matches!(
            ShortId::new("own_0123456789ABCDEFGHIJ").0,
            Repr::Body { tag: Tag::Own, .. }
        ));
        assert!(matches!(
            ShortId::new("key_0123456789abcdefghi").0,
            Repr::Heap(_)
        ));
        assert!(matches!(ShortId::new(long).0, Repr::Heap(_)));
        assert_ne!(ShortId::new("a"), ShortId::new("b"));
        assert_eq!(std::mem::size_of::<ShortId>(), 16);
        let mut map = std::collections::HashMap::new();
        map.insert(ShortId::new(minted), 1);
        assert_eq!(map.get(&ShortId::new(minted)), Some(&1));
    }

    /// Texts weighted towards what packing decides on: minted shapes, their near misses
    /// (one character too few or too many), and anything else.
    fn id_text() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "(key_|cid_|own_)[0-9A-Za-z]{20}",
            1 => "(key_|cid_|own_)[0-9A-Za-z]{19,21}",
            1 => "(key_|cid_|own_)?[0-9A-Za-z_-]{0,24}",
        ]
    }

    /// A pair of texts: equal, one character apart, or unrelated.
    fn id_pair() -> impl Strategy<Value = (String, String)> {
        (id_text(), id_text(), 0..3u8, any::<prop::sample::Index>()).prop_map(|(a, b, how, at)| {
            match how {
                0 => (a.clone(), a),
                1 if !a.is_empty() => {
                    let mut chars: Vec<char> = a.chars().collect();
                    let at = at.index(chars.len());
                    chars[at] = if chars[at] == 'z' { 'y' } else { 'z' };
                    (a, chars.into_iter().collect())
                }
                _ => (a, b),
            }
        })
    }

    proptest! {
        /// Any text comes back as itself, and two ids are equal exactly when their texts are.
        #[test]
        fn ids_compare_as_their_texts((a, b) in id_pair()) {
            let (x, y) = (ShortId::new(&a), ShortId::new(&b));
            prop_assert_eq!(&*x.as_str(), a.as_str());
            prop_assert_eq!(&*y.as_str(), b.as_str());
            prop_assert_eq!(x == y, a == b);
            let hasher = std::collections::hash_map::RandomState::new();
            if a == b {
                use std::hash::BuildHasher;
                prop_assert_eq!(hasher.hash_one(&x), hasher.hash_one(&y));
            }
        }
    }
}
