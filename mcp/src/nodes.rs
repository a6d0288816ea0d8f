//! The Dart nix-infra's node tools, by their names and arguments:
//! `remote-command`, `list-available-nodes`, `journalctl`, `systemctl`,
//! `system-stats` and (cluster profile) `etcd`. Each read is checked by the
//! read-only grammar and runs on every target node at once, each node's
//! output, exit code or error kept apart.

use crate::Mcp;
use crate::reply::{cluster_error, failed, ok, refused, unavailable, wrap};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use workflows::agent::remote::{self, NodeRead, RunAs};
use workflows::agent::{ReadOnly, Stats, units, words};
use workflows::domain::Role;
use workflows::request::Request;

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct RemoteCommandArgs {
    /// A node, or several separated by commas (`worker1,worker2`).
    target: String,
    /// The command, as a shell line: one command or a `|` pipeline of
    /// read-only commands (see the tool's description).
    command: String,
    /// With --allow-changes, for a command that runs as a run: variables
    /// for it, `KEY=VALUE,…`; they travel encrypted and show `[redacted]`
    /// in its output (never put a secret in `command` itself).
    #[serde(default)]
    env_vars: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct JournalctlArgs {
    /// A node, or several separated by commas.
    target: String,
    /// journalctl's options (`-u etcd.service -n 50 --since "1 hour ago"`);
    /// without -n/--lines the last 200 lines. -f/--follow is refused.
    #[serde(default)]
    options: Option<String>,
    /// Journal field matches (`_SYSTEMD_UNIT=etcd.service`).
    #[serde(default)]
    matches: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct SystemctlArgs {
    /// A node, or several separated by commas.
    target: String,
    /// A read-only verb: status, show, cat, list-units, list-timers,
    /// list-unit-files, list-dependencies, is-active, is-enabled, is-failed, …
    #[serde(default)]
    command: Option<String>,
    /// Units, comma-separated (`etcd.service,confd.service`).
    #[serde(default)]
    units: Option<String>,
    /// systemctl's options (`--all`, `-p ActiveState`).
    #[serde(default)]
    options: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct StatsArgs {
    /// A node, or several separated by commas.
    target: String,
    /// all, health (the default), disk-io, memory, network, disk-usage or processes.
    #[serde(default)]
    operation: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct EtcdArgs {
    /// The control node to ask (default: the first control node).
    #[serde(default)]
    target: Option<String>,
    /// `nodes`, `services`, `backends`, `frontends` or `network` (the
    /// registry, read over mTLS); or a read-only etcdctl command: `get
    /// --prefix /cluster/nodes`, `member list`, `endpoint health`, …
    query: String,
}

/// Words of an option string (quotes as the shell reads them), refused
/// with the reason if it holds more than words.
fn option_words(what: &str, text: Option<&str>) -> Result<Vec<String>, String> {
    let text = text.unwrap_or("").trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    match words::pipeline(text) {
        Ok(mut cmds) if cmds.len() == 1 => Ok(cmds.remove(0)),
        Ok(_) => Err(format!("{what}: a `|` is not an option")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn with_no_pager(mut w: Vec<String>) -> Vec<String> {
    if !w.iter().any(|a| a == "--no-pager") {
        w.push("--no-pager".into());
    }
    w
}

#[tool_router(router = node_tools, vis = "pub(crate)")]
impl Mcp {
    #[tool(
        name = "remote-command",
        description = "Run a command on nodes over SSH and return each node's output and exit code. \
            Read-only commands run at once: one command or a `|` pipeline of read-only binaries \
            (ls, cat, df, du, free, ps, top -b -n1, uptime, ip … show, ss, systemctl status|show|…, \
            journalctl, find without -delete/-exec, grep, head, wc, …), with quotes as the shell \
            reads them; `;`, `&&`, redirects, `$`/backticks and unquoted globs are refused. \
            With --allow-changes any other command runs as a durable nix-infra run (cluster cmd), \
            locked per node, whose result carries the run id.",
        annotations(open_world_hint = true)
    )]
    async fn remote_command(
        &self,
        Parameters(a): Parameters<RemoteCommandArgs>,
        ct: CancellationToken,
    ) -> CallToolResult {
        let read_only = ReadOnly::parse(&a.command);
        match (read_only, self.opts().allow_changes) {
            (Ok(cmd), _) if a.env_vars.is_none() => self.read_nodes(&a.target, &cmd.script()).await,
            (_, true) => {
                let request = Request::Cmd {
                    target: a.target.replace(',', " "),
                    fleet: self.fleet(),
                    command: a.command,
                    env_vars: a.env_vars,
                };
                self.run_request(request, ct).await
            }
            (Ok(_), false) => {
                refused("env_vars are for commands that run as runs, with --allow-changes")
            }
            (Err(why), false) => refused(format!(
                "`{}` is not read-only: {why}. Changes run only when the user starts `nix-infra mcp --allow-changes`.",
                a.command
            )),
        }
    }

    #[tool(
        name = "list-available-nodes",
        description = "List the nodes of the cluster (or, in the fleet profile, the fleet): name, \
            provider id, public IPv4, role and status.",
        annotations(read_only_hint = true)
    )]
    async fn list_available_nodes(&self) -> CallToolResult {
        let c = match self.opts().origin.cluster() {
            Ok(c) => c,
            Err(e) => return cluster_error(e),
        };
        let servers = match c.servers().await {
            Ok(s) => s,
            Err(e) => return cluster_error(e),
        };
        let fleet = self.fleet();
        let mut nodes: Vec<_> = servers
            .iter()
            .filter_map(|s| Some((s.node()?, remote::role_of(s)?, s)))
            .filter(|(_, role, _)| (*role == Role::Fleet) == fleet)
            .map(|(name, role, s)| {
                json!({"name": name, "id": s.id, "ipv4": s.ipv4, "role": role.as_str(), "status": s.status})
            })
            .collect();
        nodes.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        ok(json!({"cluster": c.name, "nodes": nodes}))
    }

    #[tool(
        name = "journalctl",
        description = "Read the systemd journal on nodes (journalctl OPTIONS MATCHES --no-pager). \
            Options that follow (-f) or change the journal (--vacuum-*, --rotate, --flush, …) are refused.",
        annotations(read_only_hint = true)
    )]
    async fn journalctl(&self, Parameters(a): Parameters<JournalctlArgs>) -> CallToolResult {
        let mut w = vec!["journalctl".to_string()];
        for (what, text) in [("options", &a.options), ("matches", &a.matches)] {
            match option_words(what, text.as_deref()) {
                Ok(more) => w.extend(more),
                Err(e) => return refused(e),
            }
        }
        if !w
            .iter()
            .any(|o| o.starts_with("-n") || o.starts_with("--lines"))
        {
            w.extend(["-n".into(), "200".into()]);
        }
        match ReadOnly::command(with_no_pager(w)) {
            Ok(cmd) => self.read_nodes(&a.target, &cmd.script()).await,
            Err(why) => refused(why),
        }
    }

    #[tool(
        name = "systemctl",
        description = "Query systemd units on nodes (systemctl COMMAND UNITS OPTIONS --no-pager) with a \
            read-only verb: status, show, cat, list-units, list-timers, list-unit-files, \
            list-dependencies, is-active, is-enabled, is-failed, is-system-running, get-default. \
            Verbs that change the system (start, restart, enable, daemon-reload, …) are refused.",
        annotations(read_only_hint = true)
    )]
    async fn systemctl(&self, Parameters(a): Parameters<SystemctlArgs>) -> CallToolResult {
        let mut w = vec!["systemctl".to_string()];
        let command = a
            .command
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        w.extend(command.map(String::from));
        let units = a.units.as_deref().unwrap_or("");
        w.extend(
            units
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from),
        );
        match option_words("options", a.options.as_deref()) {
            Ok(more) => w.extend(more),
            Err(e) => return refused(e),
        }
        match ReadOnly::command(with_no_pager(w)) {
            Ok(cmd) => self.read_nodes(&a.target, &cmd.script()).await,
            Err(why) => refused(why),
        }
    }

    #[tool(
        name = "system-stats",
        description = "Compact system statistics of nodes: health (load, uptime, CPU, memory, swap, \
            pressure; the default), disk-io, memory, network, disk-usage, processes, or all.",
        annotations(read_only_hint = true)
    )]
    async fn system_stats(&self, Parameters(a): Parameters<StatsArgs>) -> CallToolResult {
        match a.operation.as_deref().unwrap_or("health").parse::<Stats>() {
            Ok(s) => self.read_nodes(&a.target, &s.script()).await,
            Err(e) => refused(e),
        }
    }
}

