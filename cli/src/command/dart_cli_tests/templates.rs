//! The template repos' scripts: the HA cluster's `cli` wrapper and
//! `__test__/*.sh`, and the machine template's fleet commands.

use super::*;

#[test]
fn the_ha_templates_cli_wrapper() {
    let env = &format!("--env={WD}/.env");
    runs(
        &[
            "cluster",
            "provision",
            "-d",
            WD,
            env,
            "--batch",
            "--nixos-version=25.05",
            "--ssh-key=nixinfra",
            "--location=hel1",
            "--machine-type=cpx21",
            "--node-names=etcd001 service001",
        ],
        true,
        json!({"request": "provision", "target": "etcd001 service001", "role": "cluster",
               "fleet": false, "server": {"server_type": "cpx21", "location": "hel1",
               "nixos_version": "25.05", "image": "ubuntu-24.04"}}),
    );
    runs(
        &[
            "cluster",
            "init-ctrl",
            "-d",
            WD,
            env,
            "--batch",
            "--nixos-version=25.05",
            "--cluster-uuid=d6b76143-bcfa-490a-8f38-91d79be62fab",
            "--target=etcd001",
        ],
        true,
        json!({"request": "init-ctrl", "target": "etcd001", "nixos_version": "25.05",
               "cluster_uuid": "d6b76143-bcfa-490a-8f38-91d79be62fab"}),
    );
    runs(
        &[
            "cluster",
            "init-node",
            "-d",
            WD,
            env,
            "--batch",
            "--nixos-version=25.05",
            "--target=service001",
            "--node-module=node_types/cluster_node.nix",
            "--service-group=services",
            "--ctrl-nodes=etcd001",
        ],
        true,
        json!({"request": "init-node", "target": "service001", "groups": ["services"],
               "ctrl_nodes": "etcd001", "node_type": "cluster", "nixos_version": "25.05"}),
    );
    runs(
        &[
            "cluster",
            "update-node",
            "-d",
            WD,
            env,
            "--batch",
            "--nixos-version=25.05",
            "--node-module=node_types/cluster_node.nix",
            "--ctrl-nodes=service001 service002",
            "--target=service001 service002",
        ],
        true,
        json!({"request": "update-node", "target": "service001 service002",
               "ctrl_nodes": "service001 service002", "node_type": "cluster",
               "nixos_version": "25.05", "rebuild": true}),
    );
    runs(
        &[
            "cluster",
            "deploy-apps",
            "-d",
            WD,
            env,
            "--batch",
            "--target=service001",
        ],
        true,
        json!({"request": "deploy-apps", "target": "service001", "rebuild": true, "test_dir": null}),
    );
    runs(
        &[
            "cluster",
            "cmd",
            "-d",
            WD,
            env,
            "--target=service001 service002",
            "nixos-rebuild switch --fast",
        ],
        false,
        json!({"request": "cmd", "target": "service001 service002", "command": "nixos-rebuild switch --fast"}),
    );
    runs(
        &[
            "cluster",
            "action",
            "-d",
            WD,
            env,
            "--target=service001",
            "--app-module=mariadb",
            "--cmd=status",
        ],
        false,
        json!({"request": "action", "target": "service001", "app": "mariadb", "cmd": "status", "args": []}),
    );
    runs(
        &[
            "cluster",
            "destroy",
            "-d",
            WD,
            env,
            "--batch",
            "--target=service001",
            "--ctrl-nodes=etcd001",
        ],
        true,
        json!({"request": "destroy", "target": "service001", "ctrl_nodes": "etcd001"}),
    );
    runs(
        &[
            "cluster",
            "upgrade-nixos",
            "-d",
            WD,
            env,
            "--batch",
            "--nixos-version=25.05",
            "--target=service001",
        ],
        true,
        json!({"request": "upgrade-nixos", "target": "service001", "batch": 1, "nixos_version": "25.05"}),
    );
    runs(
        &[
            "registry",
            "publish-image",
            "-d",
            WD,
            env,
            "--batch",
            "--target=registry001",
            "--image-name=myapp",
            "--image-tag=1.0",
            "--file=./app.tar.gz",
        ],
        true,
        json!({"request": "publish-image", "target": "registry001", "image_name": "myapp",
               "image_tag": "1.0", "file": "./app.tar.gz", "use_localhost": false}),
    );
    direct(
        &["cluster", "ssh", "-d", WD, env, "--target=service001"],
        Direct::Ssh {
            target: "service001".into(),
            command: vec![],
        },
    );
    direct(
        &[
            "cluster",
            "etcd",
            "get --prefix /nodes",
            "-d",
            WD,
            env,
            "--target=etcd001",
        ],
        etcd("etcd001", EtcdWhat::Ctl(vec!["get --prefix /nodes".into()])),
    );
    direct(
        &[
            "cluster",
            "port-forward",
            "-d",
            WD,
            env,
            "--target=service001",
            "--local-port=8080",
            "--remote-port=80",
        ],
        Direct::PortForward {
            target: "service001".into(),
            local_port: 8080,
            remote_port: 80,
        },
    );
    let (g, does) = parse(&["init", "-d", WD, env, "--batch"]).unwrap();
    assert!(matches!(does, Does::Local(v) if v["init"]["batch"] == true));
    assert_eq!(g.env_file(), Some(PathBuf::from(format!("{WD}/.env"))));
}

