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
//! The overlay subnet is reserved before the first render, so a node's own
//! overlay address is in its configuration on the first deploy.

use super::{NodesInput, lifecycle_retry, node_resources, node_step, parse_input, steps};
use engine::{Plan, StepSpec, Workflow};
use serde_json::json;

/// What an init-like plan does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Everything: certificates, overlay, config, secrets, rebuild, register.
    Init,
    /// Re-render, redeploy secrets, rebuild, restart confd; no certificates, no registering.
    Update,
}

/// Adds the init (or update) steps of every node. `addr(node)` names the step
/// whose output holds the node's address; `ready(node)` the steps that must be
/// done before its first step.
pub(crate) fn plan_init(
    i: &NodesInput,
    mode: Mode,
    addr: &dyn Fn(&str) -> String,
    ready: &dyn Fn(&str) -> Vec<String>,
    steps: &mut Vec<StepSpec>,
) {
    let retry = lifecycle_retry();
    let mut ctrl_done = Vec::new();
    let spec = |name: String, kind: &str, node: &str| {
        let mut s = StepSpec::new(name, kind)
            .after(addr(node))
            .params(json!({ "node": node }))
            .retry(retry.clone());
        for r in ready(node) {
            s = s.after(r);
        }
        s
    };
    let s = |stage: &str, node: &str| format!("{stage}/{node}");
    let members: Vec<&str> = i
        .nodes
        .iter()
        .filter(|n| n.is_ctrl())
        .map(|n| n.name.as_str())
        .collect();
    for n in i.nodes.iter().filter(|n| n.is_ctrl()) {
        let node = n.name.as_str();
        let mut config = spec(s("config", node), "config", node);
        // etcd's initial cluster lists every control node: all must have servers first.
        for other in members.iter().filter(|m| **m != node) {
            config = config.after(addr(other));
        }
        if mode == Mode::Init {
            steps.push(spec(s("certs", node), "certs", node));
            config = config.after(s("certs", node));
        }
        steps.push(config);
        steps.push(spec(s("rebuild", node), "rebuild", node).after(s("config", node)));
        steps.push(spec(s("etcd", node), "etcd", node).after(s("rebuild", node)));
        ctrl_done.push(s("etcd", node));
    }
    // Fleet nodes: no control plane, no overlay; configuration, secrets, rebuild.
    for n in i.nodes.iter().filter(|n| n.is_fleet()) {
        let node = n.name.as_str();
        steps.push(spec(s("config", node), "config", node));
        steps.push(spec(s("secrets", node), "secrets", node).after(s("config", node)));
        steps.push(spec(s("rebuild", node), "rebuild", node).after(s("secrets", node)));
    }
    if i.nodes.iter().all(|n| n.is_ctrl() || n.is_fleet()) {
        return;
    }
    let mut ctrl = StepSpec::new("ctrl", "ctrl").retry(retry.clone());
    for d in ctrl_done {
        ctrl = ctrl.after(d);
    }
    steps.push(ctrl);
    for n in i.nodes.iter().filter(|n| !n.is_ctrl() && !n.is_fleet()) {
        let node = n.name.as_str();
        steps.push(spec(s("overlay", node), "overlay", node).after("ctrl"));
        let mut config = spec(s("config", node), "config", node)
            .after("ctrl")
            .after(s("overlay", node));
        if mode == Mode::Init {
            steps.push(spec(s("certs", node), "certs", node));
            config = config.after(s("certs", node));
        }
        steps.push(config);
        steps.push(spec(s("secrets", node), "secrets", node).after(s("config", node)));
        steps.push(spec(s("rebuild", node), "rebuild", node).after(s("secrets", node)));
        steps.push(spec(s("confd", node), "confd", node).after(s("rebuild", node)));
        if mode == Mode::Init {
            steps.push(
                spec(s("register", node), "register", node)
                    .after(s("confd", node))
                    .after("ctrl"),
            );
        }
    }
}

/// Registers the init step kinds on `w`.
pub(crate) fn init_steps(w: Workflow) -> Workflow {
    w.step("certs", steps::certs)
        .step("ctrl", steps::ctrl)
        .step("overlay", steps::overlay)
        .step("config", steps::config)
        .step("secrets", steps::secrets)
        .step("rebuild", steps::rebuild)
        .step("etcd", steps::etcd)
        .step("confd", steps::confd)
        .step("register", steps::register)
}

/// One `locate` step, then the plan: for nodes that already exist.
pub(crate) fn located(i: &NodesInput, mode: Mode, steps: &mut Vec<StepSpec>) {
    steps.push(StepSpec::new("locate", "locate").retry(lifecycle_retry()));
    plan_init(i, mode, &|_| "locate".to_string(), &|_| Vec::new(), steps);
}

/// The `node.init` workflow: a provisioned node becomes a control node (etcd)
/// or a cluster/ingress node (overlay, confd, registered).
pub fn init() -> Workflow {
    let w = Workflow::new("node.init", 1)
        .about("Initialise provisioned nodes by type: ctrl (certificates, etcd) or cluster/ingress (certificates, overlay, configuration, secrets, rebuild, confd, register). Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\",\"role\"}]}")
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            let mut steps = Vec::new();
            located(&i, Mode::Init, &mut steps);
            Ok(Plan::new(steps))
        })
        .step("locate", steps::locate);
    init_steps(w)
}

/// The `node.update` workflow (update-node, deploy-apps): re-render and upload
/// `/etc/nixos` (node type, `nodes/<node>.nix`, `modules/`, `app_modules/`),
/// deploy the secrets it references, rebuild, restart confd.
pub fn update() -> Workflow {
    let w = Workflow::new("node.update", 1)
        .about("Re-render and upload each node's configuration and apps, deploy its secrets, rebuild, restart confd. Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\",\"role\"}]}")
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            let mut steps = Vec::new();
            located(&i, Mode::Update, &mut steps);
            Ok(Plan::new(steps))
        })
        .step("locate", steps::locate);
    init_steps(w)
}

/// The `node.unregister` workflow: nodes leave the registry and give back their overlay subnets.
pub fn unregister() -> Workflow {
    Workflow::new("node.unregister", 1)
        .about("Remove nodes from the registry (/cluster/nodes) and release their overlay subnets. Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\"}]}")
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            Ok(Plan::new(
                i.nodes.iter().map(|n| node_step("unregister", &n.name)).collect(),
            ))
        })
        .step("unregister", steps::unregister)
}
