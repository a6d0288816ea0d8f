//! The Dart nix-infra's flags as requests carry them: `--ctrl-nodes`,
//! `--node-module`, `--cluster-uuid`, `--nixos-version` on init and update,
//! `--no-rebuild`, `upload --file`, `upgrade-nixos --nixos-version`.

use super::Request;
use super::tests::{check, repo};
use crate::domain::Role;
use serde_json::json;

/// Machines listed the Dart way: `etcd001` has no role, `service001` is a
/// cluster node, `edge001` an ingress node.
const LISTED: &str = "servers:\n  etcd001:\n    ip: 127.0.0.9\n    ssh_key: ./ssh/nixinfra\n  \
    service001:\n    ip: 127.0.0.8\n    ssh_key: ./ssh/nixinfra\n    metadata: { role: cluster }\n  \
    edge001:\n    ip: 127.0.0.7\n    ssh_key: ./ssh/nixinfra\n    metadata: { role: ingress }\n";

fn init_node(target: &str, ctrl: Option<&str>, node_type: Option<Role>) -> Request {
    Request::InitNode {
        target: target.into(),
        groups: Vec::new(),
        fleet: false,
        ctrl_nodes: ctrl.map(str::to_string),
        node_type,
        nixos_version: None,
    }
}

#[test]
fn init_ctrl_makes_its_targets_control_nodes_with_the_token_and_release_given() {
    let d = tempfile::tempdir().unwrap();
    let own = repo(d.path(), Some(LISTED));
    let r = Request::InitCtrl {
        target: "etcd001".into(),
        fleet: false,
        nixos_version: Some("25.05".into()),
        cluster_uuid: Some("d6b76143-bcfa-490a-8f38-91d79be62fab".into()),
    };
    let c = check(&own, r).unwrap();
    assert_eq!(c.workflow, "node.init");
    assert_eq!(
        c.input["nodes"],
        json!([{"name": "etcd001", "role": "ctrl"}])
    );
    assert_eq!(c.input["channel"], "nixos-25.05");
    assert_eq!(
        c.input["settings"],
        json!({"CTRL_NODES": "etcd001", "CLUSTER_UUID": "d6b76143-bcfa-490a-8f38-91d79be62fab"})
    );
    assert_eq!(c.confirm, None, "a listed machine needs no relabelling");
    let bad = Request::InitCtrl {
        target: "edge001".into(),
        fleet: false,
        nixos_version: None,
        cluster_uuid: Some("a b".into()),
    };
    let e = check(&own, bad).unwrap_err();
    assert!(e.contains("--cluster-uuid `a b`"), "{e}");
    let ingress = Request::InitCtrl {
        target: "edge001".into(),
        fleet: false,
        nixos_version: None,
        cluster_uuid: None,
    };
    let e = check(&own, ingress).unwrap_err();
    assert!(
        e.contains("edge001 is a ingress node, not a control node"),
        "{e}"
    );
}

#[test]
fn ctrl_nodes_name_control_nodes_and_reach_the_run() {
    let d = tempfile::tempdir().unwrap();
    let own = repo(d.path(), Some(LISTED));
    let c = check(&own, init_node("service001", Some("etcd001"), None)).unwrap();
    assert_eq!(c.input["settings"], json!({"CTRL_NODES": "etcd001"}));
    let e = check(&own, init_node("edge001", Some("service001"), None)).unwrap_err();
    assert!(
        e.contains("--ctrl-nodes names service001, a cluster node")
            && e.contains("cluster init-ctrl --target service001"),
        "{e}"
    );
    let e = check(&own, init_node("edge001", Some("nope1"), None)).unwrap_err();
    assert!(e.contains("no server of that name"), "{e}");
    // Without --ctrl-nodes nothing is set: CTRL_NODES of the env file counts.
    let c = check(&own, init_node("service001", None, None)).unwrap();
    assert!(c.input.get("settings").is_none(), "{}", c.input);
}

#[test]
fn the_node_module_must_be_the_targets_node_type() {
    let d = tempfile::tempdir().unwrap();
    let own = repo(d.path(), Some(LISTED));
    let c = check(&own, init_node("edge001", None, Some(Role::Ingress))).unwrap();
    assert_eq!(
        c.input["nodes"],
        json!([{"name": "edge001", "role": "ingress"}])
    );
    let e = check(&own, init_node("service001", None, Some(Role::Ingress))).unwrap_err();
    assert!(
        e.contains("--node-module node_types/ingress_node.nix: service001 is a cluster node"),
        "{e}"
    );
    // A machine without a role takes the node type's.
    let c = check(&own, init_node("etcd001", None, Some(Role::Ingress))).unwrap();
    assert_eq!(
        c.input["nodes"],
        json!([{"name": "etcd001", "role": "ingress"}])
    );
}

