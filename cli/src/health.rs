//! The dashboard's cluster view: nodes from etcd matched against the
//! provider's servers, with a health check of each (SSH answering; etcd too
//! on control nodes), its overlay address, its NixOS generation (read over
//! SSH as `nobody`), the app instances registered on it and the last run
//! that locked it; and the registry's apps. Servers labelled for the
//! cluster but registered nowhere are orphans; registrations without a
//! server are flagged as well.

use engine::{Engine, RunFilter};
use observability::dashboard::{ClusterApp, ClusterNode, ClusterView};
use std::collections::BTreeMap;
use std::time::Duration;
use tasks::provider::LABEL_ROLE;
use tasks::registry::{AppKind, Registry};
use workflows::cluster::Cluster;
use workflows::domain::Role;

/// The node's role, if its label names one.
fn role(n: &ClusterNode) -> Option<Role> {
    n.role.as_deref()?.parse().ok()
}

async fn answers(ip: &str, port: u16) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((ip, port))
        )
        .await,
        Ok(Ok(_))
    )
}

/// Reads the provider and the registry and checks every node.
pub async fn check(c: &Cluster, engine: &Engine) -> ClusterView {
    let mut view = ClusterView {
        cluster: c.name.clone(),
        ..ClusterView::default()
    };
    let mut nodes: BTreeMap<String, ClusterNode> = BTreeMap::new();
    let blank = |name: &str| ClusterNode {
        name: name.to_string(),
        role: None,
        ipv4: None,
        server_id: None,
        registered: false,
        services: Vec::new(),
        orphan: false,
        missing_server: false,
        healthy: None,
        health: String::new(),
        overlay: None,
        generation: None,
        apps: Vec::new(),
        last_run: None,
    };
    match c.provider() {
        Ok(p) => match p.list_servers(&c.name).await {
            Ok(servers) => {
                for s in servers {
                    let Some(name) = s.node().map(str::to_string) else {
                        continue;
                    };
                    let n = nodes.entry(name.clone()).or_insert_with(|| blank(&name));
                    n.role = s.labels.get(LABEL_ROLE).cloned();
                    n.ipv4 = s.ipv4.clone();
                    n.server_id = Some(s.id);
                }
            }
            Err(e) => view.problems.push(format!("provider: {e}")),
        },
        Err(e) => view.problems.push(format!("no provider: {e}")),
    }
    let has_ctrl =
        nodes.values().any(|n| role(n) == Some(Role::Ctrl)) || c.var("ETCD_ENDPOINTS").is_some();
    if has_ctrl && c.has_ca() {
        let input = workflows::node::NodesInput::of(c);
        let reg = workflows::node::open_registry(&input)
            .await
            .map_err(|e| e.message);
        let registered = match &reg {
            Ok(reg) => reg.nodes().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        match registered {
            Ok(list) => {
                for r in list {
                    let n = nodes
                        .entry(r.name.clone())
                        .or_insert_with(|| blank(&r.name));
                    n.registered = true;
                    n.services = r.services;
                    if n.ipv4.is_none() {
                        n.ipv4 = Some(r.ipv4);
                    }
                }
            }
            Err(e) => view.problems.push(format!("registry: {e}")),
        }
        // After the registered nodes: a ghost's apps and overlay show too.
        if let Ok(reg) = &reg {
            mesh(reg, &mut nodes, &mut view).await;
        }
    }
    for n in nodes.values_mut() {
        let member = matches!(role(n), Some(Role::Cluster | Role::Ingress));
        n.orphan = n.server_id.is_some() && member && !n.registered && has_ctrl;
        n.missing_server = n.registered && n.server_id.is_none();
        if let Some(ip) = n.ipv4.clone() {
            let ssh = answers(&ip, 22).await;
            let mut found = vec![if ssh { "ssh" } else { "ssh down" }];
            let mut ok = ssh;
            if role(n) == Some(Role::Ctrl) {
                let etcd = answers(&ip, 2379).await;
                found.push(if etcd { "etcd" } else { "etcd down" });
                ok &= etcd;
            }
            n.healthy = Some(ok);
            n.health = found.join(", ");
        }
    }
    generations(c, &mut nodes).await;
    last_runs(engine, &mut nodes).await;
    let with_server: Vec<String> = nodes
        .values()
        .filter(|n| n.server_id.is_some())
        .map(|n| n.name.clone())
        .collect();
    for a in &mut view.apps {
        for i in &mut a.instances {
            i.3 = with_server.contains(&i.0);
        }
    }
    view.nodes = nodes.into_values().collect();
    view.checked_at = Some(engine::now_millis());
    view
}

/// Overlay addresses and the registry's apps, by node and by app.
async fn mesh(reg: &Registry, nodes: &mut BTreeMap<String, ClusterNode>, view: &mut ClusterView) {
    match reg.overlay().await {
        Ok(subnets) => {
            for n in nodes.values_mut() {
                n.overlay = subnets
                    .iter()
                    .find(|s| Some(&s.public_ip) == n.ipv4.as_ref())
                    .map(|s| s.overlay_ip());
            }
        }
        Err(e) => view.problems.push(format!("overlay: {e}")),
    }
    for (kind, word) in [
        (AppKind::Service, "service"),
        (AppKind::Backend, "backend"),
        (AppKind::Frontend, "frontend"),
    ] {
        let apps = match reg.apps(kind).await {
            Ok(a) => a,
            Err(e) => {
                view.problems.push(format!("{word}s: {e}"));
                continue;
            }
        };
        for (name, a) in apps {
            for i in a.instances.values() {
                if let Some(n) = nodes.get_mut(&i.node) {
                    let port = i.port.map(|p| format!(" :{p}")).unwrap_or_default();
                    n.apps.push(format!("{name} ({word}){port}"));
                }
            }
            view.apps.push(ClusterApp {
                name,
                kind: word.into(),
                meta: a.meta.as_ref().and_then(|m| serde_json::to_value(m).ok()),
                instances: a
                    .instances
                    .values()
                    .map(|i| (i.node.clone(), i.ipv4.clone(), i.port, false))
                    .collect(),
            });
        }
    }
}

/// Each node's current NixOS generation, read over SSH as `nobody`.
async fn generations(c: &Cluster, nodes: &mut BTreeMap<String, ClusterNode>) {
    use workflows::agent::remote::{self, RunAs};
    let Ok(servers) = c.servers().await else {
        return;
    };
    let targets: Vec<(String, tasks::provider::ServerInfo)> = servers
        .into_iter()
        .filter_map(|s| Some((s.node()?.to_string(), s)))
        .filter(|(n, s)| s.ipv4.is_some() && nodes.get(n).is_some_and(|n| n.healthy == Some(true)))
        .collect();
    let script = "nixos-rebuild list-generations --json";
    let reads =
        remote::read_script(c, &targets, script, RunAs::Nobody, Duration::from_secs(10)).await;
    for r in reads {
        let Some(n) = nodes.get_mut(&r.node) else {
            continue;
        };
        let list: Vec<serde_json::Value> =
            serde_json::from_str(r.output.trim()).unwrap_or_default();
        n.generation = list.iter().find(|g| g["current"] == true).map(|g| {
            let date = g["date"].as_str().unwrap_or("").replace('T', " ");
            format!("{} ({})", g["generation"], date.trim_end_matches('Z'))
        });
    }
}

/// The last run that locked each node (`node/<name>`), from the newest runs.
async fn last_runs(engine: &Engine, nodes: &mut BTreeMap<String, ClusterNode>) {
    let filter = RunFilter {
        limit: Some(500),
        ..RunFilter::default()
    };
    let Ok(runs) = engine.list(&filter).await else {
        return;
    };
    for n in nodes.values_mut() {
        let resource = format!("node/{}", n.name);
        n.last_run = runs
            .iter()
            .find(|r| r.resources.contains(&resource))
            .map(|r| (r.id.clone(), r.workflow.clone(), r.status.to_string()));
    }
}
