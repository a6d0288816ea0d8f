//! [`Registry`]: the cluster's etcd (over mutual TLS), in nix-infra's data model.
//!
//! ```text
//! /cluster/nodes/<node>                              {"name","ipv4","services":[groups]}
//! /cluster/{services,backends,frontends}/<app>/meta_data   {"publish":{"port"},"env_prefix","env":{…}}
//! /cluster/{services,backends,frontends}/<app>/instances/<node>  {"node","ipv4","port"}
//! /coreos.com/network/config                         flannel's network: {"Network","SubnetLen","Backend"}
//! /coreos.com/network/subnets/<a.b.c.d-len>          flannel's lease: {"PublicIP",…}
//! ```
//! Overlay subnets are reserved here before a node's first rebuild (a lease
//! without a TTL is a reservation flannel honours), so the node's overlay
//! address is known when its configuration is rendered: one deploy, not two.
//! Every write can be repeated; removing what is not there succeeds.
//!
//! App entries are written by the nodes themselves in a Dart-era cluster
//! (the templates' `builtins.toJSON`, keys sorted), so they are read as Nix
//! writes them: an `env` value may be a string, an integer, a boolean or
//! null ([`EnvValue`]), and a port may be null (an app without one).

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    TlsOptions, Txn, TxnOp,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

mod env;
pub use env::EnvValue;

/// Why a registry call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    /// etcd could not be reached or refused us (TLS included).
    #[error("etcd: {0}")]
    Etcd(String),
    /// A stored value is not what the data model says.
    #[error("bad value at {key}: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

fn etcd(e: etcd_client::Error) -> RegistryError {
    RegistryError::Etcd(e.to_string())
}

/// TLS material for etcd: the CA to trust and our client certificate.
#[derive(Clone)]
pub struct RegistryTls {
    /// CA certificate(s), PEM.
    pub ca_pem: String,
    /// Client certificate, PEM.
    pub cert_pem: String,
    /// Client key, PEM.
    pub key_pem: String,
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Node name.
    pub name: String,
    /// Public IPv4.
    pub ipv4: String,
    /// Service groups the node runs.
    pub services: Vec<String>,
}

/// Which registry an app lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppKind {
    /// Internal services.
    Service,
    /// Backends behind HAProxy.
    Backend,
    /// Frontends on the ingress.
    Frontend,
}

impl AppKind {
    fn dir(self) -> &'static str {
        match self {
            AppKind::Service => "services",
            AppKind::Backend => "backends",
            AppKind::Frontend => "frontends",
        }
    }
}

/// The port an app publishes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// Port; `null` (none) for an app that publishes none (the templates'
    /// `app.port` defaults to null).
    pub port: Option<u16>,
}

/// An app's `meta_data`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMeta {
    /// What it publishes.
    pub publish: Publish,
    /// Prefix of the environment variables other apps get for it.
    pub env_prefix: String,
    /// Extra environment, as written (a missing `env` is an empty one).
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
}

impl AppMeta {
    /// The environment as text, for where a string is needed: integers and
    /// booleans in their JSON spelling (`11211`, `true`), null values left out.
    pub fn env_text(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.text()?)))
            .collect()
    }
}

/// One running instance of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The node it runs on.
    pub node: String,
    /// That node's IPv4 (the templates write the address the app binds to).
    pub ipv4: String,
    /// Its port; `null` (none) for an app without one, as the templates write it.
    pub port: Option<u16>,
}

/// An app with its instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppEntry {
    /// Its meta data, if registered.
    pub meta: Option<AppMeta>,
    /// Instances by node.
    pub instances: BTreeMap<String, Instance>,
}

/// A flannel subnet lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// The subnet, e.g. `10.100.23.0/24`.
    pub subnet: String,
    /// The node's public IP that holds it.
    pub public_ip: String,
}

