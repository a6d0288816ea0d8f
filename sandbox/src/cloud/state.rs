//! The fake cloud's resources: SSH keys, servers, actions and placement groups.

use super::json::{self, IMAGES, LOCATIONS, SERVER_TYPES};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

/// Labels of a resource.
pub type Labels = BTreeMap<String, String>;

/// An uploaded SSH public key.
#[derive(Clone, Debug)]
pub struct SshKey {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// OpenSSH public key line.
    pub public_key: String,
    /// MD5 fingerprint, as Hetzner shows it.
    pub fingerprint: String,
    /// Labels.
    pub labels: Labels,
    /// Creation time.
    pub created: SystemTime,
}

/// A spread placement group.
#[derive(Clone, Debug)]
pub struct PlacementGroup {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Creation time.
    pub created: SystemTime,
}

/// A server and its node.
#[derive(Clone, Debug)]
pub struct Server {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Index into [`SERVER_TYPES`].
    pub server_type: usize,
    /// Index into [`IMAGES`].
    pub image: usize,
    /// Index into [`LOCATIONS`].
    pub location: usize,
    /// The placement group's id, if any.
    pub placement_group: Option<i64>,
    /// Names of the SSH keys installed for root.
    pub ssh_keys: Vec<String>,
    /// cloud-init user data.
    pub user_data: Option<String>,
    /// The public IPv4 address (a loopback address here).
    pub ipv4: Ipv4Addr,
    /// Creation time.
    pub created: SystemTime,
    /// Whether the node has booted (its sshd answers, when nodes are enabled).
    pub booted: bool,
}

/// An asynchronous operation; it succeeds `delay` after it started.
#[derive(Clone, Debug)]
pub struct Action {
    /// Id.
    pub id: i64,
    /// E.g. `create_server`.
    pub command: String,
    /// The resource it acts on: (id, type).
    pub resource: (i64, &'static str),
    /// Start time.
    pub started: SystemTime,
    /// How long it runs.
    pub delay: Duration,
}

/// Everything the fake cloud holds.
#[derive(Debug, Default)]
pub struct State {
    next_id: i64,
    /// SSH keys by id.
    pub ssh_keys: BTreeMap<i64, SshKey>,
    /// Placement groups by id.
    pub placement_groups: BTreeMap<i64, PlacementGroup>,
    /// Servers by id.
    pub servers: BTreeMap<i64, Server>,
    /// Actions by id.
    pub actions: BTreeMap<i64, Action>,
}

impl State {
    /// A fresh id, unique across resource kinds.
    pub fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records an action and returns its id.
    pub fn action(&mut self, command: &str, resource: (i64, &'static str), delay: Duration) -> i64 {
        let id = self.id();
        self.actions.insert(
            id,
            Action {
                id,
                command: command.into(),
                resource,
                started: SystemTime::now(),
                delay,
            },
        );
        id
    }

    /// A server as JSON.
    pub fn server_json(&self, s: &Server, action_delay: Duration) -> Value {
        let running = s.booted && SystemTime::now() >= s.created + action_delay;
        let pg = s
            .placement_group
            .and_then(|id| self.placement_groups.get(&id))
            .map(|g| self.placement_group_json(g));
        json!({
            "id": s.id, "name": s.name, "labels": s.labels,
            "status": if running { "running" } else { "initializing" },
            "created": json::rfc3339(s.created),
            "public_net": {
                "ipv4": { "id": s.id, "ip": s.ipv4.to_string(), "blocked": false,
                          "dns_ptr": format!("static.{}.clients.your-server.de", s.ipv4) },
                "ipv6": null, "floating_ips": [], "firewalls": [],
            },
            "private_net": [],
            "server_type": json::server_type(s.server_type),
            "datacenter": json::datacenter(s.location),
            "location": json::location(s.location),
            "image": json::image(s.image),
            "iso": null, "rescue_enabled": false, "locked": false, "backup_window": null,
            "outgoing_traffic": 0, "ingoing_traffic": 0, "included_traffic": 21_990_232_555_520_i64,
            "protection": { "delete": false, "rebuild": false },
            "primary_disk_size": SERVER_TYPES[s.server_type].3 as i64,
            "placement_group": pg, "load_balancers": [], "volumes": [],
        })
    }

    /// A placement group as JSON, with its servers.
    pub fn placement_group_json(&self, g: &PlacementGroup) -> Value {
        let servers: Vec<i64> = self
            .servers
            .values()
            .filter(|s| s.placement_group == Some(g.id))
            .map(|s| s.id)
            .collect();
        json!({
            "id": g.id, "name": g.name, "labels": g.labels, "type": "spread",
            "created": json::rfc3339(g.created), "servers": servers,
        })
    }

    /// An SSH key as JSON.
    pub fn ssh_key_json(k: &SshKey) -> Value {
        json!({
            "id": k.id, "name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint,
            "labels": k.labels, "created": json::rfc3339(k.created),
        })
    }

    /// An action as JSON; its status follows from the time.
    pub fn action_json(a: &Action) -> Value {
        let elapsed = a.started.elapsed().unwrap_or(Duration::ZERO);
        let done = elapsed >= a.delay;
        let progress = if done {
            100
        } else {
            (elapsed.as_millis() * 100 / a.delay.as_millis().max(1)) as i64
        };
        json!({
            "id": a.id, "command": a.command, "status": if done { "success" } else { "running" },
            "progress": progress, "started": json::rfc3339(a.started),
            "finished": if done { Some(json::rfc3339(a.started + a.delay)) } else { None },
            "resources": [{ "id": a.resource.0, "type": a.resource.1 }], "error": null,
        })
    }
}

/// Looks a catalog entry up by name or id (as text).
pub fn find<T>(list: &[(json::Entry, T, T)], key: &str) -> Option<usize> {
    list.iter()
        .position(|(e, _, _)| e.name == key || e.id.to_string() == key)
}

/// Looks a server type up by name or id.
pub fn find_server_type(key: &str) -> Option<usize> {
    SERVER_TYPES
        .iter()
        .position(|(e, ..)| e.name == key || e.id.to_string() == key)
}

/// Looks an image up by name or id.
pub fn find_image(key: &str) -> Option<usize> {
    find(&IMAGES, key)
}

/// Looks a location up by name or id.
pub fn find_location(key: &str) -> Option<usize> {
    find(&LOCATIONS, key)
}

/// The MD5 fingerprint of an OpenSSH public key line, `aa:bb:…`.
pub fn fingerprint(public_key: &str) -> Option<String> {
    use base64::Engine;
    let blob = public_key.split_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = md5::compute(bytes);
    Some(
        digest
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}
