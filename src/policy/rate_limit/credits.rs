//! Credits (SPEC 15): what a balance is worth now (a refill that is due applied when it is
//! read, so no job has to run on time), and whether a request's cost can be spent from the
//! key's balance and its owner's. Pure; both limiter backends count through it.

use chrono::Datelike;
use serde::{Deserialize, Serialize};

/// How often a refill sets the balance back to its amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Day,
    Month,
}

impl Interval {
    /// The start (Unix ms, UTC) of the period holding `now`: its day, or its month.
    pub fn start(self, now: i64) -> i64 {
        const DAY: i64 = 86_400_000;
        let day = now - now.rem_euclid(DAY);
        match self {
            Interval::Day => day,
            Interval::Month => {
                let Some(date) = chrono::DateTime::from_timestamp_millis(day) else {
                    return day;
                };
                let first = date.date_naive().with_day0(0).unwrap_or(date.date_naive());
                first
                    .and_hms_opt(0, 0, 0)
                    .map_or(day, |t| t.and_utc().timestamp_millis())
            }
        }
    }
}

/// Every `interval`, the balance is set back to `amount` (not added to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refill {
    pub interval: Interval,
    pub amount: u64,
}

/// A balance and the refill period it belongs to. `generation` names the operator's last
/// change: a stored balance of a later generation replaces the one counted in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Balance {
    pub remaining: u64,
    pub period: i64,
    pub generation: i64,
}

/// Credits as the store and the snapshot hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credits {
    pub balance: Balance,
    pub refill: Option<Refill>,
}

impl Credits {
    /// New credits of `remaining`, in the period of `now`.
    pub fn new(remaining: u64, refill: Option<Refill>, generation: i64, now: i64) -> Credits {
        Credits {
            balance: Balance {
                remaining,
                period: period_of(refill, now),
                generation,
            },
            refill,
        }
    }

    /// `1/replicas` of the balance (at least 1 left when there was any): what one replica
    /// may spend while the shared balance is unreachable.
    pub fn share(self, replicas: u32) -> Credits {
        let mut shared = self;
        let replicas = u64::from(replicas.max(1));
        shared.balance.remaining = match self.balance.remaining {
            0 => 0,
            n => (n / replicas).max(1),
        };
        if let Some(refill) = &mut shared.refill {
            refill.amount = (refill.amount / replicas).max(1);
        }
        shared
    }

    /// The balance to count from: `live` (what this process or Redis counted) unless the
    /// store holds a later operator change, with a due refill applied.
    pub fn current(&self, live: Option<Balance>, now: i64) -> Balance {
        let mut balance = match live {
            Some(live) if live.generation >= self.balance.generation => live,
            _ => self.balance,
        };
        if let Some(refill) = self.refill {
            let period = refill.interval.start(now);
            if period > balance.period {
                balance.remaining = refill.amount;
                balance.period = period;
            }
        }
        balance
    }
}

/// As the admin API shows credits: `{"remaining", "refill"}`.
impl Serialize for Credits {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut shown = serializer.serialize_struct("Credits", 2)?;
        shown.serialize_field("remaining", &self.balance.remaining)?;
        shown.serialize_field("refill", &self.refill)?;
        shown.end()
    }
}

/// The refill period of `now`, or 0 without a refill.
pub fn period_of(refill: Option<Refill>, now: i64) -> i64 {
    refill.map_or(0, |refill| refill.interval.start(now))
}

/// What a request asks of its caller's credits: its route's cost, from the key's balance
/// and its owner's, whichever have credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditAsk {
    pub cost: u64,
    pub key: Option<Credits>,
    pub owner: Option<Credits>,
}

/// The credits part of a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// Spent; the smaller balance after it.
    Spent { remaining: u64 },
    /// A balance was below the cost: refused, nothing spent. `owner` when it was the
    /// owner's balance (checked after the key's own), for the owner's `quota.exceeded`.
    Exhausted { owner: bool },
}

impl Spent {
    /// `X-Credits-Remaining`: the smaller balance after this request, 0 on a refusal.
    pub fn remaining(self) -> u64 {
        match self {
            Spent::Spent { remaining } => remaining,
            Spent::Exhausted { .. } => 0,
        }
    }

    pub fn exhausted(self) -> bool {
        matches!(self, Spent::Exhausted { .. })
    }
}

/// Spends `cost` from the key's balance and its owner's, whichever there are, or from
/// neither when one is below it. `None` when there is no balance at all.
pub fn spend(cost: u64, key: Option<&mut Balance>, owner: Option<&mut Balance>) -> Option<Spent> {
    if key.as_ref().is_some_and(|b| b.remaining < cost) {
        return Some(Spent::Exhausted { owner: false });
    }
    if owner.as_ref().is_some_and(|b| b.remaining < cost) {
        return Some(Spent::Exhausted { owner: true });
    }
    let least = key.into_iter().chain(owner).map(|balance| {
        balance.remaining -= cost;
        balance.remaining
    });
    least.min().map(|remaining| Spent::Spent { remaining })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_rfc3339;

    fn at(text: &str) -> i64 {
        parse_rfc3339(text).unwrap()
    }

    #[test]
    fn periods_are_utc_days_and_months() {
        let t = at("2026-12-07T15:04:05Z");
        assert_eq!(Interval::Day.start(t), at("2026-12-07T00:00:00Z"));
        assert_eq!(Interval::Month.start(t), at("2026-12-01T00:00:00Z"));
        assert_eq!(
            Interval::Month.start(at("2027-01-01T00:00:00Z")),
            at("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn a_due_refill_is_applied_when_read_and_an_operator_change_wins() {
        let refill = Some(Refill {
            interval: Interval::Day,
            amount: 10,
        });
        let day = at("2026-12-07T12:00:00Z");
        let stored = Credits::new(10, refill, 1, day);
        let spent = Balance {
            remaining: 1,
            ..stored.balance
        };
        // Later the same day the live balance counts; the next day it is refilled to 10.
        assert_eq!(stored.current(Some(spent), day + 3_600_000).remaining, 1);
        let tomorrow = stored.current(Some(spent), at("2026-12-08T00:00:01Z"));
        assert_eq!(tomorrow.remaining, 10);
        assert_eq!(tomorrow.period, at("2026-12-08T00:00:00Z"));
        // An operator's later change (generation 2) replaces what was counted.
        let set = Credits::new(500, refill, 2, day);
        assert_eq!(set.current(Some(spent), day).remaining, 500);
        // No refill: nothing comes back.
        let once = Credits::new(3, None, 1, day);
        assert_eq!(once.current(None, at("2027-06-01T00:00:00Z")).remaining, 3);
    }

    #[test]
    fn a_cost_is_spent_from_every_balance_or_none() {
        let mut key = Balance {
            remaining: 10,
            period: 0,
            generation: 1,
        };
        let mut owner = Balance {
            remaining: 4,
            ..key
        };
        assert_eq!(
            spend(3, Some(&mut key), Some(&mut owner)),
            Some(Spent::Spent { remaining: 1 })
        );
        // The owner's balance is the short one: refused, and neither is spent.
        assert_eq!(
            spend(3, Some(&mut key), Some(&mut owner)),
            Some(Spent::Exhausted { owner: true })
        );
        assert_eq!((key.remaining, owner.remaining), (7, 1));
        assert_eq!(
            spend(8, Some(&mut key), None),
            Some(Spent::Exhausted { owner: false })
        );
        assert_eq!(spend(1, None, None), None);
        assert_eq!(Spent::Exhausted { owner: true }.remaining(), 0);
    }
}
