//! `cluster.up`: provision every node → init the control nodes → init the
//! rest → register, in one durable run. A failing node blocks only its own
//! later steps (and, for a control node, the steps that need etcd); the run
//! then ends failed and its summary names the node and step.

use super::init::{Mode, Start, init_steps, plan_init};
use super::kinds::{Create, Verify};
use super::provision::{plan_provision, provision_steps};
use super::{node_resources, parse_input, step_name};
use engine::{Plan, Workflow};

/// The description `nix-infra workflows` shows for [`up`].
const UP_ABOUT: &str = "Provision every node, initialise the control nodes, then the others, and \
    register them. Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\",\"role\"}]}";

/// The `cluster.up` workflow.
pub fn up() -> Workflow {
    let w = Workflow::new("cluster.up", 1)
        .about(UP_ABOUT)
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            let mut steps = Vec::new();
            plan_provision(&i, &mut steps);
            let start = Start {
                addr: &|n| step_name::<Create>(n),
                ready: &|n| vec![step_name::<Verify>(n)],
            };
            plan_init(&i, Mode::Init, &start, &mut steps);
            Ok(Plan::new(steps))
        });
    init_steps(provision_steps(w))
}
