//! What the SSH-level tests of `tasks` share: a test cloud with sshd nodes,
//! an SSH key it knows, and the client settings that use it.
#![allow(dead_code)]

pub mod relay;

use serde_json::json;
use std::time::Duration;
use tasks::ssh::SshConfig;
use testkit::{CloudConfig, TestCloud};

/// A cloud with nodes, its registered key `k`, and the SSH settings using it.
pub struct Fixture {
    pub cloud: TestCloud,
    pub cfg: SshConfig,
    _dir: tempfile::TempDir,
}

/// A cloud whose nodes boot after `boot_delay`.
pub async fn fixture(boot_delay: Duration) -> Fixture {
    fixture_with(CloudConfig {
        boot_delay,
        ..CloudConfig::default()
    })
    .await
}

/// A cloud with `config`'s delays, nodes on and actions taking 20 ms.
pub async fn fixture_with(config: CloudConfig) -> Fixture {
    let cloud = TestCloud::start(CloudConfig {
        nodes: true,
        action_delay: Duration::from_millis(20),
        ..config
    })
    .await
    .unwrap();
    let dir = tempfile::Builder::new().prefix("ssh").tempdir().unwrap();
    let key = dir.path().join("id");
    keygen(&key);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    reqwest::Client::new()
        .post(format!("{}/ssh_keys", cloud.endpoint()))
        .bearer_auth(cloud.token())
        .json(&json!({"name": "k", "public_key": public.trim()}))
        .send()
        .await
        .unwrap();
    let cfg = SshConfig {
        key: Some(key),
        known_hosts: dir.path().join("ssh/known_hosts"),
        control_dir: dir.path().join("c"),
        user: "root".into(),
        port: 22,
        connect_timeout: Duration::from_secs(5),
        persist: None,
    };
    Fixture {
        cloud,
        cfg,
        _dir: dir,
    }
}

/// Makes an ed25519 key pair without a passphrase at `path` (and `path.pub`).
pub fn keygen(path: &std::path::Path) {
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path)
            .status()
            .unwrap()
            .success()
    );
}

impl Fixture {
    /// Creates a server from `image`; returns its address at once (the node may still be booting).
    pub async fn create_server(&self, name: &str, image: &str) -> String {
        let v: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/servers", self.cloud.endpoint()))
            .bearer_auth(self.cloud.token())
            .json(&json!({
                "name": name,
                "server_type": "cx22",
                "image": image,
                "ssh_keys": ["k"]
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["server"]["public_net"]["ipv4"]["ip"]
            .as_str()
            .unwrap()
            .to_string()
    }
}
