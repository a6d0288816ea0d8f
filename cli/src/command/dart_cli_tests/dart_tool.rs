//! The Dart tool's own docs and source, and where its options may stand.

use super::*;

#[test]
fn the_dart_tools_own_docs_and_source() {
    runs(
        &[
            "cluster",
            "provision",
            "--node-names",
            "ctrl-1 ctrl-2 ctrl-3",
            "--nixos-version",
            "24.11",
            "--machine-type",
            "cx22",
            "--location",
            "fsn1",
            "--placement-group",
            "ctrl-spread",
        ],
        false,
        json!({"target": "ctrl-1 ctrl-2 ctrl-3",
               "server": {"server_type": "cx22", "placement_group": "ctrl-spread", "nixos_version": "24.11"}}),
    );
    runs(
        &[
            "cluster",
            "update-ctrl",
            "--target",
            "ctrl-1 ctrl-2",
            "--nixos-version",
            "24.11",
            "--cluster-uuid",
            "my-cluster-01",
            "--rebuild",
        ],
        false,
        json!({"request": "update-ctrl", "target": "ctrl-1 ctrl-2", "cluster_uuid": "my-cluster-01",
               "nixos_version": "24.11", "rebuild": true}),
    );
    runs(
        &[
            "cluster",
            "update-ctrl",
            "--target",
            "ctrl-1",
            "--nixos-version",
            "24.11",
            "--cluster-uuid",
            "u",
            "--no-rebuild",
        ],
        false,
        json!({"request": "update-ctrl", "rebuild": false}),
    );
    runs(
        &[
            "cluster",
            "update-node",
            "--target",
            "worker-1",
            "--ctrl-nodes",
            "ctrl-1 ctrl-2",
            "--node-module",
            "node_types/ingress_node.nix",
            "--nixos-version",
            "24.11",
            "--rebuild",
        ],
        false,
        json!({"ctrl_nodes": "ctrl-1 ctrl-2", "node_type": "ingress", "rebuild": true}),
    );
    runs(
        &[
            "cluster",
            "cmd",
            "--target",
            "worker-1 worker-2",
            "--",
            "systemctl",
            "status",
            "etcd",
        ],
        false,
        json!({"command": "systemctl status etcd"}),
    );
    runs(
        &[
            "cluster",
            "upload",
            "--target",
            "worker-1",
            "--file",
            "./data/config.json ./b",
            "--remote-path",
            "/srv/up",
        ],
        false,
        json!({"request": "upload", "files": ["./data/config.json", "./b"], "remote_path": "/srv/up",
               "src": null, "dst": null}),
    );
    runs(
        &[
            "fleet",
            "upload",
            "--target",
            "web-1",
            "--file",
            "./data/config.json",
        ],
        false,
        json!({"files": ["./data/config.json"], "remote_path": null, "fleet": true}),
    );
    runs(
        &["cluster", "rollback", "--target", "worker-1", "--batch"],
        true,
        json!({"request": "rollback"}),
    );
    runs(
        &["cluster", "gc", "--target", "worker-1 worker-2", "--batch"],
        true,
        json!({"request": "gc"}),
    );
    runs(
        &[
            "cluster",
            "deploy-apps",
            "--target",
            "worker-1",
            "--rebuild",
        ],
        false,
        json!({"rebuild": true}),
    );
    direct(
        &[
            "cluster",
            "etcd",
            "ctl",
            "--target",
            "ctrl-1",
            "--",
            "get",
            "/",
            "--prefix",
            "--keys-only",
        ],
        etcd(
            "ctrl-1",
            EtcdWhat::Ctl(
                ["get", "/", "--prefix", "--keys-only"]
                    .map(String::from)
                    .to_vec(),
            ),
        ),
    );
    direct(
        &["etcd", "ctl", "--target", "ctrl-1", "get", "/cluster/nodes"],
        etcd(
            "ctrl-1",
            EtcdWhat::Ctl(vec!["get".into(), "/cluster/nodes".into()]),
        ),
    );
    direct(
        &["etcd", "--target", "ctrl-1", "network"],
        etcd("ctrl-1", EtcdWhat::Network),
    );
    runs(
        &[
            "registry",
            "--target",
            "ctrl-1",
            "publish-image",
            "--file",
            "./result",
            "--image-name",
            "my-app",
            "--image-tag",
            "v1.2.3",
        ],
        false,
        json!({"target": "ctrl-1", "image_name": "my-app", "image_tag": "v1.2.3"}),
    );
    runs(
        &["registry", "list-images", "--target", "ctrl-1"],
        false,
        json!({"request": "cmd", "target": "ctrl-1", "command": crate::command::registry::LIST_IMAGES}),
    );
    refused(
        &[
            "cluster",
            "provision",
            "--node-names",
            "a",
            "--mutation",
            "vmware",
        ],
        "--mutation vmware: not supported",
    );
    refused(
        &["cluster", "etcd", "ctl", "get", "/"],
        "give the control node",
    );
}

#[test]
fn group_options_go_before_or_after_the_subcommand() {
    let argv = [
        "cluster",
        "--ssh-key",
        "k1",
        "--debug",
        "-d",
        WD,
        "--env",
        "prod.env",
        "provision",
        "--node-names",
        "a",
    ];
    let (g, _) = parse(&argv).unwrap();
    assert_eq!(g.ssh_key.as_deref(), Some("k1"));
    assert_eq!(g.verbosity(), 2, "--debug is -vv");
    // A relative --env is under -d, as in the Dart tool; an absolute one stays.
    assert_eq!(g.env_file(), Some(PathBuf::from(format!("{WD}/prod.env"))));
    let (g, _) = parse(&[
        "cluster",
        "provision",
        "--node-names",
        "a",
        "--ssh-key=k2",
        "--env=/etc/x.env",
    ])
    .unwrap();
    assert_eq!(g.ssh_key.as_deref(), Some("k2"));
    assert_eq!(g.env_file(), Some(PathBuf::from("/etc/x.env")));
    // Only in the current directory (the tests run in cli/): that one.
    let (g, _) = parse(&[
        "-d",
        WD,
        "cluster",
        "gc",
        "--target",
        "a",
        "--env",
        "Cargo.toml",
    ])
    .unwrap();
    assert_eq!(g.env_file(), Some(PathBuf::from("Cargo.toml")));
}

#[test]
fn upgrade_nixos_batch_is_the_dart_flag_and_the_old_batch_size() {
    let batch = |argv: &[&str]| match parse(argv).unwrap().1 {
        Does::Run { request, batch } => (request["batch"].as_u64().unwrap(), batch),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        batch(&["cluster", "upgrade-nixos", "--target", "a b", "--batch"]),
        (1, true)
    );
    assert_eq!(
        batch(&[
            "cluster",
            "upgrade-nixos",
            "--target",
            "a b",
            "--batch",
            "2"
        ]),
        (2, true)
    );
    assert_eq!(
        batch(&["cluster", "upgrade-nixos", "--batch=3", "--target", "a b"]),
        (3, true)
    );
    assert_eq!(
        batch(&[
            "cluster",
            "upgrade-nixos",
            "--target",
            "a b",
            "--batch-size",
            "2"
        ]),
        (2, false)
    );
    assert_eq!(
        batch(&["cluster", "upgrade-nixos", "--target", "a b"]),
        (1, false)
    );
    refused(
        &["cluster", "upgrade-nixos", "--target", "a", "--batch", "0"],
        "--batch 0",
    );
    refused(
        &[
            "cluster",
            "upgrade-nixos",
            "--target",
            "a",
            "--batch",
            "2",
            "--batch-size",
            "3",
        ],
        "disagree",
    );
}