#[test]
fn update_ctrl_and_no_rebuild_plan_an_upload_only() {
    let d = tempfile::tempdir().unwrap();
    let own = repo(d.path(), Some(LISTED));
    let update = |target: &str, rebuild| Request::UpdateNode {
        target: target.into(),
        fleet: false,
        ctrl_nodes: None,
        node_type: None,
        nixos_version: Some("24.05".into()),
        rebuild,
    };
    let c = check(&own, update("service001", false)).unwrap();
    assert_eq!(c.input["args"], json!({"rebuild": false}));
    assert_eq!(c.input["channel"], "nixos-24.05");
    let kinds = |c: &super::Checked| -> Vec<String> {
        let plan = super::plan(&c.workflow, &c.input).unwrap();
        plan.steps.into_iter().map(|s| s.kind).collect()
    };
    let k = kinds(&c);
    assert!(k.contains(&"config".to_string()) && k.contains(&"secrets".to_string()));
    assert!(
        !k.contains(&"rebuild".to_string()) && !k.contains(&"confd".to_string()),
        "{k:?}"
    );
    let c = check(&own, update("service001", true)).unwrap();
    assert!(
        c.input.get("args").is_none(),
        "rebuilding is the input it was"
    );
    assert!(kinds(&c).contains(&"rebuild".to_string()));
    let ctrl = |target: &str| Request::UpdateCtrl {
        target: target.into(),
        fleet: false,
        nixos_version: None,
        cluster_uuid: Some("tok-1".into()),
        rebuild: true,
    };
    let e = check(&own, ctrl("service001")).unwrap_err();
    assert!(
        e.contains("service001 is a cluster node, not a control node"),
        "{e}"
    );
}

#[test]
fn upload_takes_the_dart_files_into_the_remote_path() {
    let d = tempfile::tempdir().unwrap();
    let own = repo(d.path(), Some(LISTED));
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("a.txt"), "a").unwrap();
    std::fs::create_dir(files.path().join("conf")).unwrap();
    let at = |n: &str| files.path().canonicalize().unwrap().join(n);
    let r = Request::Upload {
        target: "service001".into(),
        fleet: false,
        src: None,
        dst: None,
        files: vec![files.path().join("a.txt"), files.path().join("conf")],
        remote_path: None,
    };
    let c = check(&own, r).unwrap();
    assert_eq!(
        c.input["args"],
        json!({"src": at("a.txt"), "dst": "/root/uploads/a.txt",
               "more": [{"src": at("conf"), "dst": "/root/uploads/conf"}]})
    );
    let both = Request::Upload {
        target: "service001".into(),
        fleet: false,
        src: Some(files.path().join("a.txt")),
        dst: None,
        files: vec![files.path().join("a.txt")],
        remote_path: Some("/srv".into()),
    };
    let e = check(&own, both).unwrap_err();
    assert!(e.contains("give --src and --dst, or --file"), "{e}");
}

#[test]
fn upgrade_nixos_switches_to_the_release_given() {
    let d = tempfile::tempdir().unwrap();
    let own = repo(d.path(), Some(LISTED));
    let r = Request::UpgradeNixos {
        target: "service001".into(),
        fleet: false,
        batch: 2,
        nixos_version: Some("25.05".into()),
    };
    let c = check(&own, r).unwrap();
    assert_eq!(
        c.input["args"],
        json!({"batch": 2, "channel": "nixos-25.05"})
    );
}

#[test]
fn a_relabelled_control_node_is_labelled_before_any_control_node_renders() {
    let input = json!({
        "cluster": "c", "dir": "/nonexistent",
        "nodes": [{"name": "etcd001", "role": "ctrl", "relabel": true},
                  {"name": "etcd002", "role": "ctrl"}]
    });
    let plan = super::plan("node.init", &input).unwrap();
    let step = |name: &str| plan.steps.iter().find(|s| s.name == name).unwrap();
    assert_eq!(step("relabel/etcd001").deps, ["locate"]);
    for config in ["config/etcd001", "config/etcd002"] {
        assert!(
            step(config).deps.contains(&"relabel/etcd001".to_string()),
            "{config}"
        );
    }
    assert!(plan.steps.iter().all(|s| s.name != "relabel/etcd002"));
}
