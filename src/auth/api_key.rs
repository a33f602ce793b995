//! API key format (SPEC sections 3 and 15): `{prefix}_{env}_{32 random base62}{6 base62
//! CRC32}`, where `env` is the key's environment, a lowercase word of 2 to 12 letters.
//! Minting, the checks done before any lookup, and the SHA-256 digest that is stored.

use super::base62;
use crate::config::{Environment, Environments};
use sha2::{Digest as _, Sha256};
use std::hash::{BuildHasherDefault, Hasher};
use subtle::ConstantTimeEq;

const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// Random characters kept for display after the prefix and environment: `tg_live_8f3K`.
pub const START_RANDOM: usize = 4;

/// The SHA-256 of a key. Equality is constant-time.
#[derive(Clone, Copy)]
pub struct Digest(pub [u8; 32]);

impl PartialEq for Digest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Digest {}

impl std::hash::Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0[..8]);
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a digest in full: it identifies a secret.
        write!(f, "Digest({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// Digests are uniformly random, so their first 8 bytes are already a good hash.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(word);
    }
}

pub type DigestBuildHasher = BuildHasherDefault<DigestHasher>;

pub fn digest(key: &[u8]) -> Digest {
    Digest(Sha256::digest(key).into())
}

/// A newly minted key: the secret (shown once) and what is stored of it.
pub struct MintedKey {
    pub secret: String,
    pub digest: Digest,
    pub start: String,
}

pub fn mint(prefix: &str, environment: Environment) -> MintedKey {
    mint_as(prefix, environment.as_str())
}

/// The word admin tokens carry where keys carry their environment: `tg_adm_...`.
pub const ADMIN_TOKEN_KIND: &str = "adm";

/// An admin token (SPEC section 10): a key's format with `adm` for the environment, so
/// it never passes as a data-plane key, nor a key as an admin token.
pub fn mint_admin_token(prefix: &str) -> MintedKey {
    mint_as(prefix, ADMIN_TOKEN_KIND)
}

fn mint_as(prefix: &str, kind: &str) -> MintedKey {
    let mut secret = format!("{prefix}_{kind}_{}", base62::random(RANDOM_LEN));
    let checksum = crc32fast::hash(secret.as_bytes());
    secret.push_str(&base62::encode_fixed(u64::from(checksum), CHECKSUM_LEN));
    MintedKey {
        digest: digest(secret.as_bytes()),
        start: secret[..prefix.len() + kind.len() + 2 + START_RANDOM].to_string(),
        secret,
    }
}

/// Why a presented key was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormatError {
    /// Not shaped like a key of this gateway, or the checksum does not match.
    Malformed,
    /// A well-formed key minted for the other environment.
    WrongEnvironment,
}

/// Whether a bearer value claims to be a key of this gateway (rather than a JWT).
pub fn looks_like_key(value: &[u8], prefix: &str) -> bool {
    value.len() > prefix.len()
        && value.starts_with(prefix.as_bytes())
        && value[prefix.len()] == b'_'
}

/// Checks shape and checksum, then the environment: one of `accepted`. Costs no hashing
/// beyond a CRC32.
pub fn check_format(
    key: &[u8],
    prefix: &str,
    accepted: Environments,
) -> Result<(), KeyFormatError> {
    let body_len = RANDOM_LEN + CHECKSUM_LEN;
    if !looks_like_key(key, prefix) || key.len() < prefix.len() + 4 + body_len {
        return Err(KeyFormatError::Malformed);
    }
    let env_start = prefix.len() + 1;
    let env_len = key.len() - env_start - 1 - body_len;
    let env = &key[env_start..env_start + env_len];
    let body = &key[env_start + env_len + 1..];
    let shaped = (2..=12).contains(&env_len)
        && env.iter().all(u8::is_ascii_lowercase)
        && env != ADMIN_TOKEN_KIND.as_bytes()
        && key[env_start + env_len] == b'_'
        && base62::is_base62(body);
    if !shaped {
        return Err(KeyFormatError::Malformed);
    }
    let (signed, checksum) = key.split_at(key.len() - CHECKSUM_LEN);
    let mut expected = [0u8; CHECKSUM_LEN];
    base62::encode_into(u64::from(crc32fast::hash(signed)), &mut expected);
    if checksum != expected {
        return Err(KeyFormatError::Malformed);
    }
    // A genuine key (its checksum holds) of an environment this gateway does not accept:
    // one never interned here is no environment it accepts either.
    match Environment::find_bytes(env) {
        Some(environment) if accepted.contains(environment) => Ok(()),
        _ => Err(KeyFormatError::WrongEnvironment),
    }
}

