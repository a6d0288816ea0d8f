//! App lifecycles in the seed's etcd data model:
//! `app.register` (meta_data) → `app.deploy` (upload and rebuild the nodes
//! that run it) → `app.register_instance` → `app.unregister_instance` →
//! `app.remove` (off the nodes) → `app.unregister` (meta_data and every instance).
//!
//! Input: the usual node input with `args: {"app","kind","port","env_prefix","env"}`;
//! `nodes` may be empty for `app.register` and `app.unregister`.

use super::access::registry;
use super::init::{Mode, init_steps, located};
use super::kinds::{Config, Ctrl, Locate};
use super::{
    NodeParams, NodesInput, address, decode_input, node_resources, node_step, single, step_name,
};
use crate::domain::NodeName;
use engine::{Plan, PlanError, Step, StepContext, StepError, StepSpec, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use tasks::registry::{AppKind, AppMeta, Instance as AppInstance, Publish};

/// `args` of every app workflow.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppArgs {
    /// The app (its folder under `app_modules/`).
    pub app: String,
    /// `service`, `backend` or `frontend`.
    #[serde(default = "backend")]
    pub kind: String,
    /// The port it publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Prefix of the variables other apps get for it (default: the app's name, upper case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_prefix: Option<String>,
    /// Extra environment in its meta_data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
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
    let i = decode_input(input).map_err(PlanError::Input)?;
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
        .with::<Ctrl>()
        .with::<Locate>()
}

/// `ctrl` (and `locate`), then a step of kind `S` per node.
fn per_node<S: Step<Params = NodeParams>>(i: &NodesInput, after_locate: bool) -> Vec<StepSpec> {
    let mut steps = vec![single::<Ctrl>()];
    if after_locate {
        steps.push(single::<Locate>());
    }
    for n in &i.nodes {
        let mut s = node_step::<S>(&n.name).after(Ctrl::KIND);
        if after_locate {
            s = s.after(Locate::KIND);
        }
        steps.push(s);
    }
    steps
}

/// `meta`: the app's meta_data in the registry.
pub struct Meta;

/// The app a step registered or unregistered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppRegistered {
    /// The app.
    pub registered: String,
}

impl Step for Meta {
    const KIND: &'static str = "meta";
    type Params = ();
    type Output = AppRegistered;

    async fn run(ctx: StepContext, _: ()) -> Result<AppRegistered, StepError> {
        let (i, a, kind) = args(&ctx)?;
        let meta = AppMeta {
            publish: Publish { port: a.port },
            env_prefix: a
                .env_prefix
                .clone()
                .unwrap_or_else(|| a.app.to_uppercase().replace('-', "_")),
            env: a
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().into()))
                .collect(),
        };
        registry(&ctx, &i)
            .await?
            .register_app(kind, &a.app, &meta)
            .await
            .map_err(StepError::retryable)?;
        ctx.log.info(format!("registered {} {}", a.kind, a.app));
        Ok(AppRegistered { registered: a.app })
    }
}

/// The description `nix-infra workflows` shows for [`register`].
const REGISTER_ABOUT: &str = "Register an app's meta_data (publish port, env prefix, env). Input: \
    {\"cluster\",\"dir\",\"nodes\":[],\"args\":{\"app\",\"kind\",\"port\",\"env_prefix\",\"env\"}}";

/// `app.register`: the app's meta_data.
pub fn register() -> Workflow {
    app_workflow("app.register", REGISTER_ABOUT)
        .planner(|input| {
            let (_, a) = parse(input, false)?;
            if a.port.is_none() {
                return Err(PlanError::Input(
                    "args.port: an app publishes a port".into(),
                ));
            }
            Ok(Plan::new(vec![
                single::<Ctrl>(),
                single::<Meta>().after(Ctrl::KIND),
            ]))
        })
        .with::<Meta>()
}

/// The description `nix-infra workflows` shows for [`deploy`].
const DEPLOY_ABOUT: &str = "Upload app_modules/<app> and nodes/<node>.nix to each node, deploy \
    the secrets they reference, rebuild. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"app\"}}";

/// `app.deploy`: upload the app (and `nodes/<node>.nix`) to each node, deploy its secrets, rebuild.
pub fn deploy() -> Workflow {
    let w = app_workflow("app.deploy", DEPLOY_ABOUT).planner(|input| {
        let (i, _) = parse(input, true)?;
        let mut steps = Vec::new();
        located(&i, Mode::Update, &mut steps);
        Ok(Plan::new(steps))
    });
    init_steps(w)
}

/// The description `nix-infra workflows` shows for [`remove`].
const REMOVE_ABOUT: &str = "Unregister the app's instance on each node, then upload the node's \
    configuration without the app, prune its secrets, rebuild. Input: \
    {\"cluster\",\"dir\",\"nodes\",\"args\":{\"app\",\"kind\"}}";

/// `app.remove`: the app's instances leave the registry, and each node is
/// rebuilt without it (its folder and the secrets only it used are removed).
pub fn remove() -> Workflow {
    let w = app_workflow("app.remove", REMOVE_ABOUT)
        .planner(|input| {
            let (i, _) = parse(input, true)?;
            let mut steps = Vec::new();
            located(&i, Mode::Update, &mut steps);
            for n in &i.nodes {
                let config = step_name::<Config>(&n.name);
                let drop = node_step::<Uninstance>(&n.name).after(Ctrl::KIND);
                for s in steps.iter_mut().filter(|s| s.name == config) {
                    s.deps.push(drop.name.clone());
                }
                steps.push(drop);
            }
            Ok(Plan::new(steps))
        })
        .with::<Uninstance>();
    init_steps(w)
}