#[test]
fn the_ha_templates_test_scripts() {
    for what in ["services", "backends", "frontends"] {
        let del = format!("del --prefix /cluster/{what}");
        direct(
            &["cluster", "etcd", "ctl", &del, "-d", WD, "--target=etcd001"],
            etcd("etcd001", EtcdWhat::Ctl(vec![del.clone()])),
        );
    }
    for (word, what) in [
        ("nodes", EtcdWhat::Nodes),
        ("services", EtcdWhat::Services),
        ("backends", EtcdWhat::Backends),
        ("frontends", EtcdWhat::Frontends),
        ("network", EtcdWhat::Network),
    ] {
        direct(
            &["cluster", "etcd", word, "-d", WD, "--target=etcd001"],
            etcd("etcd001", what),
        );
    }
    runs(
        &[
            "cluster",
            "action",
            "-d",
            WD,
            "--target=service001",
            "--app-module=mariadb",
            "--cmd=create-admin --database=test --username=test-admin",
            "--env-vars=MARIADB_ROOT_PASSWORD=your-secure-password",
            "--save-as-secret=mariadb.test-admin.connectionString",
        ],
        false,
        json!({"request": "action", "app": "mariadb",
               "cmd": "create-admin --database=test --username=test-admin",
               "env_vars": "MARIADB_ROOT_PASSWORD=your-secure-password",
               "save_as_secret": "mariadb.test-admin.connectionString"}),
    );
    runs(
        &[
            "cluster",
            "action",
            "-d",
            WD,
            "--target=service001",
            "--app-module=mongodb",
            "--cmd=init",
            "--env-vars=NODE_1=[%%service001.overlayIp%%],NODE_2=[%%service002.overlayIp%%]",
        ],
        false,
        json!({"request": "action", "app": "mongodb", "cmd": "init",
               "env_vars": "NODE_1=[%%service001.overlayIp%%],NODE_2=[%%service002.overlayIp%%]"}),
    );
    runs(
        &[
            "cluster",
            "deploy-apps",
            "-d",
            WD,
            "--batch",
            &format!("--env={WD}/.env"),
            &format!("--test-dir={WD}/__test__/mariadb"),
            "--target=service001 service002",
        ],
        true,
        json!({"request": "deploy-apps", "test_dir": format!("{WD}/__test__/mariadb")}),
    );
    runs(
        &[
            "registry",
            "publish-image",
            "-d",
            WD,
            "--batch",
            "--target=worker001",
            "--image-name=app-mariadb-pod",
            "--image-tag=1.0",
            "--file=app.tar.gz",
            "--use-localhost",
        ],
        true,
        json!({"request": "publish-image", "target": "worker001", "use_localhost": true}),
    );
    runs(
        &[
            "cluster",
            "destroy",
            "-d",
            WD,
            "--batch",
            "--target=etcd001",
            "--ctrl-nodes=etcd001",
        ],
        true,
        json!({"request": "destroy", "target": "etcd001", "ctrl_nodes": "etcd001"}),
    );
    runs(
        &[
            "cluster",
            "init-node",
            "-d",
            WD,
            "--batch",
            "--nixos-version=24.11",
            "--target=worker001",
            "--node-module=node_types/cluster_node.nix",
            "--service-group=backends",
            "--ctrl-nodes=etcd001",
        ],
        true,
        json!({"request": "init-node", "groups": ["backends"], "nixos_version": "24.11"}),
    );
    let (_, does) = parse(&[
        "secrets",
        "store",
        "-d",
        WD,
        "--batch",
        "--secret=redis://x@[%%service001.overlayIp%%]:6380",
        "--name=keydb.connectionString",
    ])
    .unwrap();
    let Does::Local(v) = does else { panic!() };
    assert!(
        v["secrets"]
            .as_str()
            .unwrap()
            .contains("keydb.connectionString"),
        "{v}"
    );
    let (_, does) = parse(&["ssh-key", "remove", "-d", WD, "--batch", "--name=nixinfra"]).unwrap();
    let Does::Local(v) = does else { panic!() };
    assert!(v["ssh-key"].as_str().unwrap().starts_with("Remove("), "{v}");
}

