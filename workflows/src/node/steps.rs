//! The step functions of `node.init`, `node.update` and `node.unregister`
//! (also used by `cluster.up` and `node.destroy`). Each is idempotent.

use super::{NodesInput, address, node_param, remote, ssh_error};
use age::secrecy::ExposeSecret;
use engine::{StepContext, StepError, StepLogger};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use tasks::provider::LABEL_ROLE;
use tasks::registry::{NodeEntry, Registry, RegistryTls};
use tasks::secrets::SecretStore;
use tasks::ssh::{LineSink, Stream};

/// Where nodes keep their TLS material.
pub const NODE_CERTS: &str = "/root/certs";

/// Persists a remote command's output as the step's log lines.
pub(crate) struct LogSink(pub(crate) StepLogger);

impl LineSink for LogSink {
    fn line(&self, stream: Stream, line: &str) {
        match stream {
            Stream::Stdout => self.0.info(line),
            Stream::Stderr => self.0.warn(line),
        }
    }
}

/// The cluster's secret store (`DIR/secrets`, `SECRETS_PASS` or the identity).
pub(crate) fn secret_store(i: &NodesInput) -> Result<SecretStore, StepError> {
    i.repo()?.secrets().map_err(StepError::permanent)
}

/// The cluster CA.
pub(crate) fn load_ca(i: &NodesInput) -> Result<tasks::ca::Ca, StepError> {
    let key = i.repo()?.identity().map_err(StepError::permanent)?;
    tasks::ca::Ca::load(&i.dir.join("ca"), key).map_err(StepError::permanent)
}

/// etcd's client URLs: `ETCD_ENDPOINTS`, else every server labelled `ctrl`.
async fn ctrl_endpoints(i: &NodesInput) -> Result<Vec<String>, StepError> {
    if let Some(e) = i.env("ETCD_ENDPOINTS") {
        return Ok(e.split(',').map(|s| s.trim().to_string()).collect());
    }
    let mut ctrl: Vec<_> = ctrl_servers(i).await?;
    ctrl.sort();
    Ok(ctrl
        .into_iter()
        .map(|(_, ip)| format!("https://{ip}:2379"))
        .collect())
}

/// (name, ipv4) of every control node the provider knows.
async fn ctrl_servers(i: &NodesInput) -> Result<Vec<(String, String)>, StepError> {
    let mut out: Vec<_> = i
        .servers()
        .await?
        .into_iter()
        .filter(|s| s.labels.get(LABEL_ROLE).map(String::as_str) == Some("ctrl"))
        .filter_map(|s| Some((s.node()?.to_string(), s.ipv4?)))
        .collect();
    out.sort();
    Ok(out)
}

/// Connects to etcd as the orchestrator (mutual TLS with the cluster CA).
async fn connect(i: &NodesInput, endpoints: &[String]) -> Result<Registry, StepError> {
    let ca = load_ca(i)?;
    let me = ca.orchestrator().map_err(StepError::permanent)?;
    let tls = RegistryTls {
        ca_pem: ca.root_pem().into(),
        cert_pem: me.cert_pem.clone(),
        key_pem: me.key_pem.expose_secret().into(),
    };
    Registry::connect(endpoints, Some(&tls))
        .await
        .map_err(StepError::retryable)
}

/// The cluster's registry: `ETCD_ENDPOINTS`, else the control nodes' etcd.
pub async fn open_registry(i: &NodesInput) -> Result<Registry, StepError> {
    let endpoints = ctrl_endpoints(i).await?;
    if endpoints.is_empty() {
        return Err(StepError::permanent(format!(
            "cluster {} has no control node (and ETCD_ENDPOINTS is not set)",
            i.cluster
        )));
    }
    connect(i, &endpoints).await
}

/// The registry through the `ctrl` step's endpoints.
pub(crate) async fn registry(ctx: &StepContext, i: &NodesInput) -> Result<Registry, StepError> {
    let ctrl: Value = ctx.dep("ctrl")?;
    let endpoints: Vec<String> = serde_json::from_value(ctrl["endpoints"].clone())?;
    connect(i, &endpoints).await
}

