//! `node.init`, `node.update` and `node.unregister`: plans over [`super::steps`].
//!
//! Per node, by type:
//! ```text
//! ctrl:             certs → config → rebuild → etcd ─┐
//!                                                    ▼
//! cluster/ingress:  certs ─┬────────────────────►  ctrl (etcd answers, overlay configured)
//!                          │   overlay ◄─────────────┘
//!                          ▼     ▼
//!                          config → secrets → rebuild → confd → register
//! ```
//! The overlay subnets of every node of the run are reserved before the
//! first render, so a node's configuration holds its own overlay address,
//! and any other's, on the first deploy.

use super::kinds::{
    Certs, Confd, Config, Ctrl, Etcd, Locate, Overlay, Rebuild, Register, Secrets, Unregister,
};
use super::provision::Relabel;
use super::{
    NodeInput, NodeParams, NodesInput, node_resources, node_step, parse_input, single, step_name,
};
use crate::domain::NodeName;
use engine::{Plan, Step, StepSpec, Workflow};

/// What an init-like plan does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Everything: certificates, overlay, config, secrets, rebuild, register.
    Init,
    /// Re-render, redeploy secrets, rebuild, restart confd; no certificates, no registering.
    Update,
    /// [`Mode::Update`] without the rebuild (nor the confd restart after it): upload only.
    Upload,
}

impl Mode {
    /// Whether the plan rebuilds the nodes.
    fn rebuilds(self) -> bool {
        self != Mode::Upload
    }
}

/// `args` of `node.update`.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    /// Whether to rebuild after the upload (default: yes).
    #[serde(default = "yes")]
    pub rebuild: bool,
}

fn yes() -> bool {
    true
}

/// Where each node's plan starts: `addr(node)` names the step whose output
/// holds the node's address; `ready(node)` the steps that must be done
/// before its first step.
pub(crate) struct Start<'a> {
    pub(crate) addr: &'a dyn Fn(&NodeName) -> String,
    pub(crate) ready: &'a dyn Fn(&NodeName) -> Vec<String>,
}

impl Start<'_> {
    /// Node `node`'s step of kind `S`, after its address and readiness.
    fn step<S: Step<Params = NodeParams>>(&self, node: &NodeName) -> StepSpec {
        let mut s = node_step::<S>(node).after((self.addr)(node));
        for r in (self.ready)(node) {
            s = s.after(r);
        }
        s
    }
}

/// Adds the init (or update) steps of every node.
pub(crate) fn plan_init(i: &NodesInput, mode: Mode, start: &Start, steps: &mut Vec<StepSpec>) {
    let ctrl_done = plan_ctrl_nodes(i, mode, start, steps);
    // Fleet nodes: no control plane, no overlay; configuration, secrets, rebuild.
    for n in i.nodes.iter().filter(|n| n.is_fleet()) {
        let node = &n.name;
        steps.push(relabelled(start.step::<Config>(node), n));
        steps.push(start.step::<Secrets>(node).after(step_name::<Config>(node)));
        if mode.rebuilds() {
            steps.push(
                start
                    .step::<Rebuild>(node)
                    .after(step_name::<Secrets>(node)),
            );
        }
    }
    for n in i.nodes.iter().filter(|n| n.relabel) {
        steps.push(start.step::<Relabel>(&n.name));
    }
    if i.nodes.iter().all(|n| n.is_ctrl() || n.is_fleet()) {
        return;
    }
    let mut ctrl = single::<Ctrl>();
    for d in ctrl_done {
        ctrl = ctrl.after(d);
    }
    steps.push(ctrl);
    let overlay_nodes: Vec<&NodeName> = i
        .nodes
        .iter()
        .filter(|n| !n.is_ctrl() && !n.is_fleet())
        .map(|n| &n.name)
        .collect();
    for n in i.nodes.iter().filter(|n| !n.is_ctrl() && !n.is_fleet()) {
        let node = &n.name;
        steps.push(start.step::<Overlay>(node).after(Ctrl::KIND));
        let mut config = relabelled(start.step::<Config>(node).after(Ctrl::KIND), n);
        // Its own lease, and the leases of the nodes of the run its file
        // names (`[%%worker2.overlayIp%%]`, Dart layout): only those, so a
        // node that fails elsewhere blocks no other.
        for m in leases_named(i, node, &overlay_nodes) {
            config = config.after(step_name::<Overlay>(m));
        }
        if mode == Mode::Init {
            steps.push(start.step::<Certs>(node));
            config = config.after(step_name::<Certs>(node));
        }
        steps.push(config);
        steps.push(start.step::<Secrets>(node).after(step_name::<Config>(node)));
        if mode.rebuilds() {
            steps.push(
                start
                    .step::<Rebuild>(node)
                    .after(step_name::<Secrets>(node)),
            );
            steps.push(start.step::<Confd>(node).after(step_name::<Rebuild>(node)));
        }
        if mode == Mode::Init {
            steps.push(
                start
                    .step::<Register>(node)
                    .after(step_name::<Confd>(node))
                    .after(Ctrl::KIND),
            );
        }
    }
}

