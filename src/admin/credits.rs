//! `POST /keys/{id}/credits` and `POST /owners/{id}/credits`: set, increment or decrement a
//! balance (SPEC 15). The change starts from the balance as the data plane counts it now,
//! is written as a new generation with its audit entry, and replaces what every replica
//! counts once their snapshots have it.

use super::principal::Principal;
use super::retry::{committed, until_committed};
use super::{keys, owners, parse_body, respond, AdminError, AdminState, Answer};
use crate::policy::rate_limit::credits::{period_of, Balance, Credits};
use crate::policy::rate_limit::CallerKey;
use crate::short_id::ShortId;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Set,
    Increment,
    Decrement,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreditOp {
    op: Op,
    amount: u64,
}

/// The balance after `op`; a decrement stops at 0.
fn applied(op: CreditOp, remaining: u64) -> Result<u64, AdminError> {
    let next = match op.op {
        Op::Set => Some(op.amount),
        Op::Increment => remaining.checked_add(op.amount),
        Op::Decrement => Some(remaining.saturating_sub(op.amount)),
    };
    next.filter(|n| *n <= super::key_rules::MAX_CREDITS)
        .ok_or_else(|| {
            AdminError::InvalidRequest(format!(
                "credits would exceed {}",
                super::key_rules::MAX_CREDITS
            ))
        })
}

/// The credits after `op`, from `stored` (the store's) and `live` (the data plane's).
fn changed(
    op: CreditOp,
    stored: Option<&Credits>,
    live: Option<Balance>,
    now: i64,
) -> Result<Credits, AdminError> {
    let Some(stored) = stored else {
        return match op.op {
            Op::Set => Ok(Credits::new(applied(op, 0)?, None, 1, now)),
            _ => Err(AdminError::InvalidRequest(
                "there are no credits to change: set them first (op \"set\")".into(),
            )),
        };
    };
    let current = stored.current(live, now);
    let mut next = *stored;
    next.balance = Balance {
        remaining: applied(op, current.remaining)?,
        period: current.period.max(period_of(stored.refill, now)),
        generation: stored.balance.generation + 1,
    };
    Ok(next)
}

async fn live(
    state: &AdminState,
    caller: &CallerKey,
    owner: Option<&CallerKey>,
) -> Option<Balance> {
    match &state.limiter {
        Some(limiter) => limiter.live_credits(caller, owner).await,
        None => None,
    }
}

pub async fn key(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let answer: Answer = async {
        let op: CreditOp = parse_body(&body)?;
        let store = state.store()?;
        let state = &*state;
        let (id, actor) = (&id, &principal.actor);
        let saved = until_committed(state.syncer.deadline(), || async move {
            let current = keys::find(state, id).await?;
            let caller = CallerKey::Key(ShortId::new(&current.id));
            let owner = current
                .owner_id
                .as_deref()
                .map(|owner| CallerKey::Owner(ShortId::new(owner)));
            let now = state.now();
            let balance = live(state, &caller, owner.as_ref()).await;
            let mut next = current.clone();
            next.credits = Some(changed(op, current.credits.as_ref(), balance, now)?);
            committed(
                state
                    .call(store.replace_key(&current, &next, "key.credits", actor, &[], now))
                    .await,
            )
        })
        .await?;
        state.refresh().await;
        Ok((StatusCode::OK, json!(saved)))
    }
    .await;
    respond(answer)
}

pub async fn owner(
    State(state): State<Arc<AdminState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let answer: Answer = async {
        let op: CreditOp = parse_body(&body)?;
        let store = state.store()?;
        let state = &*state;
        let (id, actor) = (&id, &principal.actor);
        let saved = until_committed(state.syncer.deadline(), || async move {
            let current = owners::find(state, id).await?;
            let caller = CallerKey::Owner(ShortId::new(&current.id));
            let now = state.now().max(current.updated_at.0 + 1);
            let balance = live(state, &caller, None).await;
            let mut next = current.clone();
            next.credits = Some(changed(op, current.credits.as_ref(), balance, now)?);
            next.updated_at = crate::store::records::Timestamp(now);
            committed(
                state
                    .call(store.replace_owner(&current, &next, "owner.credits", actor, now))
                    .await,
            )
        })
        .await?;
        state.refresh().await;
        Ok((StatusCode::OK, json!(saved)))
    }
    .await;
    respond(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rate_limit::credits::{Interval, Refill};

    fn op(op: Op, amount: u64) -> CreditOp {
        CreditOp { op, amount }
    }

    #[test]
    fn operations_start_from_the_live_balance_as_a_new_generation() {
        let stored = Credits::new(10, None, 4, 0);
        let live = Balance {
            remaining: 6,
            period: 0,
            generation: 4,
        };
        let more = changed(op(Op::Increment, 5), Some(&stored), Some(live), 1).unwrap();
        assert_eq!((more.balance.remaining, more.balance.generation), (11, 5));
        let less = changed(op(Op::Decrement, 50), Some(&stored), Some(live), 1).unwrap();
        assert_eq!(less.balance.remaining, 0);
        let set = changed(op(Op::Set, 3), None, None, 1).unwrap();
        assert_eq!((set.balance.remaining, set.refill), (3, None));
        assert!(changed(op(Op::Increment, 1), None, None, 1).is_err());
        // A refill that came due is applied before the change.
        let daily = Credits::new(
            0,
            Some(Refill {
                interval: Interval::Day,
                amount: 100,
            }),
            1,
            0,
        );
        let next_day = 86_400_000 + 5;
        let topped = changed(op(Op::Increment, 1), Some(&daily), None, next_day).unwrap();
        assert_eq!(topped.balance.remaining, 101);
        assert_eq!(topped.balance.period, 86_400_000);
    }
}
