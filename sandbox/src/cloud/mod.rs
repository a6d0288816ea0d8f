//! [`TestCloud`]: a fake Hetzner Cloud API on loopback whose servers can boot real sshd nodes.
//!
//! Hetzner's own clients work against it unchanged once pointed at
//! [`TestCloud::endpoint`]. Servers get loopback addresses (`127.X.Y.Z`), and
//! with [`CloudConfig::nodes`] each one boots a [`crate::Node`]: an sshd on that
//! address with its own host key, hostname and filesystem view, starting as
//! Hetzner's stock image does. The cloud also serves the installer that turns
//! a node into (stand-in) NixOS: [`TestCloud::installer_url`], with
//! [`TestCloud::installer_sha256`].
//!
//! # The API it speaks
//!
//! Responses are shaped as Hetzner's published OpenAPI document describes
//! them. The repository carries that document, copied unchanged, as
//! `testkit/openapi/hcloud.openapi.json`; `testkit::contract` checks every
//! response a recording cloud sent against it (see [`CloudConfig::record`]).
//! To refresh it, copy a newer published document over that file and run the
//! sandbox and tasks tests.
//!
//! The copy lags the real API, so the fake sends a few fields beyond it, listed
//! (with the reason) in `testkit/openapi/additions.json`, which the check
//! applies on top of the copy and which can only add fields and make them
//! required, never loosen the published schema:
//!
//! | object | field | the fake sends | why |
//! | --- | --- | --- | --- |
//! | `server_types[].locations[]` | `available` (boolean) | `true` everywhere | Hetzner sends it; current clients require it |
//! | `server_types[].locations[]` | `recommended` (boolean) | `true` for the default location (`fsn1`), else `false` | Hetzner sends it; current clients require it |

mod api;
mod faults;
mod json;
mod labels;
mod state;
mod update;

pub use labels::Selector;

use crate::node::{Node, NodeSpec};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the fake cloud behaves.
#[derive(Clone, Debug)]
pub struct CloudConfig {
    /// The bearer token clients must send.
    pub token: String,
    /// How long actions (create, delete) take to succeed.
    pub action_delay: Duration,
    /// Whether servers boot real sshd nodes (needs root); otherwise only the API exists.
    pub nodes: bool,
    /// Extra time a node takes to boot before its sshd starts.
    pub boot_delay: Duration,
    /// Time a rebooting node's old system still runs (its sshd answers, its
    /// sessions stay open) before it goes down, as systemd stops units.
    pub shutdown_delay: Duration,
    /// Whether to keep every JSON response (see [`TestCloud::recorded`]), for
    /// the contract check of tests. Off by default: a long-lived cloud would
    /// keep every body it ever sent.
    pub record: bool,
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            token: "testcloud-token".into(),
            action_delay: Duration::from_millis(200),
            nodes: false,
            boot_delay: Duration::from_millis(0),
            shutdown_delay: Duration::ZERO,
            record: false,
        }
    }
}

impl CloudConfig {
    /// What `nix-infra sandbox serve` (and `nix-infra-testcloud` with its
    /// default flags) runs: servers boot nodes, actions take 300 ms, a boot
    /// 200 ms more, and nothing is recorded.
    pub fn sandbox(token: String) -> CloudConfig {
        CloudConfig {
            token,
            action_delay: Duration::from_millis(300),
            nodes: true,
            boot_delay: Duration::from_millis(200),
            shutdown_delay: Duration::ZERO,
            record: false,
        }
    }

    /// The same configuration with response recording on, for the contract check.
    pub fn recording(self) -> CloudConfig {
        CloudConfig {
            record: true,
            ..self
        }
    }
}

/// Faults to inject; each counter applies to that many upcoming requests.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer this many requests with 429 and Hetzner's rate-limit headers.
    pub rate_limited: u32,
    /// Seconds until the rate limit resets, as `RateLimit-Reset` says.
    pub rate_limit_reset: Duration,
    /// Answer this many requests with 503.
    pub server_errors: u32,
    /// Delay every request by this much.
    pub latency: Duration,
    /// Create this many servers but break off the response.
    pub dropped_creates: u32,
    /// The share of requests (0 to 1) that exhaust the rate limit: each gets
    /// 429 with `RateLimit-Reset` at the next whole second after
    /// `rate_limit_reset`, and so does every request until then, as Hetzner's
    /// bucket answers once empty. See [`TestCloud::early_calls`].
    pub rate_limited_share: f64,
    /// The share of requests (0 to 1) answered 503.
    pub server_error_share: f64,
}

/// The rate limit as the shares of [`Faults`] leave it.
#[derive(Debug)]
pub(crate) struct Limiter {
    /// The reset (Unix seconds) of the exhausted limit, while it lasts.
    pub(crate) window: Option<u64>,
    /// The connections told of a reset, with it.
    pub(crate) told: std::collections::HashMap<std::net::SocketAddr, u64>,
    /// Requests on a connection that had been told of a reset not yet reached.
    pub(crate) early: u32,
    /// Requests answered 429, and 503, so far.
    pub(crate) served: (u32, u32),
    /// Seeded: a test's faults fall the same way every run.
    pub(crate) rng: rand::rngs::StdRng,
}

