//! `node.provision` (create or adopt a server per node, wait for SSH, install
//! NixOS, verify) and `node.destroy` (unregister, delete, revoke, forget).
//!
//! Every step is idempotent: a server found by its labels is adopted, a node
//! that already runs NixOS is not infected again, deleting what is gone succeeds.

use super::{
    NodesInput, lifecycle_retry, node_param, node_resources, node_step, parse_input,
    provider_error, remote, ssh_error, steps,
};
use engine::{Plan, StepContext, StepError, StepSpec, Workflow};
use serde_json::{Value, json};
use tasks::provider::ServerSpec;

/// Adds the provisioning steps of every node: `prepare`, then `create/<n>`,
/// `install/<n>`, `verify/<n>`. A node is provisioned once `verify/<n>` is done.
pub(crate) fn plan_provision(i: &NodesInput, steps: &mut Vec<StepSpec>) {
    let retry = lifecycle_retry();
    steps.push(StepSpec::new("prepare", "prepare").retry(retry.clone()));
    for n in &i.nodes {
        let p = json!({ "node": n.name, "role": n.role });
        let s = |stage: &str| format!("{stage}/{}", n.name);
        steps.push(
            StepSpec::new(s("create"), "create")
                .after("prepare")
                .params(p.clone())
                .retry(retry.clone()),
        );
        steps.push(
            StepSpec::new(s("install"), "install")
                .after(s("create"))
                .params(p.clone())
                .retry(retry.clone()),
        );
        steps.push(
            StepSpec::new(s("verify"), "verify")
                .after(s("install"))
                .after(s("create"))
                .params(p)
                .retry(retry.clone()),
        );
    }
}

/// Registers the provisioning step kinds on `w`.
pub(crate) fn provision_steps(w: Workflow) -> Workflow {
    w.step("prepare", prepare)
        .step("create", create)
        .step("install", install)
        .step("verify", verify)
}

async fn prepare(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let p = i.provider()?;
    let public = std::fs::read_to_string(i.dir.join("keys/id_ed25519.pub")).map_err(|e| {
        StepError::permanent(format!("no cluster SSH key (run `nix-infra init`): {e}"))
    })?;
    let key = p
        .ensure_ssh_key(&format!("nix-infra-{}", i.cluster), &public)
        .await
        .map_err(provider_error)?;
    let pg = p
        .ensure_placement_group(&format!("{}-spread", i.cluster))
        .await
        .map_err(provider_error)?;
    ctx.log
        .info(format!("ssh key {}, placement group {pg}", key.name));
    Ok(json!({ "key_name": key.name, "placement_group": pg }))
}

async fn create(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let node = node_param(&ctx)?;
    let role = i.node(&node)?.role.clone();
    let prep = ctx.dep::<Value>("prepare")?;
    let spec = ServerSpec {
        cluster: i.cluster.clone(),
        node: node.clone(),
        role: role.clone(),
        server_type: i.server_type.clone(),
        image: i.image.clone(),
        location: i.location.clone(),
        ssh_key: prep["key_name"].as_str().unwrap_or_default().into(),
        placement_group: prep["placement_group"].as_i64(),
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
    Ok(json!({ "node": node, "role": role, "id": s.id, "ipv4": s.ipv4 }))
}

async fn install(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let r = remote(&ctx, &i).await?;
    // Idempotent: a node already on NixOS is left as it is.
    let already = r
        .run("nixos-version", None, &tasks::ssh::Discard, None)
        .await
        .is_ok();
    if already {
        ctx.log.info("already runs NixOS");
    } else {
        tasks::nixos::install(&r, &i.channel, &tasks::ssh::Discard)
            .await
            .map_err(ssh_error)?;
        ctx.log.info(format!("installed {}", i.channel));
    }
    Ok(json!({ "installed": !already }))
}

async fn verify(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let r = remote(&ctx, &i).await?;
    let version = tasks::nixos::verify(&r).await.map_err(ssh_error)?;
    ctx.log.info(format!("NixOS {version}"));
    Ok(json!({ "nixos_version": version }))
}

/// The `node.provision` workflow.
pub fn provision() -> Workflow {
    let w = Workflow::new("node.provision", 1)
        .about("Create (or adopt) a server per node, wait for SSH, install NixOS, verify. Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\",\"role\"}]}")
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            let mut steps = Vec::new();
            plan_provision(&i, &mut steps);
            Ok(Plan::new(steps))
        });
    provision_steps(w)
}

