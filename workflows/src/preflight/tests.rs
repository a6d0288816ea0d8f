//! The checks before a run, on copies of the example repo.

use super::{Problem, check};
use crate::cluster::Cluster;
use crate::domain::{NodeName, Role};
use crate::node::{NodeInput, NodesInput};
use age::secrecy::SecretSlice;
use std::path::Path;

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The example repo with a key, an identity and (if `secret`) its app's secret.
fn example(dir: &Path, secret: bool) -> Cluster {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster");
    copy(&src, dir);
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(dir.join("keys/id_ed25519.pub"), "ssh-ed25519 AAAAC3 t@c\n").unwrap();
    tasks::secrets::write_identity(&dir.join("keys/age.key")).unwrap();
    let c = Cluster::open(dir, None).unwrap();
    if secret {
        let value = SecretSlice::from(b"hi".to_vec());
        c.secrets()
            .unwrap()
            .store("hello-greeting", &value)
            .unwrap();
    }
    c
}

fn input(c: &Cluster, nodes: &[(&str, Role)]) -> NodesInput {
    NodesInput {
        nodes: nodes
            .iter()
            .map(|(n, role)| NodeInput {
                name: NodeName::new(*n).unwrap(),
                role: *role,
                groups: Vec::new(),
                relabel: false,
            })
            .collect(),
        ..NodesInput::of(c)
    }
}

const UP: [(&str, Role); 4] = [
    ("ctrl1", Role::Ctrl),
    ("worker1", Role::Cluster),
    ("worker2", Role::Cluster),
    ("ingress1", Role::Ingress),
];

fn parser_installed() -> bool {
    std::process::Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_ok()
}

fn problems(r: &super::Report, node: &str) -> Vec<Problem> {
    r.nodes
        .iter()
        .find(|n| n.node == node)
        .unwrap()
        .problems
        .clone()
}

#[test]
fn the_example_repo_passes_every_check() {
    let d = tempfile::tempdir().unwrap();
    let c = example(d.path(), true);
    let mut nodes = UP.to_vec();
    nodes.push(("fleet1", Role::Fleet));
    let r = check(&c, &input(&c, &nodes));
    assert!(r.ok(), "{r:#?}");
    assert!(r.refusal().is_none());
    assert_eq!(r.nodes.len(), 5);
    assert_eq!(r.warnings.is_empty(), parser_installed(), "{r:?}");
}

#[test]
fn every_problem_of_every_node_is_named_with_its_file() {
    let d = tempfile::tempdir().unwrap();
    let c = example(d.path(), false);
    let write = |f: &str, text: &str| std::fs::write(d.path().join(f), text).unwrap();
    write("nodes/worker2.nix", "{ ... }: { imports = [ ; }\n");
    let ingress = std::fs::read_to_string(d.path().join("node_types/ingress_node.nix")).unwrap();
    write(
        "node_types/ingress_node.nix",
        &ingress.replace("[%%overlayIp%%]", "[%%overlayIP%%]"),
    );
    let r = check(&c, &input(&c, &UP));
    assert!(!r.ok());
    assert!(problems(&r, "ctrl1").is_empty(), "{r:#?}");
    let secret = "references /root/secrets/hello-greeting, which is not in the secret store \
                  (`nix-infra secrets store --name hello-greeting`)";
    assert_eq!(
        problems(&r, "worker1"),
        [Problem {
            file: "app_modules/hello/default.nix".into(),
            problem: secret.into()
        }]
    );
    assert_eq!(
        problems(&r, "ingress1"),
        [Problem {
            file: "node_types/ingress_node.nix".into(),
            problem: "unknown placeholder [%%overlayIP%%]".into()
        }]
    );
    if parser_installed() {
        assert_eq!(
            problems(&r, "worker2"),
            [Problem {
                file: "nodes/worker2.nix".into(),
                problem: "does not parse: syntax error, unexpected ';' (line 1, column 24)".into()
            }]
        );
    }
    let text = r.refusal().unwrap().to_string();
    assert!(
        text.starts_with("the configuration of 3 of 4 nodes would not deploy"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "\n  worker1:\n    app_modules/hello/default.nix: {secret}"
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "\n  ingress1:\n    node_types/ingress_node.nix: unknown placeholder [%%overlayIP%%]"
        ),
        "{text}"
    );
}

