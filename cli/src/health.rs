//! The dashboard's cluster view: nodes from etcd matched against the
//! provider's servers, with a health check of each (SSH answering; etcd too
//! on control nodes). Servers labelled for the cluster but registered nowhere
//! are orphans; registered nodes without a server are flagged as well.

use observability::dashboard::{ClusterNode, ClusterView};
use std::collections::BTreeMap;
use std::time::Duration;
use tasks::provider::LABEL_ROLE;
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
pub async fn check(c: &Cluster) -> ClusterView {
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
        let registered = match workflows::node::open_registry(&input).await {
            Ok(reg) => reg.nodes().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.message),
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
    view.nodes = nodes.into_values().collect();
    view.checked_at = Some(engine::now_millis());
    view
}
