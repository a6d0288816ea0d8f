//! What steps reach the cluster with: its keys, CA and secret store in the
//! cluster directory, and its registry (etcd on the control nodes).

use super::NodesInput;
use super::steps::Ctrl;
use crate::domain::Role;
use age::secrecy::ExposeSecret;
use engine::{Step, StepContext, StepError};
use tasks::provider::{LABEL_ROLE, ServerInfo};
use tasks::registry::{Registry, RegistryTls};
use tasks::secrets::SecretStore;

/// The cluster's secret store (`DIR/secrets`, `SECRETS_PASS` or the identity).
pub(crate) fn secret_store(i: &NodesInput) -> Result<SecretStore, StepError> {
    i.repo()?.secrets().map_err(StepError::permanent)
}

/// The cluster CA.
pub(crate) fn load_ca(i: &NodesInput) -> Result<tasks::ca::Ca, StepError> {
    i.repo()?.ca().map_err(StepError::permanent)
}

/// etcd's client URLs: `ETCD_ENDPOINTS`, else every server labelled `ctrl`.
pub(crate) async fn ctrl_endpoints(i: &NodesInput) -> Result<Vec<String>, StepError> {
    if let Some(e) = i.env("ETCD_ENDPOINTS") {
        return Ok(e.split(',').map(|s| s.trim().to_string()).collect());
    }
    let mut ctrl: Vec<_> = ctrl_servers(i).await?;
    ctrl.sort();
    Ok(ctrl
        .into_iter()
        .map(|(_, ip)| format!("https://{ip}:2379"))
        .collect())
}

/// (name, ipv4) of every control node the provider knows.
pub(crate) async fn ctrl_servers(i: &NodesInput) -> Result<Vec<(String, String)>, StepError> {
    let mut out: Vec<_> = i
        .servers()
        .await?
        .into_iter()
        .filter(|s| server_role(s) == Some(Role::Ctrl))
        .filter_map(|s| Some((s.node()?.to_string(), s.ipv4?)))
        .collect();
    out.sort();
    Ok(out)
}

/// Connects to etcd as the orchestrator (mutual TLS with the cluster CA).
pub(crate) async fn connect(i: &NodesInput, endpoints: &[String]) -> Result<Registry, StepError> {
    let ca = load_ca(i)?;
    let me = ca.orchestrator().map_err(StepError::permanent)?;
    let tls = RegistryTls {
        // The chain: an etcd the Dart tool set up serves its certificate without the intermediate.
        ca_pem: ca.chain_pem(),
        cert_pem: me.cert_pem.clone(),
        key_pem: me.key_pem.expose_secret().into(),
    };
    Registry::connect(endpoints, Some(&tls))
        .await
        .map_err(StepError::retryable)
}

/// The cluster's registry: `ETCD_ENDPOINTS`, else the control nodes' etcd.
pub async fn open_registry(i: &NodesInput) -> Result<Registry, StepError> {
    let endpoints = ctrl_endpoints(i).await?;
    if endpoints.is_empty() {
        return Err(StepError::permanent(format!(
            "cluster {} has no control node (and ETCD_ENDPOINTS is not set)",
            i.cluster
        )));
    }
    connect(i, &endpoints).await
}

/// The cluster's registry through these etcd client URLs.
pub async fn open_registry_at(i: &NodesInput, endpoints: &[String]) -> Result<Registry, StepError> {
    connect(i, endpoints).await
}

/// The registry through the `ctrl` step's endpoints.
pub(crate) async fn registry(ctx: &StepContext, i: &NodesInput) -> Result<Registry, StepError> {
    let ctrl = ctx.output::<Ctrl>(Ctrl::KIND)?;
    connect(i, &ctrl.endpoints).await
}

/// The role a server is labelled with, if the label names one.
pub(crate) fn server_role(s: &ServerInfo) -> Option<Role> {
    s.labels.get(LABEL_ROLE)?.parse().ok()
}
