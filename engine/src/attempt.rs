//! One attempt of one step: the handler's future under the step's timeout
//! and the run's cancellation (with its grace period), a panic caught and
//! turned into a permanent error. What the attempt's end means for the run is
//! the executor's business.

use crate::step::{StepContext, StepError};
use crate::workflow::Handler;
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How one attempt ended, before it is persisted.
pub(crate) enum Outcome {
    /// The handler's output.
    Ok(serde_json::Value),
    /// The handler's error.
    Err(StepError),
    /// The attempt ran past its limit.
    TimedOut(Duration),
    /// The run was cancelled while it ran (or it failed after the cancel).
    Cancelled,
}

/// Runs `handler` on `ctx` until it ends, `limit` passes, `grace` after
/// `cancel` fires, or `abort` fires (a hand-back whose grace is over).
pub(crate) async fn run(
    handler: Handler,
    ctx: StepContext,
    limit: Option<Duration>,
    cancel: CancellationToken,
    grace: Duration,
    abort: CancellationToken,
) -> Outcome {
    let body = AssertUnwindSafe(handler(ctx)).catch_unwind();
    let timed = async {
        match limit {
            Some(l) => tokio::time::timeout(l, body).await.ok(),
            None => Some(body.await),
        }
    };
    let cancelled = async {
        cancel.cancelled().await;
        tokio::time::sleep(grace).await
    };
    tokio::select! {
        r = timed => match r {
            None => Outcome::TimedOut(limit.unwrap_or_default()),
            Some(Ok(Ok(v))) => Outcome::Ok(v),
            Some(Ok(Err(_))) if cancel.is_cancelled() => Outcome::Cancelled,
            Some(Ok(Err(e))) => Outcome::Err(e),
            Some(Err(panic)) => Outcome::Err(StepError::permanent(format!(
                "step panicked: {}",
                panic_message(panic.as_ref())
            ))),
        },
        _ = cancelled => Outcome::Cancelled,
        _ = abort.cancelled() => Outcome::Cancelled,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or(panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
