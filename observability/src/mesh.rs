//! The cluster page as the service mesh: each node with its role,
//! addresses, health, NixOS generation, the app instances registered on it
//! and the last run that touched it; each app with its `meta_data` and
//! where its instances are. Orphans (servers registered nowhere) and ghosts
//! (registrations with no server) are marked.

use crate::dashboard::{badge, esc, page, when};
use serde::Serialize;

/// One machine of the cluster as the dashboard shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterNode {
    /// Node name.
    pub name: String,
    /// Role from the server's labels (`ctrl`, `cluster`, `ingress`, `fleet`), if it has a server.
    pub role: Option<String>,
    /// Public address.
    pub ipv4: Option<String>,
    /// Provider id, if the provider lists a server for it.
    pub server_id: Option<i64>,
    /// Whether `/cluster/nodes` has it.
    pub registered: bool,
    /// Service groups it registered with.
    pub services: Vec<String>,
    /// A server labelled for the cluster that should be registered and is not.
    pub orphan: bool,
    /// Registered, but the provider has no server for it.
    pub missing_server: bool,
    /// The last health check: SSH (and etcd, on control nodes) answering.
    pub healthy: Option<bool>,
    /// What the check found.
    pub health: String,
    /// Its overlay address (its flannel lease), once it has one.
    pub overlay: Option<String>,
    /// The NixOS generation it runs (`nixos-rebuild list-generations`), e.g. `12 (2026-12-01 10:00)`.
    pub generation: Option<String>,
    /// The app instances registered on it: `app (kind)` or `app (kind) :port`.
    pub apps: Vec<String>,
    /// The last run that touched it (locked `node/<name>`): id, workflow, status.
    pub last_run: Option<(String, String, String)>,
}

/// One app of the registry as the dashboard shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterApp {
    /// Its name.
    pub name: String,
    /// `service`, `backend` or `frontend`.
    pub kind: String,
    /// Its `meta_data`, as stored (none: instances without registration).
    pub meta: Option<serde_json::Value>,
    /// Where its instances are: node, address and port, and whether the node has a server.
    pub instances: Vec<(String, String, Option<u16>, bool)>,
}

/// The whole cluster view.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterView {
    /// The cluster's name.
    pub cluster: String,
    /// Its machines.
    pub nodes: Vec<ClusterNode>,
    /// The apps in the registry.
    pub apps: Vec<ClusterApp>,
    /// When the health was last checked (ms), if ever.
    pub checked_at: Option<i64>,
    /// Why parts could not be read (provider, registry).
    pub problems: Vec<String>,
}

/// The cluster page.
pub fn cluster_page(view: &ClusterView) -> String {
    let mut rows = String::new();
    for n in &view.nodes {
        let mut notes = Vec::new();
        if n.orphan {
            notes.push("<b>orphan</b>: labelled for the cluster, registered nowhere".to_string());
        }
        if n.missing_server {
            notes.push("<b>no server</b>: registered, but the provider has none".to_string());
        }
        let health = match n.healthy {
            Some(true) => format!("ok ({})", esc(&n.health)),
            Some(false) => format!("<span class=bad>down ({})</span>", esc(&n.health)),
            None => "not checked".into(),
        };
        let last = match &n.last_run {
            Some((id, wf, status)) => format!(
                "<a href=\"/runs/{id}\">{}</a> {}",
                esc(wf),
                badge(status),
                id = esc(id)
            ),
            None => "-".into(),
        };
        rows.push_str(&format!(
            "<tr class=\"{cls}\" data-node=\"{name}\"><td>{name}</td><td>{}</td><td>{}</td><td class=overlay>{}</td><td>{}</td><td>{}</td><td>{health}</td><td class=generation>{}</td><td class=apps>{}</td><td class=lastrun>{last}</td><td>{}</td></tr>",
            esc(n.role.as_deref().unwrap_or("-")),
            esc(n.ipv4.as_deref().unwrap_or("-")),
            esc(n.overlay.as_deref().unwrap_or("-")),
            n.server_id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
            if n.registered {
                esc(&n.services.join(","))
            } else if n.role.as_deref() == Some("ctrl") {
                "control plane".into()
            } else if n.role.as_deref() == Some("fleet") {
                "fleet".into()
            } else {
                "no".into()
            },
            esc(n.generation.as_deref().unwrap_or("-")),
            n.apps.iter().map(|a| esc(a)).collect::<Vec<_>>().join("<br>"),
            notes.join("; "),
            cls = if n.orphan || n.missing_server { "orphan" } else { "" },
            name = esc(&n.name),
        ));
    }
    let problems: String = view
        .problems
        .iter()
        .map(|p| format!("<p class=bad>{}</p>", esc(p)))
        .collect();
    let checked = view
        .checked_at
        .map(when)
        .unwrap_or_else(|| "not yet".into());
    page(
        &format!("Cluster {}", view.cluster),
        "Cluster",
        Some(5),
        None,
        &format!(
            "{problems}<p>last health check: {checked} (UTC)</p><table id=nodes><thead><tr><th>node</th><th>role</th><th>address</th><th>overlay</th><th>server</th><th>registered</th><th>health</th><th>generation</th><th>apps</th><th>last run</th><th>notes</th></tr></thead><tbody>{rows}</tbody></table>\
             <h2>Apps</h2>{}",
            apps_table(&view.apps)
        ),
    )
}

/// The apps: kind, `meta_data`, and each instance (a ghost when its node has no server).
fn apps_table(apps: &[ClusterApp]) -> String {
    if apps.is_empty() {
        return "<p>no app is registered</p>".into();
    }
    let mut rows = String::new();
    for a in apps {
        let meta = a
            .meta
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| "not registered".into());
        let inst: Vec<String> = a
            .instances
            .iter()
            .map(|(node, ip, port, has_server)| {
                let at = port
                    .map(|p| format!("{ip}:{p}"))
                    .unwrap_or_else(|| ip.clone());
                let ghost = if *has_server {
                    ""
                } else {
                    " <b>ghost</b>: no server"
                };
                format!(
                    "<span data-instance=\"{n}\">{n} {}{ghost}</span>",
                    esc(&at),
                    n = esc(node)
                )
            })
            .collect();
        rows.push_str(&format!(
            "<tr data-app=\"{n}\"><td>{n}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&a.kind),
            esc(&meta),
            inst.join("<br>"),
            n = esc(&a.name)
        ));
    }
    format!(
        "<table id=apps><thead><tr><th>app</th><th>kind</th><th>meta_data</th><th>instances</th></tr></thead><tbody>{rows}</tbody></table>"
    )
}
