//! The gate: every request-level choice of admission, as pure functions. No pingora, no
//! I/O, and `now` is a parameter, so every row of SPEC section 4's error table is tested
//! with any clock and no network. The inline data plane and forward auth both call it.
//!
//! ```text
//!  Facts ─ begin ─▶ Pending ── route ─────────────── route_not_found
//!                      │       credential, parsed once ─ invalid_request
//!                      │
//!                  token()  ─▶ verified by the caller (signatures, maybe JWKS),
//!                      │       only for a routed request that presents one
//!                      ▼
//!                   finish ─▶ Admission ── authenticate: key (format, environment,
//!                      │                   digest, revoked, expired) or token (expiry,
//!                      │                   its key, user, app or grant)
//!                      │                ── authorize: allowlist, route permissions
//!                      │                ── counted_as: whose windows, which tier
//!                      ▼
//!            limiter.check(counted_as)   (async, outside the gate; peek when refused)
//!                      ▼
//!          Admission::with(verdict) ─▶ Answer: Forward | Refuse(Denial)
//!                                      rate_limited, quota_exceeded; the usage outcome
//! ```

mod answer;
mod authenticate;
mod authorize;
mod caller;
pub mod counted_as;

pub use answer::{Answer, Decision};
pub use authenticate::resolve_token;
pub use caller::{Caller, OAuthCaller};
pub use counted_as::CountedAs;

use crate::auth::credential::{presented, Presented};
use crate::auth::jwt::VerifiedToken;
use crate::config::{Environment, Environments, RateLimitConfig};
use crate::denial::Denial;
use crate::policy::permissions::Catalog;
use crate::routes::{Route, RouteTable};
use crate::store::snapshot::{Grace, KeyRef, Snapshot};
use http::Method;
use std::net::IpAddr;
use std::sync::Arc;

/// What the gate needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub method: &'a Method,
    /// The normalised path.
    pub path: &'a str,
    pub api_key: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    pub client_ip: IpAddr,
    /// The SHA-256 of the client certificate the connection's handshake verified.
    pub client_cert: Option<&'a [u8; 32]>,
}

/// What the gate reads besides the request.
pub struct Gate<'s> {
    pub routes: &'s RouteTable,
    pub catalog: &'s Catalog,
    pub snapshot: &'s Snapshot,
    pub key_prefix: &'s str,
    /// The environments whose keys this gateway accepts.
    pub environments: Environments,
    /// The environment of a caller with no key (a user's token), for routes restricted
    /// to environments.
    pub default_environment: Environment,
    /// The snapshot is older than `max_staleness`: a miss is not proof of an unknown key.
    pub stale: bool,
    pub rate_limits: &'s RateLimitConfig,
}

/// A refusal, with the key it is about when the key was identified.
pub type Refusal = (Denial, Option<KeyRef>);

/// A request once routed and its credential picked, before anything is looked up.
#[derive(Debug)]
pub struct Pending<'r, 'a> {
    route: Option<&'r Route>,
    presented: Result<Presented<'a>, Denial>,
    client_ip: IpAddr,
    client_cert: Option<&'a [u8; 32]>,
}

impl<'a> Pending<'_, 'a> {
    /// The access token to verify: only for a routed request that presents one.
    pub fn token(&self) -> Option<&'a [u8]> {
        match (self.route, &self.presented) {
            (Some(_), Ok(Presented::Token(token))) => Some(token),
            _ => None,
        }
    }
}

/// The gate's answer before the limiter: admitted (a caller) or refused (a denial), with
/// whom the request counts against either way.
#[derive(Debug)]
pub struct Admission<'r> {
    pub route: Option<&'r Route>,
    /// The auth method label: how the caller tried to authenticate.
    pub method: &'static str,
    /// `None` while admitted.
    pub refusal: Option<Denial>,
    /// Set when admitted.
    pub caller: Option<Caller>,
    /// The key the request is about, admitted or refused, for its usage counts and the log.
    pub key: Option<KeyRef>,
    pub counted_as: CountedAs,
    /// Set when the key was presented with its previous secret, in its grace period.
    pub grace: Option<Grace>,
}

impl<'r> Admission<'r> {
    /// A request refused before it could be routed (a path that cannot be normalised, a
    /// bad head), counted against its address.
    pub fn refused(
        denial: Denial,
        rate_limits: &RateLimitConfig,
        client_ip: IpAddr,
    ) -> Admission<'r> {
        Admission {
            route: None,
            method: "anonymous",
            refusal: Some(denial),
            caller: None,
            key: None,
            counted_as: counted_as::anonymous(rate_limits, client_ip, None),
            grace: None,
        }
    }

    /// An anonymous request to an endpoint the gateway answers itself (the OAuth
    /// endpoints): admitted, and counted against its address.
    pub fn unrouted(rate_limits: &RateLimitConfig, client_ip: IpAddr) -> Admission<'r> {
        Admission {
            route: None,
            method: "anonymous",
            refusal: None,
            caller: Some(Caller::Anonymous),
            key: None,
            counted_as: counted_as::anonymous(rate_limits, client_ip, None),
            grace: None,
        }
    }

    /// Whether the limiter counts this request (admitted) or only reports where its caller
    /// stands (refused: a refusal never spends a caller's budget).
    pub fn counts(&self) -> bool {
        self.refusal.is_none()
    }

    /// The `tollgate_auth_decisions_total` labels: unrouted requests are not decisions.
    pub fn decision_labels(&self) -> Option<(&'static str, &'static str)> {
        match &self.refusal {
            None => Some((self.method, "allowed")),
            Some(denial) => self.route.map(|_| (self.method, denial.code())),
        }
    }
}