impl Subnet {
    /// The node's overlay address: the subnet's first address.
    pub fn overlay_ip(&self) -> String {
        self.subnet
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

/// A connection to the cluster's etcd.
#[derive(Clone)]
pub struct Registry {
    client: Client,
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, value: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(value).map_err(|e| RegistryError::BadValue {
        key: key.into(),
        reason: e.to_string(),
    })
}

impl Registry {
    /// Connects to `endpoints` (https with `tls`, or plain http for tests).
    pub async fn connect(
        endpoints: &[String],
        tls: Option<&RegistryTls>,
    ) -> Result<Registry, RegistryError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10));
        if let Some(t) = tls {
            opts = opts.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(&t.ca_pem))
                    .identity(Identity::from_pem(&t.cert_pem, &t.key_pem)),
            );
        }
        let mut client = Client::connect(endpoints, Some(opts)).await.map_err(etcd)?;
        // Prove the connection (a refused certificate fails here, not later).
        client.status().await.map_err(etcd)?;
        Ok(Registry { client })
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), RegistryError> {
        let json = serde_json::to_string(value).map_err(|e| RegistryError::BadValue {
            key: key.into(),
            reason: e.to_string(),
        })?;
        self.client
            .kv_client()
            .put(key, json, None)
            .await
            .map_err(etcd)?;
        Ok(())
    }

    async fn delete(&self, key: &str, prefix: bool) -> Result<(), RegistryError> {
        let opts = prefix.then(|| DeleteOptions::new().with_prefix());
        self.client
            .kv_client()
            .delete(key, opts)
            .await
            .map_err(etcd)?;
        Ok(())
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, RegistryError> {
        let resp = self
            .client
            .kv_client()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(etcd)?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).to_string(),
                    kv.value().to_vec(),
                )
            })
            .collect())
    }

    /// Registers (or updates) a node.
    pub async fn register_node(&self, node: &NodeEntry) -> Result<(), RegistryError> {
        self.put(&format!("/cluster/nodes/{}", node.name), node)
            .await
    }

    /// Removes a node.
    pub async fn unregister_node(&self, name: &str) -> Result<(), RegistryError> {
        self.delete(&format!("/cluster/nodes/{name}"), false).await
    }

    /// Every registered node, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeEntry>, RegistryError> {
        self.scan("/cluster/nodes/")
            .await?
            .iter()
            .map(|(k, v)| decode(k, v))
            .collect()
    }

    /// Registers (or updates) an app's meta data.
    pub async fn register_app(
        &self,
        kind: AppKind,
        app: &str,
        meta: &AppMeta,
    ) -> Result<(), RegistryError> {
        self.put(&format!("/cluster/{}/{app}/meta_data", kind.dir()), meta)
            .await
    }

    /// Registers an instance of an app.
    pub async fn register_instance(
        &self,
        kind: AppKind,
        app: &str,
        inst: &Instance,
    ) -> Result<(), RegistryError> {
        self.put(
            &format!("/cluster/{}/{app}/instances/{}", kind.dir(), inst.node),
            inst,
        )
        .await
    }

    /// Removes one instance.
    pub async fn unregister_instance(
        &self,
        kind: AppKind,
        app: &str,
        node: &str,
    ) -> Result<(), RegistryError> {
        self.delete(
            &format!("/cluster/{}/{app}/instances/{node}", kind.dir()),
            false,
        )
        .await
    }

    /// Removes an app: its meta data and every instance.
    pub async fn unregister_app(&self, kind: AppKind, app: &str) -> Result<(), RegistryError> {
        self.delete(&format!("/cluster/{}/{app}/", kind.dir()), true)
            .await
    }

    /// Every app of `kind` with its instances.
    pub async fn apps(&self, kind: AppKind) -> Result<BTreeMap<String, AppEntry>, RegistryError> {
        let prefix = format!("/cluster/{}/", kind.dir());
        let mut out: BTreeMap<String, AppEntry> = BTreeMap::new();
        for (key, value) in self.scan(&prefix).await? {
            let rest = &key[prefix.len()..];
            let mut parts = rest.splitn(3, '/');
            let (Some(app), Some(what)) = (parts.next(), parts.next()) else {
                continue;
            };
            let entry = out.entry(app.to_string()).or_insert(AppEntry {
                meta: None,
                instances: BTreeMap::new(),
            });
            match (what, parts.next()) {
                ("meta_data", None) => entry.meta = Some(decode(&key, &value)?),
                ("instances", Some(node)) => {
                    entry
                        .instances
                        .insert(node.to_string(), decode(&key, &value)?);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// flannel's subnet leases: which node holds which overlay subnet.
    pub async fn overlay(&self) -> Result<Vec<Subnet>, RegistryError> {
        let prefix = "/coreos.com/network/subnets/";
        let mut out = Vec::new();
        for (key, value) in self.scan(prefix).await? {
            let lease: serde_json::Value = decode(&key, &value)?;
            let public_ip = lease["PublicIP"].as_str().unwrap_or_default().to_string();
            out.push(Subnet {
                subnet: key[prefix.len()..].replacen('-', "/", 1),
                public_ip,
            });
        }
        Ok(out)
    }

    /// The overlay address of the node with public address `ipv4`, once flannel has leased it a subnet.
    pub async fn overlay_ip(&self, ipv4: &str) -> Result<Option<String>, RegistryError> {
        Ok(self
            .overlay()
            .await?
            .into_iter()
            .find(|s| s.public_ip == ipv4)
            .map(|s| s.overlay_ip()))
    }

    /// Raw values under `prefix`, for inspection and tests.
    pub async fn raw(&self, prefix: &str) -> Result<BTreeMap<String, String>, RegistryError> {
        Ok(self
            .scan(prefix)
            .await?
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).to_string()))
            .collect())
    }

    /// Writes a raw value (flannel does this in a real cluster; tests stand in for it).
    pub async fn put_raw(&self, key: &str, value: &str) -> Result<(), RegistryError> {
        self.client
            .kv_client()
            .put(key, value, None)
            .await
            .map_err(etcd)?;
        Ok(())
    }
}

