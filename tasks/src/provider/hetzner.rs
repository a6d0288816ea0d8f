//! [`Hetzner`]: the Hetzner Cloud API, with the `hcloud` crate's models.
//!
//! Requests go through reqwest (rustls) rather than the `hcloud` crate's
//! generated functions, because those hide response headers, and a 429 must
//! be waited out as `RateLimit-Reset` (or `Retry-After`) says. The request and
//! response bodies are the `hcloud` crate's models.

use super::{
    LABEL_CLUSTER, LABEL_NODE, LABEL_ROLE, Provider, ProviderError, ServerInfo, ServerSpec,
    SshKeyInfo, fingerprint,
};
use async_trait::async_trait;
use hcloud::models;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Hetzner's API endpoint, unless `HCLOUD_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://api.hetzner.cloud/v1";

/// A Hetzner Cloud project.
#[derive(Clone, Debug)]
pub struct Hetzner {
    http: reqwest::Client,
    endpoint: String,
    token: String,
    page_size: usize,
    /// Longest total wait for rate limits and retries within one call.
    patience: Duration,
    /// How often to look at a running action.
    action_poll: Duration,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Hetzner {
    /// A client for `endpoint` with `token`.
    pub fn new(
        endpoint: impl Into<String>,
        token: impl Into<String>,
    ) -> Result<Hetzner, ProviderError> {
        let token = token.into();
        if token.trim().is_empty() {
            return Err(ProviderError::Config("HCLOUD_TOKEN is empty".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("nix-infra/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Config(e.to_string()))?;
        Ok(Hetzner {
            http,
            endpoint: endpoint.into().trim_end_matches('/').to_string(),
            token,
            page_size: 50,
            patience: Duration::from_secs(300),
            action_poll: Duration::from_millis(500),
        })
    }

    /// A client from `HCLOUD_TOKEN` and, if set, `HCLOUD_ENDPOINT` (as Hetzner's CLI reads them).
    pub fn from_env() -> Result<Hetzner, ProviderError> {
        let token = std::env::var("HCLOUD_TOKEN")
            .map_err(|_| ProviderError::Config("HCLOUD_TOKEN is not set".into()))?;
        let endpoint = std::env::var("HCLOUD_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.into());
        Hetzner::new(endpoint, token)
    }

    /// Sets how many items a list request asks for (1 to 50).
    pub fn with_page_size(mut self, n: usize) -> Self {
        self.page_size = n.clamp(1, 50);
        self
    }

    /// Sets how long one call may wait out rate limits and transient errors in total.
    pub fn with_patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// Sets how often a running action is polled.
    pub fn with_action_poll(mut self, every: Duration) -> Self {
        self.action_poll = every;
        self
    }

    /// This client's project: the rate limit is Hetzner's per token.
    fn project(&self) -> String {
        format!("{}\0{}", self.endpoint, self.token)
    }

    /// One request; retries 429 (as the headers say) and 5xx/network errors (backing off).
    ///
    /// A 429 holds every call of this process to the same project until the
    /// reset, not only the one refused: the limit is the project's, so other
    /// calls sent before the reset would only be refused too.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Option<T>, ProviderError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            if let Some(wait) = limit::held(&self.project()) {
                if started.elapsed() + wait > self.patience {
                    return Err(ProviderError::RateLimited(wait));
                }
                tokio::time::sleep(wait).await;
                continue;
            }
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.endpoint))
                .bearer_auth(&self.token);
            if let Some(b) = &body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.clone());
            }
            let (wait, error) = match req.send().await {
                Err(e) => (backoff, ProviderError::Transient(e.to_string())),
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let text = resp.text().await.unwrap_or_default();
                    if status.is_success() {
                        if status == StatusCode::NO_CONTENT || text.is_empty() {
                            return Ok(None);
                        }
                        return serde_json::from_str(&text).map(Some).map_err(|e| {
                            ProviderError::Transient(format!(
                                "unreadable answer to {method} {path}: {e}"
                            ))
                        });
                    }
                    let (code, message) = api_error(&text);
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let header = |n: &str| {
                            headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse::<u64>().ok())
                        };
                        let wait = match (header("retry-after"), header("ratelimit-reset")) {
                            (Some(secs), _) => Duration::from_secs(secs),
                            (None, Some(reset)) => {
                                Duration::from_secs(reset.saturating_sub(now_secs()))
                            }
                            (None, None) => backoff,
                        };
                        // Resets are whole seconds: never retry before the second turns.
                        let wait = wait.max(Duration::from_millis(250));
                        // Held no longer than this client would wait (a huge
                        // Retry-After must not overflow the clock).
                        limit::hold(&self.project(), wait.min(self.patience));
                        (wait, ProviderError::RateLimited(wait))
                    } else if status.is_server_error() {
                        (
                            backoff,
                            ProviderError::Transient(format!("{status} {code}: {message}")),
                        )
                    } else {
                        return Err(ProviderError::Api {
                            status: status.as_u16(),
                            code,
                            message,
                        });
                    }
                }
            };
            if started.elapsed() + wait > self.patience {
                return Err(match error {
                    ProviderError::RateLimited(_) => ProviderError::RateLimited(wait),
                    other => other,
                });
            }
            tracing::info!("hetzner: {method} {path}: {error}; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ProviderError> {
        self.call(Method::GET, path, None)
            .await?
            .ok_or_else(|| ProviderError::Transient(format!("empty answer to GET {path}")))
    }

    async fn post<T: DeserializeOwned, B: Serialize + Sync>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ProviderError> {
        let body = serde_json::to_string(body).map_err(|e| ProviderError::Config(e.to_string()))?;
        self.call(Method::POST, path, Some(body))
            .await?
            .ok_or_else(|| ProviderError::Transient(format!("empty answer to POST {path}")))
    }

    /// Every server matching `selector`, following every page.
    async fn servers(&self, selector: &str) -> Result<Vec<models::Server>, ProviderError> {
        let mut out = Vec::new();
        let mut page = Some(1);
        while let Some(p) = page {
            let path = format!(
                "/servers?label_selector={}&page={p}&per_page={}",
                urlencode(selector),
                self.page_size
            );
            let resp: models::ListServersResponse = self.get(&path).await?;
            out.extend(resp.servers);
            page = resp.meta.pagination.next_page;
        }
        Ok(out)
    }

    /// The server called `name` in the project, labelled or not.
    pub async fn server_by_name(&self, name: &str) -> Result<Option<ServerInfo>, ProviderError> {
        let found: models::ListServersResponse = self
            .get(&format!("/servers?name={}", urlencode(name)))
            .await?;
        Ok(found.servers.into_iter().next().map(info))
    }

    /// Waits until action `id` succeeds; its failure is permanent.
    async fn wait_action(&self, id: i64) -> Result<(), ProviderError> {
        let started = Instant::now();
        loop {
            let a: models::GetActionResponse = self.get(&format!("/actions/{id}")).await?;
            match a.action.status {
                models::action::Status::Success => return Ok(()),
                models::action::Status::Error => {
                    let (code, message) = a
                        .action
                        .error
                        .map(|e| (e.code, e.message))
                        .unwrap_or_default();
                    return Err(ProviderError::Api {
                        status: 200,
                        code,
                        message,
                    });
                }
                _ if started.elapsed() > self.patience => {
                    return Err(ProviderError::Transient(format!(
                        "action {id} still running"
                    )));
                }
                _ => tokio::time::sleep(self.action_poll).await,
            }
        }
    }

    /// Labels `s` as `node` of `cluster` with `role`, keeping its other labels.
    async fn label(
        &self,
        s: models::Server,
        cluster: &str,
        node: &str,
        role: &str,
    ) -> Result<ServerInfo, ProviderError> {
        let mut labels = s.labels.clone();
        for (k, v) in [
            (LABEL_CLUSTER, cluster),
            (LABEL_NODE, node),
            (LABEL_ROLE, role),
        ] {
            labels.insert(k.to_string(), v.to_string());
        }
        let req = models::ReplaceServerRequest {
            labels: Some(labels),
            name: None,
        };
        let body = serde_json::to_string(&req).map_err(|e| ProviderError::Config(e.to_string()))?;
        let updated: models::ReplaceServerResponse = self
            .call(Method::PUT, &format!("/servers/{}", s.id), Some(body))
            .await?
            .ok_or_else(|| ProviderError::Transient("empty answer to PUT /servers".into()))?;
        updated
            .server
            .map(|s| info(*s))
            .ok_or_else(|| ProviderError::Transient("server vanished".into()))
    }

    fn selector(cluster: &str, node: Option<&str>) -> String {
        match node {
            Some(n) => format!("{LABEL_CLUSTER}={cluster},{LABEL_NODE}={n}"),
            None => format!("{LABEL_CLUSTER}={cluster}"),
        }
    }
}

