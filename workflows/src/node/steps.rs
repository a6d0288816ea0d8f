//! The step kinds of `node.init`, `node.update` and `node.unregister`
//! (also used by `cluster.up`, `node.destroy` and the day-2 and app
//! workflows). Each is idempotent.

use super::access::{
    connect, ctrl_endpoints, ctrl_servers, load_ca, registry, secret_store, server_role,
};
use super::{NodeParams, NodesInput, address, remote, ssh_error, step_name};
use crate::domain::{NodeName, Role};
use age::secrecy::ExposeSecret;
use engine::{Step, StepContext, StepError, StepLogger};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use tasks::ssh::{LineSink, Stream};

pub use super::access::{open_registry, open_registry_at};
pub use super::membership::{Register, Registered, Unregister, Unregistered};

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

/// A node's server, as `locate`, `create/<node>` and `adopt/<node>` found it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Server {
    /// The node (absent in outputs of runs from before outputs named it).
    #[serde(default)]
    pub node: Option<NodeName>,
    /// Its role label (none if the label is missing or names no role).
    #[serde(default, deserialize_with = "role_label")]
    pub role: Option<Role>,
    /// The provider's id.
    pub id: i64,
    /// Its public IPv4 address.
    pub ipv4: Option<String>,
    /// Its own SSH login (a `servers.yaml` entry's `ssh_key` and `username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<tasks::provider::Login>,
}

impl Server {
    /// Node `node`'s server `s`, as the provider reported it, with `role`.
    pub fn of(node: NodeName, role: Role, s: tasks::provider::ServerInfo) -> Server {
        Server {
            node: Some(node),
            role: Some(role),
            id: s.id,
            ipv4: s.ipv4,
            login: s.login,
        }
    }
}

/// A role label as outputs store it: older ones wrote `""` for a missing label.
fn role_label<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Role>, D::Error> {
    let label: Option<String> = Option::deserialize(d)?;
    Ok(label.and_then(|r| r.parse().ok()))
}

/// `locate`: the run's nodes' servers, found by their labels in one listing.
/// A node without a server is left out, so only that node's steps fail.
pub struct Locate;

/// What `locate` found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Located {
    /// The run's nodes that have a server, with it.
    pub servers: BTreeMap<NodeName, Server>,
}

impl Step for Locate {
    const KIND: &'static str = "locate";
    type Params = ();
    type Output = Located;

    async fn run(ctx: StepContext, _: ()) -> Result<Located, StepError> {
        let i: NodesInput = ctx.input()?;
        let mut servers = BTreeMap::new();
        for s in i.servers().await? {
            let Some(node) = i.nodes.iter().find(|n| s.node() == Some(n.name.as_str())) else {
                continue;
            };
            let server = Server {
                node: Some(node.name.clone()),
                role: server_role(&s),
                id: s.id,
                ipv4: s.ipv4,
                login: s.login,
            };
            servers.insert(node.name.clone(), server);
        }
        let missing: Vec<&str> = i
            .nodes
            .iter()
            .filter(|n| !servers.contains_key(&n.name))
            .map(|n| n.name.as_str())
            .collect();
        if !missing.is_empty() {
            ctx.log.warn(format!(
                "no server in cluster {} for: {}; provision them first",
                i.cluster,
                missing.join(", ")
            ));
        }
        Ok(Located { servers })
    }
}

/// `certs/<node>`: issues (once) and uploads the node's etcd certificates.
pub struct Certs;

/// The serials of a node's certificates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Issued {
    /// The peer certificate's serial.
    pub peer_serial: String,
    /// The client certificate's serial.
    pub client_serial: String,
}

impl Step for Certs {
    const KIND: &'static str = "certs";
    type Params = NodeParams;
    type Output = Issued;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Issued, StepError> {
        let i: NodesInput = ctx.input()?;
        let node = p.node;
        let ip: IpAddr = address(&ctx)?
            .parse()
            .map_err(|e| StepError::permanent(format!("address of {node}: {e}")))?;
        let ca = load_ca(&i)?;
        let certs = ca.node(node.as_str(), ip).map_err(StepError::permanent)?;
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
        // The same, under the names the Dart tool's modules read.
        let peer = i.node(node.as_str())?.is_ctrl().then_some(&certs.peer);
        for (name, pem, mode) in
            super::dart_config::cert_files(node.as_str(), &ca, &certs.client, peer)
        {
            r.upload(pem.as_bytes(), &format!("{NODE_CERTS}/{name}"), mode)
                .await
                .map_err(ssh_error)?;
        }
        ctx.log.info(format!("certificates for {node} at {ip}"));
        Ok(Issued {
            peer_serial: certs.peer.serial.clone(),
            client_serial: certs.client.serial.clone(),
        })
    }
}