/// The nodes of `nodes` whose overlay lease `node`'s configuration needs:
/// itself, and in the Dart layout those its `nodes/<node>.nix` names.
fn leases_named<'a>(
    i: &NodesInput,
    node: &'a NodeName,
    nodes: &[&'a NodeName],
) -> Vec<&'a NodeName> {
    let mut out = vec![node];
    if super::dart::is_dart_layout(&i.dir) {
        let file = i.nodes_dir().join(format!("{node}.nix"));
        let text = std::fs::read_to_string(file).unwrap_or_default();
        out.extend(
            nodes
                .iter()
                .copied()
                .filter(|m| *m != node && text.contains(&format!("[%%{m}.overlayIp%%]"))),
        );
    }
    out
}

/// Adds the control nodes' steps; returns the steps after which etcd answers.
fn plan_ctrl_nodes(
    i: &NodesInput,
    mode: Mode,
    start: &Start,
    steps: &mut Vec<StepSpec>,
) -> Vec<String> {
    let members: Vec<&NodeInput> = i.nodes.iter().filter(|n| n.is_ctrl()).collect();
    let mut ctrl_done = Vec::new();
    for n in &members {
        let node = &n.name;
        let mut config = start.step::<Config>(node);
        // etcd's initial cluster lists every control node: all must have
        // servers first, labelled as control nodes.
        for other in &members {
            if other.name != *node {
                config = config.after((start.addr)(&other.name));
            }
            config = relabelled(config, other);
        }
        if mode == Mode::Init {
            steps.push(start.step::<Certs>(node));
            config = config.after(step_name::<Certs>(node));
        }
        steps.push(config);
        if !mode.rebuilds() {
            continue;
        }
        steps.push(start.step::<Rebuild>(node).after(step_name::<Config>(node)));
        steps.push(start.step::<Etcd>(node).after(step_name::<Rebuild>(node)));
        ctrl_done.push(step_name::<Etcd>(node));
    }
    ctrl_done
}

/// `step`, after `relabel/<node>` when node `n` is labelled with its role first.
fn relabelled(step: StepSpec, n: &NodeInput) -> StepSpec {
    if n.relabel {
        step.after(step_name::<Relabel>(&n.name))
    } else {
        step
    }
}

/// Registers the init step kinds on `w`.
pub(crate) fn init_steps(w: Workflow) -> Workflow {
    w.with::<Certs>()
        .with::<Ctrl>()
        .with::<Overlay>()
        .with::<Config>()
        .with::<Secrets>()
        .with::<Rebuild>()
        .with::<Etcd>()
        .with::<Confd>()
        .with::<Register>()
        .with::<Relabel>()
}

/// One `locate` step, then the plan: for nodes that already exist.
pub(crate) fn located(i: &NodesInput, mode: Mode, steps: &mut Vec<StepSpec>) {
    steps.push(single::<Locate>());
    let start = Start {
        addr: &|_| Locate::KIND.to_string(),
        ready: &|_| Vec::new(),
    };
    plan_init(i, mode, &start, steps);
}

/// The description `nix-infra workflows` shows for [`init`].
const INIT_ABOUT: &str = "Initialise provisioned nodes by type: ctrl (certificates, etcd) or \
    cluster/ingress (certificates, overlay, configuration, secrets, rebuild, confd, register). \
    Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\",\"role\"}]}";

/// The `node.init` workflow: a provisioned node becomes a control node (etcd)
/// or a cluster/ingress node (overlay, confd, registered).
pub fn init() -> Workflow {
    let w = Workflow::new("node.init", 1)
        .about(INIT_ABOUT)
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            let mut steps = Vec::new();
            located(&i, Mode::Init, &mut steps);
            Ok(Plan::new(steps))
        })
        .with::<Locate>();
    init_steps(w)
}

/// The description `nix-infra workflows` shows for [`update`].
const UPDATE_ABOUT: &str = "Re-render and upload each node's configuration and apps, deploy its \
    secrets, rebuild, restart confd (`args.rebuild` false: upload only). \
    Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\",\"role\"}],\"args\":{\"rebuild\"}}";

/// The `node.update` workflow (update-node, deploy-apps): re-render and upload
/// `/etc/nixos` (node type, `nodes/<node>.nix`, `modules/`, `app_modules/`),
/// deploy the secrets it references, rebuild, restart confd.
pub fn update() -> Workflow {
    let w = Workflow::new("node.update", 1)
        .about(UPDATE_ABOUT)
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            let mode = match i.args.is_null() {
                true => Mode::Update,
                false => match i.args::<UpdateArgs>() {
                    Ok(a) if a.rebuild => Mode::Update,
                    Ok(_) => Mode::Upload,
                    Err(e) => return Err(engine::PlanError::Input(e.message)),
                },
            };
            let mut steps = Vec::new();
            located(&i, mode, &mut steps);
            Ok(Plan::new(steps))
        })
        .with::<Locate>();
    init_steps(w)
}

/// The description `nix-infra workflows` shows for [`unregister`].
const UNREGISTER_ABOUT: &str = "Remove nodes from the registry (/cluster/nodes) and release their \
    overlay subnets. Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\"}]}";

/// The `node.unregister` workflow: nodes leave the registry and give back their overlay subnets.
pub fn unregister() -> Workflow {
    Workflow::new("node.unregister", 1)
        .about(UNREGISTER_ABOUT)
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            Ok(Plan::new(
                i.nodes
                    .iter()
                    .map(|n| node_step::<Unregister>(&n.name))
                    .collect(),
            ))
        })
        .with::<Unregister>()
}
