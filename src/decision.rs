//! The pure admission decision: given the routes, the snapshot and what a request carries,
//! forward it (with whose identity) or refuse it (with which code). Knows nothing of
//! pingora; `now` is a parameter, so expiry is tested with any clock.

use crate::auth::api_key::{self, KeyFormatError};
use crate::auth::jwt::{Issuer, VerifiedToken, LEEWAY_MS};
use crate::config::Environment;
use crate::denial::Denial;
use crate::policy::permissions::{Catalog, PermissionSet};
use crate::routes::{Route, RouteTable};
use crate::store::snapshot::{Credential, Grace, KeyEntry, Snapshot};
use crate::usage::Outcome;
use http::Method;
use std::net::IpAddr;
use std::sync::Arc;

/// What the decision needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    /// The normalised path.
    pub path: &'a str,
    pub api_key: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    pub client_ip: IpAddr,
    /// The verified bearer token, when one that is not a key was presented (verifying
    /// needs signatures and maybe a JWKS fetch, so it happens before this pure step).
    pub token: Option<&'a Result<Arc<VerifiedToken>, Denial>>,
}

/// What the decision reads besides the request.
pub struct Gatekeeper<'s> {
    pub routes: &'s RouteTable,
    pub catalog: &'s Catalog,
    pub snapshot: &'s Snapshot,
    pub key_prefix: &'s str,
    pub environment: Environment,
    /// The snapshot is older than `max_staleness`: a miss is not proof of an unknown key.
    pub stale: bool,
    pub now: i64,
}

/// Who is calling, once admitted.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    ApiKey(Arc<Credential>),
    OAuth(OAuthCaller),
}

/// A caller with an access token, once the token is tied to its key, or user and app.
#[derive(Debug, Clone)]
pub struct OAuthCaller {
    pub token: Arc<VerifiedToken>,
    /// The key a client-credentials token was issued to.
    pub credential: Option<Arc<Credential>>,
    /// Set when the key's or app's permissions are now narrower than the token's scope.
    narrowed: Option<(PermissionSet, Arc<str>)>,
}

impl OAuthCaller {
    pub fn permissions(&self) -> &PermissionSet {
        self.narrowed
            .as_ref()
            .map_or(&self.token.scope, |(set, _)| set)
    }

    pub fn permissions_header(&self) -> &Arc<str> {
        self.narrowed
            .as_ref()
            .map_or(&self.token.scope_header, |(_, header)| header)
    }
}

impl Caller {
    pub fn method(&self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::ApiKey(_) => "api_key",
            Caller::OAuth(_) => "oauth",
        }
    }

    /// The key whose usage this request counts against, if any.
    pub fn key(&self) -> Option<&Arc<Credential>> {
        match self {
            Caller::Anonymous => None,
            Caller::ApiKey(credential) => Some(credential),
            Caller::OAuth(oauth) => oauth.credential.as_ref(),
        }
    }

    /// Subject, client id and permissions, for the identity headers.
    pub fn identity(&self) -> Option<(&str, &str, &str)> {
        match self {
            Caller::Anonymous => None,
            Caller::ApiKey(key) => Some((&key.id, &key.client_id, &key.permissions_header)),
            Caller::OAuth(oauth) => Some((
                &oauth.token.subject,
                &oauth.token.client_id,
                oauth.permissions_header(),
            )),
        }
    }
}

#[derive(Debug)]
pub enum Decision<'r> {
    Forward {
        route: &'r Route,
        caller: Caller,
        /// Set when the key was presented with its previous secret, in its grace period.
        grace: Option<Grace>,
    },
    Refuse {
        route: Option<&'r Route>,
        denial: Denial,
        /// The auth method label: how the caller tried to authenticate.
        method: &'static str,
        /// The key the refusal is about, when it was identified (for its usage counts).
        key: Option<Arc<Credential>>,
        grace: Option<Grace>,
    },
}

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

/// Picks the one credential of a request (SPEC section 4). A bearer with the key prefix is
/// a key; any other bearer is a token. `Authorization` schemes other than Bearer are left
/// alone on anonymous routes, where they may be meant for the upstream.
pub fn presented<'a>(
    facts: &RequestFacts<'a>,
    key_prefix: &str,
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

/// The usage outcome a refusal of a known key counts as.
pub fn outcome_of(denial: &Denial) -> Option<Outcome> {
    match denial {
        Denial::KeyRevoked => Some(Outcome::KeyRevoked),
        Denial::KeyExpired => Some(Outcome::KeyExpired),
        Denial::IpNotAllowed => Some(Outcome::IpNotAllowed),
        Denial::InsufficientPermission { .. } => Some(Outcome::InsufficientPermission),
        Denial::RateLimited => Some(Outcome::RateLimited),
        Denial::QuotaExceeded => Some(Outcome::QuotaExceeded),
        _ => None,
    }
}

