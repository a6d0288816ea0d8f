//! `config/<node>` and `secrets/<node>` for a repo in the Dart layout
//! ([`super::dart`]): the values of its placeholders, gathered from the
//! provider, the registry and the secret store; the upload; the secrets it
//! names, with their own placeholders filled; pre-build secrets in `/run/keys`.

use super::access::{ctrl_servers, registry, secret_store};
use super::dart::{self, DartValues, TRUSTED_KEYS_PREFIX};
use super::steps::{Configured, Ctrl, Overlay};
use super::{NodeInput, NodesInput, address, remote, ssh_error, step_name};
use age::secrecy::{ExposeSecret, SecretSlice};
use engine::{Step, StepContext, StepError};
use std::collections::BTreeMap;
use tasks::secrets::SecretStore;
use tasks::ssh::{Discard, Remote, shell_quote};

/// Where pre-build secrets wait, decrypted, for the rebuild that needs them.
pub const PRE_BUILD_KEYS: &str = "/run/keys";

/// `[%%etcdClusterToken%%]`: `CLUSTER_UUID` from the env (the Dart tool's
/// `--cluster-uuid`), else one derived from the cluster's name.
pub fn cluster_token(i: &NodesInput) -> String {
    i.env("CLUSTER_UUID")
        .unwrap_or_else(|| format!("nix-infra-{}", i.cluster))
}

/// The keys `nodes/<node>.nix` takes that do not depend on the run's
/// addresses: `localhost.hostname` and `nix-store.trusted-public-keys`.
pub fn base_node_values(
    node: &str,
    store: Option<&SecretStore>,
) -> Result<BTreeMap<String, String>, String> {
    let mut keys = Vec::new();
    if let Some(store) = store {
        let mut names: Vec<String> = store
            .list()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|s| s.current.is_some() && s.name.starts_with(TRUSTED_KEYS_PREFIX))
            .map(|s| s.name)
            .collect();
        names.sort();
        for name in names {
            let value = store.get(&name).map_err(|e| e.to_string())?;
            keys.push(String::from_utf8_lossy(value.expose_secret()).to_string());
        }
    }
    Ok(BTreeMap::from([
        ("localhost.hostname".to_string(), node.to_string()),
        (
            "nix-store.trusted-public-keys".into(),
            dart::trusted_keys_list(&keys),
        ),
    ]))
}

/// Every placeholder value of node `n` in this run.
async fn values(ctx: &StepContext, i: &NodesInput, n: &NodeInput) -> Result<DartValues, StepError> {
    let reach = super::Reach::of(i).map_err(StepError::permanent)?;
    let store = secret_store(i)?;
    let mut node = base_node_values(n.name.as_str(), Some(&store)).map_err(StepError::permanent)?;
    let ip = address(ctx)?;
    node.insert("localhost.ipv4".into(), ip);
    let servers = i.servers().await?;
    let mut by_ip = BTreeMap::new();
    for s in &servers {
        if let (Some(name), Some(ip)) = (s.node(), &s.ipv4) {
            node.insert(format!("{name}.ipv4"), ip.clone());
            by_ip.insert(ip.clone(), name.to_string());
        }
    }
    if !n.is_ctrl() && !n.is_fleet() {
        let own = ctx.output::<Overlay>(&step_name::<Overlay>(&n.name))?;
        node.insert("localhost.overlayIp".into(), own.overlay_ip);
        let reg = registry(ctx, i).await?;
        for lease in reg.overlay().await.map_err(StepError::retryable)? {
            if let Some(name) = by_ip.get(&lease.public_ip) {
                node.insert(format!("{name}.overlayIp"), lease.overlay_ip());
            }
        }
    }
    Ok(DartValues {
        ssh_key: login_key(ctx)?.unwrap_or(reach.root_key),
        node_name: n.name.to_string(),
        nix_version: reach.state_version,
        etcd_cluster: dart::etcd_cluster(&ctrl_servers(i).await?),
        etcd_cluster_token: cluster_token(i),
        node,
    })
}

