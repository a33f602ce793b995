//! The last step: the limiter's verdict joined to the admission, into what is done with
//! the request and what it counts as in the key's usage.

use super::caller::Caller;
use super::Admission;
use crate::denial::Denial;
use crate::policy::rate_limit::credits::Spent;
use crate::policy::rate_limit::{Verdict, WindowKind, Windows};
use crate::routes::Route;
use crate::store::snapshot::{Grace, KeyRef};
use crate::usage::{Exceeded, Outcome};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Forward,
    Refuse(Denial),
}

/// Everything the glue needs to forward or refuse, and to count and log the request.
#[derive(Debug)]
pub struct Answer<'r> {
    pub decision: Decision,
    pub route: Option<&'r Route>,
    pub method: &'static str,
    /// Set when the gate admitted the caller (the limiter may still have refused it).
    pub caller: Option<Caller>,
    pub key: Option<KeyRef>,
    pub grace: Option<Grace>,
    /// Where the caller stands in its windows, for the `X-RateLimit-*` headers.
    pub verdict: Verdict,
    pub windows: Windows,
}

impl<'r> Admission<'r> {
    /// Joins the limiter's verdict: an admitted request over a window is refused.
    pub fn with(self, verdict: Verdict) -> Answer<'r> {
        let decision = match (self.refusal, verdict.refused_by) {
            (Some(denial), _) => Decision::Refuse(denial),
            (None, None) if !verdict.allowed() => Decision::Refuse(Denial::CreditsExhausted),
            (None, Some(kind)) if kind.is_day() => Decision::Refuse(Denial::QuotaExceeded),
            (None, Some(_)) => Decision::Refuse(Denial::RateLimited),
            (None, None) => Decision::Forward,
        };
        Answer {
            decision,
            route: self.route,
            method: self.method,
            caller: self.caller,
            key: self.key,
            grace: self.grace,
            verdict,
            windows: self.counted_as.windows,
        }
    }
}

impl Answer<'_> {
    /// The refusal, if the request is refused.
    pub fn denial(&self) -> Option<&Denial> {
        match &self.decision {
            Decision::Forward => None,
            Decision::Refuse(denial) => Some(denial),
        }
    }

    /// The daily quota or credits that refused it, the key's own or its owner's, for the
    /// once-a-day `quota.exceeded`.
    pub fn exceeded(&self) -> Option<Exceeded> {
        match (
            &self.decision,
            self.verdict.refused_by,
            self.verdict.credits,
        ) {
            (Decision::Refuse(Denial::QuotaExceeded), Some(WindowKind::Day), _) => {
                Some(Exceeded::Day)
            }
            (Decision::Refuse(Denial::QuotaExceeded), Some(WindowKind::OwnerDay), _) => {
                Some(Exceeded::OwnerDay)
            }
            (Decision::Refuse(Denial::CreditsExhausted), _, Some(Spent::Exhausted { owner })) => {
                Some(if owner {
                    Exceeded::OwnerCredits
                } else {
                    Exceeded::Credits
                })
            }
            _ => None,
        }
    }

    /// What the request counts as in its key's usage: once, by its final outcome. A
    /// refusal that says nothing about the key (an unknown key) counts nowhere.
    pub fn usage(&self) -> Option<(&KeyRef, Outcome)> {
        let key = self.key.as_ref()?;
        match &self.decision {
            Decision::Forward => Some((key, Outcome::Allowed)),
            Decision::Refuse(denial) => Outcome::of(denial).map(|outcome| (key, outcome)),
        }
    }
}