/// `ctrl`: etcd answers on the control nodes; flannel's network is configured.
pub struct Ctrl;

/// Where etcd answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoints {
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
}

impl Step for Ctrl {
    const KIND: &'static str = "ctrl";
    type Params = ();
    type Output = Endpoints;

    async fn run(ctx: StepContext, _: ()) -> Result<Endpoints, StepError> {
        let i: NodesInput = ctx.input()?;
        let endpoints = ctrl_endpoints(&i).await?;
        if endpoints.is_empty() {
            return Err(StepError::permanent(format!(
                "cluster {} has no control node (provision and init one, or set ETCD_ENDPOINTS)",
                i.cluster
            )));
        }
        let net = super::overlay_network(&i.repo()?).map_err(StepError::permanent)?;
        let reg = connect(&i, &endpoints).await?;
        reg.ensure_network_config(&net)
            .await
            .map_err(StepError::retryable)?;
        ctx.log.info(format!("etcd at {}", endpoints.join(",")));
        Ok(Endpoints { endpoints })
    }
}

/// `overlay/<node>`: the node's overlay subnet, reserved before its first rebuild.
pub struct Overlay;

/// A node's overlay subnet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subnet {
    /// The subnet, e.g. `10.100.23.0/24`.
    pub subnet: String,
    /// The node's overlay address (`[%%overlayIp%%]`), e.g. `10.100.23.0`.
    pub overlay_ip: String,
}

impl Step for Overlay {
    const KIND: &'static str = "overlay";
    type Params = NodeParams;
    type Output = Subnet;

    async fn run(ctx: StepContext, _: NodeParams) -> Result<Subnet, StepError> {
        let i: NodesInput = ctx.input()?;
        let ip = address(&ctx)?;
        let net = super::overlay_network(&i.repo()?).map_err(StepError::permanent)?;
        let reg = registry(&ctx, &i).await?;
        let s = reg
            .reserve_subnet(&ip, &net)
            .await
            .map_err(StepError::retryable)?;
        ctx.log.info(format!("overlay {} for {ip}", s.subnet));
        Ok(Subnet {
            overlay_ip: s.overlay_ip(),
            subnet: s.subnet,
        })
    }
}

/// `config/<node>`: renders the node's configuration and uploads it to `/etc/nixos`.
pub struct Config;

/// What a node's configuration references.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Configured {
    /// The secrets it references (`/root/secrets/<name>`), by name.
    pub secrets: Vec<String>,
    /// The overlay address it was rendered with (none for control and fleet nodes).
    pub overlay_ip: Option<String>,
    /// Dart layout: the secrets also written to `/run/keys` before the rebuild.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_build: Vec<String>,
    /// Dart layout: the node's placeholder values, for its secrets' own placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
}

impl Step for Config {
    const KIND: &'static str = "config";
    type Params = NodeParams;
    type Output = Configured;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Configured, StepError> {
        let i: NodesInput = ctx.input()?;
        let n = i.node(p.node.as_str())?.clone();
        if super::dart::is_dart_layout(&i.dir) {
            return super::dart_config::configure(&ctx, &i, &n).await;
        }
        let vars = config_vars(&ctx, &i, &n).await?;
        let reach = super::Reach::of(&i).map_err(StepError::permanent)?;
        let rendered = super::stage_config(
            &i.dir,
            &i.nodes_dir(),
            n.name.as_str(),
            n.role,
            &vars,
            &reach,
        )
        .map_err(StepError::permanent)?;
        let secrets = super::referenced_secrets(rendered.path());
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
            .info(format!("uploaded /etc/nixos ({})", n.role.node_type_file()));
        Ok(Configured {
            secrets: secrets.into_iter().collect(),
            overlay_ip: vars.get("overlayIp").cloned(),
            pre_build: Vec::new(),
            values: BTreeMap::new(),
        })
    }
}

/// The `[%%key%%]` values of node `n`'s configuration, from the run.
async fn config_vars(
    ctx: &StepContext,
    i: &NodesInput,
    n: &super::NodeInput,
) -> Result<BTreeMap<String, String>, StepError> {
    use super::stage::{Peers, node_vars};
    let peers = if n.is_ctrl() {
        Peers::Ctrl(ctrl_servers(i).await?)
    } else if n.is_fleet() {
        Peers::Fleet
    } else {
        let overlay = ctx.output::<Overlay>(&step_name::<Overlay>(&n.name))?;
        let ctrl = ctx.output::<Ctrl>(Ctrl::KIND)?;
        Peers::Overlay {
            overlay_ip: overlay.overlay_ip,
            endpoints: ctrl.endpoints,
        }
    };
    Ok(node_vars(i, n, &address(ctx)?, peers))
}