/// One response the fake sent, kept when [`CloudConfig::record`] is on.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Lower-case HTTP method.
    pub method: String,
    /// The OpenAPI path template, e.g. `/servers/{id}`.
    pub path: String,
    /// HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// State shared by the handlers.
pub(crate) struct Shared {
    config: CloudConfig,
    state: Mutex<state::State>,
    faults: Mutex<Faults>,
    limiter: Mutex<Limiter>,
    /// `Some` only when recording is on.
    recorded: Option<Mutex<Vec<Recorded>>>,
    nodes: Option<Mutex<BTreeMap<i64, Node>>>,
    ip_block: Mutex<(u8, u8, u8)>,
}

impl Shared {
    /// The next free loopback address for a server.
    fn allocate_ip(&self) -> Result<Ipv4Addr, api::ApiError> {
        let mut block = self.ip_block.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..65_000 {
            // The next address, never .0 or .255.
            let (a, b, c) = *block;
            *block = match (b, c) {
                (254, 254) => (a, 1, 1),
                (_, 254) => (a, b + 1, 1),
                _ => (a, b, c + 1),
            };
            let (a, b, c) = *block;
            let ip = Ipv4Addr::new(127, a, b, c);
            // Another test process may use the same block: only take an address
            // whose SSH port is free.
            if self.nodes.is_none() || TcpListener::bind(SocketAddr::from((ip, 22))).is_ok() {
                return Ok(ip);
            }
        }
        Err(api::ApiError(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "resource_unavailable",
            "no free loopback address".into(),
        ))
    }

    /// Boots the server's node in the background, when nodes are enabled.
    fn boot(self: &Arc<Self>, server: state::Server) {
        if self.nodes.is_none() {
            return;
        }
        let keys: Vec<String> = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            server
                .ssh_keys
                .iter()
                .filter_map(|name| s.ssh_keys.values().find(|k| &k.name == name))
                .map(|k| k.public_key.clone())
                .collect()
        };
        let spec = NodeSpec {
            name: server.name.clone(),
            ip: server.ipv4,
            authorized_keys: keys,
            boot_delay: self.config.boot_delay,
            shutdown_delay: self.config.shutdown_delay,
            user_data: server.user_data.clone(),
        };
        let shared = self.clone();
        let id = server.id;
        // Spawned from a worker thread that lives as long as the runtime, so the
        // node's parent-death signal only fires when the cloud goes away.
        tokio::spawn(async move {
            match Node::boot(spec).await {
                Ok(node) => {
                    let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                    match s.servers.get_mut(&id) {
                        Some(server) => {
                            server.booted = true;
                            drop(s);
                            if let Some(nodes) = &shared.nodes {
                                nodes
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .insert(id, node);
                            }
                        }
                        None => drop(node), // deleted while booting
                    }
                }
                Err(e) => eprintln!("testcloud: node for server {id} failed to boot: {e}"),
            }
        });
    }

    /// Stops the server's node and removes its state.
    fn shutdown_node(&self, id: i64) {
        if let Some(nodes) = &self.nodes {
            let node = nodes.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            drop(node);
        }
    }
}

/// A running fake Hetzner API; stops (with all its nodes) on drop.
pub struct TestCloud {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl TestCloud {
    /// Starts the API on a free port of 127.0.0.1.
    pub async fn start(config: CloudConfig) -> std::io::Result<TestCloud> {
        Self::start_on("127.0.0.1:0".parse().expect("literal address"), config).await
    }

    /// Starts the API on `listen`, which must be a loopback address.
    pub async fn start_on(listen: SocketAddr, config: CloudConfig) -> std::io::Result<TestCloud> {
        if !listen.ip().is_loopback() {
            return Err(std::io::Error::other(format!(
                "the test cloud only listens on loopback, not {listen}"
            )));
        }
        let block = 16 + (rand::random::<u8>() % 200);
        let shared = Arc::new(Shared {
            nodes: config.nodes.then(Default::default),
            recorded: config.record.then(Default::default),
            config,
            state: Default::default(),
            faults: Default::default(),
            limiter: Mutex::new(Limiter {
                window: None,
                told: Default::default(),
                early: 0,
                served: (0, 0),
                rng: rand::SeedableRng::seed_from_u64(17),
            }),
            ip_block: Mutex::new((block, 1, 0)),
        });
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let app = api::router(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        Ok(TestCloud {
            shared,
            addr,
            server,
        })
    }

    /// The base URL clients use, ending in `/v1`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bearer token clients must send.
    pub fn token(&self) -> &str {
        &self.shared.config.token
    }

    /// Where nodes fetch the installer (`NIXOS_INFECT_URL`): the nixos-infect
    /// stand-in, served by this cloud outside `/v1`.
    pub fn installer_url(&self) -> String {
        format!("http://{}{}", self.addr, crate::installer::PATH)
    }

    /// The installer's sha256 (`NIXOS_INFECT_SHA256`).
    pub fn installer_sha256(&self) -> &'static str {
        crate::installer::sha256()
    }