type Refusal = (Denial, Option<Arc<Credential>>);

impl<'s> Gatekeeper<'s> {
    pub fn decide(&self, facts: &RequestFacts<'_>) -> Decision<'s> {
        let routes: &'s RouteTable = self.routes;
        let Some(route) = routes.find(facts.method, facts.path) else {
            return Decision::Refuse {
                route: None,
                denial: Denial::RouteNotFound,
                method: "anonymous",
                key: None,
                grace: None,
            };
        };
        let presented = presented(facts, self.key_prefix, route.anonymous);
        let method = presented.as_ref().map_or("anonymous", Presented::method);
        let mut grace = None;
        let refuse = |(denial, key): Refusal, grace: Option<Grace>| Decision::Refuse {
            route: Some(route),
            denial,
            method,
            key,
            grace,
        };
        let caller = match presented {
            Err(denial) => return refuse((denial, None), None),
            Ok(Presented::None) if route.anonymous => Caller::Anonymous,
            Ok(Presented::None) => return refuse((Denial::MissingCredentials, None), None),
            Ok(Presented::ApiKey(key)) => match self.authenticate_key(key) {
                Ok((credential, in_grace)) => {
                    grace = in_grace;
                    Caller::ApiKey(credential)
                }
                Err(refusal) => return refuse(refusal, None),
            },
            Ok(Presented::Token(_)) => match facts.token {
                Some(Ok(token)) => match self.resolve_token(token) {
                    Ok(caller) => Caller::OAuth(caller),
                    Err(refusal) => return refuse(refusal, None),
                },
                Some(Err(denial)) => return refuse((denial.clone(), None), None),
                None => return refuse((Denial::InvalidToken, None), None),
            },
        };
        let checked = match &caller {
            Caller::Anonymous => Ok(()),
            Caller::ApiKey(credential) => self
                .authorize(
                    Some(credential),
                    &credential.permissions,
                    route,
                    facts.client_ip,
                )
                .map_err(|denial| (denial, Some(credential.clone()))),
            Caller::OAuth(oauth) => self
                .authorize(
                    oauth.credential.as_deref(),
                    oauth.permissions(),
                    route,
                    facts.client_ip,
                )
                .map_err(|denial| (denial, oauth.credential.clone())),
        };
        match checked {
            Ok(()) => Decision::Forward {
                route,
                caller,
                grace,
            },
            Err(refusal) => refuse(refusal, grace),
        }
    }

    /// Ties a verified token to what it was issued for, as the snapshot has it now: a
    /// revoked or rotated key, a disabled user, a deleted app or a revoked grant ends it.
    pub fn resolve_token(&self, token: &Arc<VerifiedToken>) -> Result<OAuthCaller, Refusal> {
        if self.now >= token.expires_at.saturating_add(LEEWAY_MS) {
            return Err((Denial::TokenExpired, None));
        }
        let invalid = |credential: Option<Arc<Credential>>| (Denial::InvalidToken, credential);
        let (credential, allowed) = match &token.issuer {
            Issuer::External => (None, None),
            Issuer::Own { grant_id, .. } if self.snapshot.grant_revoked(grant_id) => {
                return Err(invalid(None))
            }
            Issuer::Own {
                key_version: Some(version),
                ..
            } => {
                let credential = self
                    .snapshot
                    .by_id(&token.subject)
                    .cloned()
                    .ok_or_else(|| invalid(None))?;
                // The key's own refusal, as the key itself would get it: a token of a
                // revoked key, or one issued under a secret rotation replaced, is revoked.
                if credential.revoked || credential.secret_version != *version {
                    return Err((Denial::KeyRevoked, Some(credential)));
                }
                if credential.expires_at.is_some_and(|at| self.now >= at) {
                    return Err((Denial::KeyExpired, Some(credential)));
                }
                let permissions = credential.permissions.clone();
                (Some(credential), Some(permissions))
            }
            Issuer::Own {
                key_version: None, ..
            } => {
                if self.snapshot.user_disabled(&token.subject) != Some(false) {
                    return Err(invalid(None));
                }
                let app = self
                    .snapshot
                    .app(&token.client_id)
                    .filter(|app| !app.deleted)
                    .ok_or_else(|| invalid(None))?;
                (None, Some(Arc::new(app.scopes.clone())))
            }
        };
        let narrowed = allowed
            .filter(|allowed| allowed.first_missing(&token.scope).is_some())
            .map(|allowed| {
                let set = token.scope.intersect(&allowed);
                let header = self
                    .catalog
                    .names(&set)
                    .map(|n| &**n)
                    .collect::<Vec<&str>>()
                    .join(" ");
                (set, Arc::from(header))
            });
        Ok(OAuthCaller {
            token: token.clone(),
            credential,
            narrowed,
        })
    }

    /// Format and checksum first (no lookup for garbage), then the digest in the snapshot.
    /// The grace window comes back when the key's previous secret was presented.
    fn authenticate_key(&self, key: &[u8]) -> Result<(Arc<Credential>, Option<Grace>), Refusal> {
        match api_key::check_format(key, self.key_prefix, self.environment) {
            Ok(()) => {}
            Err(KeyFormatError::Malformed) => return Err((Denial::InvalidApiKey, None)),
            Err(KeyFormatError::WrongEnvironment) => return Err((Denial::WrongEnvironment, None)),
        }
        let digest = api_key::digest(key);
        match self.snapshot.by_digest(&digest) {
            None if self.stale => Err((Denial::StoreUnavailable, None)),
            None => Err((Denial::InvalidApiKey, None)),
            Some(KeyEntry::Retired { key_id }) => {
                Err((Denial::KeyRevoked, self.snapshot.by_id(key_id).cloned()))
            }
            Some(KeyEntry::Secret { credential, grace }) => {
                let credential = credential.clone();
                if credential.revoked || grace.is_some_and(|grace| self.now >= grace.until) {
                    return Err((Denial::KeyRevoked, Some(credential)));
                }
                if credential
                    .expires_at
                    .is_some_and(|expires| self.now >= expires)
                {
                    return Err((Denial::KeyExpired, Some(credential)));
                }
                Ok((credential, grace))
            }
        }
    }

    /// The allowlist, then every permission the route requires.
    /// The key's allowlist (for a key, or a token issued to one), then every permission
    /// the route requires.
    fn authorize(
        &self,
        credential: Option<&Credential>,
        permissions: &PermissionSet,
        route: &Route,
        client_ip: IpAddr,
    ) -> Result<(), Denial> {
        if credential.is_some_and(|credential| !credential.allowlist.allows(client_ip)) {
            return Err(Denial::IpNotAllowed);
        }
        if let Some(bit) = permissions.first_missing(&route.require) {
            let missing = self
                .catalog
                .name_of(bit)
                .cloned()
                .unwrap_or_else(|| Arc::from("?"));
            return Err(Denial::InsufficientPermission { missing });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::api_key::mint;
    use crate::config::Config;
    use crate::store::keys_for_tests::record;
    use crate::store::records::{Policy, Timestamp};
    use crate::store::snapshot::SnapshotBuilder;
    use crate::store::KeyChanges;

    const CONFIG: &str = r#"
permissions: [accounts:read, accounts:write]
upstreams: { api: { targets: ["127.0.0.1:3000"] } }
routes:
  - { path_prefix: /v1/accounts, methods: [GET], upstream: api, require: [accounts:read] }
  - { path_prefix: /v1/accounts, methods: [POST], upstream: api, require: [accounts:write] }
  - { path_prefix: /v1/public, upstream: api, anonymous: true }
"#;

    struct World {
        config: Config,
        catalog: Catalog,
        routes: RouteTable,
        snapshot: Snapshot,
        secret: String,
    }

    fn world(edit: impl FnOnce(&mut crate::store::records::KeyRecord)) -> World {
        let config = Config::parse(CONFIG).unwrap();
        let catalog = Catalog::new(&config.permissions);
        let routes = RouteTable::new(&config, &catalog);
        let minted = mint("tg", Environment::Live);
        let mut key = record("key_1", minted.digest);
        key.permissions = vec!["accounts:read".into()];
        key.ip_allowlist = vec!["127.0.0.1/32".into()];
        edit(&mut key);
        let policy = Policy {
            block_legacy_keys: false,
            max_key_lifetime: None,
        };
        let changes = KeyChanges {
            version: 1,
            keys: vec![key],
            retired: vec![],
            ..KeyChanges::default()
        };
        let snapshot = SnapshotBuilder::new(&config).apply(&Snapshot::empty(policy), changes);
        World {
            config,
            catalog,
            routes,
            snapshot,
            secret: minted.secret,
        }
    }

    fn decide(
        world: &World,
        method: Method,
        path: &str,
        api_key: Option<&str>,
        ip: [u8; 4],
        now: i64,
        stale: bool,
    ) -> Result<&'static str, Denial> {
        let gatekeeper = Gatekeeper {
            routes: &world.routes,
            catalog: &world.catalog,
            snapshot: &world.snapshot,
            key_prefix: &world.config.key_prefix,
            environment: world.config.environment,
            stale,
            now,
        };
        let facts = RequestFacts {
            method: &method,
            path,
            api_key: api_key.map(str::as_bytes),
            authorization: None,
            client_ip: IpAddr::from(ip),
            token: None,
        };
        match gatekeeper.decide(&facts) {
            Decision::Forward { caller, .. } => Ok(caller.method()),
            Decision::Refuse { denial, .. } => Err(denial),
        }
    }

    const LOCAL: [u8; 4] = [127, 0, 0, 1];

    #[test]
    fn a_valid_key_is_admitted_with_its_permissions() {
        let w = world(|_| {});
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some(&w.secret),
                LOCAL,
                0,
                false
            ),
            Ok("api_key")
        );
        assert_eq!(
            decide(
                &w,
                Method::POST,
                "/v1/accounts",
                Some(&w.secret),
                LOCAL,
                0,
                false
            ),
            Err(Denial::InsufficientPermission {
                missing: Arc::from("accounts:write")
            })
        );
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some(&w.secret),
                [127, 0, 0, 2],
                0,
                false
            ),
            Err(Denial::IpNotAllowed)
        );
        // A valid key on an anonymous route carries its identity.
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/public",
                Some(&w.secret),
                LOCAL,
                0,
                false
            ),
            Ok("api_key")
        );
    }

    #[test]
    fn expiry_is_exact_at_the_edge() {
        let w = world(|k| k.expires_at = Some(Timestamp(10_000)));
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some(&w.secret),
                LOCAL,
                9_999,
                false
            ),
            Ok("api_key")
        );
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some(&w.secret),
                LOCAL,
                10_000,
                false
            ),
            Err(Denial::KeyExpired)
        );
    }

    #[test]
    fn revoked_beats_expired_and_grace_ends_exactly() {
        let w = world(|k| {
            k.expires_at = Some(Timestamp(5));
            k.revoked_at = Some(Timestamp(1));
        });
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some(&w.secret),
                LOCAL,
                10,
                false
            ),
            Err(Denial::KeyRevoked)
        );

        let old = mint("tg", Environment::Live);
        let old_digest = old.digest;
        let w = world(move |k| {
            k.secrets.grace_digest = Some(old_digest);
            k.secrets.grace_until = Some(1_000);
        });
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some(&old.secret),
                LOCAL,
                999,
                false
            ),
            Ok("api_key")
        );
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some(&old.secret),
                LOCAL,
                1_000,
                false
            ),
            Err(Denial::KeyRevoked)
        );
    }

    #[test]
    fn unknown_keys_are_invalid_unless_the_snapshot_is_stale() {
        let w = world(|_| {});
        let stranger = mint("tg", Environment::Live).secret;
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some(&stranger),
                LOCAL,
                0,
                false
            ),
            Err(Denial::InvalidApiKey)
        );
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some(&stranger),
                LOCAL,
                0,
                true
            ),
            Err(Denial::StoreUnavailable)
        );
        // A known key keeps working from a stale snapshot.
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some(&w.secret),
                LOCAL,
                0,
                true
            ),
            Ok("api_key")
        );
        // Garbage never gets as far as the lookup, stale or not.
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some("tg_live_nope"),
                LOCAL,
                0,
                true
            ),
            Err(Denial::InvalidApiKey)
        );
        let test_key = mint("tg", Environment::Test).secret;
        assert_eq!(
            decide(
                &w,
                Method::GET,
                "/v1/accounts",
                Some(&test_key),
                LOCAL,
                0,
                false
            ),
            Err(Denial::WrongEnvironment)
        );
    }

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

    fn facts<'a>(api_key: Option<&'a [u8]>, authorization: Option<&'a [u8]>) -> RequestFacts<'a> {
        RequestFacts {
            method: &Method::GET,
            path: "/",
            api_key,
            authorization,
            client_ip: LOCAL.into(),
            token: None,
        }
    }

    #[test]
    fn one_credential_at_a_time_and_keys_known_by_prefix() {
        assert_eq!(
            presented(&facts(None, None), "tg", false),
            Ok(Presented::None)
        );
        assert_eq!(
            presented(&facts(Some(b"k"), None), "tg", false),
            Ok(Presented::ApiKey(b"k"))
        );
        assert_eq!(
            presented(&facts(None, Some(b"Bearer tg_x")), "tg", false),
            Ok(Presented::ApiKey(b"tg_x"))
        );
        assert_eq!(
            presented(&facts(None, Some(b"Bearer eyJ")), "tg", false),
            Ok(Presented::Token(b"eyJ"))
        );
        assert_eq!(
            presented(&facts(Some(b"k"), Some(b"Bearer j")), "tg", false),
            Err(Denial::BothCredentials)
        );
        assert_eq!(
            presented(&facts(None, Some(b"Basic x")), "tg", false),
            Err(Denial::MalformedAuthorization)
        );
        assert_eq!(
            presented(&facts(None, Some(b"Basic x")), "tg", true),
            Ok(Presented::None)
        );
    }
}
