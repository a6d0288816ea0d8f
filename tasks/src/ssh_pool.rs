//! [`Pool`]: the open SSH connections of one process, one per node, and with
//! [`SshConfig::persist`] the masters it hands on to the next process.

use crate::ssh::{Remote, SshConfig, SshError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One pooled connection, and the settings it was opened with: with
/// [`SshConfig::persist`], its master is kept when the process is done.
struct Entry {
    remote: Arc<Remote>,
    cfg: SshConfig,
}

/// Open connections shared by the steps of one process, one per node and address.
///
/// A step asks for its node's connection; a live one is reused (one SSH
/// handshake per node, not one per step), a dead one (the node rebooted, or
/// was re-created) is replaced. Where the config persists masters, a master
/// kept by an earlier process is resumed first ([`crate::ssh_masters`]), and
/// [`Pool::close_all`] keeps them instead of closing them.
#[derive(Default)]
pub struct Pool {
    open: tokio::sync::Mutex<HashMap<(String, String), Entry>>,
}

impl Pool {
    /// The connection to `node` at `host`, waiting up to `patience` for a new one.
    pub async fn get(
        &self,
        cfg: &SshConfig,
        node: &str,
        host: &str,
        patience: Duration,
    ) -> Result<Arc<Remote>, SshError> {
        let key = (node.to_string(), host.to_string());
        if let Some(r) = self.open.lock().await.get(&key).map(|e| e.remote.clone())
            && r.is_alive().await
        {
            return Ok(r);
        }
        let resumed = match &cfg.persist {
            Some(p) => p.resume(cfg, node, host).await,
            None => None,
        };
        let fresh = match resumed {
            Some(session) => {
                tracing::debug!("node {node}: resumed the SSH master an earlier process kept");
                Remote::from_session(session, node, host)
            }
            None => Remote::wait_for(cfg, node, host, patience).await?,
        };
        let fresh = Arc::new(fresh);
        self.insert(cfg, node, host, fresh.clone()).await;
        Ok(fresh)
    }

    async fn insert(&self, cfg: &SshConfig, node: &str, host: &str, remote: Arc<Remote>) {
        let cfg = cfg.clone();
        let mut open = self.open.lock().await;
        open.retain(|(n, _), _| n != node);
        open.insert((node.to_string(), host.to_string()), Entry { remote, cfg });
    }

    /// Makes `remote` the connection to `node` at `host` (one the caller
    /// opened itself, e.g. with [`crate::ssh::HostKeys::Pinned`] after a reboot).
    pub async fn put(&self, cfg: &SshConfig, node: &str, host: &str, remote: Arc<Remote>) {
        self.insert(cfg, node, host, remote).await;
    }

    /// Drops the connections to `node` (it is being deleted, or rebooting);
    /// one no step holds any more is closed. A master kept by an earlier
    /// process is left to [`crate::ssh_masters::Persist::close`].
    pub async fn forget(&self, node: &str) {
        let gone: Vec<Entry> = {
            let mut open = self.open.lock().await;
            let keys: Vec<_> = open.keys().filter(|(n, _)| n == node).cloned().collect();
            keys.iter().filter_map(|k| open.remove(k)).collect()
        };
        for e in gone {
            if let Ok(r) = Arc::try_unwrap(e.remote) {
                let _ = r.close().await;
            }
        }
    }

    /// Hands every connection no step holds any more on (kept masters) or
    /// closes it (at the end of a process).
    pub async fn close_all(&self) {
        let open: Vec<_> = self.open.lock().await.drain().collect();
        for ((node, _), e) in open {
            let Ok(r) = Arc::try_unwrap(e.remote) else {
                continue;
            };
            match &e.cfg.persist {
                Some(p) => {
                    let (session, host) = r.into_parts();
                    if let Err(err) = p.keep(&e.cfg, &node, &host, session).await {
                        tracing::warn!("keeping the SSH master of node {node}: {err}");
                    }
                }
                None => {
                    let _ = r.close().await;
                }
            }
        }
    }
}
