//! Writes back the credit balances the data plane spent from (SPEC 15), in one versioned
//! change per batch, so the store holds the last balance: the one a restarted process, or
//! a Redis that lost its data, starts again from.

use crate::policy::rate_limit::{CallerKey, Limiter};
use crate::store::sync::Syncer;

/// Writes what was spent since the last call; on failure, marks it unsaved for the next.
pub async fn write_back(limiter: &Limiter, syncer: &Syncer) {
    let Some(store) = syncer.store() else {
        return;
    };
    let spent = limiter.take_spent_credits().await;
    if spent.is_empty() {
        return;
    }
    let now = crate::clock::now_ms();
    let saved = tokio::time::timeout(syncer.deadline(), store.save_balances(&spent, now)).await;
    if !matches!(saved, Ok(Ok(()))) {
        tracing::warn!(
            balances = spent.len(),
            "writing back credit balances failed; will retry"
        );
        let callers: Vec<CallerKey> = spent.into_iter().map(|(caller, _)| caller).collect();
        limiter.unsaved_credits(&callers);
    }
}
