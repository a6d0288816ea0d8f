//! [`Step`]: a step kind declared once, with its parameter and output types.
//!
//! A plan stores a step's kind as a string, its parameters and its output as
//! JSON. A [`Step`] ties the three together in one place: the planner makes
//! the spec with [`StepSpec::of`](crate::StepSpec::of) (kind and params from
//! the type), [`Workflow::with`](crate::Workflow::with) registers the body
//! under the same kind, and dependents read the output back as the kind's
//! `Output` with [`StepContext::output`]. serde sits between the ends, so the
//! stored JSON is what the types say, field for field.

use crate::step::{StepContext, StepError};
use crate::workflow::Handler;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// A kind of step: its name in plans, what it is given, what it returns, and what it does.
///
/// The type itself carries no data; it names the kind. `Params` is fixed when
/// the run is planned (stored with the plan), `Output` is stored with the
/// attempt that succeeded and read by the steps that depend on it.
///
/// ```
/// use engine::{Step, StepContext, StepError};
/// use serde::{Deserialize, Serialize};
///
/// /// Looks a node's address up.
/// struct Locate;
///
/// #[derive(Serialize, Deserialize)]
/// struct Located { ipv4: String }
///
/// impl Step for Locate {
///     const KIND: &'static str = "locate";
///     type Params = String; // the node
///     type Output = Located;
///     async fn run(ctx: StepContext, node: String) -> Result<Located, StepError> {
///         ctx.log.info(format!("looking {node} up"));
///         Ok(Located { ipv4: "192.0.2.1".into() })
///     }
/// }
/// ```
pub trait Step: Sized + 'static {
    /// The kind as plans store it. Runs are resumed by it, so keep it once
    /// a kind has runs.
    const KIND: &'static str;
    /// What the planner gives each step of this kind (`()` for nothing).
    type Params: Serialize + DeserializeOwned + Send + 'static;
    /// What the step returns; dependents read it with [`StepContext::output`].
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// One attempt of the step. Bad params never reach it: they fail the
    /// attempt for good, naming the step and the field.
    fn run(
        ctx: StepContext,
        params: Self::Params,
    ) -> impl Future<Output = Result<Self::Output, StepError>> + Send;
}

/// The type-erased handler of kind `S`: decode params, run, encode the output.
pub(crate) fn handler<S: Step>() -> Handler {
    Arc::new(|ctx: StepContext| {
        Box::pin(async move {
            let what = format!("step `{}`'s params", ctx.step);
            let params: S::Params = decode(&ctx.params, what)?;
            let out = S::run(ctx, params).await?;
            serde_json::to_value(out)
                .map_err(|e| StepError::permanent(format!("step output is not JSON: {e}")))
        })
    })
}