/// Whether `token` is shaped like an admin token of this gateway, checksum included.
pub fn is_admin_token(token: &[u8], prefix: &str) -> bool {
    let head = format!("{prefix}_{ADMIN_TOKEN_KIND}_");
    let Some(body) = token.strip_prefix(head.as_bytes()) else {
        return false;
    };
    if body.len() != RANDOM_LEN + CHECKSUM_LEN || !base62::is_base62(body) {
        return false;
    }
    let (signed, checksum) = token.split_at(token.len() - CHECKSUM_LEN);
    let mut expected = [0u8; CHECKSUM_LEN];
    base62::encode_into(u64::from(crc32fast::hash(signed)), &mut expected);
    checksum == expected
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn live() -> Environments {
        Environments::of(&[Environment::LIVE])
    }

    #[test]
    fn any_configured_word_is_an_environment_and_others_are_told_apart() {
        let public = Environment::parse("pub").unwrap();
        let sandbox = Environment::parse("sandbox").unwrap();
        let key = mint("atom", public);
        assert!(key.secret.starts_with("atom_pub_"), "{}", key.secret);
        let both = Environments::of(&[Environment::LIVE, public]);
        assert_eq!(check_format(key.secret.as_bytes(), "atom", both), Ok(()));
        let elsewhere = mint("atom", sandbox);
        assert_eq!(
            check_format(elsewhere.secret.as_bytes(), "atom", both),
            Err(KeyFormatError::WrongEnvironment)
        );
        // A word never configured anywhere, with a good checksum, is a wrong environment.
        let stranger = mint_as("atom", "staging");
        assert_eq!(
            check_format(stranger.secret.as_bytes(), "atom", both),
            Err(KeyFormatError::WrongEnvironment)
        );
    }

    #[test]
    fn admin_tokens_and_keys_never_pass_for_each_other() {
        let token = mint_admin_token("tg");
        assert!(token.secret.starts_with("tg_adm_"));
        assert!(is_admin_token(token.secret.as_bytes(), "tg"));
        assert_eq!(
            check_format(token.secret.as_bytes(), "tg", live()),
            Err(KeyFormatError::Malformed)
        );
        let key = mint("tg", Environment::LIVE);
        assert!(!is_admin_token(key.secret.as_bytes(), "tg"));
        let mut tampered = token.secret.into_bytes();
        tampered[10] = if tampered[10] == b'a' { b'b' } else { b'a' };
        assert!(!is_admin_token(&tampered, "tg"));
    }

    #[test]
    fn minted_keys_pass_their_own_checks() {
        let key = mint("tg", Environment::LIVE);
        assert!(key.secret.starts_with("tg_live_"));
        assert_eq!(key.secret.len(), 2 + 6 + 38);
        assert_eq!(key.start, &key.secret[..12]);
        assert_eq!(check_format(key.secret.as_bytes(), "tg", live()), Ok(()));
        assert_eq!(key.digest, digest(key.secret.as_bytes()));
    }

    #[test]
    fn the_other_environment_is_told_apart_from_garbage() {
        let key = mint("tg", Environment::TEST);
        assert_eq!(
            check_format(key.secret.as_bytes(), "tg", live()),
            Err(KeyFormatError::WrongEnvironment)
        );
    }

    #[test]
    fn one_changed_character_breaks_the_checksum() {
        let key = mint("tg", Environment::LIVE);
        let mut bytes = key.secret.into_bytes();
        let i = 20;
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            check_format(&bytes, "tg", live()),
            Err(KeyFormatError::Malformed)
        );
    }

    #[test]
    fn malformed_shapes() {
        for bad in [
            &b""[..],
            b"tg_live_",
            b"tg_prod_0123456789012345678901234567890123456",
            b"xx_live_01234567890123456789012345678901234567",
            b"tg_live_0123456789012345678901234567890123456!",
        ] {
            assert_eq!(
                check_format(bad, "tg", live()),
                Err(KeyFormatError::Malformed)
            );
        }
    }

    #[test]
    fn digests_compare_and_hash_by_value() {
        let a = digest(b"one");
        assert_eq!(a, digest(b"one"));
        assert_ne!(a, digest(b"two"));
        assert!(!format!("{a:?}").contains(&hex::encode(a.0)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = check_format(&bytes, "tg", live());
        }

        #[test]
        fn arbitrary_base62_bodies_almost_never_pass(body in "[0-9A-Za-z]{38}") {
            let key = format!("tg_live_{body}");
            let expected = {
                let (signed, _) = key.split_at(key.len() - 6);
                base62::encode_fixed(u64::from(crc32fast::hash(signed.as_bytes())), 6)
            };
            let passes = check_format(key.as_bytes(), "tg", live()).is_ok();
            prop_assert_eq!(passes, key.ends_with(&expected));
        }
    }
}
