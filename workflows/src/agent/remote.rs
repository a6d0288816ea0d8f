//! Reading from nodes without a run: find a node's server, connect with its
//! login, run a checked read-only command on several nodes at once, and
//! keep each node's output, exit code or error apart.

use crate::cluster::{Cluster, ClusterError};
use crate::request::targets;
use serde::Serialize;
use std::sync::Mutex;
use std::time::Duration;
use tasks::provider::ServerInfo;
use tasks::ssh::{LineSink, Remote, SshError, Stream};

/// How long a read may take on a node before it is stopped.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The most output a read keeps per node (both streams together).
pub const OUTPUT_LIMIT: usize = 256 * 1024;

/// Who a read runs as on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAs {
    /// `nobody`: what any local user may see, and no more.
    Nobody,
    /// root: only for the etcd tool's checked etcdctl, which needs the
    /// node's client key.
    Root,
}

/// The script that runs `script` on a node the way every read runs: from
/// `/`, with stdin empty, as [`RunAs`] says (`nobody`: uid and gid 65534,
/// no supplementary group but `systemd-journal` where there is one, no new
/// privileges, so the root-only keys, `/run/keys`, other users' processes
/// and any change a capability guards stay out of reach), killed with its
/// whole process group after `timeout`, both streams together and cut at
/// [`OUTPUT_LIMIT`] bytes, then `marker` and its exit code on a line of
/// their own.
pub fn bounded(script: &str, run_as: RunAs, timeout: Duration, marker: &str) -> String {
    let secs = timeout.as_secs().max(1);
    let q = tasks::ssh::shell_quote(script);
    let (setup, prefix) = match run_as {
        RunAs::Nobody => (
            "g=$(getent group systemd-journal | cut -d: -f3)\n\
             if [ -n \"$g\" ]; then set -- \"--groups=$g\"; else set -- --clear-groups; fi\n",
            "setpriv --reuid=65534 --regid=65534 \"$@\" --no-new-privs -- ",
        ),
        RunAs::Root => ("", ""),
    };
    format!(
        "cd / || exit 1\n{setup}( timeout -k 5 {secs} {prefix}sh -c {q} </dev/null; \
         echo \"{marker}$?\" ) 2>&1 | head -c {OUTPUT_LIMIT}\n"
    )
}

/// The server behind node `node`, from the provider.
pub async fn server(c: &Cluster, node: &str) -> Result<ServerInfo, ClusterError> {
    let servers = c.servers().await?;
    servers
        .into_iter()
        .find(|s| s.node() == Some(node) && s.ipv4.is_some())
        .ok_or_else(|| {
            ClusterError::Refused(format!("no server named {node} in cluster {}", c.name))
        })
}

/// An SSH connection to `server` as node `node`, with the server's own
/// login where servers.yaml gives one, else the cluster's key as root.
pub async fn connect(c: &Cluster, node: &str, server: &ServerInfo) -> Result<Remote, SshError> {
    let mut cfg = crate::node::ssh_config_for(c);
    if let Some(l) = &server.login {
        cfg.key = Some(l.key.clone());
        cfg.user = l.user.clone();
    }
    let ip = server.ipv4.clone().unwrap_or_default();
    Remote::connect(&cfg, node, &ip).await
}

/// What one node answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeRead {
    /// The node.
    pub node: String,
    /// Its public address.
    pub ipv4: String,
    /// The command's exit code (none: it did not run to its end).
    pub exit: Option<i32>,
    /// Its standard output and standard error, as the lines came.
    pub output: String,
    /// Why the command did not run to its end (unreachable, timed out).
    pub error: Option<String>,
}

/// Collects a command's lines, both streams, in arrival order.
#[derive(Default)]
struct Collect(Mutex<String>);

impl LineSink for Collect {
    fn line(&self, _: Stream, line: &str) {
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str(line);
        out.push('\n');
    }
}

