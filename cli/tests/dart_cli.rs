//! The Dart nix-infra's template scripts, invocation for invocation (the
//! HA template's `cli create`, `update`, its tests' `etcd ctl`), against a
//! Dart-layout repo on the sandbox: every node is provisioned alike, then
//! `init-ctrl` makes the first a control node, `init-node` the other a
//! cluster node, with the flags the scripts pass.

mod common;

use common::{Down, cli, dart_repo, env, ok, on_node, servers};
use std::collections::BTreeMap;
use tasks::provider::{Hetzner, LABEL_ROLE, Provider};

const TOKEN: &str = "d6b76143-bcfa-490a-8f38-91d79be62fab";

/// `nix-infra GROUP COMMAND -d DIR --env=DIR/.env ARGS…`, as the template's
/// `cli` passes them (the group options after the subcommand).
fn dart(dir: &std::path::Path, args: &[&str]) -> String {
    let env = format!("--env={}/.env", dir.display());
    let (head, tail) = args.split_at(args.len().min(2));
    ok(cli(dir)
        .args(head)
        .args(["-d", &dir.display().to_string(), &env])
        .args(tail))
}

async fn roles(dir: &std::path::Path) -> BTreeMap<String, String> {
    let e = env(dir);
    let p = Hetzner::new(&e["HCLOUD_ENDPOINT"], &e["HCLOUD_TOKEN"]).unwrap();
    p.list_servers(&common::cluster_name(dir))
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.name,
                s.labels.get(LABEL_ROLE).cloned().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ha_templates_create_update_and_etcd_scripts_run_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    dart_repo(dir);
    dart(dir, &["init", "--batch"]);
    ok(cli(dir).args(["sandbox", "up"]));
    dart(
        dir,
        &[
            "cluster",
            "provision",
            "--batch",
            "--nixos-version=24.11",
            "--ssh-key=nixinfra",
            "--location=hel1",
            "--machine-type=cpx11",
            "--node-names=ctrl1 worker1 worker2",
        ],
    );
    let before = roles(dir).await;
    assert_eq!(before["ctrl1"], "cluster", "provisioned alike: {before:?}");
    dart(
        dir,
        &[
            "cluster",
            "init-ctrl",
            "--batch",
            "--nixos-version=24.11",
            &format!("--cluster-uuid={TOKEN}"),
            "--target=ctrl1",
        ],
    );
    assert_eq!(
        roles(dir).await["ctrl1"],
        "ctrl",
        "init-ctrl labels it a control node"
    );
    dart(
        dir,
        &[
            "cluster",
            "init-node",
            "--batch",
            "--nixos-version=24.11",
            "--target=worker1 worker2",
            "--node-module=node_types/cluster_node.nix",
            "--service-group=services",
            "--ctrl-nodes=ctrl1",
        ],
    );
    let ip: BTreeMap<String, String> = servers(dir).await.into_iter().collect();
    let ctrl_type = on_node(
        dir,
        "ctrl1",
        &ip["ctrl1"],
        "cat /etc/nixos/control_node.nix",
    )
    .await;
    assert!(
        ctrl_type.contains(TOKEN),
        "--cluster-uuid renders: {ctrl_type}"
    );

    // The tests' `etcd ctl "…"` and the `cli etcd` wrapper's arbitrary words.
    let nodes = dart(
        dir,
        &[
            "cluster",
            "etcd",
            "ctl",
            "get --prefix --keys-only /cluster/nodes",
            "--target=ctrl1",
        ],
    );
    let keys: Vec<&str> = nodes.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        keys,
        ["/cluster/nodes/worker1", "/cluster/nodes/worker2"],
        "{nodes}"
    );
    let same = dart(
        dir,
        &[
            "cluster",
            "etcd",
            "get --prefix --keys-only /cluster/nodes",
            "--target=ctrl1",
        ],
    );
    assert_eq!(same, nodes);
    let listed = dart(dir, &["etcd", "nodes", "--target=ctrl1"]);
    assert!(
        listed.contains("worker1") && listed.contains("services"),
        "{listed}"
    );

    // `cli update`: update-node (the Dart tool's default: no rebuild), then a rebuild by cmd.
    let generations = "cat /var/lib/nixos-standin/generations | wc -l";
    let n0 = on_node(dir, "worker1", &ip["worker1"], generations).await;
    dart(
        dir,
        &[
            "cluster",
            "update-node",
            "--batch",
            "--nixos-version=24.11",
            "--node-module=node_types/cluster_node.nix",
            "--ctrl-nodes=ctrl1",
            "--target=worker1",
            "--no-rebuild",
        ],
    );
    assert_eq!(
        on_node(dir, "worker1", &ip["worker1"], generations).await,
        n0,
        "no rebuild"
    );
    dart(
        dir,
        &[
            "cluster",
            "cmd",
            "--target=worker1",
            "nixos-rebuild switch --fast",
        ],
    );
    assert_ne!(
        on_node(dir, "worker1", &ip["worker1"], generations).await,
        n0
    );

    // `cli destroy`.
    dart(
        dir,
        &[
            "cluster",
            "destroy",
            "--batch",
            "--target=worker1 worker2",
            "--ctrl-nodes=ctrl1",
        ],
    );
    dart(
        dir,
        &[
            "cluster",
            "destroy",
            "--batch",
            "--target=ctrl1",
            "--ctrl-nodes=ctrl1",
        ],
    );
    assert!(servers(dir).await.is_empty());
}
