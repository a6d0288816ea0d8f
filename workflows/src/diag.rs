//! Diagnostic workflows: synthetic chains and fan-outs with injectable failures.
//!
//! `diag.chain` input: `{"steps":N,"sleep_ms":S,"fail_step":K,"fail_times":M}`.
//! Step K fails with a retryable error on its first M attempts (counted
//! across resumes), so with the default of M+1 attempts it succeeds in one
//! execution. `max_attempts` and `timeout_ms` override the step policies.
//!
//! `diag.fanout` input: `{"steps":N,"sleep_ms":S}`: N independent branches
//! followed by a `join` step that depends on all of them.

use engine::{Plan, PlanError, RetryPolicy, Step, StepContext, StepError, StepSpec, Workflow};
use serde::{Deserialize, Serialize};
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
             Input: {\"steps\":N, \"sleep_ms\":S, \"fail_step\":K, \"fail_times\":M, \
             \"max_attempts\":A, \"timeout_ms\":T, \"resources\":[R]}",
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
                    let p = LinkParams {
                        index: n as u64,
                        sleep_ms: i.sleep_ms,
                        fail_times: if i.fail_step == Some(n) {
                            i.fail_times.into()
                        } else {
                            0
                        },
                    };
                    let mut s = StepSpec::of::<Link>(format!("step-{n}"), &p).retry(retry.clone());
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
        .with::<Link>()
}

/// A link of `diag.chain`: adds its index to the sum of the link before.
struct Link;

#[derive(Serialize, Deserialize)]
struct LinkParams {
    index: u64,
    sleep_ms: u64,
    /// Attempts (counted across resumes) that fail before one succeeds.
    fail_times: i64,
}

#[derive(Serialize, Deserialize)]
struct Sum {
    index: u64,
    sum: u64,
}

impl Step for Link {
    const KIND: &'static str = "link";
    type Params = LinkParams;
    type Output = Sum;

    async fn run(ctx: StepContext, p: LinkParams) -> Result<Sum, StepError> {
        pause(&ctx, p.sleep_ms).await?;
        if ctx.attempt <= p.fail_times {
            return Err(StepError::retryable(format!(
                "injected failure {} of {}",
                ctx.attempt, p.fail_times
            )));
        }
        let prev: u64 = ctx.outputs::<Link>()?.iter().map(|(_, s)| s.sum).sum();
        ctx.log.info(format!("link {} done", p.index));
        Ok(Sum {
            index: p.index,
            sum: prev + p.index,
        })
    }
}

/// `diag.fanout`: N independent branches and a `join` that counts them.
pub fn fanout() -> Workflow {
    Workflow::new("diag.fanout", 1)
        .about("N independent branches, then a join. Input: {\"steps\":N, \"sleep_ms\":S}")
        .planner(|input| {
            let i: FanoutInput = parse(input)?;
            let mut steps: Vec<StepSpec> = (1..=i.steps)
                .map(|n| {
                    StepSpec::of::<Branch>(
                        format!("branch-{n}"),
                        &BranchParams {
                            sleep_ms: i.sleep_ms,
                        },
                    )
                    .retry(diag_retry(1))
                })
                .collect();
            if !steps.is_empty() {
                let join = steps
                    .iter()
                    .fold(StepSpec::of::<Join>(Join::KIND, &()), |j, s| {
                        j.after(s.name.clone())
                    });
                steps.push(join);
            }
            Ok(Plan::new(steps))
        })
        .with::<Branch>()
        .with::<Join>()
}

/// A branch of `diag.fanout`.
struct Branch;

#[derive(Serialize, Deserialize)]
struct BranchParams {
    #[serde(default)]
    sleep_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Branched {
    branch: String,
}

impl Step for Branch {
    const KIND: &'static str = "branch";
    type Params = BranchParams;
    type Output = Branched;

    async fn run(ctx: StepContext, p: BranchParams) -> Result<Branched, StepError> {
        pause(&ctx, p.sleep_ms).await?;
        Ok(Branched { branch: ctx.step })
    }
}

/// The join of `diag.fanout`: counts its branches.
struct Join;

#[derive(Serialize, Deserialize)]
struct Joined {
    joined: usize,
}

impl Step for Join {
    const KIND: &'static str = "join";
    type Params = ();
    type Output = Joined;

    async fn run(ctx: StepContext, _: ()) -> Result<Joined, StepError> {
        Ok(Joined {
            joined: ctx.outputs::<Branch>()?.len(),
        })
    }
}
