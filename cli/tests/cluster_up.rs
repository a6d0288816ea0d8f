//! `nix-infra cluster up` end to end on the sandbox: real sshd nodes, real
//! etcd over mutual TLS (started by the nodes' rebuild), Postgres or SQLite.

mod common;

use common::{Down, cli, cluster_repo, etcd, last_json, ok, on_node, servers};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const NODES: [&str; 4] = ["ctrl1", "ingress1", "worker1", "worker2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_up_survives_kill_9_registers_exactly_and_destroys_cleanly() {
    let pg = testkit::Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    cluster_repo(dir, "hello-from-the-test-7f3a");

    // Killed with -9 in mid-provision (the first server exists)...
    common::kill_9_at(
        cli(dir)
            .env("DATABASE_URL", &url)
            .args(["cluster", "up", "--run-id", "up-1"]),
        "✓ create/",
    );
    assert_eq!(
        show_pg(dir, &url, "up-1")["status"],
        "running",
        "killed mid-run"
    );
    // ...and finished by a second process.
    let out = ok(cli(dir)
        .env("DATABASE_URL", &url)
        .args(["runs", "resume", "up-1"]));
    for node in NODES {
        let row = out.lines().find(|l| l.starts_with(node)).unwrap_or("");
        assert!(row.contains(" ok "), "summary row of {node}: {row}\n{out}");
    }
    let servers = servers(dir).await;
    let names: Vec<&str> = servers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, NODES, "exactly one server per node");
    let run = show_pg(dir, &url, "up-1");
    for s in run["steps"].as_array().unwrap() {
        if s["name"].as_str().unwrap().starts_with("create/") {
            let created = s["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["status"] == "succeeded")
                .count();
            assert_eq!(created, 1, "{s}");
        }
    }
    let ip: BTreeMap<&str, &str> = servers
        .iter()
        .map(|(n, ip)| (n.as_str(), ip.as_str()))
        .collect();

    // etcd holds exactly the registered nodes, flannel's network and one lease each.
    let reg = etcd(dir, ip["ctrl1"]).await;
    let raw = reg.raw("/").await.unwrap();
    let overlay = reg.overlay().await.unwrap();
    let mut expected: BTreeSet<String> = ["ingress1", "worker1", "worker2"]
        .iter()
        .map(|n| format!("/cluster/nodes/{n}"))
        .collect();
    expected.insert("/coreos.com/network/config".into());
    for s in &overlay {
        expected.insert(format!(
            "/coreos.com/network/subnets/{}",
            s.subnet.replace('/', "-")
        ));
    }
    assert_eq!(overlay.len(), 3, "{overlay:?}");
    assert_eq!(
        raw.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{raw:#?}"
    );
    // Every node serves `services`, the Dart templates' default group.
    for n in ["ingress1", "worker1", "worker2"] {
        assert_eq!(
            raw[&format!("/cluster/nodes/{n}")],
            format!(
                r#"{{"name":"{n}","ipv4":"{}","services":["services"]}}"#,
                ip[n]
            )
        );
    }

    // Each node's /etc/nixos holds its rendered configuration, with its own overlay address.
    let worker1_overlay = reg.overlay_ip(ip["worker1"]).await.unwrap().unwrap();
    let conf = on_node(
        dir,
        "worker1",
        ip["worker1"],
        "cat /etc/nixos/configuration.nix /etc/nixos/node_type.nix /etc/nixos/node.nix",
    )
    .await;
    assert!(
        conf.contains(r#"networking.hostName = "worker1";"#),
        "{conf}"
    );
    assert!(
        conf.contains(&format!(r#"overlayIp = "{worker1_overlay}";"#)),
        "{conf}"
    );
    assert!(
        conf.contains(&format!(
            r#"etcdEndpoints = "https://{}:2379";"#,
            ip["ctrl1"]
        )),
        "{conf}"
    );
    assert!(conf.contains("./app_modules/hello"), "{conf}");
    // What keeps the node reachable, whatever the repo says.
    let key = std::fs::read_to_string(dir.join("keys/id_ed25519.pub")).unwrap();
    for line in [
        format!(
            r#"users.users.root.openssh.authorizedKeys.keys = [ "{}" ];"#,
            key.trim()
        ),
        "services.openssh.enable = lib.mkForce true;".into(),
        r#"system.stateVersion = lib.mkForce "24.11";"#.into(),
        "builtins.pathExists ./networking.nix".into(),
    ] {
        assert!(conf.contains(&line), "{line}: {conf}");
    }
    assert!(!conf.contains("[%%"), "every placeholder filled: {conf}");
    let ctrl = on_node(dir, "ctrl1", ip["ctrl1"], "cat /etc/nixos/node_type.nix").await;
    assert!(
        ctrl.contains(&format!(
            r#"initialCluster = [ "ctrl1=https://{}:2380" ];"#,
            ip["ctrl1"]
        )),
        "{ctrl}"
    );
    // The app's secret reached worker1 only, encrypted by systemd-creds.
    let secret = on_node(
        dir,
        "worker1",
        ip["worker1"],
        "cat /root/secrets/hello-greeting | base64 -w0",
    )
    .await;
    assert!(!secret.is_empty());
    let plain = on_node(
        dir,
        "worker1",
        ip["worker1"],
        "grep -c hello-from-the-test /root/secrets/hello-greeting || true",
    )
    .await;
    assert_eq!(plain.trim(), "0", "stored encrypted");
    let other = on_node(
        dir,
        "worker2",
        ip["worker2"],
        "ls /root/secrets 2>/dev/null | wc -l",
    )
    .await;
    assert_eq!(other.trim(), "0", "worker2 runs no app that needs it");
    // The secret never reached the run's records.
    let dump = ok(cli(dir)
        .env("DATABASE_URL", &url)
        .args(["runs", "show", "up-1", "--output", "json"]));
    assert!(!dump.contains("hello-from-the-test"));

    // Destroying the other nodes leaves etcd clean; then the control node goes too.
    ok(cli(dir).env("DATABASE_URL", &url).args([
        "cluster",
        "destroy",
        "--batch",
        "--target",
        "worker1 worker2 ingress1",
    ]));
    let left = reg.raw("/").await.unwrap();
    assert_eq!(
        left.keys().cloned().collect::<Vec<_>>(),
        ["/coreos.com/network/config"],
        "{left:#?}"
    );
    ok(cli(dir)
        .env("DATABASE_URL", &url)
        .args(["cluster", "destroy", "--batch", "--target", "ctrl1"]));
    assert!(common::servers(dir).await.is_empty(), "the cloud is empty");
}

fn show_pg(dir: &Path, url: &str, id: &str) -> serde_json::Value {
    let out = cli(dir)
        .env("DATABASE_URL", url)
        .args(["runs", "show", id, "--output", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_node_fails_alone_and_bad_targets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    cluster_repo(dir, "greeting");
    // worker2's own configuration parses (so the checks before the run pass
    // it) but does not evaluate: its rebuild fails, on the node.
    std::fs::write(
        dir.join("nodes/worker2.nix"),
        "{ ... }: { services.etcd.enable = builtins.throw \"worker2 is broken\"; }\n",
    )
    .unwrap();

    let out = cli(dir)
        .args(["cluster", "up", "--run-id", "bad-1", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = last_json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(summary["status"], "failed");
    let nodes: BTreeMap<String, serde_json::Value> = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap().to_string(), n.clone()))
        .collect();
    assert_eq!(nodes.len(), 4);
    assert_eq!(nodes["worker2"]["result"], "failed", "{summary}");
    assert_eq!(nodes["worker2"]["step"], "rebuild");
    assert!(
        nodes["worker2"]["error"]
            .as_str()
            .unwrap()
            .contains("nixos-rebuild"),
        "{summary}"
    );
    for n in ["ctrl1", "worker1", "ingress1"] {
        assert_eq!(nodes[n]["result"], "ok", "{n}: {summary}");
    }
    assert_eq!(
        summary["failed_steps"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["rebuild/worker2"]
    );
    let ip: BTreeMap<String, String> = servers(dir).await.into_iter().collect();
    let reg = etcd(dir, &ip["ctrl1"]).await;
    let registered: Vec<String> = reg
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(registered, ["ingress1", "worker1"]);

    // Unknown targets and wrong node types are refused before any run exists.
    let runs_before = ok(cli(dir).args(["runs", "list", "--output", "json"]));
    for (args, says) in [
        (
            vec!["cluster", "init-node", "--target", "worker1 nope"],
            "no server named nope",
        ),
        (
            vec!["cluster", "init-node", "--target", "ctrl1"],
            "use `cluster init-ctrl`",
        ),
        (
            vec!["cluster", "init-ctrl", "--target", "worker1"],
            "use `cluster init-node`",
        ),
        (
            vec!["cluster", "destroy", "--target", "Bad_Name"],
            "is not a node name",
        ),
    ] {
        let out = cli(dir).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(
        ok(cli(dir).args(["runs", "list", "--output", "json"])),
        runs_before
    );

    // Fixed, the node is initialised by `init-node` alone; the plan says what that runs.
    std::fs::write(dir.join("nodes/worker2.nix"), "{ ... }: { }\n").unwrap();
    let plan = ok(cli(dir).args(["plan", "cluster", "init-node", "--target", "worker2"]));
    for step in [
        "locate",
        "ctrl",
        "overlay/worker2",
        "config/worker2",
        "rebuild/worker2",
        "register/worker2",
    ] {
        assert!(
            plan.lines().any(|l| l.trim_start().starts_with(step)),
            "{step}: {plan}"
        );
    }
    // Service groups as the Dart tool takes them: space-separated words.
    ok(cli(dir).args([
        "cluster",
        "init-node",
        "--target",
        "worker2",
        "--service-group",
        "services backends",
    ]));
    let registered: Vec<String> = reg
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(registered, ["ingress1", "worker1", "worker2"]);
    let raw = reg.raw("/cluster/nodes/").await.unwrap();
    assert_eq!(
        raw["/cluster/nodes/worker2"],
        format!(
            r#"{{"name":"worker2","ipv4":"{}","services":["services","backends"]}}"#,
            ip["worker2"]
        )
    );
    // Without the flag, as the Dart templates default: `services`.
    assert!(
        raw["/cluster/nodes/worker1"].ends_with(r#""services":["services"]}"#),
        "{raw:?}"
    );
    // The first run, resumed, now finishes: its failed step is retried, nothing is redone twice.
    ok(cli(dir).args(["runs", "resume", "bad-1"]));
    assert_eq!(servers(dir).await.len(), 4);
    let done = ok(cli(dir).args(["plan", "--run-id", "bad-1", "cluster", "up"]));
    assert!(done.contains("43 of 43 steps done"), "{done}");
    // The cluster's key at the provider: removed, then added again.
    assert!(ok(cli(dir).args(["ssh-key", "remove"])).contains("removed"));
    assert!(ok(cli(dir).args(["ssh-key", "add"])).contains("at the provider"));
}

#[test]
fn bad_env_and_missing_node_types_are_refused_before_anything_exists() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(cli(dir).arg("init"));
    std::fs::write(dir.join(".env"), "HCLOUD_TOKEN=\"unterminated\n").unwrap();
    let out = cli(dir).args(["cluster", "up"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(".env"), "names the file: {stderr}");

    std::fs::write(
        dir.join(".env"),
        "HCLOUD_TOKEN=t\nHCLOUD_ENDPOINT=http://127.0.0.1:9/v1\n",
    )
    .unwrap();
    let out = cli(dir).args(["cluster", "up"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node_types/control_node.nix"), "{stderr}");
    assert!(stderr.contains("cluster_node.nix"), "{stderr}");

    // --env names another env file; a missing one is an error too.
    let out = cli(dir)
        .args(["--env", "nope.env", "cluster", "up"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.env"));
    assert!(!dir.join(".nix-infra").exists(), "no state was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_control_nodes_form_one_etcd_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    cluster_repo(dir, "greeting");
    ok(cli(dir).args([
        "cluster",
        "up",
        "--ctrl",
        "3",
        "--workers",
        "1",
        "--ingress",
        "0",
    ]));
    let ip: BTreeMap<String, String> = servers(dir).await.into_iter().collect();
    // Each member answers with what was written through whichever one the run used.
    for c in ["ctrl1", "ctrl2", "ctrl3"] {
        let reg = etcd(dir, &ip[c]).await;
        let nodes: Vec<String> = reg
            .nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert_eq!(nodes, ["worker1"], "as seen from {c}");
    }
    let conf = on_node(dir, "ctrl2", &ip["ctrl2"], "cat /etc/nixos/node_type.nix").await;
    let members = format!(
        "ctrl1=https://{}:2380,ctrl2=https://{}:2380,ctrl3=https://{}:2380",
        ip["ctrl1"], ip["ctrl2"], ip["ctrl3"]
    );
    assert!(conf.contains(&members), "{conf}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_made_by_another_tool_are_adopted_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    cluster_repo(dir, "greeting");
    ok(cli(dir).args(["ssh-key", "add"]));
    // A server the Dart tool made: the cluster's key, no nix-infra labels.
    let env = common::env(dir);
    let (base, _) = env["HCLOUD_ENDPOINT"].rsplit_once("/v1").unwrap();
    let key = format!("nix-infra-{}", common::cluster_name(dir));
    let body = format!(
        r#"{{"name":"legacy1","server_type":"cx22","image":"ubuntu-24.04","ssh_keys":["{key}"],"labels":{{"owner":"dart"}}}}"#
    );
    let (status, reply) = common::http(
        base,
        "POST",
        "/v1/servers",
        Some(&env["HCLOUD_TOKEN"]),
        &body,
    );
    assert_eq!(status, 201, "{reply}");
    assert!(servers(dir).await.is_empty(), "not the cluster's yet");

    std::fs::write(
        dir.join(".env"),
        format!(
            "{}CTRL_NODES=legacy1\n",
            std::fs::read_to_string(dir.join(".env")).unwrap()
        ),
    )
    .unwrap();
    ok(cli(dir).args(["cluster", "adopt", "--target", "legacy1"]));
    let p = tasks::provider::Hetzner::new(&env["HCLOUD_ENDPOINT"], &env["HCLOUD_TOKEN"]).unwrap();
    use tasks::provider::Provider;
    let adopted = p.list_servers(&common::cluster_name(dir)).await.unwrap();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].labels["nix-infra.node"], "legacy1");
    assert_eq!(
        adopted[0].labels["nix-infra.role"], "ctrl",
        "CTRL_NODES names it"
    );
    assert_eq!(adopted[0].labels["owner"], "dart", "its own labels stay");
    // From here the ordinary commands reach it.
    ok(cli(dir).args([
        "cluster",
        "provision",
        "--target",
        "legacy1",
        "--role",
        "ctrl",
    ]));
    let out = ok(cli(dir).args(["cluster", "cmd", "--target", "legacy1", "hostname"]));
    assert!(out.contains("legacy1       | legacy1"), "{out}");
    assert_eq!(servers(dir).await.len(), 1, "adopted, not doubled");

    let out = cli(dir)
        .args(["cluster", "adopt", "--target", "ghost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no server named ghost"));
}
