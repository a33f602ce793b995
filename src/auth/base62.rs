//! Base62 (0-9, A-Z, a-z): the alphabet of key bodies and ids.

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` characters of cryptographically secure randomness.
pub fn random(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..62)] as char)
        .collect()
}

/// `value` in exactly `width` characters, zero-padded (`value` must fit).
pub fn encode_fixed(value: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    encode_into(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// `value` written into every byte of `out`, zero-padded, without allocating.
pub fn encode_into(mut value: u64, out: &mut [u8]) {
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
}

pub fn is_base62(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_encoding() {
        assert_eq!(encode_fixed(0, 6), "000000");
        assert_eq!(encode_fixed(61, 2), "0z");
        assert_eq!(encode_fixed(u32::MAX as u64, 6), "4gfFC3");
    }

    #[test]
    fn random_is_base62_of_the_right_length() {
        let text = random(32);
        assert_eq!(text.len(), 32);
        assert!(is_base62(text.as_bytes()));
        assert_ne!(random(32), text);
    }
}