/// `secrets/<node>`: deploys every secret the node's configuration references.
pub struct Secrets;

/// What `secrets/<node>` changed on the node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployed {
    /// The secrets deployed, by name.
    pub deployed: Vec<String>,
    /// The secrets removed (no longer referenced), by name.
    pub removed: Vec<String>,
    /// Dart layout: the secrets also in `/run/keys`, for the rebuild.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_build: Vec<String>,
}

impl Step for Secrets {
    const KIND: &'static str = "secrets";
    type Params = NodeParams;
    type Output = Deployed;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Deployed, StepError> {
        let i: NodesInput = ctx.input()?;
        let node = p.node;
        let configured = ctx.output::<Config>(&step_name::<Config>(&node))?;
        let names = configured.secrets.clone();
        let r = remote(&ctx, &i).await?;
        // The node keeps exactly the secrets its configuration references.
        let removed = tasks::deploy::prune_secrets(&r, &names)
            .await
            .map_err(StepError::retryable)?;
        if !removed.is_empty() {
            ctx.log.info(format!("removed {}", removed.join(", ")));
        }
        if names.is_empty() {
            return Ok(Deployed {
                deployed: names,
                removed,
                pre_build: Vec::new(),
            });
        }
        let store = secret_store(&i)?;
        for name in &names {
            let value = store.get(name).map_err(|e| {
                StepError::permanent(format!(
                    "{e} (the configuration of {node} references /root/secrets/{name}; store it with `nix-infra secrets store --name {name}`)"
                ))
            })?;
            let value = super::dart_config::fill_secret(value, &configured.values);
            tasks::deploy::deploy_secret(&r, name, &value)
                .await
                .map_err(StepError::retryable)?;
            if configured.pre_build.contains(name) {
                super::dart_config::write_pre_build(&r, name, &value).await?;
            }
        }
        ctx.log.info(format!("deployed {}", names.join(", ")));
        if !configured.pre_build.is_empty() {
            ctx.log.info(format!(
                "pre-build secrets in {}: {}",
                super::dart_config::PRE_BUILD_KEYS,
                configured.pre_build.join(", ")
            ));
        }
        Ok(Deployed {
            deployed: names,
            removed,
            pre_build: configured.pre_build,
        })
    }
}

/// `rebuild/<node>`: `nixos-rebuild switch`; its output is the step's log.
pub struct Rebuild;

/// A switch done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Switched {
    /// Always `true`.
    pub switched: bool,
}

impl Step for Rebuild {
    const KIND: &'static str = "rebuild";
    type Params = NodeParams;
    type Output = Switched;

    async fn run(ctx: StepContext, p: NodeParams) -> Result<Switched, StepError> {
        let i: NodesInput = ctx.input()?;
        let r = remote(&ctx, &i).await?;
        let options = rebuild_options(&ctx, &i, &p.node)?;
        let result = tasks::nixos::rebuild_with(&r, &options, &LogSink(ctx.log.clone())).await;
        result.map_err(ssh_error)?;
        Ok(Switched { switched: true })
    }
}

/// The options of `nixos-rebuild switch` for the node: none in nix-infra's
/// own layout; the Dart tool's (and netrc files) in the Dart layout.
fn rebuild_options(
    ctx: &StepContext,
    i: &NodesInput,
    node: &NodeName,
) -> Result<Vec<String>, StepError> {
    if !super::dart::is_dart_layout(&i.dir) {
        return Ok(Vec::new());
    }
    let secrets = step_name::<Secrets>(node);
    let pre_build = if ctx.deps.contains_key(&secrets) {
        ctx.output::<Secrets>(&secrets)?.pre_build
    } else {
        Vec::new()
    };
    Ok(super::dart_config::rebuild_options(&pre_build))
}

/// `etcd/<node>`: the control node's etcd answers over mutual TLS.
pub struct Etcd;

/// Where a control node's etcd answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Healthy {
    /// Its client URL.
    pub endpoint: String,
}

impl Step for Etcd {
    const KIND: &'static str = "etcd";
    type Params = NodeParams;
    type Output = Healthy;

    async fn run(ctx: StepContext, _: NodeParams) -> Result<Healthy, StepError> {
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
        Ok(Healthy { endpoint })
    }
}

/// `confd/<node>`: restarts confd so it renders HAProxy from the registry.
pub struct Confd;

/// A unit restarted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Restarted {
    /// The unit, `confd`.
    pub restarted: String,
}

impl Step for Confd {
    const KIND: &'static str = "confd";
    type Params = NodeParams;
    type Output = Restarted;

    async fn run(ctx: StepContext, _: NodeParams) -> Result<Restarted, StepError> {
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
        Ok(Restarted {
            restarted: "confd".into(),
        })
    }
}
