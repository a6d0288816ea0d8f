//! The node workflows' plans: which step waits for which.

use serde_json::json;

fn plan(workflow: &str, input: serde_json::Value) -> engine::Plan {
    let p = crate::registry()
        .get(workflow)
        .unwrap()
        .plan(&input)
        .unwrap();
    p.validate().unwrap();
    p
}

fn deps(p: &engine::Plan, step: &str) -> Vec<String> {
    p.step(step)
        .unwrap_or_else(|| panic!("no step {step}"))
        .deps
        .clone()
}

fn nodes(list: &[(&str, &str)]) -> serde_json::Value {
    list.iter()
        .map(|(n, r)| json!({"name": n, "role": r}))
        .collect()
}

#[test]
fn cluster_up_inits_control_nodes_first_and_reserves_the_overlay_before_rendering() {
    let p = plan(
        "cluster.up",
        json!({
            "cluster": "c",
            "dir": "/tmp/c",
            "nodes": nodes(&[("ctrl1", "ctrl"), ("w1", "cluster")])
        }),
    );
    assert_eq!(deps(&p, "ctrl"), ["etcd/ctrl1"]);
    assert_eq!(
        deps(&p, "etcd/ctrl1"),
        ["create/ctrl1", "verify/ctrl1", "rebuild/ctrl1"]
    );
    let config = deps(&p, "config/w1");
    for d in ["create/w1", "verify/w1", "ctrl", "overlay/w1", "certs/w1"] {
        assert!(
            config.contains(&d.to_string()),
            "config/w1 waits for {d}: {config:?}"
        );
    }
    assert!(deps(&p, "overlay/w1").contains(&"ctrl".to_string()));
    assert!(deps(&p, "register/w1").contains(&"confd/w1".to_string()));
    assert!(
        p.step("register/ctrl1").is_none(),
        "control nodes are not registered"
    );
}

#[test]
fn a_rolling_upgrade_chains_its_batches() {
    let p = plan(
        "nixos.upgrade",
        json!({
            "cluster": "c",
            "dir": "/tmp/c",
            "args": {"batch": 2},
            "nodes": nodes(&[
                ("n1", "fleet"),
                ("n2", "fleet"),
                ("n3", "fleet"),
                ("n4", "fleet"),
                ("n5", "fleet")
            ])
        }),
    );
    assert_eq!(deps(&p, "upgrade/n1"), ["locate"]);
    assert_eq!(
        deps(&p, "upgrade/n3"),
        ["locate", "upgrade/n1", "upgrade/n2"]
    );
    assert_eq!(
        deps(&p, "upgrade/n5"),
        ["locate", "upgrade/n3", "upgrade/n4"]
    );
    let zero = crate::registry()
        .get("nixos.upgrade")
        .unwrap()
        .plan(&json!({
            "cluster": "c",
            "dir": "/tmp",
            "args": {"batch": 0},
            "nodes": nodes(&[("n1", "fleet")])
        }));
    assert!(
        zero.unwrap_err()
            .to_string()
            .contains("batch must be at least 1")
    );
}

#[test]
fn destroy_deletes_control_nodes_after_the_others_left_the_registry() {
    let p = plan(
        "node.destroy",
        json!({
            "cluster": "c",
            "dir": "/tmp/c",
            "nodes": nodes(&[("ctrl1", "ctrl"), ("w1", "cluster"), ("w2", "ingress")])
        }),
    );
    assert_eq!(
        deps(&p, "delete/ctrl1"),
        ["unregister/ctrl1", "unregister/w1", "unregister/w2"]
    );
    assert_eq!(deps(&p, "delete/w1"), ["unregister/w1"]);
}

