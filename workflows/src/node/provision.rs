//! `node.provision` (create or adopt a server per node, install NixOS over
//! its stock image, reboot into it, verify; the last three are in
//! [`super::install`]) and `node.destroy` (unregister, delete, revoke, forget).
//!
//! Every step is idempotent: a server found by its labels is adopted, a node
//! that already runs NixOS is not infected again, deleting what is gone succeeds.

use super::install::{Install, Reboot, Verify};
use super::kinds::{Server, Unregister};
use super::{
    NodeParams, NodesInput, node_resources, node_step, node_step_with, parse_input, provider_error,
    single, step_name,
};
use engine::{Plan, RetryPolicy, Step, StepContext, StepError, Workflow};
use serde::{Deserialize, Serialize};
use tasks::provider::ServerSpec;

/// Adds the provisioning steps of every node: `prepare`, then `create/<n>`,
/// `install/<n>`, `reboot/<n>`, `verify/<n>`. A node is provisioned once
/// `verify/<n>` is done.
pub(crate) fn plan_provision(i: &NodesInput, steps: &mut Vec<engine::StepSpec>) {
    steps.push(single::<Prepare>());
    for n in &i.nodes {
        let p = NodeParams {
            node: n.name.clone(),
            role: Some(n.role),
        };
        let create = step_name::<Create>(&n.name);
        steps.push(node_step_with::<Create>(p.clone()).after(Prepare::KIND));
        let install = step_name::<Install>(&n.name);
        steps.push(node_step_with::<Install>(p.clone()).after(create.clone()));
        steps.push(
            node_step_with::<Reboot>(p.clone())
                .after(install.clone())
                .after(create.clone()),
        );
        steps.push(
            node_step_with::<Verify>(p)
                .after(install)
                .after(step_name::<Reboot>(&n.name))
                .after(create),
        );
    }
}

/// Registers the provisioning step kinds on `w`.
pub(crate) fn provision_steps(w: Workflow) -> Workflow {
    w.with::<Prepare>()
        .with::<Create>()
        .with::<Install>()
        .with::<Reboot>()
        .with::<Verify>()
}

/// `prepare`: the cluster's SSH key and placement group exist at the provider.
pub struct Prepare;

/// What every server of the cluster is created with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    /// The provider's name of the cluster's SSH key.
    pub key_name: String,
    /// The spread placement group's id.
    pub placement_group: Option<i64>,
}

impl Step for Prepare {
    const KIND: &'static str = "prepare";
    type Params = ();
    type Output = Prepared;

    async fn run(ctx: StepContext, _: ()) -> Result<Prepared, StepError> {
        let i: NodesInput = ctx.input()?;
        let p = i.provider()?;
        let cluster_key = i.repo()?.ssh_key();
        let public = cluster_key.public_key().map_err(StepError::permanent)?;
        let key = p
            .ensure_ssh_key(&cluster_key.provider_name, &public)
            .await
            .map_err(provider_error)?;
        let group = i
            .placement_group
            .clone()
            .unwrap_or_else(|| format!("{}-spread", i.cluster));
        let pg = p
            .ensure_placement_group(&group)
            .await
            .map_err(provider_error)?;
        ctx.log.info(format!(
            "ssh key {}, placement group {group} ({pg})",
            key.name
        ));
        Ok(Prepared {
            key_name: key.name,
            placement_group: Some(pg),
        })
    }
}

/// `create/<node>`: the node's server, created or adopted (found by its labels).
pub struct Create;

