//! The one credential of a request (SPEC section 4), picked from `X-API-Key` and
//! `Authorization` before anything is looked up.

use super::api_key;
use crate::denial::Denial;

/// A credential as presented, before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    None,
    ApiKey(&'a [u8]),
    Token(&'a [u8]),
}

impl Presented<'_> {
    /// The auth method label of a request presenting this.
    pub fn method(&self) -> &'static str {
        match self {
            Presented::None => "anonymous",
            Presented::ApiKey(_) => "api_key",
            Presented::Token(_) => "oauth",
        }
    }
}

/// Picks the one credential of a request. A bearer with the key prefix is a key; any other
/// bearer is a token. `Authorization` schemes other than Bearer are left alone on
/// anonymous routes, where they may be meant for the upstream.
pub fn presented<'a>(
    api_key: Option<&'a [u8]>,
    authorization: Option<&'a [u8]>,
    key_prefix: &str,
    anonymous_route: bool,
) -> Result<Presented<'a>, Denial> {
    let bearer = match authorization {
        None => None,
        Some(value) => match bearer_token(value) {
            Some(token) => Some(token),
            None if anonymous_route => None,
            None => return Err(Denial::MalformedAuthorization),
        },
    };
    match (api_key, bearer) {
        (Some(_), Some(_)) => Err(Denial::BothCredentials),
        (Some(key), None) => Ok(Presented::ApiKey(key)),
        (None, Some(token)) if api_key::looks_like_key(token, key_prefix) => {
            Ok(Presented::ApiKey(token))
        }
        (None, Some(token)) => Ok(Presented::Token(token)),
        (None, None) => Ok(Presented::None),
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    // Tokens run to hundreds of bytes and are checked on every request: a fold without an
    // early exit lets the compiler check them a vector at a time.
    let graphic = token
        .iter()
        .fold(true, |all, b| all & (b.wrapping_sub(0x21) < 0x5e));
    let valid = !token.is_empty() && graphic;
    valid.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer a b"), None);
        // Exactly the visible ASCII characters, at any position of a long token.
        for byte in 0..=255u8 {
            let mut value = b"Bearer ".to_vec();
            value.extend(std::iter::repeat_n(b'x', 300));
            value.push(byte);
            value.extend(std::iter::repeat_n(b'y', 300));
            assert_eq!(
                bearer_token(&value).is_some(),
                byte.is_ascii_graphic(),
                "{byte}"
            );
        }
    }

    #[test]
    fn one_credential_at_a_time_and_keys_known_by_prefix() {
        let p = |key: Option<&'static [u8]>, auth: Option<&'static [u8]>, anonymous| {
            presented(key, auth, "tg", anonymous)
        };
        assert_eq!(p(None, None, false), Ok(Presented::None));
        assert_eq!(p(Some(b"k"), None, false), Ok(Presented::ApiKey(b"k")));
        assert_eq!(
            p(None, Some(b"Bearer tg_x"), false),
            Ok(Presented::ApiKey(b"tg_x"))
        );
        assert_eq!(
            p(None, Some(b"Bearer eyJ"), false),
            Ok(Presented::Token(b"eyJ"))
        );
        assert_eq!(
            p(Some(b"k"), Some(b"Bearer j"), false),
            Err(Denial::BothCredentials)
        );
        assert_eq!(
            p(None, Some(b"Basic x"), false),
            Err(Denial::MalformedAuthorization)
        );
        assert_eq!(p(None, Some(b"Basic x"), true), Ok(Presented::None));
    }
}