#[test]
fn nodes_with_the_same_problems_share_a_heading() {
    let d = tempfile::tempdir().unwrap();
    let c = example(d.path(), true);
    let base = std::fs::read_to_string(d.path().join("modules/base.nix")).unwrap();
    std::fs::write(
        d.path().join("modules/base.nix"),
        base.replace(
            "time.timeZone = \"UTC\";",
            "time.timeZone = \"[%%timeZone%%]\";",
        ),
    )
    .unwrap();
    std::fs::remove_file(d.path().join("node_types/fleet_node.nix")).unwrap();
    let r = check(&c, &input(&c, &[UP[1], UP[2], ("fleet1", Role::Fleet)]));
    let text = r.refusal().unwrap().to_string();
    assert!(
        text.contains(
            "\n  worker1, worker2:\n    modules/base.nix: unknown placeholder [%%timeZone%%]\n  fleet1:\n    node_types/fleet_node.nix: missing"
        ),
        "{text}"
    );
}

#[test]
fn a_placeholder_outside_a_string_is_still_parsed_with_a_stand_in() {
    let d = tempfile::tempdir().unwrap();
    let c = example(d.path(), true);
    // `[%%port%%]` is unknown; rendered with a stand-in, the file still parses
    // and only the placeholder is reported; a real syntax error after it is found too.
    std::fs::write(
        d.path().join("nodes/worker1.nix"),
        "{ ... }: {\n  imports = [ ./app_modules/hello ];\n  x = [%%port%%];\n  y = ;\n}\n",
    )
    .unwrap();
    let r = check(&c, &input(&c, &[UP[1]]));
    let p: Vec<String> = problems(&r, "worker1")
        .into_iter()
        .map(|p| format!("{}: {}", p.file, p.problem))
        .collect();
    assert!(
        p.contains(&"nodes/worker1.nix: unknown placeholder [%%port%%]".to_string()),
        "{p:?}"
    );
    if parser_installed() {
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p.iter()
                .any(|p| p.starts_with("nodes/worker1.nix: does not parse: ")
                    && p.contains("(line 4, column")),
            "{p:?}"
        );
    }
    // Without the syntax error, the placeholder is the only problem: its
    // stand-in adds none of its own (no undefined variable).
    std::fs::write(
        d.path().join("nodes/worker1.nix"),
        "{ ... }: {\n  imports = [ ./app_modules/hello ];\n  x = [%%port%%];\n}\n",
    )
    .unwrap();
    let r = check(&c, &input(&c, &[UP[1]]));
    let p: Vec<String> = problems(&r, "worker1")
        .into_iter()
        .map(|p| format!("{}: {}", p.file, p.problem))
        .collect();
    assert_eq!(p, ["nodes/worker1.nix: unknown placeholder [%%port%%]"]);
}

/// The Dart-layout example with a key, an identity and its secrets.
fn dart_example(dir: &Path) -> Cluster {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dart-cluster");
    copy(&src, dir);
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(dir.join("keys/id_ed25519.pub"), "ssh-ed25519 AAAAC3 t@c\n").unwrap();
    tasks::secrets::write_identity(&dir.join("keys/age.key")).unwrap();
    let c = Cluster::open(dir, None).unwrap();
    for name in ["hello-greeting", "private-cache-netrc"] {
        let value = SecretSlice::from(b"v".to_vec());
        c.secrets().unwrap().store(name, &value).unwrap();
    }
    c
}

