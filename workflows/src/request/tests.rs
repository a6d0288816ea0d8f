//! The checks of typed requests, on repos made here: their inputs keep the
//! shape earlier builds stored, and what must be refused is refused by name.

use super::{Origin, Request, ServerOptions};
use std::collections::BTreeSet;
use std::path::Path;

/// A repo `init` would have made (the files `need_init` asks for), with node
/// types for every role, on machines listed in `servers.yaml` when given.
pub(super) fn repo(dir: &Path, servers: Option<&str>) -> Origin {
    for f in ["keys/id_ed25519.pub", "ca/root.pem"] {
        std::fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
        std::fs::write(dir.join(f), "x").unwrap();
    }
    tasks::secrets::write_identity(&dir.join("keys/age.key")).unwrap();
    std::fs::create_dir_all(dir.join("node_types")).unwrap();
    for t in ["control", "cluster", "ingress", "fleet"] {
        std::fs::write(
            dir.join(format!("node_types/{t}_node.nix")),
            "{ ... }: { }\n",
        )
        .unwrap();
    }
    match servers {
        Some(yaml) => std::fs::write(dir.join("servers.yaml"), yaml).unwrap(),
        // A closed port on loopback: the checks that ask the provider get no answer.
        None => std::fs::write(
            dir.join(".env"),
            "HCLOUD_TOKEN=t\nHCLOUD_ENDPOINT=http://127.0.0.1:9/v1\n",
        )
        .unwrap(),
    }
    Origin {
        dir: dir.to_path_buf(),
        env_file: None,
        local_files: true,
        ssh_key: None,
    }
}

const BOXES: &str = "servers:\n  - name: box1\n    ipv4: 127.0.0.9\n  - name: w1\n    ipv4: 127.0.0.8\n    role: worker\n";

pub(super) fn check(origin: &Origin, r: Request) -> Result<super::Checked, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(r.check(origin, None))
        .map_err(|e| e.to_string())
}