/// `locate`: the run's nodes' servers, found by their labels in one listing:
/// `{"servers": {"<node>": {"node","role","id","ipv4"}}}`. A node without a
/// server is left out, so only that node's steps fail.
pub(crate) async fn locate(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let mut found = serde_json::Map::new();
    for s in i.servers().await? {
        let Some(node) = s.node().map(str::to_string) else {
            continue;
        };
        if i.nodes.iter().any(|n| n.name == node) {
            let role = s.labels.get(LABEL_ROLE).cloned().unwrap_or_default();
            found.insert(
                node.clone(),
                json!({ "node": node, "role": role, "id": s.id, "ipv4": s.ipv4 }),
            );
        }
    }
    let missing: Vec<&str> = i
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .filter(|n| !found.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        ctx.log.warn(format!(
            "no server in cluster {} for: {}; provision them first",
            i.cluster,
            missing.join(", ")
        ));
    }
    Ok(json!({ "servers": found }))
}

/// `certs/<node>`: issues (once) and uploads the node's etcd certificates.
pub(crate) async fn certs(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let node = node_param(&ctx)?;
    let ip: IpAddr = address(&ctx)?
        .parse()
        .map_err(|e| StepError::permanent(format!("address of {node}: {e}")))?;
    let ca = load_ca(&i)?;
    let certs = ca.node(&node, ip).map_err(StepError::permanent)?;
    let r = remote(&ctx, &i).await?;
    let files: [(&str, &str, u32); 5] = [
        ("ca.pem", ca.root_pem(), 0o644),
        ("peer.pem", &certs.peer.cert_pem, 0o644),
        ("peer-key.pem", certs.peer.key_pem.expose_secret(), 0o600),
        ("client.pem", &certs.client.cert_pem, 0o644),
        (
            "client-key.pem",
            certs.client.key_pem.expose_secret(),
            0o600,
        ),
    ];
    for (name, pem, mode) in files {
        r.upload(pem.as_bytes(), &format!("{NODE_CERTS}/{name}"), mode)
            .await
            .map_err(ssh_error)?;
    }
    ctx.log.info(format!("certificates for {node} at {ip}"));
    Ok(json!({ "peer_serial": certs.peer.serial, "client_serial": certs.client.serial }))
}

/// `ctrl`: etcd answers on the control nodes; flannel's network is configured.
pub(crate) async fn ctrl(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let endpoints = ctrl_endpoints(&i).await?;
    if endpoints.is_empty() {
        return Err(StepError::permanent(format!(
            "cluster {} has no control node (provision and init one, or set ETCD_ENDPOINTS)",
            i.cluster
        )));
    }
    let reg = connect(&i, &endpoints).await?;
    reg.ensure_network_config()
        .await
        .map_err(StepError::retryable)?;
    ctx.log.info(format!("etcd at {}", endpoints.join(",")));
    Ok(json!({ "endpoints": endpoints }))
}

/// `overlay/<node>`: the node's overlay subnet, reserved before its first rebuild.
pub(crate) async fn overlay(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let ip = address(&ctx)?;
    let reg = registry(&ctx, &i).await?;
    let s = reg
        .reserve_subnet(&ip)
        .await
        .map_err(StepError::retryable)?;
    ctx.log.info(format!("overlay {} for {ip}", s.subnet));
    Ok(json!({ "subnet": s.subnet, "overlay_ip": s.overlay_ip() }))
}