impl Step for Create {
    const KIND: &'static str = "create";
    type Params = NodeParams;
    type Output = Server;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Server, StepError> {
        let i: NodesInput = ctx.input()?;
        let node = p.node;
        let role = i.node(node.as_str())?.role;
        let prep = ctx.output::<Prepare>(Prepare::KIND)?;
        let spec = ServerSpec {
            cluster: i.cluster.clone(),
            node: node.to_string(),
            role: role.to_string(),
            server_type: i.server_type.clone(),
            image: i.image.clone(),
            location: i.location.clone(),
            ssh_key: prep.key_name,
            placement_group: prep.placement_group,
            user_data: None,
        };
        let s = i
            .provider()?
            .create_server(&spec)
            .await
            .map_err(provider_error)?;
        ctx.log.info(format!(
            "server {} ({}) at {}",
            s.name,
            s.id,
            s.ipv4.clone().unwrap_or_default()
        ));
        Ok(Server::of(node, role, s))
    }
}

/// The description `nix-infra workflows` shows for [`provision`].
const PROVISION_ABOUT: &str = "Create (or adopt) a server per node, wait for SSH, install NixOS \
    (nixos-infect, fetched and checked on the node), reboot into it, verify. Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\",\"role\"}]}";

/// The `node.provision` workflow.
pub fn provision() -> Workflow {
    let w = Workflow::new("node.provision", 1)
        .about(PROVISION_ABOUT)
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            let mut steps = Vec::new();
            plan_provision(&i, &mut steps);
            Ok(Plan::new(steps))
        });
    provision_steps(w)
}

/// The description `nix-infra workflows` shows for [`destroy`].
const DESTROY_ABOUT: &str = "Unregister, delete the server, revoke the certificates and forget \
    the host key of each node. Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\"}]}";

/// The `node.destroy` workflow: unregister → delete the server → revoke its
/// certificates → forget its host key. Control nodes are deleted only after
/// every other node of the run has left the registry they hold.
pub fn destroy() -> Workflow {
    Workflow::new("node.destroy", 1)
        .about(DESTROY_ABOUT)
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            let mut steps = Vec::new();
            let members: Vec<String> = i
                .nodes
                .iter()
                .filter(|n| !n.is_ctrl())
                .map(|n| step_name::<Unregister>(&n.name))
                .collect();
            for n in &i.nodes {
                let node = &n.name;
                let unregister = step_name::<Unregister>(node);
                steps.push(node_step::<Unregister>(node));
                let mut delete = node_step::<Delete>(node).after(unregister.clone());
                if n.is_ctrl() {
                    for m in &members {
                        delete = delete.after(m.clone());
                    }
                }
                steps.push(delete);
                let deleted = step_name::<Delete>(node);
                steps.push(
                    node_step::<Revoke>(node)
                        .after(deleted.clone())
                        .retry(RetryPolicy::default()),
                );
                steps.push(
                    node_step::<Forget>(node)
                        .after(deleted)
                        .retry(RetryPolicy::default()),
                );
            }
            Ok(Plan::new(steps))
        })
        .with::<Unregister>()
        .with::<Delete>()
        .with::<Revoke>()
        .with::<Forget>()
}

/// `delete/<node>`: the node's server is gone.
pub struct Delete;

/// What `delete/<node>` deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    /// The deleted server's address (none if there was no server).
    pub ipv4: Option<String>,
}

impl Step for Delete {
    const KIND: &'static str = "delete";
    type Params = NodeParams;
    type Output = Deleted;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Deleted, StepError> {
        let i: NodesInput = ctx.input()?;
        let node = p.node;
        let provider = i.provider()?;
        super::CONNECTIONS.forget(node.as_str()).await;
        // A master a `cmd` kept for the node would outlive its server.
        super::kept_connections(&i.dir).close(node.as_str()).await;
        let found = provider
            .list_servers(&i.cluster)
            .await
            .map_err(provider_error)?;
        let mut ipv4 = None;
        for s in found
            .into_iter()
            .filter(|s| s.node() == Some(node.as_str()))
        {
            provider.delete_server(s.id).await.map_err(provider_error)?;
            ctx.log
                .info(format!("deleted server {} ({})", s.name, s.id));
            ipv4 = s.ipv4;
        }
        Ok(Deleted { ipv4 })
    }
}