#[test]
fn the_machine_templates_fleet_commands() {
    let env = &format!("--env={WD}/.env");
    runs(
        &[
            "fleet",
            "provision",
            "-d",
            WD,
            env,
            "--batch",
            "--nixos-version=25.05",
            "--ssh-key=nixinfra",
            "--location=hel1",
            "--machine-type=cpx21",
            "--node-names=testnode001",
        ],
        true,
        json!({"request": "provision", "target": "testnode001", "fleet": true,
               "server": {"server_type": "cpx21", "location": "hel1", "nixos_version": "25.05"}}),
    );
    runs(
        &[
            "fleet",
            "init-machine",
            "-d",
            WD,
            env,
            "--batch",
            "--nixos-version=25.05",
            "--target=testnode001",
            "--node-module=node_types/fleet_node.nix",
        ],
        true,
        json!({"request": "init-node", "target": "testnode001", "fleet": true,
               "node_type": "fleet", "nixos_version": "25.05"}),
    );
    runs(
        &[
            "fleet",
            "update",
            "-d",
            WD,
            env,
            "--batch",
            "--nixos-version=25.05",
            "--target=testnode001",
            "--node-module=node_types/fleet_node.nix",
            "--no-rebuild",
        ],
        true,
        json!({"request": "update-node", "fleet": true, "node_type": "fleet", "rebuild": false}),
    );
    runs(
        &[
            "fleet",
            "deploy-apps",
            "-d",
            WD,
            env,
            "--batch",
            "--target=testnode001",
        ],
        true,
        json!({"request": "deploy-apps", "fleet": true, "rebuild": true}),
    );
    runs(
        &[
            "fleet",
            "cmd",
            "-d",
            WD,
            env,
            "--target=testnode001",
            "nixos-rebuild switch --rollback",
        ],
        false,
        json!({"request": "cmd", "fleet": true, "command": "nixos-rebuild switch --rollback"}),
    );
    runs(
        &[
            "fleet",
            "action",
            "-d",
            WD,
            env,
            "--target=testnode001",
            "--app-module=redis",
            "--cmd=status",
        ],
        false,
        json!({"request": "action", "fleet": true, "app": "redis", "cmd": "status"}),
    );
    runs(
        &[
            "fleet",
            "destroy",
            "-d",
            WD,
            env,
            "--batch",
            "--target=testnode001",
        ],
        true,
        json!({"request": "destroy", "fleet": true, "target": "testnode001", "ctrl_nodes": null}),
    );
    direct(
        &[
            "fleet",
            "port-forward",
            "-d",
            WD,
            env,
            "--target=testnode001",
            "--local-port=5432",
            "--remote-port=5432",
        ],
        Direct::PortForward {
            target: "testnode001".into(),
            local_port: 5432,
            remote_port: 5432,
        },
    );
    let (_, does) = parse(&["init", "-d", WD, env, "--no-cert-auth", "--batch"]).unwrap();
    assert!(matches!(does, Does::Local(v) if v["init"]["no_cert_auth"] == true));
    // The machine template's own node type file is a fleet node's type.
    runs(
        &[
            "fleet",
            "init-machine",
            "-d",
            WD,
            "--batch",
            "--nixos-version=25.05",
            "--target=testnode001",
            "--node-module=node_types/standalone_machine.nix",
        ],
        true,
        json!({"request": "init-node", "target": "testnode001", "fleet": true, "node_type": "fleet"}),
    );
    // Any other file is refused by name, saying what to do.
    refused(
        &[
            "fleet",
            "init-machine",
            "-d",
            WD,
            "--target=testnode001",
            "--node-module=node_types/my_box.nix",
        ],
        "git mv node_types/my_box.nix node_types/fleet_node.nix",
    );
}