/// `instance/<node>`: the app runs on the node, at its overlay address.
pub struct Instance;

/// Where an instance was registered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instanced {
    /// Its address: the node's overlay address (its public one off the overlay).
    pub ipv4: String,
    /// Its port.
    pub port: u16,
}

impl Step for Instance {
    const KIND: &'static str = "instance";
    type Params = NodeParams;
    type Output = Instanced;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Instanced, StepError> {
        let (i, a, kind) = args(&ctx)?;
        let node = p.node;
        let public = address(&ctx)?;
        let reg = registry(&ctx, &i).await?;
        let port = match a.port {
            Some(p) => p,
            None => registered_port(&reg, kind, &a.app).await?,
        };
        let ipv4 = reg
            .overlay_ip(&public)
            .await
            .map_err(StepError::retryable)?
            .unwrap_or(public);
        let instance = AppInstance {
            node: node.to_string(),
            ipv4: ipv4.clone(),
            port: Some(port),
        };
        reg.register_instance(kind, &a.app, &instance)
            .await
            .map_err(StepError::retryable)?;
        ctx.log
            .info(format!("{} on {node} at {ipv4}:{port}", a.app));
        Ok(Instanced { ipv4, port })
    }
}

/// The port app `app`'s meta_data publishes, for an instance registered without one.
async fn registered_port(
    reg: &tasks::registry::Registry,
    kind: AppKind,
    app: &str,
) -> Result<u16, StepError> {
    let apps = reg.apps(kind).await.map_err(StepError::retryable)?;
    match apps.get(app).and_then(|e| e.meta.as_ref()) {
        Some(m) => m.publish.port.ok_or_else(|| {
            StepError::permanent(format!(
                "app {app} is registered without a port (publish.port is null) and no port was given"
            ))
        }),
        None => Err(StepError::permanent(format!(
            "app {app} is not registered (run app.register first) and no port was given"
        ))),
    }
}

/// The description `nix-infra workflows` shows for [`register_instance`].
const REGISTER_INSTANCE_ABOUT: &str = "Register an instance of the app on each node (at the \
    node's overlay address). Input: \
    {\"cluster\",\"dir\",\"nodes\",\"args\":{\"app\",\"kind\",\"port\"}}";

/// `app.register_instance`: the app runs on each node, at its overlay address.
pub fn register_instance() -> Workflow {
    app_workflow("app.register_instance", REGISTER_INSTANCE_ABOUT)
        .planner(|input| {
            let (i, _) = parse(input, true)?;
            Ok(Plan::new(per_node::<Instance>(&i, true)))
        })
        .with::<Instance>()
}

/// `uninstance/<node>`: the app's instance on the node leaves the registry.
pub struct Uninstance;

/// The node whose instance left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Uninstanced {
    /// The node.
    pub unregistered: NodeName,
}

impl Step for Uninstance {
    const KIND: &'static str = "uninstance";
    type Params = NodeParams;
    type Output = Uninstanced;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Uninstanced, StepError> {
        let (i, a, kind) = args(&ctx)?;
        let node = p.node;
        registry(&ctx, &i)
            .await?
            .unregister_instance(kind, &a.app, node.as_str())
            .await
            .map_err(StepError::retryable)?;
        ctx.log.info(format!("{} no longer on {node}", a.app));
        Ok(Uninstanced { unregistered: node })
    }
}

/// The description `nix-infra workflows` shows for [`unregister_instance`].
const UNREGISTER_INSTANCE_ABOUT: &str = "Remove the app's instance on each node from the \
    registry. Input: {\"cluster\",\"dir\",\"nodes\",\"args\":{\"app\",\"kind\"}}";

/// `app.unregister_instance`: the app's instance on each node leaves the registry.
pub fn unregister_instance() -> Workflow {
    app_workflow("app.unregister_instance", UNREGISTER_INSTANCE_ABOUT)
        .planner(|input| {
            let (i, _) = parse(input, true)?;
            Ok(Plan::new(per_node::<Uninstance>(&i, false)))
        })
        .with::<Uninstance>()
}

/// `forget`: the app's meta_data and every instance leave the registry.
pub struct Forget;

/// The app that left the registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppUnregistered {
    /// The app.
    pub unregistered: String,
}

impl Step for Forget {
    const KIND: &'static str = "forget";
    type Params = ();
    type Output = AppUnregistered;

    async fn run(ctx: StepContext, _: ()) -> Result<AppUnregistered, StepError> {
        let (i, a, kind) = args(&ctx)?;
        registry(&ctx, &i)
            .await?
            .unregister_app(kind, &a.app)
            .await
            .map_err(StepError::retryable)?;
        ctx.log.info(format!("unregistered {}", a.app));
        Ok(AppUnregistered {
            unregistered: a.app,
        })
    }
}

/// The description `nix-infra workflows` shows for [`unregister`].
const UNREGISTER_ABOUT: &str = "Remove the app from the registry: its meta_data and every \
    instance. Input: {\"cluster\",\"dir\",\"nodes\":[],\"args\":{\"app\",\"kind\"}}";

/// `app.unregister`: the app's meta_data and every instance leave the registry.
pub fn unregister() -> Workflow {
    app_workflow("app.unregister", UNREGISTER_ABOUT)
        .planner(|input| {
            parse(input, false)?;
            Ok(Plan::new(vec![
                single::<Ctrl>(),
                single::<Forget>().after(Ctrl::KIND),
            ]))
        })
        .with::<Forget>()
}