#[tool_router(router = etcd_tools, vis = "pub(crate)")]
impl Mcp {
    #[tool(
        name = "etcd",
        description = "Query the cluster's etcd, read-only: `nodes`, `services`, `backends`, \
            `frontends` or `network` read nix-infra's registry; anything else is an etcdctl command \
            run on the control node with its client certificate, and must be read-only (get, \
            member list, endpoint health|status|hashkv, alarm list, user/role get|list, version).",
        annotations(read_only_hint = true)
    )]
    async fn etcd(&self, Parameters(a): Parameters<EtcdArgs>) -> CallToolResult {
        let c = match self.opts().origin.cluster() {
            Ok(c) => c,
            Err(e) => return cluster_error(e),
        };
        let query = a.query.trim();
        if let Some(view) = crate::repo::registry_view(&c, query).await {
            return view;
        }
        let args = match words::pipeline(query) {
            Ok(mut cmds) if cmds.len() == 1 => cmds.remove(0),
            Ok(_) => return refused("etcd: one etcdctl command, no `|`"),
            Err(e) => return refused(format!("etcd: {e}")),
        };
        if let Err(why) = units::etcdctl_words(&args) {
            return refused(why);
        }
        let target = match a.target.filter(|t| !t.trim().is_empty()) {
            Some(t) => t,
            None => match first_ctrl(&c).await {
                Ok(t) => t,
                Err(r) => return r,
            },
        };
        let nodes = match remote::nodes_of(&c, &target).await {
            Ok(n) => n,
            Err(e) => return cluster_error(e),
        };
        let quoted: Vec<String> = args.iter().map(|w| tasks::ssh::shell_quote(w)).collect();
        let Some((_, server)) = nodes.first() else {
            return refused("etcd: give the control node to ask");
        };
        let ip = server.ipv4.clone().unwrap_or_default();
        let script = remote::etcdctl_script(&ip, &quoted.join(" "));
        let t = self.opts().read_timeout;
        let reads = remote::read_script(&c, &nodes[..1], &script, RunAs::Root, t).await;
        node_reads(reads)
    }
}

