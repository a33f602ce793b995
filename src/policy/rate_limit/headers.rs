//! The headers that describe a verdict: `X-RateLimit-*` for the tightest window, the IETF
//! `RateLimit-Policy` and `RateLimit` fields, `Retry-After` on a 429 of a window, and
//! `X-Credits-Remaining` for a caller with credits.

use super::{Verdict, Windows};
use dashmap::DashMap;
use http::HeaderValue;

/// `RateLimit-Policy` values, rendered once per distinct set of windows.
#[derive(Default)]
pub struct PolicyHeaders(DashMap<Windows, HeaderValue, foldhash::fast::RandomState>);

impl PolicyHeaders {
    pub fn get(&self, windows: &Windows) -> HeaderValue {
        if let Some(value) = self.0.get(windows) {
            return value.clone();
        }
        let policy: Vec<String> = windows
            .iter()
            .map(|w| {
                format!(
                    "{};q={};w={}",
                    sf_string(w.kind.policy_name()),
                    w.limit,
                    w.period_ms / 1000
                )
            })
            .collect();
        let value =
            HeaderValue::from_str(&policy.join(", ")).unwrap_or(HeaderValue::from_static(""));
        self.0.insert(*windows, value.clone());
        value
    }
}

/// A structured-field string (RFC 8941): quoted, with backslash and `"` escaped.
fn sf_string(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Header names and values for `verdict`, with its windows' `policy`.
pub fn headers(verdict: &Verdict, policy: &HeaderValue) -> Vec<(&'static str, HeaderValue)> {
    let mut out = Vec::with_capacity(6);
    let Some(tightest) = verdict.tightest() else {
        return out;
    };
    let reset = tightest.reset_secs().max(0) as u64;
    out.push(("x-ratelimit-limit", HeaderValue::from(tightest.spec.limit)));
    out.push((
        "x-ratelimit-remaining",
        HeaderValue::from(tightest.remaining()),
    ));
    out.push(("x-ratelimit-reset", HeaderValue::from(reset)));
    out.push(("ratelimit-policy", policy.clone()));
    let current = format!(
        "{};r={};t={reset}",
        sf_string(tightest.spec.kind.policy_name()),
        tightest.remaining()
    );
    if let Ok(value) = HeaderValue::from_str(&current) {
        out.push(("ratelimit", value));
    }
    // A full window resets; credits come back with a refill or a top-up, not a window.
    if verdict.refused_by.is_some() {
        out.push(("retry-after", HeaderValue::from(reset.max(1))));
    }
    if let Some(spent) = verdict.credits {
        out.push(("x-credits-remaining", HeaderValue::from(spent.remaining())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::local::LocalLimiter;
    use super::super::{CallerKey, TierKind, Windows};
    use super::*;
    use crate::config::Config;

    #[test]
    fn headers_name_the_tightest_window() {
        let config = Config::parse("rate_limits: { tiers: { anonymous: { per_minute: 2, per_day: 100 } }, burst: { requests: 10, per: 10s } }").unwrap();
        let windows = Windows::new(&config.rate_limits, TierKind::Anonymous, None, None);
        let policies = PolicyHeaders::default();
        let policy = policies.get(&windows);
        assert_eq!(
            policy,
            "\"burst\";q=10;w=10, \"minute\";q=2;w=60, \"day\";q=100;w=86400"
        );
        let limiter = LocalLimiter::default();
        let key = CallerKey::Address("203.0.113.9".parse().unwrap());
        let first = limiter.check(&key, &windows, 1_000);
        let shown = headers(&first, &policy);
        assert_eq!(shown[0], ("x-ratelimit-limit", HeaderValue::from(2u64)));
        assert_eq!(shown[1], ("x-ratelimit-remaining", HeaderValue::from(1u64)));
        assert_eq!(shown[2], ("x-ratelimit-reset", HeaderValue::from(59u64)));
        assert_eq!(shown[4].1, "\"minute\";r=1;t=59");
        limiter.check(&key, &windows, 2_000);
        let refused = limiter.check(&key, &windows, 3_000);
        let shown = headers(&refused, &policy);
        assert_eq!(
            shown.last().unwrap(),
            &("retry-after", HeaderValue::from(57u64))
        );
    }
}