/// The `node.destroy` workflow: unregister → delete the server → revoke its
/// certificates → forget its host key. Control nodes are deleted only after
/// every other node of the run has left the registry they hold.
pub fn destroy() -> Workflow {
    Workflow::new("node.destroy", 1)
        .about("Unregister, delete the server, revoke the certificates and forget the host key of each node. Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\"}]}")
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            let retry = lifecycle_retry();
            let mut steps = Vec::new();
            let members: Vec<String> = i.nodes.iter().filter(|n| !n.is_ctrl()).map(|n| format!("unregister/{}", n.name)).collect();
            for n in &i.nodes {
                let p = json!({ "node": n.name });
                let s = |stage: &str| format!("{stage}/{}", n.name);
                steps.push(StepSpec::new(s("unregister"), "unregister").params(p.clone()).retry(retry.clone()));
                let mut delete = StepSpec::new(s("delete"), "delete").after(s("unregister")).params(p.clone()).retry(retry.clone());
                if n.is_ctrl() {
                    for m in &members {
                        delete = delete.after(m.clone());
                    }
                }
                steps.push(delete);
                steps.push(StepSpec::new(s("revoke"), "revoke").after(s("delete")).params(p.clone()));
                steps.push(StepSpec::new(s("forget"), "forget").after(s("delete")).params(p));
            }
            Ok(Plan::new(steps))
        })
        .step("unregister", steps::unregister)
        .step("delete", delete)
        .step("revoke", revoke)
        .step("forget", forget)
}

async fn delete(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let node = node_param(&ctx)?;
    let p = i.provider()?;
    super::CONNECTIONS.forget(&node).await;
    let found = p.list_servers(&i.cluster).await.map_err(provider_error)?;
    let mut ipv4 = None;
    for s in found
        .into_iter()
        .filter(|s| s.node() == Some(node.as_str()))
    {
        p.delete_server(s.id).await.map_err(provider_error)?;
        ctx.log
            .info(format!("deleted server {} ({})", s.name, s.id));
        ipv4 = s.ipv4;
    }
    Ok(json!({ "ipv4": ipv4 }))
}

async fn revoke(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let node = node_param(&ctx)?;
    if !i.dir.join("ca/root.pem").exists() {
        return Ok(json!({ "revoked": 0 }));
    }
    let ca = steps::load_ca(&i)?;
    let n = ca.revoke_node(&node).map_err(StepError::retryable)?;
    ctx.log.info(format!("revoked {n} certificate(s)"));
    Ok(json!({ "revoked": n }))
}

async fn forget(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let deleted: Value = ctx.deps.values().next().cloned().unwrap_or_default();
    let known = i.dir.join("ssh/known_hosts");
    if let (Some(ip), true) = (deleted["ipv4"].as_str(), known.exists()) {
        let out = std::process::Command::new("ssh-keygen")
            .arg("-R")
            .arg(ip)
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
    Ok(json!({}))
}

/// The `node.adopt` workflow: servers made by another tool (the Dart
/// nix-infra, the console) are labelled as this cluster's nodes, by name.
pub fn adopt() -> Workflow {
    Workflow::new("node.adopt", 1)
        .about("Label existing servers, found by name, as this cluster's nodes (their other labels stay). Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\",\"role\"}]}")
        .resources(node_resources)
        .planner(|input| {
            let i = parse_input(input)?;
            Ok(Plan::new(
                i.nodes.iter().map(|n| node_step("adopt", &n.name)).collect(),
            ))
        })
        .step("adopt", |ctx| async move {
            let i: NodesInput = ctx.input()?;
            let node = node_param(&ctx)?;
            let role = i.node(&node)?.role.clone();
            let s = i
                .provider()?
                .adopt_server(&i.cluster, &node, &role)
                .await
                .map_err(provider_error)?;
            ctx.log.info(format!("server {} ({}) is {node} ({role}) of {}", s.name, s.id, i.cluster));
            Ok::<_, StepError>(json!({ "node": node, "role": role, "id": s.id, "ipv4": s.ipv4 }))
        })
}
