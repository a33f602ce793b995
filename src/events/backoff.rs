//! When a failed delivery is tried again: `retry_base` after the first failure, four times
//! longer after each next one, at most 10 hours, then ±20 % jitter so that endpoints that
//! failed together are not retried together.

use std::time::Duration;

const CAP: Duration = Duration::from_secs(10 * 3600);

/// The wait after the `failures`-th failed attempt (1 for the first). `jitter` is in
/// `[-1, 1]` and scales ±20 %.
pub fn delay(base: Duration, failures: u32, jitter: f64) -> Duration {
    let steps = failures.saturating_sub(1).min(20);
    let plain = base.saturating_mul(4u32.saturating_pow(steps)).min(CAP);
    plain.mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_fourfold_to_the_cap() {
        let base = Duration::from_secs(5);
        assert_eq!(delay(base, 1, 0.0), Duration::from_secs(5));
        assert_eq!(delay(base, 2, 0.0), Duration::from_secs(20));
        assert_eq!(delay(base, 3, 0.0), Duration::from_secs(80));
        assert_eq!(delay(base, 9, 0.0), CAP);
        assert_eq!(delay(base, u32::MAX, 0.0), CAP);
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        let base = Duration::from_secs(100);
        assert_eq!(delay(base, 1, 1.0), Duration::from_secs(120));
        assert_eq!(delay(base, 1, -1.0), Duration::from_secs(80));
        assert_eq!(delay(base, 1, 7.0), Duration::from_secs(120));
        assert_eq!(delay(CAP, 4, 1.0), CAP.mul_f64(1.2));
    }
}
