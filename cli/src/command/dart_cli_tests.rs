//! Every way the Dart nix-infra's users call it (its source and docs, the
//! templates' `cli` wrappers and `__test__/*.sh`), parsed as this CLI parses
//! it, and the request (or direct action) it makes. A flag that is ignored
//! or misread changes a compared field and fails its row.

use super::cluster::{Direct, request as cluster_request};
use super::etcd::{EtcdQuery, EtcdWhat};
use super::{Cli, Command};
use crate::args::Global;
use clap::Parser;
use serde_json::{Value, json};
use std::path::PathBuf;

/// What an invocation does, as far as it can be known without running it.
#[derive(Debug)]
enum Does {
    /// Starts a run with this request (JSON), asking nothing when `batch`.
    Run { request: Value, batch: bool },
    /// Starts no run.
    Direct(Direct),
    /// `init`, `ssh-key`, `secrets store`: parsed; their flags are listed.
    Local(Value),
}

/// The working directory of the rows (made absolute, as the templates' `-d "$WORK_DIR"`).
const WD: &str = "/srv/nonexistent/ha-cluster";

fn parse(argv: &[&str]) -> Result<(Global, Does), String> {
    let cli = Cli::try_parse_from(std::iter::once("nix-infra").chain(argv.iter().copied()))
        .map_err(|e| e.to_string())?;
    let run = |s: super::cluster_request::Started| Does::Run {
        request: serde_json::to_value(&s.request).unwrap(),
        batch: s.batch,
    };
    let does = match cli.command {
        Command::Cluster(c) => match cluster_request(c, false).map_err(|e| format!("{e:?}"))? {
            Ok(s) => run(s),
            Err(d) => Does::Direct(d),
        },
        Command::Fleet(c) => match cluster_request(c, true).map_err(|e| format!("{e:?}"))? {
            Ok(s) => run(s),
            Err(d) => Does::Direct(d),
        },
        Command::Registry(a) => {
            let (r, run) = super::registry::request(a).map_err(|e| format!("{e:?}"))?;
            Does::Run {
                request: serde_json::to_value(&r).unwrap(),
                batch: run.batch,
            }
        }
        Command::Etcd(a) => Does::Direct(Direct::Etcd(a.query().map_err(|e| format!("{e:?}"))?)),
        Command::Init(a) => Does::Local(json!({
            "init": {"batch": a.batch, "no_cert_auth": a.no_cert_auth, "ssh_email": a.ssh_email}
        })),
        Command::SshKey(k) => Does::Local(json!({ "ssh-key": format!("{k:?}") })),
        Command::Secrets(s) => Does::Local(json!({ "secrets": format!("{s:?}") })),
        other => return Err(format!("not a Dart command: {other:?}")),
    };
    Ok((cli.global, does))
}

/// Every field of `want` is in `got` with that value.
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| contains(gv, v))),
        _ => got == want,
    }
}

/// A row: the argv, and the request fields it must make (with `--batch` or not).
fn runs(argv: &[&str], batch: bool, want: Value) {
    let (_, does) = parse(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Does::Run { request, batch: b } = does else {
        panic!("{argv:?}: starts no run: {does:?}");
    };
    assert!(
        contains(&request, &want),
        "{argv:?}\n  made: {request}\n  want: {want}"
    );
    assert_eq!(b, batch, "{argv:?}: --batch");
}

fn direct(argv: &[&str], want: Direct) {
    let (_, does) = parse(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    match does {
        Does::Direct(d) => assert_eq!(d, want, "{argv:?}"),
        other => panic!("{argv:?}: {other:?}"),
    }
}

fn refused(argv: &[&str], words: &str) {
    let e = parse(argv)
        .err()
        .unwrap_or_else(|| panic!("{argv:?} parsed"));
    assert!(e.contains(words), "{argv:?}: {e}");
}

fn etcd(target: &str, what: EtcdWhat) -> Direct {
    Direct::Etcd(EtcdQuery {
        target: Some(target.into()),
        what,
    })
}

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
        json!({"request": "cmd", "target": "ctrl-1", "command": super::registry::LIST_IMAGES}),
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
