//! A Dart-format `servers.yaml` (a map by server name, each with its own
//! `ssh_key` and `username`) is picked up by itself: `fleet cmd`,
//! `fleet update` and `fleet deploy-apps` reach the machines it lists,
//! with no Hetzner token anywhere.

mod common;

use common::{Down, cli, ok, on_node, servers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_commands_reach_the_machines_a_dart_servers_yaml_lists() {
    let parent = tempfile::tempdir().unwrap();
    let (a, b) = (parent.path().join("a"), parent.path().join("b"));
    // Machines someone set up: NixOS on two sandbox servers, made from repo a.
    std::fs::create_dir_all(&a).unwrap();
    let _down = Down(a.clone());
    ok(cli(&a).args(["init", "--example"]));
    ok(cli(&a).args(["sandbox", "up"]));
    ok(cli(&a).args(["fleet", "provision", "--target", "box1 box2"]));
    let ip: std::collections::BTreeMap<String, String> = servers(&a).await.into_iter().collect();

    // Repo b knows them only through servers.yaml, in the Dart tool's format.
    std::fs::create_dir_all(&b).unwrap();
    ok(cli(&b).args(["init", "--example"]));
    std::fs::write(
        b.join("servers.yaml"),
        format!(
            "servers:\n  box1:\n    ip: {}\n    ssh_key: {}\n    description: the first box\n    \
             metadata:\n      location: rack-1\n  box2:\n    ip: {}\n    ssh_key: ../a/keys/id_ed25519\n    \
             username: root\n",
            ip["box1"],
            a.join("keys/id_ed25519").display(),
            ip["box2"]
        ),
    )
    .unwrap();
    let env = std::fs::read_to_string(b.join(".env")).unwrap_or_default();
    assert!(!env.contains("HCLOUD_TOKEN"), "no token in b: {env}");

    let out = ok(cli(&b).args(["fleet", "cmd", "--target", "box1 box2", "hostname"]));
    for n in ["box1", "box2"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(n) && l.trim_end().ends_with(n)),
            "{out}"
        );
    }
    // `fleet update` is the Dart tool's name for `fleet update-node`.
    ok(cli(&b).args(["fleet", "update", "--batch", "--target", "box1 box2"]));
    ok(cli(&b).args(["fleet", "deploy-apps", "--target", "box2"]));
    for n in ["box1", "box2"] {
        // Read with repo a's key: the one the machines trust.
        let conf = on_node(&a, n, &ip[n], "cat /etc/nixos/configuration.nix").await;
        assert!(
            conf.contains(&format!("for node {n} (fleet)")),
            "{n}: {conf}"
        );
    }
    // Creating or deleting machines is refused, saying why.
    let out = cli(&b)
        .args(["fleet", "destroy", "--batch", "--target", "box1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("servers.yaml"), "{err}");
}