/// Routes the request and picks its credential. Needs no snapshot, so a caller can verify
/// the token [`Pending::token`] asks for before it loads one.
pub fn begin<'r, 'a>(
    routes: &'r RouteTable,
    key_prefix: &str,
    facts: &Facts<'a>,
) -> Pending<'r, 'a> {
    match routes.find(facts.method, facts.path) {
        None => Pending {
            route: None,
            presented: Err(Denial::RouteNotFound),
            client_ip: facts.client_ip,
            client_cert: facts.client_cert,
        },
        Some(route) => Pending {
            route: Some(route),
            presented: presented(
                facts.api_key,
                facts.authorization,
                key_prefix,
                route.anonymous,
            ),
            client_ip: facts.client_ip,
            client_cert: facts.client_cert,
        },
    }
}

impl<'s> Gate<'s> {
    /// Routes the request and picks its credential (see [`begin`]).
    pub fn begin<'a>(&self, facts: &Facts<'a>) -> Pending<'s, 'a> {
        begin(self.routes, self.key_prefix, facts)
    }

    /// Authenticates, authorizes and decides whom the request counts against. `token` is
    /// the verification of [`Pending::token`], when there was one.
    pub fn finish<'r>(
        &self,
        pending: Pending<'r, '_>,
        token: Option<&Result<Arc<VerifiedToken>, Denial>>,
        now: i64,
    ) -> Admission<'r> {
        let Pending {
            route,
            presented,
            client_ip,
            client_cert,
        } = pending;
        let method = presented.as_ref().map_or("anonymous", Presented::method);
        let refused = |(denial, key): Refusal, grace: Option<Grace>| Admission {
            route,
            method,
            counted_as: counted_as::refused_as(
                self.rate_limits,
                self.snapshot,
                key.as_ref(),
                route,
                client_ip,
            ),
            refusal: Some(denial),
            caller: None,
            key,
            grace,
        };
        let Some(route) = route else {
            return refused((Denial::RouteNotFound, None), None);
        };
        let mut grace = None;
        let caller = match presented {
            Err(denial) => return refused((denial, None), None),
            Ok(Presented::None) if route.anonymous => Caller::Anonymous,
            Ok(Presented::None) => return refused((Denial::MissingCredentials, None), None),
            Ok(Presented::ApiKey(key)) => match self.authenticate_key(key, now) {
                Ok((credential, in_grace)) => {
                    grace = in_grace;
                    Caller::ApiKey(credential)
                }
                Err(refusal) => return refused(refusal, None),
            },
            Ok(Presented::Token(_)) => match token {
                Some(Ok(token)) => match self.resolve_token(token, now) {
                    Ok(caller) => Caller::OAuth(caller),
                    Err(refusal) => return refused(refusal, None),
                },
                Some(Err(denial)) => return refused((denial.clone(), None), None),
                None => return refused((Denial::InvalidToken, None), None),
            },
        };
        let (credential, permissions) = match &caller {
            Caller::Anonymous => (None, None),
            Caller::ApiKey(credential) => (Some(credential), Some(&**credential.permissions())),
            Caller::OAuth(oauth) => (oauth.credential.as_ref(), Some(oauth.permissions())),
        };
        let checked = match permissions {
            None => Ok(()),
            Some(permissions) => authorize::authorize(
                self.catalog,
                credential.map(|c| &**c),
                permissions,
                route,
                client_ip,
                client_cert,
            ),
        };
        let checked = checked.and_then(|()| {
            // A route restricted to environments: a key's is its own, a caller without a
            // key (a user's token, an anonymous caller) is in the gateway's default one.
            match route.environments {
                Some(allowed) => {
                    let environment =
                        credential.map_or(self.default_environment, |key| key.environment);
                    match allowed.contains(environment) {
                        true => Ok(()),
                        false => Err(Denial::WrongEnvironment),
                    }
                }
                None => Ok(()),
            }
        });
        if let Err(denial) = checked {
            return refused((denial, credential.cloned()), grace);
        }
        Admission {
            route: Some(route),
            method,
            refusal: None,
            counted_as: counted_as::counted_as(
                self.rate_limits,
                self.snapshot,
                &caller,
                Some(route),
                client_ip,
            ),
            key: caller.key().cloned(),
            caller: Some(caller),
            grace,
        }
    }
}

#[cfg(test)]
mod tests;
