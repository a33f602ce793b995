//! The pure admission decision: given the routes and what a request carries, forward it
//! (with whose identity) or refuse it (with which code). Knows nothing of pingora.

use crate::denial::Denial;
use crate::routes::{Route, RouteTable};
use http::Method;
use std::net::IpAddr;

/// What the decision needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    /// The normalised path.
    pub path: &'a str,
    pub api_key: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    pub client_ip: IpAddr,
}

/// Who is calling, once admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
}

impl Caller {
    pub fn method(&self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
        }
    }
}

#[derive(Debug)]
pub enum Decision<'r> {
    Forward {
        route: &'r Route,
        caller: Caller,
    },
    Refuse {
        route: Option<&'r Route>,
        denial: Denial,
    },
}

/// A credential as presented, before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    None,
    Credential(&'a [u8]),
}

/// Picks the one credential of a request (SPEC section 4). `Authorization` schemes other
/// than Bearer are left alone on anonymous routes, where they may be meant for the upstream.
pub fn presented<'a>(
    facts: &RequestFacts<'a>,
    anonymous_route: bool,
) -> Result<Presented<'a>, Denial> {
    let bearer = match facts.authorization {
        None => None,
        Some(value) => match bearer_token(value) {
            Some(token) => Some(token),
            None if anonymous_route => None,
            None => return Err(Denial::MalformedAuthorization),
        },
    };
    match (facts.api_key, bearer) {
        (Some(_), Some(_)) => Err(Denial::BothCredentials),
        (Some(key), None) | (None, Some(key)) => Ok(Presented::Credential(key)),
        (None, None) => Ok(Presented::None),
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, one or more spaces).
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    let valid = !token.is_empty() && token.iter().all(|b| b.is_ascii_graphic());
    valid.then_some(token)
}

pub fn decide<'r>(routes: &'r RouteTable, facts: &RequestFacts<'_>) -> Decision<'r> {
    let Some(route) = routes.find(facts.method, facts.path) else {
        return Decision::Refuse {
            route: None,
            denial: Denial::RouteNotFound,
        };
    };
    let refuse = |denial| Decision::Refuse {
        route: Some(route),
        denial,
    };
    match presented(facts, route.anonymous) {
        Err(denial) => refuse(denial),
        Ok(Presented::None) if route.anonymous => Decision::Forward {
            route,
            caller: Caller::Anonymous,
        },
        Ok(Presented::None) => refuse(Denial::MissingCredentials),
        // Credentials are checked against the store once it exists; until then no
        // credential can be valid, so protected routes stay closed.
        Ok(Presented::Credential(_)) => refuse(Denial::InvalidApiKey),
    }
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
        assert_eq!(bearer_token(b"Bearer"), None);
    }

    fn facts<'a>(api_key: Option<&'a [u8]>, authorization: Option<&'a [u8]>) -> RequestFacts<'a> {
        RequestFacts {
            method: &Method::GET,
            path: "/",
            api_key,
            authorization,
            client_ip: [127, 0, 0, 1].into(),
        }
    }

    #[test]
    fn one_credential_at_a_time() {
        assert_eq!(presented(&facts(None, None), false), Ok(Presented::None));
        assert_eq!(
            presented(&facts(Some(b"k"), None), false),
            Ok(Presented::Credential(b"k"))
        );
        assert_eq!(
            presented(&facts(None, Some(b"Bearer k")), false),
            Ok(Presented::Credential(b"k"))
        );
        assert_eq!(
            presented(&facts(Some(b"k"), Some(b"Bearer j")), false),
            Err(Denial::BothCredentials)
        );
        assert_eq!(
            presented(&facts(None, Some(b"Basic x")), false),
            Err(Denial::MalformedAuthorization)
        );
        assert_eq!(
            presented(&facts(None, Some(b"Basic x")), true),
            Ok(Presented::None)
        );
    }
}