fn keys(v: &serde_json::Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn inputs_keep_the_shape_earlier_builds_stored() {
    let d = tempfile::tempdir().unwrap();
    let cloud = repo(d.path(), None);
    let up = Request::Up {
        ctrl: 1,
        workers: 1,
        ingress: 0,
        server: ServerOptions::default(),
        fleet: false,
    };
    let c = check(&cloud, up).unwrap();
    assert_eq!(c.workflow, "cluster.up");
    let want = [
        "cluster",
        "dir",
        "image",
        "location",
        "nodes",
        "server_type",
    ];
    assert_eq!(keys(&c.input), BTreeSet::from(want));
    assert_eq!(
        c.input["nodes"],
        serde_json::json!([
            {"name": "ctrl1", "role": "ctrl"}, {"name": "worker1", "role": "cluster"}
        ])
    );
    assert_eq!(c.input["location"], serde_json::Value::Null);

    let d = tempfile::tempdir().unwrap();
    let own = repo(d.path(), Some(BOXES));
    let gc = Request::Gc {
        target: "box1".into(),
        fleet: false,
    };
    let c = check(&own, gc).unwrap();
    assert_eq!(keys(&c.input), BTreeSet::from(["cluster", "dir", "nodes"]));
}

#[test]
fn refusals_name_the_problem() {
    let d = tempfile::tempdir().unwrap();
    let own = repo(d.path(), Some(BOXES));
    let cases = [
        (
            Request::Gc {
                target: "w1".into(),
                fleet: false,
            },
            "server w1 of cluster",
        ),
        (
            Request::Provision {
                target: "box2".into(),
                role: crate::domain::Role::Cluster,
                fleet: false,
                server: ServerOptions::default(),
            },
            "servers.yaml wins over HCLOUD_TOKEN",
        ),
        (
            Request::Cmd {
                target: "box1".into(),
                fleet: false,
                command: "true".into(),
                env_vars: Some("1BAD=x".into()),
            },
            "`1BAD` is not a variable name",
        ),
    ];
    for (r, says) in cases {
        let e = check(&own, r).unwrap_err();
        assert!(e.contains(says), "{e}");
    }
    let e = check(
        &own,
        Request::Gc {
            target: "w1".into(),
            fleet: false,
        },
    )
    .unwrap_err();
    assert!(e.contains("`worker` is not a role"), "{e}");

    let d = tempfile::tempdir().unwrap();
    let cloud = repo(d.path(), None);
    let up = Request::Up {
        ctrl: 1,
        workers: 101,
        ingress: 0,
        server: ServerOptions::default(),
        fleet: false,
    };
    assert!(
        check(&cloud, up)
            .unwrap_err()
            .contains("--workers 101: at most 100")
    );
}

#[test]
fn cmd_variables_from_a_file_only_from_this_machine_and_a_run_id_that_fits() {
    let d = tempfile::tempdir().unwrap();
    let mut own = repo(d.path(), Some(BOXES));
    let vars = d.path().join("vars");
    std::fs::write(&vars, "A=1\n").unwrap();
    let cmd = |spec: String| Request::Cmd {
        target: "box1".into(),
        fleet: false,
        command: "true".into(),
        env_vars: Some(spec),
    };
    let c = check(&own, cmd(format!("@{}", vars.display()))).unwrap();
    let secret = c.run_secret.expect("the variables travel in a run secret");
    assert_eq!(c.input["args"]["env_secret"], secret.name.as_str());
    assert!(
        !format!("{secret:?}").contains("A=1"),
        "Debug shows no value"
    );

    own.local_files = false;
    let e = check(&own, cmd(format!("@{}", vars.display()))).unwrap_err();
    assert!(e.contains("over the API, send KEY=VALUE"), "{e}");

    own.local_files = true;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let long = "r".repeat(61);
    let e = rt
        .block_on(cmd("A=1".into()).check(&own, Some(long)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("too long for --env-vars"), "{e}");
}

#[test]
fn node_configurations_are_checked_before_servers_are_created() {
    let d = tempfile::tempdir().unwrap();
    let cloud = repo(d.path(), None);
    let up = || Request::Up {
        ctrl: 1,
        workers: 1,
        ingress: 0,
        server: ServerOptions::default(),
        fleet: false,
    };
    check(&cloud, up()).unwrap();
    std::fs::create_dir_all(d.path().join("nodes")).unwrap();
    std::fs::write(
        d.path().join("nodes/worker1.nix"),
        "{ ... }: { x = \"[%%nope%%] /root/secrets/absent\"; }\n",
    )
    .unwrap();
    let e = check(&cloud, up()).unwrap_err();
    assert!(
        e.contains("\n  worker1:\n    nodes/worker1.nix: references /root/secrets/absent"),
        "{e}"
    );
    assert!(
        e.contains("\n    nodes/worker1.nix: unknown placeholder [%%nope%%]"),
        "{e}"
    );
    // provision checks the same; a repo without the role's node type yet may
    // still get servers (init-node checks it then).
    let provision = |target: &str, role| Request::Provision {
        target: target.into(),
        role,
        fleet: false,
        server: ServerOptions::default(),
    };
    let e = check(&cloud, provision("worker1", crate::domain::Role::Cluster)).unwrap_err();
    assert!(e.contains("worker1:"), "{e}");
    std::fs::remove_file(d.path().join("node_types/ingress_node.nix")).unwrap();
    check(&cloud, provision("ingress1", crate::domain::Role::Ingress)).unwrap();
}

#[test]
fn the_nixos_version_picks_the_channel_and_a_bad_installer_is_refused_first() {
    let d = tempfile::tempdir().unwrap();
    let cloud = repo(d.path(), None);
    let provision = |version: Option<&str>| Request::Provision {
        target: "n1".into(),
        role: crate::domain::Role::Cluster,
        fleet: false,
        server: ServerOptions {
            nixos_version: version.map(str::to_string),
            ..ServerOptions::default()
        },
    };
    let c = check(&cloud, provision(None)).unwrap();
    assert!(c.input.get("channel").is_none(), "the default is left out");
    let c = check(&cloud, provision(Some("24.11"))).unwrap();
    assert!(c.input.get("channel").is_none(), "24.11 is the default");
    let c = check(&cloud, provision(Some("25.05"))).unwrap();
    assert_eq!(c.input["channel"], "nixos-25.05");
    let c = check(&cloud, provision(Some("nixos-unstable"))).unwrap();
    assert_eq!(c.input["channel"], "nixos-unstable");
    for bad in ["24", "24.11; reboot", "latest", "2411.1"] {
        let e = check(&cloud, provision(Some(bad))).unwrap_err();
        assert!(
            e.contains(&format!("--nixos-version {bad}: give a NixOS release")),
            "{e}"
        );
    }
    let json = r#"{"request": "up", "server": {"nixos_version": "25.05"}}"#;
    let up: Request = serde_json::from_str(json).unwrap();
    assert_eq!(check(&cloud, up).unwrap().input["channel"], "nixos-25.05");

    std::fs::write(
        d.path().join(".env"),
        "HCLOUD_TOKEN=t\nHCLOUD_ENDPOINT=http://127.0.0.1:9/v1\nNIXOS_INFECT_URL=http://127.0.0.1:9/nixos-infect\n",
    )
    .unwrap();
    let e = check(&cloud, provision(None)).unwrap_err();
    assert!(e.contains("without NIXOS_INFECT_SHA256"), "{e}");
}

#[test]
fn init_node_splits_service_groups_as_the_dart_tool_does() {
    let d = tempfile::tempdir().unwrap();
    let own = repo(
        d.path(),
        Some("servers:\n  - name: box1\n    ipv4: 127.0.0.9\n    role: cluster\n"),
    );
    let init = |groups: &[&str]| Request::InitNode {
        target: "box1".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        fleet: false,
        ctrl_nodes: None,
        node_type: None,
        nixos_version: None,
    };
    let c = check(&own, init(&["services backends", "web,services"])).unwrap();
    assert_eq!(
        c.input["nodes"],
        serde_json::json!([
            {"name": "box1", "role": "cluster", "groups": ["services", "backends", "web"]}
        ])
    );
    // None given: the input stays as earlier builds stored it; the node serves `services`.
    let c = check(&own, init(&[])).unwrap();
    assert_eq!(
        c.input["nodes"],
        serde_json::json!([{"name": "box1", "role": "cluster"}])
    );
    let i: crate::node::NodesInput = serde_json::from_value(c.input).unwrap();
    assert_eq!(i.nodes[0].service_groups(), ["services"]);
    let e = check(&own, init(&["web/admin"])).unwrap_err();
    assert!(
        e.contains("--service-group: `web/admin` is not a service group"),
        "{e}"
    );
    // Over the API, the same words.
    let r: Request = serde_json::from_str(
        r#"{"request": "init-node", "target": "box1", "groups": ["services backends"]}"#,
    )
    .unwrap();
    assert_eq!(
        check(&own, r).unwrap().input["nodes"][0]["groups"],
        serde_json::json!(["services", "backends"])
    );
}