fn info(s: models::Server) -> ServerInfo {
    ServerInfo {
        id: s.id,
        ipv4: s.public_net.ipv4.as_ref().map(|v| v.ip.clone()),
        status: format!("{:?}", s.status).to_lowercase(),
        labels: s.labels.into_iter().collect(),
        name: s.name,
        login: None,
    }
}

fn api_error(text: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    (
        v["error"]["code"].as_str().unwrap_or("unknown").to_string(),
        v["error"]["message"].as_str().unwrap_or(text).to_string(),
    )
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait]
impl Provider for Hetzner {
    async fn ensure_ssh_key(
        &self,
        name: &str,
        public_key: &str,
    ) -> Result<SshKeyInfo, ProviderError> {
        let wanted = fingerprint(public_key)?;
        let found: models::ListSshKeysResponse = self
            .get(&format!("/ssh_keys?name={}", urlencode(name)))
            .await?;
        if let Some(k) = found.ssh_keys.into_iter().next() {
            if k.fingerprint != wanted {
                return Err(ProviderError::KeyMismatch {
                    name: name.into(),
                    existing: k.fingerprint,
                    wanted,
                });
            }
            return Ok(SshKeyInfo {
                id: k.id,
                name: k.name,
                fingerprint: k.fingerprint,
            });
        }
        // Hetzner refuses a second key with the same fingerprint: adopt it under its own name.
        let same: models::ListSshKeysResponse = self
            .get(&format!("/ssh_keys?fingerprint={}", urlencode(&wanted)))
            .await?;
        if let Some(k) = same.ssh_keys.into_iter().next() {
            return Ok(SshKeyInfo {
                id: k.id,
                name: k.name,
                fingerprint: k.fingerprint,
            });
        }
        let mut req = models::CreateSshKeyRequest::new(name.into(), public_key.trim().into());
        req.labels = Some(
            [("nix-infra".to_string(), "true".to_string())]
                .into_iter()
                .collect(),
        );
        let created: models::CreateSshKeyResponse = self.post("/ssh_keys", &req).await?;
        let k = created.ssh_key;
        Ok(SshKeyInfo {
            id: k.id,
            name: k.name,
            fingerprint: k.fingerprint,
        })
    }

