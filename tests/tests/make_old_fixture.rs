//! Writes `tests/fixtures/runs-before-typed-steps.sqlite`: runs stored by the
//! build before typed steps and step subjects (commit 64a34e7), for the
//! compatibility test in `old_runs.rs`. Run only at that commit:
//!
//! ```sh
//! SQLX_OFFLINE=true cargo test -p nix-infra-tests --test make_old_fixture -- --ignored
//! ```

use engine::{Engine, Observer};
use serde_json::json;
use std::sync::Arc;
use tasks::provider::{Hetzner, Provider, ServerSpec};
use testkit::cloud::{CloudConfig, TestCloud};
use tokio_util::sync::CancellationToken;

async fn execute(engine: &Engine, id: &str) -> engine::RunOutcome {
    engine
        .execute(id, CancellationToken::new(), Observer::none())
        .await
        .unwrap()
}

/// Every workflow's plan for one sample input each, as the old build stored it.
fn plans() -> String {
    let mut out = serde_json::Map::new();
    let registry = workflows::registry();
    for (workflow, input) in sample_inputs() {
        let plan = registry.get(workflow).unwrap().plan(&input).unwrap();
        out.insert(
            workflow.to_string(),
            json!({"input": input, "plan": serde_json::to_value(&plan).unwrap()}),
        );
    }
    serde_json::to_string_pretty(&out).unwrap()
}

/// A sample input for every workflow of the registry.
pub fn sample_inputs() -> Vec<(&'static str, serde_json::Value)> {
    let nodes = json!([
        {"name": "ctrl1", "role": "ctrl"}, {"name": "w1", "role": "cluster"},
        {"name": "in1", "role": "ingress", "groups": ["web"]}, {"name": "f1", "role": "fleet"}
    ]);
    let with = |args: serde_json::Value| json!({"cluster": "old", "dir": "/srv/old", "nodes": nodes, "args": args});
    let plain = json!({"cluster": "old", "dir": "/srv/old", "nodes": nodes});
    // Apps run on cluster nodes (`app.remove` with a control node has a cycle).
    let app_input = json!({"cluster": "old", "dir": "/srv/old",
        "nodes": [{"name": "w1", "role": "cluster"}, {"name": "in1", "role": "ingress"}],
        "args": {"app": "web", "kind": "backend", "port": 8080}});
    vec![
        (
            "diag.chain",
            json!({"steps": 3, "fail_step": 2, "fail_times": 1}),
        ),
        ("diag.fanout", json!({"steps": 3})),
        ("node.provision", plain.clone()),
        ("node.destroy", plain.clone()),
        ("node.adopt", plain.clone()),
        ("node.init", plain.clone()),
        ("node.update", plain.clone()),
        ("node.unregister", plain.clone()),
        ("cluster.up", plain.clone()),
        ("node.cmd", with(json!({"command": "uptime"}))),
        (
            "node.action",
            with(json!({"app": "web", "args": ["health"]})),
        ),
        (
            "node.upload",
            with(json!({"src": "/tmp/x", "dst": "/root/x"})),
        ),
        ("nix.gc", plain.clone()),
        ("nixos.rollback", plain.clone()),
        ("nixos.upgrade", with(json!({"batch": 2}))),
        ("image.publish", with(json!({"file": "/tmp/image.tar"}))),
        ("app.register", app_input.clone()),
        ("app.deploy", app_input.clone()),
        ("app.register_instance", app_input.clone()),
        ("app.unregister_instance", app_input.clone()),
        ("app.remove", app_input.clone()),
        ("app.unregister", app_input),
        (
            "secret.rotate",
            json!({"cluster": "old", "dir": "/srv/old", "args": {"secret": "db-pass"}}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the fixture; run by hand at the commit before typed steps"]
async fn make_old_fixture() {
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/runs-before-typed-steps.sqlite");
    let work = tempfile::tempdir().unwrap();
    let store = storage::connect(&testkit::sqlite_url(work.path()))
        .await
        .unwrap();
    let engine = Engine::new(Arc::new(store.clone()), workflows::registry());

    // diag.chain: step-1 succeeds, step-2 fails its only attempt; a resume
    // (attempt 2 > fail_times 1) succeeds.
    let chain = json!({"steps": 3, "fail_step": 2, "fail_times": 1, "max_attempts": 1});
    engine
        .create("diag.chain", chain, Some("old-diag-chain".into()))
        .await
        .unwrap();
    let o = execute(&engine, "old-diag-chain").await;
    assert_eq!(o.status, engine::RunStatus::Failed, "{o:?}");

    // A cluster of two nodes in a fake cloud without nodes (API only).
    let cloud = TestCloud::start(CloudConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "HCLOUD_TOKEN={}\nHCLOUD_ENDPOINT={}\n",
            cloud.token(),
            cloud.endpoint()
        ),
    )
    .unwrap();
    let h = Hetzner::new(cloud.endpoint(), cloud.token().to_string()).unwrap();
    let key = h
        .ensure_ssh_key("nix-infra-old", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG4rT3vTt99Ox5kndS4HmgTrKBT8SKzhK4rhGkEVGlCI old@fixture")
        .await
        .unwrap();
    for (node, role) in [("ctrl1", "ctrl"), ("w1", "cluster")] {
        h.create_server(&ServerSpec {
            cluster: "old".into(),
            node: node.into(),
            role: role.into(),
            server_type: "cx22".into(),
            image: "ubuntu-24.04".into(),
            location: None,
            ssh_key: key.name.clone(),
            placement_group: None,
            user_data: None,
        })
        .await
        .unwrap();
    }
    let nodes = json!([{"name": "ctrl1", "role": "ctrl"}, {"name": "w1", "role": "cluster"}]);
    let input = json!({"cluster": "old", "dir": dir.path(), "nodes": nodes});

    // cluster.up: planned, never executed.
    engine
        .create("cluster.up", input.clone(), Some("old-cluster-up".into()))
        .await
        .unwrap();
    // node.init: `locate` finds both servers; `certs/*` fail (no CA); the rest is blocked.
    engine
        .create("node.init", input.clone(), Some("old-node-init".into()))
        .await
        .unwrap();
    let o = execute(&engine, "old-node-init").await;
    assert_eq!(o.status, engine::RunStatus::Failed, "{o:?}");
    // node.adopt: outputs shaped like `create/<node>`'s.
    engine
        .create("node.adopt", input.clone(), Some("old-node-adopt".into()))
        .await
        .unwrap();
    let o = execute(&engine, "old-node-adopt").await;
    assert_eq!(o.status, engine::RunStatus::Succeeded, "{o:?}");
    // node.destroy: runs to the end (no CA: nothing to unregister or revoke).
    engine
        .create("node.destroy", input, Some("old-node-destroy".into()))
        .await
        .unwrap();
    let o = execute(&engine, "old-node-destroy").await;
    assert_eq!(o.status, engine::RunStatus::Succeeded, "{o:?}");

    std::fs::write(out.with_file_name("plans-before-typed-steps.json"), plans()).unwrap();
    let _ = std::fs::remove_file(&out);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    store
        .execute_raw(&format!("VACUUM INTO '{}'", out.display()))
        .await
        .unwrap();
}