#[test]
fn bad_inputs_name_the_problem() {
    let wf = crate::registry();
    let err = |w: &str, input: serde_json::Value| {
        wf.get(w).unwrap().plan(&input).unwrap_err().to_string()
    };
    let twice = json!({
        "cluster": "c",
        "dir": "/t",
        "nodes": nodes(&[("a", "cluster"), ("a", "cluster")])
    });
    assert!(err("node.init", twice).contains("node `a` is listed twice"));
    assert!(
        err(
            "node.init",
            json!({"cluster": "c", "dir": "/t", "nodes": nodes(&[("a", "worker")])})
        )
        .contains("role `worker`")
    );
    assert!(
        err(
            "app.register",
            json!({"cluster": "c", "dir": "/t", "nodes": [], "args": {"app": "x"}})
        )
        .contains("publishes a port")
    );
    let db = json!({
        "cluster": "c",
        "dir": "/t",
        "nodes": [],
        "args": {"app": "x", "port": 1, "kind": "db"}
    });
    assert!(err("app.register", db).contains("app kind `db`"));
    let both = json!({
        "cluster": "c",
        "dir": "/t",
        "args": {"secret": "s", "bytes": 8, "from_action": {"app": "a", "node": "n"}}
    });
    assert!(err("secret.rotate", both).contains("not both"));
}

#[test]
fn a_node_gets_its_own_apps_and_the_secrets_they_reference() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (path, text) in [
        (
            "node_types/cluster_node.nix",
            "{ ... }: { x = \"[%%overlayIp%%]\"; }",
        ),
        (
            "nodes/w1.nix",
            "{ ... }: { imports = [ ./app_modules/web ]; }",
        ),
        (
            "app_modules/web/default.nix",
            "{ ... }: { c = \"web:/root/secrets/web-key\"; }",
        ),
        (
            "app_modules/webhook/default.nix",
            "{ ... }: { c = \"/root/secrets/hook-key\"; }",
        ),
        ("modules/base.nix", "{ ... }: { }"),
        ("keys/id_ed25519.pub", "ssh-ed25519 AAAAC3Nza test@c\n"),
    ] {
        std::fs::create_dir_all(d.join(path).parent().unwrap()).unwrap();
        std::fs::write(d.join(path), text).unwrap();
    }
    assert_eq!(
        super::node_apps(d, "imports = [ ./app_modules/web ];"),
        ["web"],
        "webhook is another app"
    );
    let vars = [("overlayIp", "10.100.1.0")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let reach = super::Reach::read(
        &crate::cluster::Cluster::open(d, None).unwrap(),
        "nixos-24.11",
    )
    .unwrap();
    let staged = super::stage_config(
        d,
        &d.join("nodes"),
        "w1",
        crate::domain::Role::Cluster,
        &vars,
        &reach,
    )
    .unwrap();
    let s = staged.path();
    assert!(s.join("app_modules/web/default.nix").exists());
    assert!(!s.join("app_modules/webhook").exists());
    assert_eq!(
        std::fs::read_to_string(s.join("node_type.nix")).unwrap(),
        "{ ... }: { x = \"10.100.1.0\"; }"
    );
    let conf = std::fs::read_to_string(s.join("configuration.nix")).unwrap();
    assert!(
        conf.contains("imports = [ ./hardware-configuration.nix ./node_type.nix ./node.nix ]"),
        "{conf}"
    );
    assert_eq!(
        super::referenced_secrets(s).into_iter().collect::<Vec<_>>(),
        ["web-key"]
    );
    // A missing placeholder value is named with its file.
    let err = super::stage_config(
        d,
        &d.join("nodes"),
        "w1",
        crate::domain::Role::Cluster,
        &Default::default(),
        &reach,
    )
    .unwrap_err();
    assert!(err.contains("node_type.nix: overlayIp"), "{err}");
}

