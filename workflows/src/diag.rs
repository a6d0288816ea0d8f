//! Diagnostic workflows: synthetic chains and fan-outs with injectable failures.
//!
//! `diag.chain` input: `{"steps":N,"sleep_ms":S,"fail_step":K,"fail_times":M}`.
//! Step K fails with a retryable error on its first M attempts (counted
//! across resumes), so with the default of M+1 attempts it succeeds in one
//! execution. `max_attempts` and `timeout_ms` override the step policies.
//!
//! `diag.fanout` input: `{"steps":N,"sleep_ms":S}`: N independent branches
//! followed by a `join` step that depends on all of them.

use engine::{Plan, PlanError, RetryPolicy, StepContext, StepError, StepSpec, Workflow};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainInput {
    steps: usize,
    #[serde(default)]
    sleep_ms: u64,
    fail_step: Option<usize>,
    #[serde(default)]
    fail_times: u32,
    max_attempts: Option<u32>,
    timeout_ms: Option<u64>,
    /// Resources the run locks on workers (e.g. `node/a`).
    #[serde(default)]
    resources: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FanoutInput {
    steps: usize,
    #[serde(default)]
    sleep_ms: u64,
}

fn parse<T: serde::de::DeserializeOwned>(input: &serde_json::Value) -> Result<T, PlanError> {
    T::deserialize(input).map_err(|e| PlanError::Input(e.to_string()))
}

/// Quick retries, so diagnostics finish fast.
fn diag_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff_ms: 10,
        multiplier: 2.0,
        max_backoff_ms: 1_000,
        jitter: 0.2,
    }
}

/// Sleeps `ms`, stopping early (as a retryable error) when the run is cancelled.
async fn pause(ctx: &StepContext, ms: u64) -> Result<(), StepError> {
    if ms == 0 {
        return Ok(());
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(()),
        _ = ctx.cancel.cancelled() => Err(StepError::retryable("cancelled while sleeping")),
    }
}

/// `diag.chain`: N steps in a line, each adding its index to the previous sum.
pub fn chain() -> Workflow {
    Workflow::new("diag.chain", 1)
        .about(
            "N steps in a line; step K fails M times first. \
             Input: {\"steps\":N, \"sleep_ms\":S, \"fail_step\":K, \"fail_times\":M, \"max_attempts\":A, \"timeout_ms\":T, \"resources\":[R]}",
        )
        .resources(|input| {
            serde_json::from_value::<ChainInput>(input.clone())
                .map(|i| i.resources)
                .unwrap_or_default()
        })
        .planner(|input| {
            let i: ChainInput = parse(input)?;
            if let Some(k) = i.fail_step
                && (k == 0 || k > i.steps)
            {
                return Err(PlanError::Input(format!(
                    "fail_step {k} is outside 1..={}",
                    i.steps
                )));
            }
            let retry = diag_retry(i.max_attempts.unwrap_or(i.fail_times + 1).max(1));
            let steps = (1..=i.steps)
                .map(|n| {
                    let mut s = StepSpec::new(format!("step-{n}"), "link")
                        .params(json!({
                            "index": n,
                            "sleep_ms": i.sleep_ms,
                            "fail_times": if i.fail_step == Some(n) { i.fail_times } else { 0 },
                        }))
                        .retry(retry.clone());
                    if n > 1 {
                        s = s.after(format!("step-{}", n - 1));
                    }
                    if let Some(t) = i.timeout_ms {
                        s = s.timeout(Duration::from_millis(t));
                    }
                    s
                })
                .collect();
            Ok(Plan::new(steps))
        })
        .step("link", |ctx| async move {
            #[derive(Deserialize)]
            struct P {
                index: u64,
                sleep_ms: u64,
                fail_times: i64,
            }
            let p: P = ctx.params()?;
            pause(&ctx, p.sleep_ms).await?;
            if ctx.attempt <= p.fail_times {
                return Err(StepError::retryable(format!(
                    "injected failure {} of {}",
                    ctx.attempt, p.fail_times
                )));
            }
            let prev = match ctx.deps.values().next() {
                Some(v) => v["sum"].as_u64().unwrap_or(0),
                None => 0,
            };
            ctx.log.info(format!("link {} done", p.index));
            Ok(json!({ "index": p.index, "sum": prev + p.index }))
        })
}

/// `diag.fanout`: N independent branches and a `join` that counts them.
pub fn fanout() -> Workflow {
    Workflow::new("diag.fanout", 1)
        .about("N independent branches, then a join. Input: {\"steps\":N, \"sleep_ms\":S}")
        .planner(|input| {
            let i: FanoutInput = parse(input)?;
            let mut steps: Vec<StepSpec> = (1..=i.steps)
                .map(|n| {
                    StepSpec::new(format!("branch-{n}"), "branch")
                        .params(json!({ "sleep_ms": i.sleep_ms }))
                        .retry(diag_retry(1))
                })
                .collect();
            if !steps.is_empty() {
                let join = steps.iter().fold(StepSpec::new("join", "join"), |j, s| {
                    j.after(s.name.clone())
                });
                steps.push(join);
            }
            Ok(Plan::new(steps))
        })
        .step("branch", |ctx| async move {
            let sleep_ms: u64 = ctx.params::<serde_json::Value>()?["sleep_ms"]
                .as_u64()
                .unwrap_or(0);
            pause(&ctx, sleep_ms).await?;
            Ok(json!({ "branch": ctx.step }))
        })
        .step("join", |ctx| async move {
            Ok(json!({ "joined": ctx.deps.len() }))
        })
}
