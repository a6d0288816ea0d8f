//! `node.provision`: create (or adopt) a server per node, wait for SSH, install NixOS, verify.
//!
//! Input: `{"cluster","dir","nodes":[{"name","role"}],"server_type","image","location"}`.
//! Credentials are read when a step runs, from the environment or `DIR/.env`
//! (`HCLOUD_TOKEN`, `HCLOUD_ENDPOINT`), never from the input, so they are
//! never stored with the run. Every step is idempotent: a server found by its
//! labels is adopted, and a node that already runs NixOS is not infected again.

use engine::{Plan, PlanError, RetryPolicy, StepContext, StepError, StepSpec, Workflow};
use serde::Deserialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tasks::provider::{Hetzner, Provider, ProviderError, ServerSpec};
use tasks::ssh::{Remote, SshConfig, SshError};

/// One node to provision.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInput {
    /// Node name.
    pub name: String,
    /// `ctrl`, `cluster` or `ingress`.
    #[serde(default = "default_role")]
    pub role: String,
}

fn default_role() -> String {
    "cluster".into()
}

/// The input of `node.provision`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionInput {
    /// Cluster name (labels).
    pub cluster: String,
    /// The cluster directory (keys, `.env`, `ssh/known_hosts`).
    pub dir: PathBuf,
    /// The nodes.
    pub nodes: Vec<NodeInput>,
    /// Server type.
    #[serde(default = "default_type")]
    pub server_type: String,
    /// Image to start from before NixOS is installed.
    #[serde(default = "default_image")]
    pub image: String,
    /// Location.
    #[serde(default)]
    pub location: Option<String>,
    /// NixOS channel to install.
    #[serde(default = "default_channel")]
    pub channel: String,
}

fn default_type() -> String {
    "cx22".into()
}
fn default_image() -> String {
    "ubuntu-24.04".into()
}
fn default_channel() -> String {
    "nixos-24.11".into()
}

fn provider_error(e: ProviderError) -> StepError {
    if e.is_retryable() {
        StepError::retryable(e)
    } else {
        StepError::permanent(e)
    }
}

fn ssh_error(e: SshError) -> StepError {
    if e.is_retryable() {
        StepError::retryable(e)
    } else {
        StepError::permanent(e)
    }
}

/// `HCLOUD_TOKEN` and `HCLOUD_ENDPOINT` from the environment, else from `DIR/.env`.
pub fn hetzner_for(dir: &Path) -> Result<Hetzner, StepError> {
    let from_file = |key: &str| -> Option<String> {
        let text = std::fs::read_to_string(dir.join(".env")).ok()?;
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
    };
    let get = |key: &str| {
        std::env::var(key)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| from_file(key))
    };
    let token = get("HCLOUD_TOKEN")
        .ok_or_else(|| StepError::permanent("HCLOUD_TOKEN is not set (environment or .env)"))?;
    let endpoint =
        get("HCLOUD_ENDPOINT").unwrap_or_else(|| tasks::provider::DEFAULT_ENDPOINT.into());
    Hetzner::new(endpoint, token).map_err(provider_error)
}

/// How the cluster's nodes are reached over SSH.
pub fn ssh_config(dir: &Path) -> SshConfig {
    SshConfig {
        key: Some(dir.join("keys").join("id_ed25519")),
        known_hosts: dir.join("ssh").join("known_hosts"),
        // Control sockets need a short path.
        control_dir: std::env::temp_dir().join(format!("nixinfra-{}", std::process::id())),
        user: "root".into(),
        port: 22,
        connect_timeout: Duration::from_secs(10),
    }
}

async fn remote(ctx: &StepContext, i: &ProvisionInput) -> Result<Remote, StepError> {
    let node: String = ctx.params::<serde_json::Value>()?["node"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let created: serde_json::Value = ctx
        .deps
        .values()
        .find(|v| v.get("ipv4").is_some())
        .cloned()
        .unwrap_or_default();
    let ip = created["ipv4"]
        .as_str()
        .ok_or_else(|| StepError::permanent("no address for the node"))?;
    Remote::wait_for(&ssh_config(&i.dir), &node, ip, Duration::from_secs(300))
        .await
        .map_err(ssh_error)
}

/// The lock of every node a run touches: `node/<name>`.
fn node_resources(input: &serde_json::Value) -> Vec<String> {
    input["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["name"].as_str().map(|n| format!("node/{n}")))
        .collect()
}

/// The retry policy of steps that talk to the provider or the nodes.
fn lifecycle_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_backoff_ms: 1_000,
        ..RetryPolicy::default()
    }
}

