//! Membership in the registry: `register/<node>` joins `/cluster/nodes`,
//! `unregister/<node>` leaves it and gives back the node's overlay lease.

use super::access::{connect, ctrl_endpoints, registry};
use super::{NodeParams, NodesInput, address};
use engine::{Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use tasks::registry::NodeEntry;

/// `register/<node>`: the node joins `/cluster/nodes`.
pub struct Register;

/// The service groups a node registered with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    /// The groups.
    pub registered: Vec<String>,
}

impl Step for Register {
    const KIND: &'static str = "register";
    type Params = NodeParams;
    type Output = Registered;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Registered, StepError> {
        let i: NodesInput = ctx.input()?;
        let node = p.node;
        let entry = NodeEntry {
            name: node.to_string(),
            ipv4: address(&ctx)?,
            services: i.node(node.as_str())?.service_groups(),
        };
        let reg = registry(&ctx, &i).await?;
        reg.register_node(&entry)
            .await
            .map_err(StepError::retryable)?;
        ctx.log.info(format!("registered {node}"));
        Ok(Registered {
            registered: entry.services,
        })
    }
}

/// `unregister/<node>`: the node leaves `/cluster/nodes` and gives back its overlay subnet.
/// With no control node left (or none yet), there is nothing to leave.
pub struct Unregister;

/// Whether a node left the registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unregistered {
    /// `false` when there was nothing to leave.
    pub unregistered: bool,
}

impl Step for Unregister {
    const KIND: &'static str = "unregister";
    type Params = NodeParams;
    type Output = Unregistered;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Unregistered, StepError> {
        let i: NodesInput = ctx.input()?;
        let node = p.node;
        let left = Unregistered {
            unregistered: false,
        };
        if i.nodes
            .iter()
            .any(|n| n.name == node && (n.is_ctrl() || n.is_fleet()))
        {
            return Ok(left);
        }
        let endpoints = ctrl_endpoints(&i).await?;
        if endpoints.is_empty() || !i.repo()?.has_ca() {
            ctx.log
                .info("no registry (no control node); nothing to unregister");
            return Ok(left);
        }
        let reg = connect(&i, &endpoints).await?;
        let known = reg.nodes().await.map_err(StepError::retryable)?;
        let mut ips: Vec<String> = known
            .iter()
            .filter(|n| n.name == node.as_str())
            .map(|n| n.ipv4.clone())
            .collect();
        if let Some(s) = i
            .servers()
            .await?
            .into_iter()
            .find(|s| s.node() == Some(node.as_str()))
        {
            ips.extend(s.ipv4);
        }
        reg.unregister_node(node.as_str())
            .await
            .map_err(StepError::retryable)?;
        for ip in ips {
            reg.release_subnet(&ip)
                .await
                .map_err(StepError::retryable)?;
        }
        ctx.log.info(format!("unregistered {node}"));
        Ok(Unregistered { unregistered: true })
    }
}
