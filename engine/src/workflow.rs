//! [`Workflow`]: a named, versioned planner plus the handlers its steps run; [`Registry`] holds them.

use crate::plan::{Plan, PlanError};
use crate::step::{StepContext, StepError};
use crate::typed::Step;
use futures::future::BoxFuture;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

/// The type-erased body of a step kind.
pub type Handler = Arc<
    dyn Fn(StepContext) -> BoxFuture<'static, Result<serde_json::Value, StepError>> + Send + Sync,
>;

type Planner = Arc<dyn Fn(&serde_json::Value) -> Result<Plan, PlanError> + Send + Sync>;
type Resources = Arc<dyn Fn(&serde_json::Value) -> Vec<String> + Send + Sync>;

/// A workflow definition: builds a run's plan from its input and executes its steps.
///
/// ```
/// use engine::{Plan, StepSpec, Workflow};
/// let wf = Workflow::new("hello", 1)
///     .planner(|_input| Ok(Plan::new(vec![StepSpec::new("greet", "greet")])))
///     .step("greet", |ctx| async move {
///         ctx.log.info("hello");
///         Ok(serde_json::json!({"greeted": true}))
///     });
/// assert_eq!(wf.plan(&serde_json::Value::Null).unwrap().steps.len(), 1);
/// ```
#[derive(Clone)]
pub struct Workflow {
    name: String,
    version: i64,
    planner: Planner,
    handlers: BTreeMap<String, Handler>,
    resources: Resources,
    about: String,
}

impl Workflow {
    /// A workflow with no planner (it plans nothing) and no handlers.
    pub fn new(name: impl Into<String>, version: i64) -> Self {
        Workflow {
            name: name.into(),
            version,
            planner: Arc::new(|_| Err(PlanError::Empty)),
            handlers: BTreeMap::new(),
            resources: Arc::new(|_| Vec::new()),
            about: String::new(),
        }
    }

    /// Sets a one-line description, shown by the CLI.
    pub fn about(mut self, about: impl Into<String>) -> Self {
        self.about = about.into();
        self
    }

    /// Sets the function that turns a run input into a plan.
    pub fn planner<F>(mut self, f: F) -> Self
    where
        F: Fn(&serde_json::Value) -> Result<Plan, PlanError> + Send + Sync + 'static,
    {
        self.planner = Arc::new(f);
        self
    }

    /// Sets the function naming the resources a run locks (e.g. `node/<name>` per node).
    ///
    /// Two runs sharing a resource never execute at once on workers; the later waits.
    pub fn resources<F>(mut self, f: F) -> Self
    where
        F: Fn(&serde_json::Value) -> Vec<String> + Send + Sync + 'static,
    {
        self.resources = Arc::new(f);
        self
    }

    /// The resources a run with `input` locks.
    pub fn resources_for(&self, input: &serde_json::Value) -> Vec<String> {
        let mut r = (self.resources)(input);
        r.sort();
        r.dedup();
        r
    }

    /// Registers the handler for steps of `kind`.
    pub fn step<F, Fut, T>(mut self, kind: impl Into<String>, f: F) -> Self
    where
        F: Fn(StepContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, StepError>> + Send + 'static,
        T: Serialize,
    {
        let f = Arc::new(f);
        let handler: Handler = Arc::new(move |ctx| {
            let fut = f(ctx);
            Box::pin(async move {
                let out = fut.await?;
                serde_json::to_value(out)
                    .map_err(|e| StepError::permanent(format!("step output is not JSON: {e}")))
            })
        });
        self.handlers.insert(kind.into(), handler);
        self
    }

    /// Registers step kind `S`: steps of kind `S::KIND` run `S::run` with
    /// their params decoded as `S::Params`.
    ///
    /// ```
    /// use engine::{Plan, Step, StepContext, StepError, StepSpec, Workflow};
    ///
    /// struct Greet;
    /// impl Step for Greet {
    ///     const KIND: &'static str = "greet";
    ///     type Params = String;
    ///     type Output = String;
    ///     async fn run(_ctx: StepContext, who: String) -> Result<String, StepError> {
    ///         Ok(format!("hello, {who}"))
    ///     }
    /// }
    ///
    /// let wf = Workflow::new("hello", 1)
    ///     .planner(|_| Ok(Plan::new(vec![StepSpec::of::<Greet>("greet", &"world".to_string())])))
    ///     .with::<Greet>();
    /// assert_eq!(wf.plan(&serde_json::Value::Null).unwrap().steps[0].kind, "greet");
    /// ```
    pub fn with<S: Step>(mut self) -> Self {
        self.handlers
            .insert(S::KIND.to_string(), crate::typed::handler::<S>());
        self
    }

    /// The workflow name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The workflow version.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The one-line description.
    pub fn description(&self) -> &str {
        &self.about
    }

    /// Builds and validates the plan for `input`; nothing is written.
    pub fn plan(&self, input: &serde_json::Value) -> Result<Plan, PlanError> {
        let plan = (self.planner)(input)?;
        plan.validate()?;
        self.check_kinds(&plan)?;
        Ok(plan)
    }

    /// Checks that every step of `plan` has a handler here (used on resume of old plans too).
    pub fn check_kinds(&self, plan: &Plan) -> Result<(), PlanError> {
        let unknown: Vec<(String, String)> = plan
            .steps
            .iter()
            .filter(|s| !self.handlers.contains_key(&s.kind))
            .map(|s| (s.name.clone(), s.kind.clone()))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(PlanError::UnknownKind(unknown))
        }
    }

    /// The handler for `kind`.
    pub fn handler(&self, kind: &str) -> Option<&Handler> {
        self.handlers.get(kind)
    }
}

/// The workflows a process knows, by name.
#[derive(Clone, Default)]
pub struct Registry {
    workflows: BTreeMap<String, Arc<Workflow>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds (or replaces) a workflow.
    pub fn register(&mut self, workflow: Workflow) -> &mut Self {
        self.workflows
            .insert(workflow.name.clone(), Arc::new(workflow));
        self
    }

    /// Looks a workflow up.
    pub fn get(&self, name: &str) -> Option<Arc<Workflow>> {
        self.workflows.get(name).cloned()
    }

    /// All workflows, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Workflow>> {
        self.workflows.values()
    }
}