/// The node type file of `role`, relative to the cluster directory.
pub fn node_type_file(role: &str) -> String {
    let kind = if role == "ctrl" { "control" } else { role };
    format!("node_types/{kind}_node.nix")
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

/// Names of the secrets a staged tree references as `/root/secrets/<name>`
/// (it holds only the apps the node runs, see [`stage_config`]).
pub fn referenced_secrets(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for (pos, _) in text.match_indices("/root/secrets/") {
                let name: String = text[pos + 14..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

/// The apps of `app_modules/` that a node file names (`app_modules/<app>`).
pub fn node_apps(dir: &Path, node_file: &str) -> Vec<String> {
    let mut apps: Vec<String> = std::fs::read_dir(dir.join("app_modules"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|app| {
            let needle = format!("app_modules/{app}");
            node_file.match_indices(&needle).any(|(at, _)| {
                let next = node_file[at + needle.len()..].chars().next();
                !matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        })
        .collect();
    apps.sort();
    apps
}

/// Stages `/etc/nixos` for a node: a generated `configuration.nix` importing
/// the node type, `nodes/<node>.nix`, `modules/` and `app_modules/`.
pub fn stage_config(
    dir: &Path,
    node: &str,
    role: &str,
    vars: &BTreeMap<String, String>,
) -> Result<tempfile::TempDir, String> {
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    let staging = tempfile::tempdir().map_err(|e| e.to_string())?;
    let s = staging.path();
    let node_type = dir.join(node_type_file(role));
    std::fs::copy(&node_type, s.join("node_type.nix")).map_err(|e| io(&node_type, e))?;
    let own = dir.join("nodes").join(format!("{node}.nix"));
    let mut imports = vec!["./hardware-configuration.nix", "./node_type.nix"];
    if own.exists() {
        std::fs::copy(&own, s.join("node.nix")).map_err(|e| io(&own, e))?;
        imports.push("./node.nix");
    }
    let modules = dir.join("modules");
    if modules.is_dir() {
        copy_tree(&modules, &s.join("modules")).map_err(|e| io(&modules, e))?;
    }
    // Only the apps the node runs: those its nodes/<node>.nix names.
    let own_text = std::fs::read_to_string(&own).unwrap_or_default();
    for app in node_apps(dir, &own_text) {
        let from = dir.join("app_modules").join(&app);
        copy_tree(&from, &s.join("app_modules").join(&app)).map_err(|e| io(&from, e))?;
    }
    let configuration = format!(
        "# Written by nix-infra for node {node} ({role}). Edit {} and nodes/{node}.nix instead.\n\
         {{ ... }}:\n{{\n  imports = [ {} ];\n  networking.hostName = \"{node}\";\n}}\n",
        node_type_file(role),
        imports.join(" ")
    );
    std::fs::write(s.join("configuration.nix"), configuration).map_err(|e| e.to_string())?;
    let rendered = tasks::nixos::render_tree(s, vars).map_err(|e| e.to_string())?;
    Ok(rendered)
}

/// `config/<node>`: renders the node's configuration and uploads it to `/etc/nixos`.
pub(crate) async fn config(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let node = node_param(&ctx)?;
    let n = i.node(&node)?.clone();
    let ip = address(&ctx)?;
    let mut vars = BTreeMap::from([
        ("clusterName".to_string(), i.cluster.clone()),
        ("nodeName".into(), node.clone()),
        ("nodeRole".into(), n.role.clone()),
        ("localIp".into(), ip.clone()),
        (
            "overlayNetwork".into(),
            tasks::registry::OVERLAY_NETWORK.into(),
        ),
        ("certsDir".into(), NODE_CERTS.into()),
        ("serviceGroups".into(), n.service_groups().join(",")),
    ]);
    if n.is_ctrl() {
        let members = ctrl_servers(&i).await?;
        let cluster = members
            .iter()
            .map(|(name, ip)| format!("{name}=https://{ip}:2380"))
            .collect::<Vec<_>>()
            .join(",");
        vars.insert("etcdInitialCluster".into(), cluster);
        vars.insert(
            "etcdEndpoints".into(),
            members
                .iter()
                .map(|(_, ip)| format!("https://{ip}:2379"))
                .collect::<Vec<_>>()
                .join(","),
        );
    } else if n.is_fleet() {
        // Outside the overlay and the registry: nothing more to fill.
    } else {
        let overlay: Value = ctx.dep(&format!("overlay/{node}"))?;
        let ctrl: Value = ctx.dep("ctrl")?;
        let endpoints: Vec<String> = serde_json::from_value(ctrl["endpoints"].clone())?;
        vars.insert(
            "overlayIp".into(),
            overlay["overlay_ip"].as_str().unwrap_or_default().into(),
        );
        vars.insert("etcdEndpoints".into(), endpoints.join(","));
    }
    let rendered = stage_config(&i.dir, &node, &n.role, &vars).map_err(StepError::permanent)?;
    let secrets = referenced_secrets(rendered.path());
    let r = remote(&ctx, &i).await?;
    // Apps the node no longer runs leave with their folders.
    r.run(
        "rm -rf /etc/nixos/app_modules",
        None,
        &tasks::ssh::Discard,
        None,
    )
    .await
    .map_err(ssh_error)?;
    r.upload_tree(rendered.path(), "/etc/nixos")
        .await
        .map_err(ssh_error)?;
    ctx.log
        .info(format!("uploaded /etc/nixos ({})", node_type_file(&n.role)));
    Ok(json!({ "secrets": secrets, "overlay_ip": vars.get("overlayIp") }))
}

/// `secrets/<node>`: deploys every secret the node's configuration references.
pub(crate) async fn secrets(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let node = node_param(&ctx)?;
    let config: Value = ctx.dep(&format!("config/{node}"))?;
    let names: Vec<String> = serde_json::from_value(config["secrets"].clone())?;
    let r = remote(&ctx, &i).await?;
    // The node keeps exactly the secrets its configuration references.
    let removed = tasks::deploy::prune_secrets(&r, &names)
        .await
        .map_err(StepError::retryable)?;
    if !removed.is_empty() {
        ctx.log.info(format!("removed {}", removed.join(", ")));
    }
    if names.is_empty() {
        return Ok(json!({ "deployed": names, "removed": removed }));
    }
    let store = secret_store(&i)?;
    for name in &names {
        let value = store.get(name).map_err(|e| {
            StepError::permanent(format!(
                "{e} (the configuration of {node} references /root/secrets/{name}; store it with `nix-infra secrets store --name {name}`)"
            ))
        })?;
        tasks::deploy::deploy_secret(&r, name, &value)
            .await
            .map_err(StepError::retryable)?;
    }
    ctx.log.info(format!("deployed {}", names.join(", ")));
    Ok(json!({ "deployed": names, "removed": removed }))
}

/// `rebuild/<node>`: `nixos-rebuild switch`; its output is the step's log.
pub(crate) async fn rebuild(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let r = remote(&ctx, &i).await?;
    let result = tasks::nixos::rebuild(&r, &LogSink(ctx.log.clone())).await;
    result.map_err(ssh_error)?;
    Ok(json!({ "switched": true }))
}

/// `etcd/<node>`: the control node's etcd answers over mutual TLS.
pub(crate) async fn etcd(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let endpoint = format!("https://{}:2379", address(&ctx)?);
    // etcd takes a moment to start after the switch: wait for it here rather
    // than fail the attempt (a member of a new multi-node cluster waits for quorum).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match connect(&i, std::slice::from_ref(&endpoint)).await {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Err(StepError::retryable("cancelled")),
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                }
            }
        }
    }
    ctx.log.info(format!("etcd healthy at {endpoint}"));
    Ok(json!({ "endpoint": endpoint }))
}

/// `confd/<node>`: restarts confd so it renders HAProxy from the registry.
pub(crate) async fn confd(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let r = remote(&ctx, &i).await?;
    let result = r
        .run(
            "systemctl restart confd",
            None,
            &LogSink(ctx.log.clone()),
            None,
        )
        .await;
    result.map_err(ssh_error)?;
    Ok(json!({ "restarted": "confd" }))
}

/// `register/<node>`: the node joins `/cluster/nodes`.
pub(crate) async fn register(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let node = node_param(&ctx)?;
    let entry = NodeEntry {
        name: node.clone(),
        ipv4: address(&ctx)?,
        services: i.node(&node)?.service_groups(),
    };
    let reg = registry(&ctx, &i).await?;
    reg.register_node(&entry)
        .await
        .map_err(StepError::retryable)?;
    ctx.log.info(format!("registered {node}"));
    Ok(json!({ "registered": entry.services }))
}

/// `unregister/<node>`: the node leaves `/cluster/nodes` and gives back its overlay subnet.
/// With no control node left (or none yet), there is nothing to leave.
pub(crate) async fn unregister(ctx: StepContext) -> Result<Value, StepError> {
    let i: NodesInput = ctx.input()?;
    let node = node_param(&ctx)?;
    if i.nodes
        .iter()
        .any(|n| n.name == node && (n.is_ctrl() || n.is_fleet()))
    {
        return Ok(json!({ "unregistered": false }));
    }
    let endpoints = ctrl_endpoints(&i).await?;
    if endpoints.is_empty() || !i.dir.join("ca/root.pem").exists() {
        ctx.log
            .info("no registry (no control node); nothing to unregister");
        return Ok(json!({ "unregistered": false }));
    }
    let reg = connect(&i, &endpoints).await?;
    let known = reg.nodes().await.map_err(StepError::retryable)?;
    let mut ips: Vec<String> = known
        .iter()
        .filter(|n| n.name == node)
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
    reg.unregister_node(&node)
        .await
        .map_err(StepError::retryable)?;
    for ip in ips {
        reg.release_subnet(&ip)
            .await
            .map_err(StepError::retryable)?;
    }
    ctx.log.info(format!("unregistered {node}"));
    Ok(json!({ "unregistered": true }))
}