/// Decodes `value` as a `T`; a mismatch is a permanent error that says what
/// was read (`what`), where in it (the field path) and why (serde's message).
pub(crate) fn decode<T: DeserializeOwned>(
    value: &serde_json::Value,
    what: impl fmt::Display,
) -> Result<T, StepError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            StepError::permanent(format!("{what}: {inner}"))
        } else {
            StepError::permanent(format!("{what}: {path}: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::testing::MemoryStore;
    use crate::{
        Engine, Observer, Plan, Registry, RunEvent, RunStatus, Step, StepContext, StepError,
        StepSpec, Workflow,
    };
    use serde::{Deserialize, Serialize};
    use serde_json::json;
    use std::sync::Arc;

    /// Reserves a node's overlay address.
    struct Overlay;
    #[derive(Serialize, Deserialize)]
    struct Subnet {
        overlay_ip: String,
    }
    impl Step for Overlay {
        const KIND: &'static str = "overlay";
        type Params = String;
        type Output = Subnet;
        async fn run(_: StepContext, node: String) -> Result<Subnet, StepError> {
            Ok(Subnet {
                overlay_ip: format!("10.0.0.1 ({node})"),
            })
        }
    }

    /// Renders a node's configuration from its overlay address.
    struct Config;
    impl Step for Config {
        const KIND: &'static str = "config";
        type Params = String;
        type Output = String;
        async fn run(ctx: StepContext, node: String) -> Result<String, StepError> {
            let s = ctx.output::<Overlay>(&format!("overlay/{node}"))?;
            Ok(format!("overlayIp = {}", s.overlay_ip))
        }
    }

    /// Runs `overlay/w1 → config/w1`, `overlay/w1` being `overlay` as given.
    async fn run(overlay: Workflow) -> (RunStatus, Option<String>, Vec<RunEvent>) {
        let wf = overlay
            .planner(|_| {
                Ok(Plan::new(vec![
                    StepSpec::of::<Overlay>("overlay/w1", &"w1".to_string()).on("w1"),
                    StepSpec::of::<Config>("config/w1", &"w1".to_string())
                        .after("overlay/w1")
                        .on("w1"),
                ]))
            })
            .with::<Config>();
        let mut registry = Registry::new();
        registry.register(wf);
        let engine = Engine::new(Arc::new(MemoryStore::default()), registry);
        let id = engine.create("t", json!({}), None).await.unwrap();
        let id = id.record().id.clone();
        let (observer, mut rx) = Observer::channel();
        engine
            .execute(&id, Default::default(), observer)
            .await
            .unwrap();
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        let state = engine.load(&id).await.unwrap();
        let error = state
            .attempts
            .iter()
            .find(|a| a.step == "config/w1")
            .and_then(|a| a.error.clone());
        (state.run.status, error, events)
    }

    #[tokio::test]
    async fn a_dependent_reads_the_output_as_its_kind_declared() {
        let (status, error, events) = run(Workflow::new("t", 1).with::<Overlay>()).await;
        assert_eq!(status, RunStatus::Succeeded, "{error:?}");
        let subjects: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::StepSucceeded { step, subject, .. } => {
                    Some((step.as_str(), subject.as_deref()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            subjects,
            [("overlay/w1", Some("w1")), ("config/w1", Some("w1"))]
        );
    }

    #[tokio::test]
    async fn a_renamed_output_field_fails_the_reader_naming_the_step_and_the_field() {
        // An `overlay` step (an older build's, say) that called the field `ip`.
        let renamed =
            Workflow::new("t", 1).step("overlay", |_| async { Ok(json!({ "ip": "10.0.0.1" })) });
        let (status, error, _) = run(renamed).await;
        assert_eq!(status, RunStatus::Failed);
        assert_eq!(
            error.as_deref(),
            Some("step `overlay/w1`'s output: missing field `overlay_ip`")
        );
        let mistyped =
            Workflow::new("t", 1).step("overlay", |_| async { Ok(json!({ "overlay_ip": 10 })) });
        let (_, error, _) = run(mistyped).await;
        let error = error.unwrap();
        assert!(
            error.starts_with("step `overlay/w1`'s output: overlay_ip: invalid type: integer `10`"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn reading_a_dependency_as_another_kind_or_with_bad_params_fails_for_good() {
        struct Wrong;
        impl Step for Wrong {
            const KIND: &'static str = "wrong";
            type Params = u32;
            type Output = ();
            async fn run(ctx: StepContext, _: u32) -> Result<(), StepError> {
                ctx.output::<Overlay>("a").map(|_| ())
            }
        }
        let wf = Workflow::new("t", 1)
            .planner(|_| {
                Ok(Plan::new(vec![
                    StepSpec::new("a", "other"),
                    StepSpec::of::<Wrong>("b", &2).after("a"),
                    StepSpec::new("c", "wrong").params(json!("three")),
                ]))
            })
            .step("other", |_| async {
                Ok(json!({ "overlay_ip": "10.0.0.1" }))
            })
            .with::<Wrong>();
        let mut registry = Registry::new();
        registry.register(wf);
        let engine = Engine::new(Arc::new(MemoryStore::default()), registry);
        let id = engine.create("t", json!({}), None).await.unwrap();
        let id = id.record().id.clone();
        let out = engine
            .execute(&id, Default::default(), Observer::none())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Failed);
        let b = &out.failed_steps["b"];
        assert!(
            b.starts_with("step `b` reads `a` as a `overlay` step, but it is a `other` step"),
            "{b}"
        );
        let c = &out.failed_steps["c"];
        assert!(
            c.starts_with("step `c`'s params: invalid type: string \"three\", expected u32"),
            "{c}"
        );
    }
}