/// The first control node, by name.
async fn first_ctrl(c: &workflows::cluster::Cluster) -> Result<String, CallToolResult> {
    let servers = c.servers().await.map_err(cluster_error)?;
    let mut ctrl: Vec<&str> = servers
        .iter()
        .filter(|s| remote::role_of(s) == Some(Role::Ctrl))
        .filter_map(|s| s.node())
        .collect();
    ctrl.sort_unstable();
    ctrl.first()
        .map(|n| n.to_string())
        .ok_or_else(|| unavailable(format!("cluster {} has no control node", c.name)))
}

/// The nodes' answers as a result: an error result when a node could not be read.
pub(crate) fn node_reads(reads: Vec<NodeRead>) -> CallToolResult {
    let any_failed = reads.iter().any(|r| r.error.is_some());
    let value = wrap("nodes", &reads);
    if any_failed { failed(value) } else { ok(value) }
}

impl Mcp {
    /// Runs `script` (checked words, or a fixed read) on the nodes `target` names.
    pub(crate) async fn read_nodes(&self, target: &str, script: &str) -> CallToolResult {
        let c = match self.opts().origin.cluster() {
            Ok(c) => c,
            Err(e) => return cluster_error(e),
        };
        let nodes = match remote::nodes_of(&c, target).await {
            Ok(n) => n,
            Err(e) => return cluster_error(e),
        };
        let t = self.opts().read_timeout;
        node_reads(remote::read_script(&c, &nodes, script, RunAs::Nobody, t).await)
    }
}
