//! The Dart nix-infra's HA template (`jhsware/nix-infra-ha-cluster`),
//! unchanged, driven by its own `cli` wrapper against the sandbox: create,
//! update, cmd, action, etcd and destroy.
//!
//! The project carries no copy of the template, so this runs only when
//! `NIX_INFRA_DART_TEMPLATE` names a clone of it (root needed, as for every
//! sandbox test); otherwise it reports itself skipped:
//!
//! ```sh
//! git clone https://github.com/jhsware/nix-infra-ha-cluster /tmp/ha-template
//! NIX_INFRA_DART_TEMPLATE=/tmp/ha-template cargo nextest run -p nix-infra --test dart_template
//! ```
//!
//! The clone is copied; the copy gets the `.env` its `.env.in` asks for.

mod common;

use common::{Down, cli, ok, servers, store};
use std::path::Path;
use std::process::Command;

/// The variable naming the template's clone.
const VAR: &str = "NIX_INFRA_DART_TEMPLATE";

/// The `.env` the template's `.env.in` explains (the sandbox adds its lines).
const ENV: &str = "HCLOUD_TOKEN=\nSSH_KEY=nixinfra\nSSH_EMAIL=ops@example.com\n\
CA_PASS=root-ca-pass\nINTERMEDIATE_CA_PASS=intermediate-ca-pass\n\
CERT_EMAIL=ops@example.com\nCERT_COUNTRY_CODE=SE\nCERT_STATE_PROVINCE=Stockholm\n\
CERT_COMPANY=Example\nSECRETS_PWD=secrets-pass\n";

/// `bash cli ARGS` in the repo, with this build's `nix-infra` first on PATH.
/// The wrapper's exit status hides its commands' (it goes on after a
/// failure), so every run it started must have succeeded.
fn wrapper(dir: &Path, args: &[&str]) -> String {
    let bin = Path::new(common::BIN).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .arg(dir.join("cli"))
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("HCLOUD_TOKEN")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "cli {args:?}: {text}");
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("run ") && l.ends_with(" failed") || l.starts_with("error:"))
        .collect();
    assert!(failed.is_empty(), "cli {args:?}: {failed:?}\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_templates_cli_wrapper_runs_unchanged_on_the_sandbox() {
    let Some(src) = std::env::var_os(VAR) else {
        eprintln!("skipped: set {VAR} to a clone of jhsware/nix-infra-ha-cluster");
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("cluster");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(Path::new(&src))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::write(dir.join(".env"), ENV).unwrap();
    let _down = Down(dir.clone());
    ok(cli(&dir).args(["sandbox", "up"]));
    ok(cli(&dir).args(["init", "--batch"]));
    // The template's worker001.nix names a secret an app action makes later;
    // nix-infra deploys no node whose secrets are not stored.
    store(
        &dir,
        "mariadb.test-admin.connectionString",
        "mysql://db/test",
    );

    let nodes = [
        "etcd001",
        "registry001",
        "service001",
        "service002",
        "service003",
        "worker001",
    ];
    let mut create = vec!["create", "--env=.env"];
    create.extend(nodes);
    wrapper(&dir, &create);
    let etcd = |dir: &Path| {
        wrapper(
            dir,
            &[
                "etcd",
                "--env=.env",
                "--ctrl-nodes=etcd001",
                "get --prefix /cluster/nodes --keys-only",
            ],
        )
    };
    let keys = etcd(&dir);
    for node in &nodes[1..] {
        assert!(
            keys.contains(&format!("/cluster/nodes/{node}")),
            "{node}: {keys}"
        );
    }

    wrapper(
        &dir,
        &[
            "update",
            "--env=.env",
            "--ctrl-nodes=etcd001",
            "service001",
            "worker001",
        ],
    );
    let out = wrapper(
        &dir,
        &["cmd", "--env=.env", "--target=service001", "hostname"],
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("service001") && l.ends_with("| service001")),
        "{out}"
    );
    let out = wrapper(
        &dir,
        &[
            "action",
            "--env=.env",
            "--target=service001",
            "mariadb",
            "status",
        ],
    );
    assert!(out.contains("succeeded"), "{out}");

    let workers = "--target=registry001 service001 service002 service003 worker001";
    wrapper(
        &dir,
        &["destroy", "--env=.env", workers, "--ctrl-nodes=etcd001"],
    );
    assert!(
        !etcd(&dir).contains("/cluster/nodes/"),
        "the nodes left etcd"
    );
    wrapper(
        &dir,
        &[
            "destroy",
            "--env=.env",
            "--target=etcd001",
            "--ctrl-nodes=etcd001",
        ],
    );
    assert_eq!(servers(&dir).await, Vec::<(String, String)>::new());
}