#[test]
fn control_nodes_render_once_every_member_has_a_server() {
    let p = plan(
        "cluster.up",
        json!({
            "cluster": "c",
            "dir": "/tmp/c",
            "nodes": nodes(&[("ctrl1", "ctrl"), ("ctrl2", "ctrl"), ("ctrl3", "ctrl")])
        }),
    );
    let config = deps(&p, "config/ctrl1");
    for d in ["create/ctrl2", "create/ctrl3"] {
        assert!(config.contains(&d.to_string()), "{config:?}");
    }
    assert!(p.step("ctrl").is_none(), "no member nodes, no overlay step");
}

/// `config/w1` (the real step) after stand-ins for `locate`, `ctrl` and an
/// `overlay/w1` whose output is `overlay`: the run's error on `config/w1`.
async fn config_after_overlay(overlay: serde_json::Value) -> Option<String> {
    use super::kinds::{Config, Ctrl, Locate, Overlay};
    use engine::{Engine, Observer, Plan, Registry, Step, Workflow};
    let w1 = crate::domain::NodeName::new("w1").unwrap();
    let wf = Workflow::new("t.config", 1)
        .planner(move |_| {
            Ok(Plan::new(vec![
                super::single::<Locate>(),
                super::single::<Ctrl>(),
                super::node_step::<Overlay>(&w1).after(Ctrl::KIND),
                super::node_step::<Config>(&w1)
                    .after(Locate::KIND)
                    .after(Ctrl::KIND)
                    .after("overlay/w1"),
            ]))
        })
        .step(Locate::KIND, |_| async {
            Ok(json!({
                "servers": {"w1": {"node": "w1", "role": "cluster", "id": 1, "ipv4": "127.0.0.9"}}
            }))
        })
        .step(Ctrl::KIND, |_| async {
            Ok(json!({"endpoints": ["https://127.0.0.8:2379"]}))
        })
        .step(Overlay::KIND, move |_| {
            let out = overlay.clone();
            async move { Ok(out) }
        })
        .with::<Config>();
    let mut registry = Registry::new();
    registry.register(wf);
    let engine = Engine::new(Arc::new(engine::testing::MemoryStore::default()), registry);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/id_ed25519.pub"), "ssh-ed25519 AAAA c").unwrap();
    let input = json!({"cluster": "c", "dir": dir.path(), "nodes": nodes(&[("w1", "cluster")])});
    let id = engine
        .create("t.config", input, None)
        .await
        .unwrap()
        .record()
        .id
        .clone();
    engine
        .execute(&id, Default::default(), Observer::none())
        .await
        .unwrap();
    let state = engine.load(&id).await.unwrap();
    state
        .attempts
        .iter()
        .find(|a| a.step == "config/w1")
        .and_then(|a| a.error.clone())
}

use std::sync::Arc;

#[tokio::test]
async fn config_fails_naming_the_overlay_step_and_the_field_it_lacks() {
    // `overlay_ip` renamed: the old code rendered `[%%overlayIp%%]` as "".
    let error = config_after_overlay(json!({"subnet": "10.100.1.0/24", "ip": "10.100.1.0"})).await;
    assert_eq!(
        error.as_deref(),
        Some("step `overlay/w1`'s output: missing field `overlay_ip`")
    );
    // With the field, config gets past the overlay: it fails later, on the
    // node type file this empty cluster directory lacks.
    let error =
        config_after_overlay(json!({"subnet": "10.100.1.0/24", "overlay_ip": "10.100.1.0"}))
            .await
            .unwrap();
    assert!(error.contains("node_types/cluster_node.nix"), "{error}");
}

#[test]
fn per_node_steps_act_on_their_node_and_singletons_on_nothing() {
    let p = plan(
        "cluster.up",
        json!({
            "cluster": "c",
            "dir": "/tmp/c",
            "nodes": nodes(&[("ctrl1", "ctrl"), ("w1", "cluster"), ("f1", "fleet")])
        }),
    );
    for s in &p.steps {
        let want = s.name.split_once('/').map(|(_, n)| n);
        assert_eq!(s.subject.as_deref(), want, "{}", s.name);
    }
    assert_eq!(
        p.step("create/w1").unwrap().params,
        json!({"node": "w1", "role": "cluster"})
    );
    assert_eq!(p.step("config/w1").unwrap().params, json!({"node": "w1"}));
}

