//! The headers that describe a verdict: `X-RateLimit-*` for the tightest window, the IETF
//! `RateLimit-Policy` and `RateLimit` fields, and `Retry-After` on a 429.

use super::Verdict;

/// Header names and values for `verdict`.
pub fn headers(verdict: &Verdict) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(6);
    let Some(tightest) = verdict.tightest() else {
        return out;
    };
    out.push(("x-ratelimit-limit", tightest.spec.limit.to_string()));
    out.push(("x-ratelimit-remaining", tightest.remaining().to_string()));
    out.push(("x-ratelimit-reset", tightest.reset_secs().to_string()));
    let policy: Vec<String> = verdict
        .windows
        .iter()
        .map(|w| {
            format!(
                "\"{}\";q={};w={}",
                w.spec.kind.policy_name(),
                w.spec.limit,
                w.spec.period_ms / 1000
            )
        })
        .collect();
    out.push(("ratelimit-policy", policy.join(", ")));
    out.push((
        "ratelimit",
        format!(
            "\"{}\";r={};t={}",
            tightest.spec.kind.policy_name(),
            tightest.remaining(),
            tightest.reset_secs()
        ),
    ));
    if !verdict.allowed() {
        out.push(("retry-after", tightest.reset_secs().max(1).to_string()));
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
        let limiter = LocalLimiter::default();
        let key = CallerKey::Address("203.0.113.9".parse().unwrap());
        let first = limiter.check(&key, &windows, 1_000);
        let shown: Vec<(&str, String)> = headers(&first);
        assert_eq!(shown[0], ("x-ratelimit-limit", "2".to_string()));
        assert_eq!(shown[1], ("x-ratelimit-remaining", "1".to_string()));
        assert_eq!(shown[2], ("x-ratelimit-reset", "59".to_string()));
        assert_eq!(
            shown[3].1,
            "\"burst\";q=10;w=10, \"minute\";q=2;w=60, \"day\";q=100;w=86400"
        );
        assert_eq!(shown[4].1, "\"minute\";r=1;t=59");
        limiter.check(&key, &windows, 2_000);
        let refused = limiter.check(&key, &windows, 3_000);
        let shown = headers(&refused);
        assert_eq!(shown.last().unwrap(), &("retry-after", "57".to_string()));
    }
}
