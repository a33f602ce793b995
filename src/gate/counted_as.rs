//! Whom a request counts against, and in which windows: the key (a key's own token counts
//! as the key, in the key's tier), the token's subject, or the client address.

use super::caller::Caller;
use crate::config::RateLimitConfig;
use crate::policy::rate_limit::{CallerKey, TierKind, Windows};
use crate::routes::Route;
use crate::store::snapshot::{Credential, KeyRef};
use std::net::IpAddr;

/// The caller's counters and the windows that apply to this request.
#[derive(Debug, Clone)]
pub struct CountedAs {
    pub caller: CallerKey,
    pub windows: Windows,
}

/// An admitted caller's counters.
pub fn counted_as(
    limits: &RateLimitConfig,
    caller: &Caller,
    route: Option<&Route>,
    client_ip: IpAddr,
) -> CountedAs {
    match caller {
        Caller::Anonymous => anonymous(limits, client_ip, route),
        Caller::ApiKey(credential) => key(limits, credential, route),
        // The tier is who the caller is, not how it presented itself.
        Caller::OAuth(oauth) => match &oauth.credential {
            Some(credential) => key(limits, credential, route),
            None => CountedAs {
                caller: CallerKey::Subject(oauth.token.subject.clone()),
                windows: Windows::new(limits, TierKind::OAuth, None, route_window(route)),
            },
        },
    }
}

/// A refused request's counters: its key's when the key was identified, else its address's.
pub fn refused_as(
    limits: &RateLimitConfig,
    key: Option<&KeyRef>,
    route: Option<&Route>,
    client_ip: IpAddr,
) -> CountedAs {
    match key {
        Some(credential) => self::key(limits, credential, route),
        None => anonymous(limits, client_ip, route),
    }
}

/// The anonymous tier, by client address (also the OAuth endpoints' counters).
pub fn anonymous(limits: &RateLimitConfig, client_ip: IpAddr, route: Option<&Route>) -> CountedAs {
    CountedAs {
        caller: CallerKey::anonymous(client_ip),
        windows: Windows::new(limits, TierKind::Anonymous, None, route_window(route)),
    }
}

fn key(limits: &RateLimitConfig, credential: &Credential, route: Option<&Route>) -> CountedAs {
    CountedAs {
        caller: CallerKey::Key(credential.id.clone()),
        windows: Windows::new(
            limits,
            TierKind::ApiKey,
            credential.rate_limit(),
            route_window(route),
        ),
    }
}

fn route_window(route: Option<&Route>) -> Option<(&'static str, crate::config::Window)> {
    route.and_then(|route| route.rate_limit)
}
