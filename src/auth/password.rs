//! Passwords of users and operators: argon2id hashes in PHC format, checked in the same
//! time whether or not the account exists, and the rule for a new password.

use super::base62;
use std::sync::OnceLock;

/// The shortest password accepted for a user or an operator, in characters.
pub const MIN_LEN: usize = 12;
/// The longest (argon2 reads all of it).
pub const MAX_LEN: usize = 1024;

/// Whether `password` may be set: 12 to 1024 characters.
pub fn acceptable(password: &str) -> bool {
    (MIN_LEN..=MAX_LEN).contains(&password.chars().count())
}

/// argon2id verification; with no hash, a dummy one is checked so timing reveals nothing.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password(&base62::random(16)).unwrap_or_default());
    let real = hash.is_some();
    let hash = hash.unwrap_or(dummy);
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let ok = argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && real
}

/// An argon2id hash in PHC format, with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(base62::random(16).as_bytes())?;
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_argon2id_hashes() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", Some(&hash)));
        assert!(!verify_password("wrong", Some(&hash)));
        assert!(!verify_password("correct horse", None));
        assert!(!acceptable("eleven char") && acceptable("twelve chars"));
    }
}
