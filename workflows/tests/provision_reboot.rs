//! `node.provision` on the test cloud, in process: a node that comes back
//! from its reboot with another host key fails `reboot/<node>` for good,
//! naming both fingerprints, and nothing after it runs.

use engine::{AttemptStatus, Engine, Observer, RunStatus};
use std::sync::Arc;
use std::time::Duration;
use testkit::{CloudConfig, TestCloud};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_changed_across_the_reboot_fails_the_reboot_step_for_good() {
    let cloud = TestCloud::start(CloudConfig {
        nodes: true,
        action_delay: Duration::from_millis(20),
        ..CloudConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.path().join("keys/id_ed25519"))
            .status()
            .unwrap()
            .success()
    );
    // First a hash that stops the run at install/n1, once n1 exists.
    let env = dir.path().join(".env");
    let lines = cloud.env_lines();
    let wrong = lines.replace(cloud.installer_sha256(), &"0".repeat(64));
    std::fs::write(&env, &wrong).unwrap();
    let store = storage::connect(&testkit::sqlite_url(dir.path()))
        .await
        .unwrap();
    let engine = Engine::new(Arc::new(store), workflows::registry());
    let input = serde_json::json!({
        "cluster": "rekey",
        "dir": dir.path(),
        "nodes": [{"name": "n1"}],
    });
    let id = engine
        .create("node.provision", input, None)
        .await
        .unwrap()
        .record()
        .id
        .clone();
    let run = |engine: &Engine| {
        let (engine, id) = (engine.clone(), id.clone());
        async move {
            engine
                .execute(&id, CancellationToken::new(), Observer::none())
                .await
                .unwrap()
        }
    };
    let first = run(&engine).await;
    assert_eq!(first.status, RunStatus::Failed);
    assert!(cloud.node("n1").is_some());

    // The reinstall loses the host key: the node comes back with a new one.
    assert!(cloud.change_host_key_on_reboot("n1").unwrap());
    std::fs::write(&env, &lines).unwrap();
    let second = run(&engine).await;
    assert_eq!(second.status, RunStatus::Failed, "{:?}", second.error);
    let state = engine.load(&id).await.unwrap();
    let reboot: Vec<_> = state
        .attempts
        .iter()
        .filter(|a| a.step == "reboot/n1")
        .collect();
    assert_eq!(reboot.len(), 1, "not retried: {reboot:?}");
    assert_eq!(reboot[0].status, AttemptStatus::Failed);
    let error = reboot[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("host key of node `n1` changed: known SHA256:")
            && error.contains(", presented SHA256:"),
        "{error}"
    );
    assert!(
        !state.attempts.iter().any(|a| a.step == "verify/n1"),
        "verify never ran"
    );
    workflows::node::close_connections().await;
}