    async fn ensure_placement_group(&self, name: &str) -> Result<i64, ProviderError> {
        let found: models::ListPlacementGroupsResponse = self
            .get(&format!("/placement_groups?name={}", urlencode(name)))
            .await?;
        if let Some(g) = found.placement_groups.into_iter().next() {
            return Ok(g.id);
        }
        let req = models::CreatePlacementgroupRequest::new(
            name.into(),
            models::create_placementgroup_request::Type::Spread,
        );
        let created: models::CreatePlacementgroupResponse =
            self.post("/placement_groups", &req).await?;
        Ok(created.placement_group.id)
    }

    async fn create_server(&self, spec: &ServerSpec) -> Result<ServerInfo, ProviderError> {
        let selector = Self::selector(&spec.cluster, Some(&spec.node));
        // Adopt first: a create whose answer was lost has still made the server.
        if let Some(s) = self.servers(&selector).await?.into_iter().next() {
            return Ok(info(s));
        }
        let labels: BTreeMap<String, String> = [
            (LABEL_CLUSTER, spec.cluster.as_str()),
            (LABEL_NODE, spec.node.as_str()),
            (LABEL_ROLE, spec.role.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let req = models::CreateServerRequest {
            name: spec.node.clone(),
            server_type: spec.server_type.clone(),
            image: spec.image.clone(),
            location: spec.location.clone(),
            ssh_keys: Some(vec![spec.ssh_key.clone()]),
            labels: Some(labels.into_iter().collect()),
            placement_group: spec.placement_group,
            user_data: spec.user_data.clone(),
            start_after_create: Some(true),
            ..Default::default()
        };
        match self
            .post::<models::CreateServerResponse, _>("/servers", &req)
            .await
        {
            Ok(created) => {
                self.wait_action(created.action.id).await?;
                let s: models::GetServerResponse =
                    self.get(&format!("/servers/{}", created.server.id)).await?;
                s.server
                    .map(|s| info(*s))
                    .ok_or_else(|| ProviderError::Transient("server vanished".into()))
            }
            // The answer was lost, or a concurrent create won: the labels tell.
            Err(e @ (ProviderError::Transient(_) | ProviderError::Api { status: 409, .. })) => {
                match self.servers(&selector).await?.into_iter().next() {
                    Some(s) => Ok(info(s)),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn list_servers(&self, cluster: &str) -> Result<Vec<ServerInfo>, ProviderError> {
        Ok(self
            .servers(&Self::selector(cluster, None))
            .await?
            .into_iter()
            .map(info)
            .collect())
    }

    async fn delete_server(&self, id: i64) -> Result<(), ProviderError> {
        match self
            .call::<serde_json::Value>(Method::DELETE, &format!("/servers/{id}"), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(ProviderError::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn adopt_server(
        &self,
        cluster: &str,
        node: &str,
        role: &str,
    ) -> Result<ServerInfo, ProviderError> {
        if let Some(s) = self
            .servers(&Self::selector(cluster, Some(node)))
            .await?
            .into_iter()
            .next()
        {
            return Ok(info(s));
        }
        let found: models::ListServersResponse = self
            .get(&format!("/servers?name={}", urlencode(node)))
            .await?;
        let s = found
            .servers
            .into_iter()
            .next()
            .ok_or_else(|| ProviderError::Api {
                status: 404,
                code: "not_found".into(),
                message: format!("no server named {node}"),
            })?;
        if let Some(other) = s.labels.get(LABEL_CLUSTER).filter(|c| *c != cluster) {
            return Err(ProviderError::Api {
                status: 409,
                code: "conflict".into(),
                message: format!("server {node} belongs to cluster {other}"),
            });
        }
        self.label(s, cluster, node, role).await
    }

    async fn set_role(
        &self,
        cluster: &str,
        node: &str,
        role: &str,
    ) -> Result<ServerInfo, ProviderError> {
        let s = self
            .servers(&Self::selector(cluster, Some(node)))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ProviderError::Api {
                status: 404,
                code: "not_found".into(),
                message: format!("no server of cluster {cluster} is node {node}"),
            })?;
        if s.labels.get(LABEL_ROLE).map(String::as_str) == Some(role) {
            return Ok(info(s));
        }
        self.label(s, cluster, node, role).await
    }

    async fn delete_ssh_key(&self, name: &str) -> Result<bool, ProviderError> {
        let found: models::ListSshKeysResponse = self
            .get(&format!("/ssh_keys?name={}", urlencode(name)))
            .await?;
        let Some(k) = found.ssh_keys.into_iter().next() else {
            return Ok(false);
        };
        match self
            .call::<serde_json::Value>(Method::DELETE, &format!("/ssh_keys/{}", k.id), None)
            .await
        {
            Ok(_) | Err(ProviderError::Api { status: 404, .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }
}

/// When each project's rate limit resets, as its last 429 said, shared by
/// every client of this process.
mod limit {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    use std::time::{Duration, Instant};

    static UNTIL: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Default::default);

    /// How long calls to `project` must still wait, if they must.
    pub(super) fn held(project: &str) -> Option<Duration> {
        let until = *UNTIL
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(project)?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// Holds calls to `project` for `wait` from now (never shortening a hold).
    pub(super) fn hold(project: &str, wait: Duration) {
        let until = Instant::now() + wait;
        let mut map = UNTIL.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(project.to_string()).or_insert(until);
        *entry = (*entry).max(until);
    }
}