/// The node values an action's `--env-vars` take in the Dart layout (as the
/// Dart tool gives them): `localhost.*`, `<node>.ipv4` of every server,
/// `<node>.overlayIp` of every lease (cluster mode), and the trusted keys.
pub(crate) async fn action_values(
    i: &NodesInput,
    n: &NodeInput,
    public: &str,
) -> Result<BTreeMap<String, String>, StepError> {
    let store = secret_store(i)?;
    let mut node = base_node_values(n.name.as_str(), Some(&store)).map_err(StepError::permanent)?;
    node.insert("localhost.ipv4".into(), public.to_string());
    let mut by_ip = BTreeMap::new();
    for s in i.servers().await? {
        if let (Some(name), Some(ip)) = (s.node(), &s.ipv4) {
            node.insert(format!("{name}.ipv4"), ip.clone());
            by_ip.insert(ip.clone(), name.to_string());
        }
    }
    if n.is_fleet() {
        return Ok(node);
    }
    let reg = super::open_registry(i).await?;
    for lease in reg.overlay().await.map_err(StepError::retryable)? {
        if lease.public_ip == public && !n.is_ctrl() {
            node.insert("localhost.overlayIp".into(), lease.overlay_ip());
        }
        if let Some(name) = by_ip.get(&lease.public_ip) {
            node.insert(format!("{name}.overlayIp"), lease.overlay_ip());
        }
    }
    Ok(node)
}

/// Whether `key` is a Dart node value whose node only the run can look up
/// (`<node>.ipv4`, `<node>.overlayIp`).
pub(crate) fn names_a_server(key: &str) -> bool {
    key.rsplit_once('.').is_some_and(|(node, what)| {
        matches!(what, "ipv4" | "overlayIp")
            && node != "localhost"
            && crate::domain::NodeName::new(node).is_ok()
    })
}

/// The public key of the node's own login (a `servers.yaml` entry's
/// `ssh_key`, plus `.pub`), which `[%%sshKey%%]` must be: root's authorized
/// key after the rebuild is the one nix-infra logs in with.
fn login_key(ctx: &StepContext) -> Result<Option<String>, StepError> {
    let Some(login) = super::login(ctx)? else {
        return Ok(None);
    };
    let public = format!("{}.pub", login.key.display());
    std::fs::read_to_string(&public)
        .map(|k| Some(k.trim().to_string()))
        .map_err(|e| {
            StepError::permanent(format!(
                "{public}: {e} (the public half of this server's ssh_key in servers.yaml: \
                 [%%sshKey%%] must be the key nix-infra logs in with)"
            ))
        })
}

/// `config/<node>` in the Dart layout: stage, refuse unknown placeholders,
/// upload to `/etc/nixos`.
pub(crate) async fn configure(
    ctx: &StepContext,
    i: &NodesInput,
    n: &NodeInput,
) -> Result<Configured, StepError> {
    if !n.is_ctrl() && !n.is_fleet() {
        // The registry holds the overlay leases: the ctrl step must be done.
        ctx.output::<Ctrl>(Ctrl::KIND)?;
    }
    let v = values(ctx, i, n).await?;
    let staged = dart::stage(&i.dir, &i.nodes_dir(), n.name.as_str(), n.role, &v, None)
        .and_then(dart::DartTree::complete)
        .map_err(StepError::permanent)?;
    let r = remote(ctx, i).await?;
    r.run("rm -rf /etc/nixos/app_modules", None, &Discard, None)
        .await
        .map_err(ssh_error)?;
    r.upload_tree(staged.tree.path(), "/etc/nixos")
        .await
        .map_err(ssh_error)?;
    ctx.log.info(format!(
        "uploaded /etc/nixos in the Dart layout ({})",
        dart::node_type_files(&i.dir, n.role).1
    ));
    Ok(Configured {
        secrets: staged.secrets.into_keys().collect(),
        overlay_ip: v.node.get("localhost.overlayIp").cloned(),
        pre_build: staged.pre_build.into_iter().collect(),
        // The values a secret's own placeholders take; not the trusted keys,
        // which come from the secret store and stay out of the run's records.
        values: v
            .node
            .into_iter()
            .filter(|(k, _)| k != "nix-store.trusted-public-keys")
            .collect(),
    })
}