/// Evaluates `expr` with `nix-instantiate --eval --strict`, where it is installed.
fn nix_eval(expr: &str) -> Option<String> {
    let out = std::process::Command::new("nix-instantiate")
        .env("NIX_CONFIG", "build-users-group =")
        .args(["--eval", "--strict", "-E", expr])
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{expr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn no_repo_module_can_lock_us_out_of_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (path, text) in [
        (
            "node_types/cluster_node.nix",
            "{ ... }: { imports = [ ./modules/base.nix ]; }",
        ),
        // A repo that turns sshd off and names another release.
        (
            "modules/base.nix",
            "{ ... }: { services.openssh.enable = false; system.stateVersion = \"23.05\"; }",
        ),
        ("keys/id_ed25519.pub", "ssh-ed25519 AAAAC3Nza nix-infra@c\n"),
    ] {
        std::fs::create_dir_all(d.join(path).parent().unwrap()).unwrap();
        std::fs::write(d.join(path), text).unwrap();
    }
    let reach = super::Reach::read(
        &crate::cluster::Cluster::open(d, None).unwrap(),
        "nixos-25.05",
    )
    .unwrap();
    let role = crate::domain::Role::Cluster;
    let staged =
        super::stage_config(d, &d.join("nodes"), "w1", role, &Default::default(), &reach).unwrap();
    let s = staged.path();
    let conf = std::fs::read_to_string(s.join("configuration.nix")).unwrap();
    for line in [
        "services.openssh.enable = lib.mkForce true;",
        "services.openssh.openFirewall = lib.mkForce true;",
        r#"services.openssh.settings.PermitRootLogin = lib.mkForce "prohibit-password";"#,
        r#"users.users.root.openssh.authorizedKeys.keys = [ "ssh-ed25519 AAAAC3Nza nix-infra@c" ];"#,
        r#"system.stateVersion = lib.mkForce "25.05";"#,
        "imports = [ ./hardware-configuration.nix ./node_type.nix ]",
        "builtins.pathExists ./networking.nix",
    ] {
        assert!(conf.contains(line), "{line}\n{conf}");
    }
    // The repo's module is staged as written: the generated file's forced
    // values (priority 50) win over its plain ones (priority 100).
    let base = std::fs::read_to_string(s.join("modules/base.nix")).unwrap();
    assert!(base.contains("services.openssh.enable = false;"), "{base}");
    assert!(!base.contains("mkForce") && !base.contains("mkOverride"));

    // Evaluated (with a stand-in `lib.mkForce` as nixpkgs defines it): the
    // install's networking.nix is imported exactly when the node has one.
    let eval = |what: &str| {
        nix_eval(&format!(
            "let lib = {{ mkForce = content: {{ _type = \"override\"; priority = 50; inherit content; }}; }};
                 c = import {}/configuration.nix {{ inherit lib; }};
             in {what}",
            s.display()
        ))
    };
    let Some(imports) = eval("map baseNameOf c.imports") else {
        eprintln!("nix-instantiate is not installed: the evaluation is not checked");
        return;
    };
    assert_eq!(
        imports,
        r#"[ "hardware-configuration.nix" "node_type.nix" ]"#
    );
    std::fs::write(s.join("networking.nix"), "{ ... }: { }").unwrap();
    assert_eq!(
        eval("map baseNameOf c.imports").unwrap(),
        r#"[ "hardware-configuration.nix" "node_type.nix" "networking.nix" ]"#
    );
    assert_eq!(
        eval("with c.services.openssh.enable; [ priority content ]").unwrap(),
        "[ 50 true ]"
    );
    assert_eq!(eval("c.system.stateVersion.content").unwrap(), r#""25.05""#);
}