/// `revoke/<node>`: the node's certificates are revoked.
pub struct Revoke;

/// How many certificates `revoke/<node>` revoked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revoked {
    /// The count.
    pub revoked: usize,
}

impl Step for Revoke {
    const KIND: &'static str = "revoke";
    type Params = NodeParams;
    type Output = Revoked;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Revoked, StepError> {
        let i: NodesInput = ctx.input()?;
        if !i.repo()?.has_ca() {
            return Ok(Revoked { revoked: 0 });
        }
        let ca = super::access::load_ca(&i)?;
        let n = ca
            .revoke_node(p.node.as_str())
            .map_err(StepError::retryable)?;
        ctx.log.info(format!("revoked {n} certificate(s)"));
        Ok(Revoked { revoked: n })
    }
}

/// `forget/<node>`: the deleted server's host key leaves `ssh/known_hosts`.
pub struct Forget;

/// Nothing: `forget/<node>` returns `{}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Forgotten {}

impl Step for Forget {
    const KIND: &'static str = "forget";
    type Params = NodeParams;
    type Output = Forgotten;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Forgotten, StepError> {
        let i: NodesInput = ctx.input()?;
        let deleted = ctx.output::<Delete>(&step_name::<Delete>(&p.node))?;
        let known = i.dir.join("ssh/known_hosts");
        if let (Some(ip), true) = (deleted.ipv4, known.exists()) {
            let out = std::process::Command::new("ssh-keygen")
                .arg("-R")
                .arg(&ip)
                .arg("-f")
                .arg(&known)
                .output()
                .map_err(StepError::permanent)?;
            if !out.status.success() {
                return Err(StepError::permanent(String::from_utf8_lossy(&out.stderr)));
            }
            let _ = std::fs::remove_file(known.with_extension("old"));
            ctx.log.info(format!("forgot the host key of {ip}"));
        }
        Ok(Forgotten {})
    }
}

/// The description `nix-infra workflows` shows for [`adopt`].
const ADOPT_ABOUT: &str = "Label existing servers, found by name, as this cluster's nodes (their \
    other labels stay). Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\",\"role\"}]}";

/// The `node.adopt` workflow: servers made by another tool (the Dart
/// nix-infra, the console) are labelled as this cluster's nodes, by name.
pub fn adopt() -> Workflow {
    Workflow::new("node.adopt", 1)
        .about(ADOPT_ABOUT)
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            Ok(Plan::new(
                i.nodes
                    .iter()
                    .map(|n| node_step::<Adopt>(&n.name))
                    .collect(),
            ))
        })
        .with::<Adopt>()
}

/// `adopt/<node>`: the server named after the node is labelled as it.
pub struct Adopt;

impl Step for Adopt {
    const KIND: &'static str = "adopt";
    type Params = NodeParams;
    type Output = Server;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Server, StepError> {
        let i: NodesInput = ctx.input()?;
        let node = p.node;
        let role = i.node(node.as_str())?.role;
        let s = i
            .provider()?
            .adopt_server(&i.cluster, node.as_str(), role.as_str())
            .await
            .map_err(provider_error)?;
        ctx.log.info(format!(
            "server {} ({}) is {node} ({role}) of {}",
            s.name, s.id, i.cluster
        ));
        Ok(Server::of(node, role, s))
    }
}

/// `relabel/<node>`: the node's server is labelled with the node's role.
pub struct Relabel;

impl Step for Relabel {
    const KIND: &'static str = "relabel";
    type Params = NodeParams;
    type Output = Server;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Server, StepError> {
        let i: NodesInput = ctx.input()?;
        let node = p.node;
        let role = i.node(node.as_str())?.role;
        let s = i
            .provider()?
            .set_role(&i.cluster, node.as_str(), role.as_str())
            .await
            .map_err(provider_error)?;
        ctx.log
            .info(format!("server {} ({}) is a {role} node", s.name, s.id));
        Ok(Server::of(node, role, s))
    }
}