/// The nodes `target` names (spaces or commas between names), each with its
/// server; a name the provider does not have is refused, naming it.
pub async fn nodes_of(
    c: &Cluster,
    target: &str,
) -> Result<Vec<(String, ServerInfo)>, ClusterError> {
    let names = targets(&target.replace(',', " "))?;
    let servers = c.servers().await?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        match servers
            .iter()
            .find(|s| s.node() == Some(n.as_str()) && s.ipv4.is_some())
        {
            Some(s) => out.push((n.to_string(), s.clone())),
            None => missing.push(n.to_string()),
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let mut known: Vec<&str> = servers.iter().filter_map(ServerInfo::node).collect();
    known.sort_unstable();
    Err(ClusterError::Refused(format!(
        "no node named {} in cluster {} (its nodes: {})",
        missing.join(", "),
        c.name,
        if known.is_empty() {
            "none yet".into()
        } else {
            known.join(", ")
        }
    )))
}

/// Runs `script` (text made from checked words, or a fixed read) on each of
/// `nodes` at once, [`bounded`]; each node's result on its own, in the order given.
pub async fn read_script(
    c: &Cluster,
    nodes: &[(String, ServerInfo)],
    script: &str,
    run_as: RunAs,
    timeout: Duration,
) -> Vec<NodeRead> {
    let reads = nodes
        .iter()
        .map(|(node, s)| read_one(c, node, s, script, run_as, timeout));
    futures::future::join_all(reads).await
}

async fn read_one(
    c: &Cluster,
    node: &str,
    s: &ServerInfo,
    script: &str,
    run_as: RunAs,
    timeout: Duration,
) -> NodeRead {
    let mut read = NodeRead {
        node: node.to_string(),
        ipv4: s.ipv4.clone().unwrap_or_default(),
        exit: None,
        output: String::new(),
        error: None,
    };
    let remote = match connect(c, node, s).await {
        Ok(r) => r,
        Err(e) => {
            read.error = Some(e.to_string());
            return read;
        }
    };
    let marker = format!("nix-infra-exit-{:016x}:", rand::random::<u64>());
    let wrapped = bounded(script, run_as, timeout, &marker);
    let sink = Collect::default();
    // The node stops the command itself; this only guards against a node that hangs.
    let guard = timeout + Duration::from_secs(15);
    let result = remote
        .run("sh -s", Some(wrapped.as_bytes()), &sink, Some(guard))
        .await;
    let _ = remote.close().await;
    let text = sink.0.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = result {
        read.error = Some(e.to_string());
    }
    match text.rfind(&marker) {
        Some(at) => {
            read.output = text[..at].to_string();
            read.exit = text[at + marker.len()..].trim().parse().ok();
            if read.exit == Some(124) {
                read.error = Some(format!(
                    "stopped after {} s (--read-timeout)",
                    timeout.as_secs()
                ));
            }
        }
        None => {
            read.output = text;
            if read.error.is_none() {
                read.error = Some(format!("output cut at {} KiB", OUTPUT_LIMIT / 1024));
            }
        }
    }
    read
}

/// The script that runs etcdctl with `args` (shell text) on a control node
/// at `ip`, against its own etcd, with the node's client certificate.
pub fn etcdctl_script(ip: &str, args: &str) -> String {
    let certs = crate::node::NODE_CERTS;
    format!(
        "export ETCDCTL_API=3 ETCDCTL_DIAL_TIMEOUT=3s ETCDCTL_CACERT={certs}/ca.pem \
         ETCDCTL_CERT={certs}/client.pem ETCDCTL_KEY={certs}/client-key.pem \
         ETCDCTL_ENDPOINTS=https://{ip}:2379\netcdctl {args}\n"
    )
}

/// A server's role, from its labels.
pub fn role_of(s: &ServerInfo) -> Option<crate::domain::Role> {
    s.labels.get(tasks::provider::LABEL_ROLE)?.parse().ok()
}
