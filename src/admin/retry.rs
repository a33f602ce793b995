//! Optimistic writes under contention: read, decide, write if nobody wrote in between,
//! otherwise read again after a short jittered pause, for as long as the deadline allows.

use super::error::AdminError;
use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `attempt` until it commits (`Some`) or fails. `None` means another writer (an
/// operator, another replica) got there first. Past `deadline`, `409 conflict`.
/// (A plain closure returning a future rather than an async closure: axum needs the
/// handler's future to be `Send`, which an async closure's future cannot promise yet.)
pub async fn until_committed<T, F, Attempt>(
    deadline: Duration,
    mut attempt: F,
) -> Result<T, AdminError>
where
    F: FnMut() -> Attempt,
    Attempt: Future<Output = Result<Option<T>, AdminError>>,
{
    let started = Instant::now();
    for round in 0u64.. {
        if round > 0 {
            if started.elapsed() > deadline {
                break;
            }
            // 1–4 ms, up to ten times that as rounds go by: writers that collided spread out.
            let pause = rand::random_range(1..=4) * round.min(10);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        if let Some(done) = attempt().await? {
            return Ok(done);
        }
    }
    Err(AdminError::Conflict)
}

/// A write as one attempt of [`until_committed`]: a lost race (`409 conflict`) is `None`,
/// to read again and retry; any other error ends the attempts.
pub fn committed<T>(written: Result<T, AdminError>) -> Result<Option<T>, AdminError> {
    match written {
        Ok(saved) => Ok(Some(saved)),
        Err(AdminError::Conflict) => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_a_lost_race_until_it_commits() {
        let mut tries = 0;
        let done = until_committed(Duration::from_secs(5), || {
            tries += 1;
            let round = tries;
            async move { Ok((round == 30).then_some(round)) }
        })
        .await;
        assert_eq!(done.ok(), Some(30));
    }

    #[tokio::test]
    async fn gives_up_with_conflict_after_the_deadline_and_stops_on_errors() {
        let lost: Result<(), _> =
            until_committed(Duration::from_millis(30), || async { Ok(None) }).await;
        assert!(matches!(lost, Err(AdminError::Conflict)));
        let mut tries = 0;
        let failed: Result<(), _> = until_committed(Duration::from_secs(5), || {
            tries += 1;
            async { Err(AdminError::NotFound("key")) }
        })
        .await;
        assert!(matches!(failed, Err(AdminError::NotFound(_))));
        assert_eq!(tries, 1);
    }

    #[test]
    fn a_lost_race_is_retried_and_other_errors_are_not() {
        assert_eq!(committed(Ok(7)).ok(), Some(Some(7)));
        assert_eq!(committed::<()>(Err(AdminError::Conflict)).ok(), Some(None));
        assert!(matches!(
            committed::<()>(Err(AdminError::NotFound("key"))),
            Err(AdminError::NotFound("key"))
        ));
    }
}
