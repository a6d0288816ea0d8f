//! Acceptance test against real Hetzner Cloud, like Terraform's `TF_ACC`.
//!
//! Runs only when `NIX_INFRA_ACCEPTANCE_HCLOUD_TOKEN` holds a Hetzner Cloud API
//! token (read and write) of a project it may create a server in; otherwise it
//! says it skipped and returns without dialling anything:
//!
//! ```text
//! NIX_INFRA_ACCEPTANCE_HCLOUD_TOKEN=… cargo nextest run -p nix-infra --test acceptance_hetzner
//! ```
//!
//! It costs one `cx22` for the few minutes the run takes. It makes a
//! throw-away cluster repo (`init --example`), provisions one node with the
//! default image, checks over SSH that it runs NixOS with the configuration
//! nix-infra's install wrote for it, destroys it, and checks through the API
//! that nothing of the cluster is left: no server labelled
//! `nix-infra.cluster=<cluster>`, no SSH key `nix-infra-<cluster>`. A guard
//! destroys the node, removes the key and deletes the cluster's placement
//! group even when an assertion fails. If the test process is killed instead,
//! it printed the cluster directory and the commands that clean up.

mod common;

use common::{cli, ok};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The variable that turns the test on.
const TOKEN_VAR: &str = "NIX_INFRA_ACCEPTANCE_HCLOUD_TOKEN";
/// Hetzner's API.
const API: &str = "https://api.hetzner.cloud/v1";

/// A few GETs and DELETEs on the real API, for checks and cleanup only.
struct Api {
    http: reqwest::Client,
    token: String,
}

