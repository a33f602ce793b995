//! Whom a request counts against, and in which windows: the key (a key's own token counts
//! as the key, in the key's tier), the token's subject, or the client address; and the
//! key's owner, in the windows all its keys share.

use super::caller::Caller;
use crate::config::RateLimitConfig;
use crate::policy::rate_limit::credits::CreditAsk;
use crate::policy::rate_limit::{CallerKey, Counted, TierKind, Windows};
use crate::routes::Route;
use crate::store::snapshot::{Credential, KeyRef, Snapshot};
use std::net::IpAddr;

/// The caller's counters and the windows that apply to this request.
#[derive(Debug, Clone)]
pub struct CountedAs {
    pub caller: CallerKey,
    /// The key's owner, when it has limits or credits: the owner's windows and balance
    /// are counted under it.
    pub owner: Option<CallerKey>,
    pub windows: Windows,
    /// What an admitted request costs, when its key or owner has credits.
    pub credits: Option<CreditAsk>,
}

impl CountedAs {
    /// The request as the limiter counts it.
    pub fn counted(&self) -> Counted<'_> {
        Counted {
            caller: &self.caller,
            owner: self.owner.as_ref(),
            windows: &self.windows,
            credits: self.credits.as_ref(),
        }
    }
}

/// An admitted caller's counters.
pub fn counted_as(
    limits: &RateLimitConfig,
    snapshot: &Snapshot,
    caller: &Caller,
    route: Option<&Route>,
    client_ip: IpAddr,
) -> CountedAs {
    match caller {
        Caller::Anonymous => anonymous(limits, client_ip, route),
        Caller::ApiKey(credential) => key(limits, snapshot, credential, route),
        // The tier is who the caller is, not how it presented itself.
        Caller::OAuth(oauth) => match &oauth.credential {
            Some(credential) => key(limits, snapshot, credential, route),
            None => CountedAs {
                caller: CallerKey::Subject(oauth.token.subject.clone()),
                owner: None,
                windows: Windows::new(limits, TierKind::OAuth, None, route_window(route)),
                credits: None,
            },
        },
    }
}

/// A refused request's counters: its key's when the key was identified, else its address's.
pub fn refused_as(
    limits: &RateLimitConfig,
    snapshot: &Snapshot,
    key: Option<&KeyRef>,
    route: Option<&Route>,
    client_ip: IpAddr,
) -> CountedAs {
    match key {
        Some(credential) => self::key(limits, snapshot, credential, route),
        None => anonymous(limits, client_ip, route),
    }
}

/// The anonymous tier, by client address (also the OAuth endpoints' counters).
pub fn anonymous(limits: &RateLimitConfig, client_ip: IpAddr, route: Option<&Route>) -> CountedAs {
    CountedAs {
        caller: CallerKey::anonymous(client_ip),
        owner: None,
        windows: Windows::new(limits, TierKind::Anonymous, None, route_window(route)),
        credits: None,
    }
}

fn key(
    limits: &RateLimitConfig,
    snapshot: &Snapshot,
    credential: &Credential,
    route: Option<&Route>,
) -> CountedAs {
    let windows = Windows::new(
        limits,
        TierKind::ApiKey,
        credential.rate_limit(),
        route_window(route),
    );
    let caller = CallerKey::Key(credential.id.clone());
    let key_credits = snapshot.key_credits(&credential.id);
    let terms = credential
        .owner()
        .and_then(|owner| Some((owner, snapshot.owner_terms(&owner.id)?)));
    let Some((owner, terms)) = terms else {
        return CountedAs {
            caller,
            owner: None,
            windows,
            credits: key_credits.map(|key| CreditAsk {
                cost: route_cost(route),
                key: Some(key),
                owner: None,
            }),
        };
    };
    let credits = (key_credits.is_some() || terms.credits.is_some()).then(|| CreditAsk {
        cost: route_cost(route),
        key: key_credits,
        owner: terms.credits,
    });
    CountedAs {
        caller,
        owner: Some(CallerKey::Owner(owner.id.clone())),
        windows: match terms.rate_limit {
            Some(shared) => windows.with_owner(shared),
            None => windows,
        },
        credits,
    }
}

/// What an allowed request of `route` spends: its `cost` (1 when unrouted).
fn route_cost(route: Option<&Route>) -> u64 {
    route.map_or(1, |route| route.cost)
}

fn route_window(route: Option<&Route>) -> Option<(&'static str, crate::config::Window)> {
    route.and_then(|route| route.rate_limit)
}