    /// What a serving process prints once it listens: `HCLOUD_ENDPOINT`,
    /// `NIXOS_INFECT_URL` and `NIXOS_INFECT_SHA256`, one line each (the
    /// token is the caller's own).
    pub fn printed_lines(&self) -> String {
        format!(
            "HCLOUD_ENDPOINT={}\nNIXOS_INFECT_URL={}\nNIXOS_INFECT_SHA256={}\n",
            self.endpoint(),
            self.installer_url(),
            self.installer_sha256()
        )
    }

    /// The `.env` lines that point a cluster at this cloud: the API
    /// (`HCLOUD_ENDPOINT`, `HCLOUD_TOKEN`) and the installer
    /// (`NIXOS_INFECT_URL`, `NIXOS_INFECT_SHA256`), the only differences
    /// between a sandbox run and a real one.
    pub fn env_lines(&self) -> String {
        format!(
            "HCLOUD_ENDPOINT={}\nHCLOUD_TOKEN={}\nNIXOS_INFECT_URL={}\nNIXOS_INFECT_SHA256={}\n",
            self.endpoint(),
            self.token(),
            self.installer_url(),
            self.installer_sha256()
        )
    }

    /// Changes the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
        // New settings, a full bucket: a window a past client opened is gone.
        self.shared
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .window = None;
    }

    /// Requests a client sent on a connection that had been answered 429,
    /// before the reset that answer gave: calls made without waiting as
    /// `RateLimit-Reset` said.
    pub fn early_calls(&self) -> u32 {
        self.shared
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .early
    }

    /// How many requests were answered 429, and how many 503, so far.
    pub fn faults_served(&self) -> (u32, u32) {
        self.shared
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .served
    }

    /// Whether this cloud keeps its responses ([`CloudConfig::record`]).
    pub fn is_recording(&self) -> bool {
        self.shared.recorded.is_some()
    }

    /// Every JSON response sent so far.
    ///
    /// # Panics
    /// When the cloud was started without [`CloudConfig::record`]: a check of
    /// the recorded responses would otherwise pass on nothing.
    pub fn recorded(&self) -> Vec<Recorded> {
        const NOT_RECORDING: &str = "this test cloud does not record responses: \
            start it with CloudConfig { record: true, .. }";
        self.shared
            .recorded
            .as_ref()
            .expect(NOT_RECORDING)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Names of the servers that exist now.
    pub fn server_names(&self) -> Vec<String> {
        let s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        s.servers.values().map(|v| v.name.clone()).collect()
    }

    /// Makes server `name`'s node come back from its next reboot with a new
    /// host key; `false` if it has no node (yet).
    pub fn change_host_key_on_reboot(&self, name: &str) -> std::io::Result<bool> {
        let Some(id) = self.server_id(name) else {
            return Ok(false);
        };
        let Some(nodes) = self.shared.nodes.as_ref() else {
            return Ok(false);
        };
        let nodes = nodes.lock().unwrap_or_else(|p| p.into_inner());
        match nodes.get(&id) {
            Some(node) => node.change_host_key_on_next_boot().map(|_| true),
            None => Ok(false),
        }
    }

    fn server_id(&self, name: &str) -> Option<i64> {
        let s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        s.servers.values().find(|v| v.name == name).map(|v| v.id)
    }

    /// The node of server `name`, once it has booted.
    pub fn node(&self, name: &str) -> Option<crate::node::NodeInfo> {
        let id = self.server_id(name)?;
        let nodes = self.shared.nodes.as_ref()?;
        let nodes = nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.get(&id).map(Node::info)
    }
}

impl Drop for TestCloud {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(nodes) = &self.shared.nodes {
            std::mem::take(&mut *nodes.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_server_types(cloud: &TestCloud) {
        let status = reqwest::Client::new()
            .get(format!("{}/server_types", cloud.endpoint()))
            .bearer_auth(cloud.token())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    #[test]
    fn recording_is_off_by_default() {
        assert!(!CloudConfig::default().record);
        assert!(!CloudConfig::sandbox("t".into()).record);
        assert!(CloudConfig::default().recording().record);
    }

    #[tokio::test]
    async fn a_cloud_keeps_responses_only_when_asked() {
        let quiet = TestCloud::start(CloudConfig::default()).await.unwrap();
        get_server_types(&quiet).await;
        assert!(!quiet.is_recording());
        assert!(quiet.shared.recorded.is_none(), "nothing is kept");
        let asked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| quiet.recorded()));
        assert!(
            asked.is_err(),
            "asking a quiet cloud for its responses is a test bug"
        );

        let recording = TestCloud::start(CloudConfig::default().recording())
            .await
            .unwrap();
        get_server_types(&recording).await;
        let kept = recording.recorded();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].path.as_str(), kept[0].status),
            ("/server_types", 200)
        );
    }
}
