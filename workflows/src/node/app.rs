//! App lifecycles in the seed's etcd data model:
//! `app.register` (meta_data) → `app.deploy` (upload and rebuild the nodes
//! that run it) → `app.register_instance` → `app.unregister_instance` →
//! `app.remove` (off the nodes) → `app.unregister` (meta_data and every instance).
//!
//! Input: the usual node input with `args: {"app","kind","port","env_prefix","env"}`;
//! `nodes` may be empty for `app.register` and `app.unregister`.

use super::init::{Mode, init_steps, located};
use super::steps::{locate, registry};
use super::{NodesInput, address, lifecycle_retry, node_param, node_resources, node_step};
use engine::{Plan, PlanError, StepContext, StepError, StepSpec, Workflow};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tasks::registry::{AppKind, AppMeta, Instance, Publish};

/// `args` of every app workflow.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppArgs {
    /// The app (its folder under `app_modules/`).
    pub app: String,
    /// `service`, `backend` or `frontend`.
    #[serde(default = "backend")]
    pub kind: String,
    /// The port it publishes.
    #[serde(default)]
    pub port: Option<u16>,
    /// Prefix of the variables other apps get for it (default: the app's name, upper case).
    #[serde(default)]
    pub env_prefix: Option<String>,
    /// Extra environment in its meta_data.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn backend() -> String {
    "backend".into()
}

impl AppArgs {
    /// The registry it lives in.
    pub fn app_kind(&self) -> Result<AppKind, String> {
        match self.kind.as_str() {
            "service" => Ok(AppKind::Service),
            "backend" => Ok(AppKind::Backend),
            "frontend" => Ok(AppKind::Frontend),
            k => Err(format!(
                "app kind `{k}`: kinds are service, backend and frontend"
            )),
        }
    }
}

fn parse(input: &Value, need_nodes: bool) -> Result<(NodesInput, AppArgs), PlanError> {
    let i: NodesInput =
        serde_json::from_value(input.clone()).map_err(|e| PlanError::Input(e.to_string()))?;
    let a: AppArgs = serde_json::from_value(i.args.clone())
        .map_err(|e| PlanError::Input(format!("args: {e}")))?;
    a.app_kind().map_err(PlanError::Input)?;
    if need_nodes && i.nodes.is_empty() {
        return Err(PlanError::Input("no nodes in the input".into()));
    }
    Ok((i, a))
}

fn args(ctx: &StepContext) -> Result<(NodesInput, AppArgs, AppKind), StepError> {
    let i: NodesInput = ctx.input()?;
    let a: AppArgs = i.args()?;
    let kind = a.app_kind().map_err(StepError::permanent)?;
    Ok((i, a, kind))
}

/// Locks the app and every node the run touches.
fn app_resources(input: &Value) -> Vec<String> {
    let mut r = node_resources(input);
    if let Some(app) = input["args"]["app"].as_str() {
        r.push(format!("app/{app}"));
    }
    r
}

fn app_workflow(name: &str, about: &str) -> Workflow {
    Workflow::new(name, 1)
        .about(about)
        .resources(app_resources)
        .step("ctrl", super::steps::ctrl)
        .step("locate", locate)
}

fn per_node(i: &NodesInput, kind: &str, after_locate: bool) -> Vec<StepSpec> {
    let mut steps = vec![StepSpec::new("ctrl", "ctrl").retry(lifecycle_retry())];
    if after_locate {
        steps.push(StepSpec::new("locate", "locate").retry(lifecycle_retry()));
    }
    for n in &i.nodes {
        let mut s = node_step(kind, &n.name).after("ctrl");
        if after_locate {
            s = s.after("locate");
        }
        steps.push(s);
    }
    steps
}

/// `app.register`: the app's meta_data.
pub fn register() -> Workflow {
    app_workflow("app.register", "Register an app's meta_data (publish port, env prefix, env). Input: {\"cluster\",\"dir\",\"nodes\":[],\"args\":{\"app\",\"kind\",\"port\",\"env_prefix\",\"env\"}}")
        .planner(|input| {
            let (_, a) = parse(input, false)?;
            if a.port.is_none() {
                return Err(PlanError::Input("args.port: an app publishes a port".into()));
            }
            Ok(Plan::new(vec![
                StepSpec::new("ctrl", "ctrl").retry(lifecycle_retry()),
                StepSpec::new("meta", "meta").after("ctrl").retry(lifecycle_retry()),
            ]))
        })
        .step("meta", |ctx| async move {
            let (i, a, kind) = args(&ctx)?;
            let meta = AppMeta {
                publish: Publish { port: a.port.unwrap_or_default() },
                env_prefix: a.env_prefix.clone().unwrap_or_else(|| a.app.to_uppercase().replace('-', "_")),
                env: a.env.clone(),
            };
            registry(&ctx, &i).await?.register_app(kind, &a.app, &meta).await.map_err(StepError::retryable)?;
            ctx.log.info(format!("registered {} {}", a.kind, a.app));
            Ok::<_, StepError>(json!({ "registered": a.app }))
        })
}