/// The `node.provision` workflow.
pub fn provision() -> Workflow {
    Workflow::new("node.provision", 1)
        .about("Create (or adopt) a server per node, wait for SSH, install NixOS, verify. Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\",\"role\"}]}")
        .resources(node_resources)
        .planner(|input| {
            let i: ProvisionInput = serde_json::from_value(input.clone()).map_err(|e| PlanError::Input(e.to_string()))?;
            if i.nodes.is_empty() {
                return Err(PlanError::Input("no nodes to provision".into()));
            }
            let retry = lifecycle_retry();
            let mut steps = vec![StepSpec::new("prepare", "prepare").retry(retry.clone())];
            for n in &i.nodes {
                let p = json!({ "node": n.name, "role": n.role });
                let s = |stage: &str| format!("{stage}/{}", n.name);
                steps.push(StepSpec::new(s("create"), "create").after("prepare").params(p.clone()).retry(retry.clone()));
                steps.push(StepSpec::new(s("install"), "install").after(s("create")).params(p.clone()).retry(retry.clone()));
                steps.push(StepSpec::new(s("verify"), "verify").after(s("install")).after(s("create")).params(p).retry(retry.clone()));
            }
            Ok(Plan::new(steps))
        })
        .step("prepare", |ctx| async move {
            let i: ProvisionInput = ctx.input()?;
            let p = hetzner_for(&i.dir)?;
            let public = std::fs::read_to_string(i.dir.join("keys/id_ed25519.pub"))
                .map_err(|e| StepError::permanent(format!("no cluster SSH key (run `nix-infra init`): {e}")))?;
            let key = p
                .ensure_ssh_key(&format!("nix-infra-{}", i.cluster), &public)
                .await
                .map_err(provider_error)?;
            let key_name = key.name;
            let pg = p.ensure_placement_group(&format!("{}-spread", i.cluster)).await.map_err(provider_error)?;
            ctx.log.info(format!("ssh key {key_name}, placement group {pg}"));
            Ok(json!({ "key_name": key_name, "placement_group": pg }))
        })
        .step("create", |ctx| async move {
            let i: ProvisionInput = ctx.input()?;
            let params: serde_json::Value = ctx.params()?;
            let prep = ctx.dep::<serde_json::Value>("prepare")?;
            let spec = ServerSpec {
                cluster: i.cluster.clone(),
                node: params["node"].as_str().unwrap_or_default().into(),
                role: params["role"].as_str().unwrap_or("cluster").into(),
                server_type: i.server_type.clone(),
                image: i.image.clone(),
                location: i.location.clone(),
                ssh_key: prep["key_name"].as_str().unwrap_or_default().into(),
                placement_group: prep["placement_group"].as_i64(),
                user_data: None,
            };
            let s = hetzner_for(&i.dir)?.create_server(&spec).await.map_err(provider_error)?;
            ctx.log.info(format!("server {} ({}) at {}", s.name, s.id, s.ipv4.clone().unwrap_or_default()));
            Ok(json!({ "id": s.id, "ipv4": s.ipv4 }))
        })
        .step("install", |ctx| async move {
            let i: ProvisionInput = ctx.input()?;
            let r = remote(&ctx, &i).await?;
            // Idempotent: a node already on NixOS is left as it is.
            let already = r.run("nixos-version", None, &tasks::ssh::Discard, None).await.is_ok();
            if already {
                ctx.log.info("already runs NixOS");
            } else {
                tasks::nixos::install(&r, &i.channel, &tasks::ssh::Discard).await.map_err(ssh_error)?;
                ctx.log.info(format!("installed {}", i.channel));
            }
            let _ = r.close().await;
            Ok(json!({ "installed": !already }))
        })
        .step("verify", |ctx| async move {
            let i: ProvisionInput = ctx.input()?;
            let r = remote(&ctx, &i).await?;
            let version = tasks::nixos::verify(&r).await.map_err(ssh_error)?;
            let _ = r.close().await;
            ctx.log.info(format!("NixOS {version}"));
            Ok(json!({ "nixos_version": version }))
        })
}

/// The input of `node.destroy`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestroyInput {
    /// Cluster name (labels).
    pub cluster: String,
    /// The cluster directory.
    pub dir: PathBuf,
    /// The nodes.
    pub nodes: Vec<NodeInput>,
}

