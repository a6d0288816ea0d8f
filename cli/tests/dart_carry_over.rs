//! A cluster made the Dart nix-infra's way, carried over: its repo in the
//! Dart layout, its openssl CA under `ca/`, its RSA key under `ssh/`, its
//! flat base64 secrets, and servers at the provider without nix-infra's
//! labels. nix-infra adopts the servers, issues from the CA, imports the
//! secrets, and runs `update-node` and `deploy-apps`, without re-creating a
//! server or a CA.

mod common;

use common::{Down, cli, env, ok, on_node};
use std::collections::BTreeMap;
use std::path::Path;

const PASS: &str = "intermediate-pass-3c1";
const NODES: [&str; 3] = ["ctrl1", "worker1", "worker2"];

/// The servers the Dart tool made: named, with its key, no labels.
async fn dart_servers(dir: &Path) -> BTreeMap<String, i64> {
    let env = env(dir);
    let (url, token) = (&env["HCLOUD_ENDPOINT"], &env["HCLOUD_TOKEN"]);
    let http = reqwest::Client::new();
    let public = std::fs::read_to_string(dir.join("ssh/nixinfra.pub")).unwrap();
    let key = http
        .post(format!("{url}/ssh_keys"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": "nixinfra", "public_key": public}))
        .send()
        .await
        .unwrap();
    assert!(key.status().is_success(), "{:?}", key.text().await);
    let mut ids = BTreeMap::new();
    for n in NODES {
        let body = serde_json::json!({
            "name": n, "server_type": "cpx21", "image": "ubuntu-24.04", "location": "hel1",
            "ssh_keys": ["nixinfra"], "public_net": {"enable_ipv4": true}
        });
        let r = http
            .post(format!("{url}/servers"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let created = r.status().is_success();
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(created, "{v}");
        ids.insert(n.to_string(), v["server"]["id"].as_i64().unwrap());
    }
    ids
}

/// (name, id, ipv4, labels) of every server in the project.
async fn all_servers(dir: &Path) -> Vec<(String, i64, String, serde_json::Value)> {
    let env = env(dir);
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/servers", env["HCLOUD_ENDPOINT"]))
        .bearer_auth(&env["HCLOUD_TOKEN"])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out: Vec<_> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ip = s["public_net"]["ipv4"]["ip"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (
                s["name"].as_str().unwrap().to_string(),
                s["id"].as_i64().unwrap(),
                ip,
                s["labels"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(tree(&e.path()));
        } else {
            out.push((
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_made_the_dart_way_carries_over_without_new_servers_or_ca() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dart-cluster");
    assert!(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", example.display()))
            .arg(dir)
            .status()
            .unwrap()
            .success()
    );
    let dot_env = std::fs::read_to_string(dir.join("env.example")).unwrap()
        + &format!(
            "INTERMEDIATE_CA_PASS={PASS}\nCTRL_NODES=ctrl1\nSECRETS_PWD=my_secrets_password\n"
        );
    std::fs::write(dir.join(".env"), dot_env).unwrap();
    testkit::dart::make_ca(dir, PASS);
    testkit::dart::make_ssh_key(dir, "nixinfra");
    testkit::dart::store_flat_secret(dir, "hello-greeting", "hello from [%%localhost.hostname%%]");
    testkit::dart::store_flat_secret(
        dir,
        "private-cache-netrc",
        "machine cache.example.org login me password pw-51",
    );
    let ca_before = tree(&dir.join("ca"));
    ok(cli(dir).args(["sandbox", "up"]));
    let ids = dart_servers(dir).await;

    // init keeps the Dart key and CA, and covers them in .gitignore.
    let init = ok(cli(dir).args(["init"]));
    assert!(
        init.contains("ssh/$SSH_KEY") && init.contains("the Dart nix-infra's CA"),
        "{init}"
    );
    assert!(!dir.join("keys/id_ed25519").exists(), "no second SSH key");
    let ignored = std::fs::read_to_string(dir.join(".gitignore")).unwrap();
    for e in ["keys/", "ssh/", "ca/", "secrets/", ".nix-infra/"] {
        assert!(ignored.lines().any(|l| l == e), "{e}: {ignored}");
    }
    // The flat secrets move into the age store; no base64 copy stays.
    let imported = ok(cli(dir).args(["secrets", "import"]));
    assert_eq!(
        imported
            .lines()
            .filter(|l| l.starts_with("imported secrets/"))
            .count(),
        2,
        "{imported}"
    );
    for (path, bytes) in tree(&dir.join("secrets")) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("aGVsbG8gZnJvbS") && !text.contains("hello from"),
            "{path}"
        );
    }

    // The servers are the Dart tool's: a CI run is refused with the line to run.
    let out = cli(dir)
        .args(["cluster", "up", "--ingress", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let line = err
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("nix-infra -d "))
        .unwrap_or_else(|| panic!("no adopt line: {err}"));
    assert!(
        line.ends_with(r#"cluster adopt --target "ctrl1 worker1 worker2""#),
        "{line}"
    );
    // On a terminal the same command asks. No: nothing changes.
    let up = ["cluster", "up", "--ingress", "0"];
    let (code, shown) = common::on_terminal(dir, &up, "n\n");
    assert_eq!(code, Some(2), "{shown}");
    assert!(
        shown.contains("adopt ctrl1, worker1, worker2 now? [y/N]"),
        "{shown}"
    );
    assert!(
        shown.contains("not adopted; nothing was changed"),
        "{shown}"
    );
    for s in all_servers(dir).await {
        assert!(s.3.get("nix-infra.node").is_none(), "{:?}", s.3);
    }
    // Yes: the servers are adopted, and the command goes on with them.
    let (code, shown) = common::on_terminal(dir, &up, "y\n");
    assert_eq!(code, Some(0), "{shown}");

    ok(cli(dir).args(["cluster", "up", "--ingress", "0"]));
    ok(cli(dir).args(["cluster", "update-node", "--target", "worker1 worker2"]));
    ok(cli(dir).args(["cluster", "deploy-apps", "--target", "worker1"]));

    // The same servers, now labelled; the same CA, untouched.
    let now = all_servers(dir).await;
    let now_ids: BTreeMap<String, i64> = now.iter().map(|s| (s.0.clone(), s.1)).collect();
    assert_eq!(now_ids, ids, "no server re-created");
    for s in &now {
        assert_eq!(s.3["nix-infra.node"], s.0.as_str(), "{:?}", s.3);
    }
    assert_eq!(tree(&dir.join("ca")), ca_before, "the Dart CA is as it was");
    assert!(!dir.join("ca/root.pem").exists());
    let ip: BTreeMap<&str, &str> = now.iter().map(|s| (s.0.as_str(), s.2.as_str())).collect();
    // etcd serves the Dart CA's certificates (it answered the run), and the
    // nodes hold its chain.
    let root = std::fs::read_to_string(dir.join("ca/certs/ca.cert.pem")).unwrap();
    let chain = on_node(
        dir,
        "worker1",
        ip["worker1"],
        "cat /root/certs/ca-chain.cert.pem",
    )
    .await;
    assert!(chain.contains(root.trim()), "the Dart root is in the chain");
    let greeting = on_node(
        dir,
        "worker1",
        ip["worker1"],
        "systemd-creds decrypt --name=hello-greeting /root/secrets/hello-greeting -",
    )
    .await;
    assert_eq!(greeting, "hello from worker1");
}