/// `app.deploy`: upload the app (and `nodes/<node>.nix`) to each node, deploy its secrets, rebuild.
pub fn deploy() -> Workflow {
    let w = app_workflow("app.deploy", "Upload app_modules/<app> and nodes/<node>.nix to each node, deploy the secrets they reference, rebuild. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"app\"}}")
        .planner(|input| {
            let (i, _) = parse(input, true)?;
            let mut steps = Vec::new();
            located(&i, Mode::Update, &mut steps);
            Ok(Plan::new(steps))
        });
    init_steps(w)
}

/// `app.remove`: the app's instances leave the registry, and each node is
/// rebuilt without it (its folder and the secrets only it used are removed).
pub fn remove() -> Workflow {
    let w = app_workflow("app.remove", "Unregister the app's instance on each node, then upload the node's configuration without the app, prune its secrets, rebuild. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"app\",\"kind\"}}")
        .planner(|input| {
            let (i, _) = parse(input, true)?;
            let mut steps = Vec::new();
            located(&i, Mode::Update, &mut steps);
            for n in &i.nodes {
                let config = format!("config/{}", n.name);
                let drop = format!("uninstance/{}", n.name);
                steps.push(StepSpec::new(drop.clone(), "uninstance").after("ctrl").params(json!({ "node": n.name })).retry(lifecycle_retry()));
                for s in steps.iter_mut().filter(|s| s.name == config) {
                    s.deps.push(drop.clone());
                }
            }
            Ok(Plan::new(steps))
        })
        .step("uninstance", uninstance);
    init_steps(w)
}

/// `app.register_instance`: the app runs on each node, at its overlay address.
pub fn register_instance() -> Workflow {
    app_workflow("app.register_instance", "Register an instance of the app on each node (at the node's overlay address). Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"app\",\"kind\",\"port\"}}")
        .planner(|input| {
            let (i, _) = parse(input, true)?;
            Ok(Plan::new(per_node(&i, "instance", true)))
        })
        .step("instance", |ctx| async move {
            let (i, a, kind) = args(&ctx)?;
            let node = node_param(&ctx)?;
            let public = address(&ctx)?;
            let reg = registry(&ctx, &i).await?;
            let port = match a.port {
                Some(p) => p,
                None => reg.apps(kind).await.map_err(StepError::retryable)?
                    .get(&a.app).and_then(|e| e.meta.as_ref()).map(|m| m.publish.port)
                    .ok_or_else(|| StepError::permanent(format!("app {} is not registered (run app.register first) and no port was given", a.app)))?,
            };
            let ipv4 = reg.overlay_ip(&public).await.map_err(StepError::retryable)?.unwrap_or(public);
            reg.register_instance(kind, &a.app, &Instance { node: node.clone(), ipv4: ipv4.clone(), port })
                .await
                .map_err(StepError::retryable)?;
            ctx.log.info(format!("{} on {node} at {ipv4}:{port}", a.app));
            Ok::<_, StepError>(json!({ "ipv4": ipv4, "port": port }))
        })
}

async fn uninstance(ctx: StepContext) -> Result<Value, StepError> {
    let (i, a, kind) = args(&ctx)?;
    let node = node_param(&ctx)?;
    registry(&ctx, &i)
        .await?
        .unregister_instance(kind, &a.app, &node)
        .await
        .map_err(StepError::retryable)?;
    ctx.log.info(format!("{} no longer on {node}", a.app));
    Ok(json!({ "unregistered": node }))
}

/// `app.unregister_instance`: the app's instance on each node leaves the registry.
pub fn unregister_instance() -> Workflow {
    app_workflow("app.unregister_instance", "Remove the app's instance on each node from the registry. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"app\",\"kind\"}}")
        .planner(|input| {
            let (i, _) = parse(input, true)?;
            Ok(Plan::new(per_node(&i, "uninstance", false)))
        })
        .step("uninstance", uninstance)
}

/// `app.unregister`: the app's meta_data and every instance leave the registry.
pub fn unregister() -> Workflow {
    app_workflow("app.unregister", "Remove the app from the registry: its meta_data and every instance. Input: {\"cluster\",\"dir\",\"nodes\":[],\"args\":{\"app\",\"kind\"}}")
        .planner(|input| {
            parse(input, false)?;
            Ok(Plan::new(vec![
                StepSpec::new("ctrl", "ctrl").retry(lifecycle_retry()),
                StepSpec::new("forget", "forget").after("ctrl").retry(lifecycle_retry()),
            ]))
        })
        .step("forget", |ctx| async move {
            let (i, a, kind) = args(&ctx)?;
            registry(&ctx, &i).await?.unregister_app(kind, &a.app).await.map_err(StepError::retryable)?;
            ctx.log.info(format!("unregistered {}", a.app));
            Ok::<_, StepError>(json!({ "unregistered": a.app }))
        })
}