/// A secret's value with its own placeholders filled from the node's
/// values (the Dart layout: `values` is empty in nix-infra's own, and a
/// value is then deployed as it is). As the Dart tool does, a key it has no
/// value for stays as it is: an action's saved output may hold `[%%…%%]`
/// text of its own.
pub fn fill_secret(value: SecretSlice<u8>, values: &BTreeMap<String, String>) -> SecretSlice<u8> {
    if values.is_empty() {
        return value;
    }
    let Ok(text) = std::str::from_utf8(value.expose_secret()) else {
        return value;
    };
    if !text.contains("[%%") {
        return value;
    }
    let filled = dart::render(text, values, None, &mut dart::Found::default());
    SecretSlice::from(filled.into_bytes())
}

/// Writes a pre-build secret, decrypted, to `/run/keys/<name>` (0400, the
/// folder 0700): the value travels on stdin.
pub async fn write_pre_build(
    r: &Remote,
    name: &str,
    value: &SecretSlice<u8>,
) -> Result<(), StepError> {
    tasks::secrets::check_name(name).map_err(StepError::permanent)?;
    let path = format!("{PRE_BUILD_KEYS}/{name}");
    let cmd = format!(
        "umask 077 && mkdir -p {dir} && chmod 700 {dir} && cat > {tmp} && chmod 400 {tmp} && mv -f {tmp} {p}",
        dir = shell_quote(PRE_BUILD_KEYS),
        tmp = shell_quote(&format!("{path}.part")),
        p = shell_quote(&path),
    );
    r.run(&cmd, Some(value.expose_secret()), &Discard, None)
        .await
        .map_err(ssh_error)?;
    Ok(())
}

/// The `nixos-rebuild` options of a Dart-layout node: `--fast --impure` as
/// the Dart tool runs it, and `--option netrc-file /run/keys/<name>` for
/// each pre-build secret whose name holds `netrc` (nix.conf's `netrc-file`
/// for that build: on NixOS `/etc/nix/nix.conf` is read-only).
pub fn rebuild_options(pre_build: &[String]) -> Vec<String> {
    let mut out = vec!["--fast".to_string(), "--impure".into()];
    for name in pre_build.iter().filter(|n| n.contains("netrc")) {
        out.extend([
            "--option".into(),
            "netrc-file".into(),
            format!("{PRE_BUILD_KEYS}/{name}"),
        ]);
    }
    out
}

/// The Dart tool's certificate files: `ca-chain.cert.pem` (intermediate
/// then root), `<node>-client-tls.{cert,key}.pem` and, on control nodes,
/// `<node>-peer-tls.{cert,key}.pem`: (file name, PEM, mode).
pub(crate) fn cert_files(
    node: &str,
    ca: &tasks::ca::Ca,
    client: &tasks::ca::Pair,
    peer: Option<&tasks::ca::Pair>,
) -> Vec<(String, String, u32)> {
    let mut out = vec![("ca-chain.cert.pem".to_string(), ca.chain_pem(), 0o644)];
    for (kind, pair) in [("client", Some(client)), ("peer", peer)] {
        let Some(pair) = pair else { continue };
        out.push((
            format!("{node}-{kind}-tls.cert.pem"),
            pair.cert_pem.clone(),
            0o644,
        ));
        out.push((
            format!("{node}-{kind}-tls.key.pem"),
            pair.key_pem.expose_secret().to_string(),
            0o600,
        ));
    }
    out
}