/// The `node.destroy` workflow: unregister → delete the server → revoke its certificates → forget its host key.
pub fn destroy() -> Workflow {
    Workflow::new("node.destroy", 1)
        .about("Unregister, delete the server, revoke the certificates and forget the host key of each node. Input: {\"cluster\",\"dir\",\"nodes\":[{\"name\"}]}")
        .resources(node_resources)
        .planner(|input| {
            let i: DestroyInput = serde_json::from_value(input.clone()).map_err(|e| PlanError::Input(e.to_string()))?;
            if i.nodes.is_empty() {
                return Err(PlanError::Input("no nodes to destroy".into()));
            }
            let retry = lifecycle_retry();
            let mut steps = Vec::new();
            for n in &i.nodes {
                let p = json!({ "node": n.name });
                let s = |stage: &str| format!("{stage}/{}", n.name);
                steps.push(StepSpec::new(s("unregister"), "unregister").params(p.clone()).retry(retry.clone()));
                steps.push(StepSpec::new(s("delete"), "delete").after(s("unregister")).params(p.clone()).retry(retry.clone()));
                steps.push(StepSpec::new(s("revoke"), "revoke").after(s("delete")).params(p.clone()));
                steps.push(StepSpec::new(s("forget"), "forget").after(s("delete")).params(p));
            }
            Ok(Plan::new(steps))
        })
        .step("unregister", |ctx| async move {
            let i: DestroyInput = ctx.input()?;
            let node = node_param(&ctx)?;
            let Some(endpoints) = env_value(&i.dir, "ETCD_ENDPOINTS") else {
                ctx.log.info("no registry configured (ETCD_ENDPOINTS); nothing to unregister");
                return Ok(json!({ "unregistered": false }));
            };
            let reg = registry(&i.dir, &endpoints).await?;
            reg.unregister_node(&node).await.map_err(StepError::retryable)?;
            Ok(json!({ "unregistered": true }))
        })
        .step("delete", |ctx| async move {
            let i: DestroyInput = ctx.input()?;
            let node = node_param(&ctx)?;
            let p = hetzner_for(&i.dir)?;
            let found = p.list_servers(&i.cluster).await.map_err(provider_error)?;
            let mut ipv4 = None;
            for s in found.into_iter().filter(|s| s.node() == Some(node.as_str())) {
                p.delete_server(s.id).await.map_err(provider_error)?;
                ctx.log.info(format!("deleted server {} ({})", s.name, s.id));
                ipv4 = s.ipv4;
            }
            Ok(json!({ "ipv4": ipv4 }))
        })
        .step("revoke", |ctx| async move {
            let i: DestroyInput = ctx.input()?;
            let node = node_param(&ctx)?;
            if !i.dir.join("ca/root.pem").exists() {
                return Ok(json!({ "revoked": 0 }));
            }
            let key = tasks::secrets::SecretKey::load_identity(&i.dir.join("keys/age.key")).map_err(StepError::permanent)?;
            let ca = tasks::ca::Ca::load(&i.dir.join("ca"), key).map_err(StepError::permanent)?;
            let n = ca.revoke_node(&node).map_err(StepError::retryable)?;
            ctx.log.info(format!("revoked {n} certificate(s)"));
            Ok(json!({ "revoked": n }))
        })
        .step("forget", |ctx| async move {
            let i: DestroyInput = ctx.input()?;
            let deleted: serde_json::Value = ctx.deps.values().next().cloned().unwrap_or_default();
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
        })
}

fn node_param(ctx: &StepContext) -> Result<String, StepError> {
    let p: serde_json::Value = ctx.params()?;
    p["node"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| StepError::permanent("step without a node"))
}

fn env_value(dir: &Path, key: &str) -> Option<String> {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| {
            let text = std::fs::read_to_string(dir.join(".env")).ok()?;
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
        })
}

/// Connects to the cluster's etcd with the orchestrator's certificate.
async fn registry(dir: &Path, endpoints: &str) -> Result<tasks::registry::Registry, StepError> {
    use age::secrecy::ExposeSecret;
    let key = tasks::secrets::SecretKey::load_identity(&dir.join("keys/age.key"))
        .map_err(StepError::permanent)?;
    let ca = tasks::ca::Ca::load(&dir.join("ca"), key).map_err(StepError::permanent)?;
    let me = ca.orchestrator().map_err(StepError::permanent)?;
    let tls = tasks::registry::RegistryTls {
        ca_pem: ca.root_pem().into(),
        cert_pem: me.cert_pem.clone(),
        key_pem: me.key_pem.expose_secret().into(),
    };
    let endpoints: Vec<String> = endpoints.split(',').map(|s| s.trim().to_string()).collect();
    tasks::registry::Registry::connect(&endpoints, Some(&tls))
        .await
        .map_err(StepError::retryable)
}