#[test]
fn the_dart_example_passes_and_says_its_layout() {
    let d = tempfile::tempdir().unwrap();
    let c = dart_example(d.path());
    let r = check(&c, &input(&c, &UP));
    assert!(r.ok(), "{r:#?}");
    assert!(
        r.layout.starts_with("Dart nix-infra layout"),
        "{}",
        r.layout
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    // A root configuration that would lock nix-infra out is pointed out.
    let conf = d.path().join("configuration.nix");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        text.replace("[%%sshKey%%]", "ssh-ed25519 AAAA someone@else"),
    )
    .unwrap();
    let r = check(&c, &input(&c, &UP));
    assert!(r.ok());
    assert_eq!(
        r.warnings,
        [
            "configuration.nix does not give root the key nix-infra logs in with ([%%sshKey%%]): \
          after the rebuild nix-infra may not reach the node"
        ]
    );
}

#[test]
fn a_dart_repo_has_every_problem_named_with_its_file() {
    let d = tempfile::tempdir().unwrap();
    let c = dart_example(d.path());
    let dir = d.path();
    let edit = |file: &str, from: &str, to: &str| {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.contains(from), "{file}: {from}");
        std::fs::write(dir.join(file), text.replace(from, to)).unwrap();
    };
    // A key the file does not take (configuration.nix gets three), a key of
    // a worker on the control node, a typo, a secret never stored.
    edit("configuration.nix", "[%%nixVersion%%]", "[%%etcdCluster%%]");
    edit(
        "nodes/ctrl1.nix",
        "dataDir = \"/var/lib/etcd\";",
        "dataDir = \"[%%localhost.overlayIp%%]\";",
    );
    edit(
        "nodes/worker1.nix",
        "[%%worker2.overlayIp%%]",
        "[%%wrker2.overlayIp%%] [%%locahost.ipv4%%]",
    );
    edit(
        "nodes/worker2.nix",
        "private-cache-netrc",
        "never-stored-netrc",
    );
    let r = check(&c, &input(&c, &UP));
    let text = |node: &str| {
        problems(&r, node)
            .iter()
            .map(|p| format!("{}: {}", p.file, p.problem))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        text("ctrl1"),
        [
            "configuration.nix: unknown placeholder [%%etcdCluster%%]",
            "nodes/ctrl1.nix: unknown placeholder [%%localhost.overlayIp%%]",
        ]
    );
    // `wrker2` and `locahost` may be servers of the cluster by the time
    // the run renders: only it can tell, so they are warnings here.
    assert_eq!(
        text("worker1"),
        ["configuration.nix: unknown placeholder [%%etcdCluster%%]"]
    );
    for typo in [
        "[%%wrker2.overlayIp%%] names `wrker2`",
        "[%%locahost.ipv4%%] names `locahost`",
    ] {
        assert!(
            r.warnings
                .iter()
                .any(|w| w.starts_with("nodes/worker1.nix: ") && w.contains(typo)),
            "{typo}: {:?}",
            r.warnings
        );
    }
    assert_eq!(
        text("worker2"),
        [
            "configuration.nix: unknown placeholder [%%etcdCluster%%]",
            "nodes/worker2.nix: references /root/secrets/never-stored-netrc, which is not in \
             the secret store (`nix-infra secrets store --name never-stored-netrc`)",
        ]
    );
    if parser_installed() {
        edit("modules/flannel.nix", "enable = true;", "enable = ;");
        let r = check(&c, &input(&c, &UP));
        let bad: Vec<_> = problems(&r, "ingress1")
            .into_iter()
            .filter(|p| p.problem.starts_with("does not parse"))
            .map(|p| p.file)
            .collect();
        assert_eq!(bad, ["modules/flannel.nix"]);
    }
}

#[test]
fn the_dart_machine_templates_node_type_serves_fleet_nodes() {
    let d = tempfile::tempdir().unwrap();
    let c = example(d.path(), true);
    let types = d.path().join("node_types");
    std::fs::rename(
        types.join("fleet_node.nix"),
        types.join("standalone_machine.nix"),
    )
    .unwrap();
    let i = input(&c, &[("box1", Role::Fleet)]);
    let r = check(&c, &i);
    assert!(r.ok(), "{r:#?}");
    c.need_types([Role::Fleet]).unwrap();
    std::fs::remove_file(types.join("standalone_machine.nix")).unwrap();
    let r = check(&c, &i);
    assert_eq!(problems(&r, "box1")[0].file, "node_types/fleet_node.nix");
}