/// The overlay network of a cluster that states none: flannel over
/// WireGuard, a /24 per node.
pub const OVERLAY_NETWORK: &str = "10.100.0.0/16";

const SUBNETS: &str = "/coreos.com/network/subnets/";

pub use crate::overlay::OverlayNetwork;

impl Registry {
    /// Writes flannel's network configuration unless it is there already.
    pub async fn ensure_network_config(&self, net: &OverlayNetwork) -> Result<(), RegistryError> {
        let key = "/coreos.com/network/config";
        let value = net.config_json().to_string();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        self.client.kv_client().txn(txn).await.map_err(etcd)?;
        Ok(())
    }

    /// The overlay subnet of the node with public address `ipv4`: its lease
    /// if it holds one inside `net`, else a newly reserved free subnet of
    /// `net` (compare-and-set, so two nodes reserving at once never get the
    /// same one).
    pub async fn reserve_subnet(
        &self,
        ipv4: &str,
        net: &OverlayNetwork,
    ) -> Result<Subnet, RegistryError> {
        let leases = self.overlay().await?;
        if let Some(s) = leases
            .iter()
            .find(|s| s.public_ip == ipv4 && net.accepts(&s.subnet))
        {
            return Ok(s.clone());
        }
        let taken: std::collections::BTreeSet<&str> =
            leases.iter().map(|s| s.subnet.as_str()).collect();
        let value = serde_json::json!({
            "PublicIP": ipv4, "PublicIPv6": null, "BackendType": "wireguard", "BackendData": null
        })
        .to_string();
        let len = net.subnet_len;
        for addr in net.subnets() {
            let subnet = format!("{addr}/{len}");
            if taken.contains(subnet.as_str()) {
                continue;
            }
            let key = format!("{SUBNETS}{addr}-{len}");
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), value.as_str(), None)]);
            if self
                .client
                .kv_client()
                .txn(txn)
                .await
                .map_err(etcd)?
                .succeeded()
            {
                return Ok(Subnet {
                    subnet,
                    public_ip: ipv4.into(),
                });
            }
        }
        Err(RegistryError::BadValue {
            key: SUBNETS.into(),
            reason: format!("no free /{len} left in {}", net.cidr()),
        })
    }

    /// Drops the overlay lease of the node with public address `ipv4` (on unregister).
    pub async fn release_subnet(&self, ipv4: &str) -> Result<(), RegistryError> {
        for s in self
            .overlay()
            .await?
            .into_iter()
            .filter(|s| s.public_ip == ipv4)
        {
            self.delete(
                &format!("{SUBNETS}{}", s.subnet.replacen('/', "-", 1)),
                false,
            )
            .await?;
        }
        Ok(())
    }
}