impl Api {
    fn new(token: &str) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            token: token.into(),
        }
    }

    async fn get(&self, path_and_query: &str) -> serde_json::Value {
        let r = self
            .http
            .get(format!("{API}{path_and_query}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"));
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {path_and_query}: {status} {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn delete(&self, path: &str) -> Result<(), String> {
        let r = self
            .http
            .delete(format!("{API}{path}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match r.status().as_u16() {
            200..=299 | 404 => Ok(()),
            s => Err(format!("{s} {}", r.text().await.unwrap_or_default())),
        }
    }

    /// Names of the servers labelled for `cluster`.
    async fn cluster_servers(&self, cluster: &str) -> Vec<String> {
        let v = self
            .get(&format!(
                "/servers?label_selector=nix-infra.cluster%3D{cluster}&per_page=50"
            ))
            .await;
        names(&v["servers"])
    }

    /// Names of the SSH keys called `name`.
    async fn ssh_keys(&self, name: &str) -> Vec<String> {
        names(&self.get(&format!("/ssh_keys?name={name}")).await["ssh_keys"])
    }

    /// Deletes the placement group `name` if there is one (cluster destroy leaves it).
    async fn delete_placement_group(&self, name: &str) -> Result<(), String> {
        let v = self.get(&format!("/placement_groups?name={name}")).await;
        for g in v["placement_groups"].as_array().into_iter().flatten() {
            self.delete(&format!("/placement_groups/{}", g["id"]))
                .await?;
        }
        Ok(())
    }
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect()
}

/// Destroys what the test made, also when an assertion failed (drops run while unwinding).
struct Cleanup {
    /// The temporary folder holding the cluster directory: removed unless cleanup failed.
    root: PathBuf,
    dir: PathBuf,
    cluster: String,
    node: String,
    token: String,
    /// Set once the test itself destroyed the node and removed the key.
    done: bool,
}

impl Cleanup {
    fn destroy(&self) -> std::process::Output {
        cli(&self.dir)
            .args(["cluster", "destroy", "--batch", "--target", &self.node])
            .output()
            .unwrap()
    }

    fn remove_key(&self) -> std::process::Output {
        cli(&self.dir).args(["ssh-key", "remove"]).output().unwrap()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut failed = false;
        if !self.done {
            for (what, out) in [
                ("cluster destroy", self.destroy()),
                ("ssh-key remove", self.remove_key()),
            ] {
                if !out.status.success() {
                    failed = true;
                    eprintln!(
                        "acceptance cleanup: {what} failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        let (token, group) = (self.token.clone(), format!("{}-spread", self.cluster));
        // Drop cannot await, and the test's runtime may be the one unwinding.
        let pg = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(Api::new(&token).delete_placement_group(&group))
        })
        .join();
        if !matches!(pg, Ok(Ok(()))) {
            eprintln!("acceptance cleanup: deleting the placement group failed: {pg:?}");
        }
        if failed {
            eprintln!(
                "acceptance cleanup: check the Hetzner project for servers labelled \
                 nix-infra.cluster={} and the SSH key nix-infra-{}; the cluster directory \
                 {} is kept for `cluster destroy`",
                self.cluster,
                self.cluster,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn say(dir: &Path, what: &str) {
    eprintln!("acceptance [{}]: {what}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cx22_provisions_runs_our_nixos_and_leaves_nothing_behind() {
    // Nothing is dialled, built or written before this check.
    let Some(token) = std::env::var(TOKEN_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty())
    else {
        println!("skipped: set {TOKEN_VAR} to run (provisions one cx22 on real Hetzner Cloud)");
        return;
    };
    let api = Api::new(&token);
    let suffix = format!("{:08x}", rand::random::<u32>());
    let cluster = format!("nixinfra-acc-{suffix}");
    let node = format!("acc-{suffix}");
    // Kept past the test if cleanup fails, so `cluster destroy` can still run from it.
    let root = tempfile::tempdir().unwrap().keep();
    let dir = root.join(&cluster);
    std::fs::create_dir(&dir).unwrap();
    say(
        &dir,
        &format!(
            "cluster {cluster}, node {node}; if this process is killed, clean up with \
             `nix-infra -d {d} cluster destroy --batch --target {node}` and \
             `nix-infra -d {d} ssh-key remove`",
            d = dir.display()
        ),
    );

    ok(cli(&dir).args(["init", "--example"]));
    let env = dir.join(".env");
    std::fs::write(&env, format!("HCLOUD_TOKEN={token}\n")).unwrap();
    std::fs::set_permissions(&env, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert_eq!(common::cluster_name(&dir), cluster);
    assert!(
        api.cluster_servers(&cluster).await.is_empty(),
        "servers of {cluster} exist before the test made any"
    );

    let mut guard = Cleanup {
        root,
        dir: dir.clone(),
        cluster: cluster.clone(),
        node: node.clone(),
        token: token.clone(),
        done: false,
    };

    say(&dir, "provisioning (a few minutes)");
    ok(cli(&dir).args([
        "cluster",
        "provision",
        "--target",
        &node,
        "--role",
        "cluster",
        "--server-type",
        "cx22",
    ]));
    assert_eq!(api.cluster_servers(&cluster).await, vec![node.clone()]);
    assert_eq!(api.ssh_keys(&format!("nix-infra-{cluster}")).await.len(), 1);

    // NixOS, installed by nix-infra for this node: the configuration names it
    // and lets in only through the cluster's own key.
    let version = ok(cli(&dir).args(["cluster", "ssh", "--target", &node, "nixos-version"]));
    assert!(
        version
            .trim()
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit()),
        "nixos-version said {version:?}"
    );
    let conf = ok(cli(&dir).args([
        "cluster",
        "ssh",
        "--target",
        &node,
        "cat",
        "/etc/nixos/configuration.nix",
    ]));
    let public = std::fs::read_to_string(dir.join("keys/id_ed25519.pub")).unwrap();
    let key_body = public.split_whitespace().nth(1).unwrap();
    assert!(
        conf.contains(key_body),
        "/etc/nixos/configuration.nix does not authorise the cluster's key:\n{conf}"
    );
    assert!(
        conf.contains(&node),
        "/etc/nixos/configuration.nix does not name the node {node}:\n{conf}"
    );
    let hostname = ok(cli(&dir).args(["cluster", "ssh", "--target", &node, "hostname"]));
    assert_eq!(hostname.trim(), node);

    say(&dir, "destroying");
    let out = guard.destroy();
    assert!(
        out.status.success(),
        "cluster destroy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = guard.remove_key();
    assert!(
        out.status.success(),
        "ssh-key remove: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    guard.done = true;

    // Nothing of the cluster is left at Hetzner.
    let left = api.cluster_servers(&cluster).await;
    assert!(left.is_empty(), "servers left: {left:?}");
    let keys = api.ssh_keys(&format!("nix-infra-{cluster}")).await;
    assert!(keys.is_empty(), "ssh keys left: {keys:?}");
    drop(guard);
    let groups = names(
        &api.get(&format!("/placement_groups?name={cluster}-spread"))
            .await["placement_groups"],
    );
    assert!(groups.is_empty(), "placement groups left: {groups:?}");
    say(&dir, "done: provisioned, verified, destroyed, nothing left");
}
