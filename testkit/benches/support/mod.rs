//! What the node benchmarks share: a test cloud with real sshd nodes, a
//! cluster directory pointing at it, and an engine over SQLite.

use engine::{Engine, Observer, RunStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::{CloudConfig, TestCloud};
use tokio_util::sync::CancellationToken;

/// A cloud, its cluster directory and an engine that can reach it.
pub struct Bench {
    /// The cloud; its nodes stop when it drops.
    pub _cloud: TestCloud,
    /// The cluster directory (`.env`, `keys/`).
    pub dir: tempfile::TempDir,
    /// 64 steps at once.
    pub engine: Engine,
}

impl Bench {
    /// Starts a cloud with `config` (nodes on) and a cluster directory for it.
    pub async fn start(config: CloudConfig) -> Bench {
        let cloud = TestCloud::start(CloudConfig {
            nodes: true,
            ..config
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // The API and the installer: what `sandbox up` writes.
        std::fs::write(dir.path().join(".env"), cloud.env_lines()).unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        assert!(
            std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.path().join("keys/id_ed25519"))
                .status()
                .unwrap()
                .success()
        );
        let store = storage::connect(&testkit::sqlite_url(dir.path()))
            .await
            .unwrap();
        let config = engine::EngineConfig {
            concurrency: 64,
            ..engine::EngineConfig::default()
        };
        let engine = Engine::new(Arc::new(store), workflows::registry()).with_config(config);
        Bench {
            _cloud: cloud,
            dir,
            engine,
        }
    }

    /// Runs `workflow` to success and returns how long it took.
    pub async fn time(&self, workflow: &str, input: serde_json::Value) -> Duration {
        let t0 = Instant::now();
        let id = self
            .engine
            .create(workflow, input, None)
            .await
            .unwrap()
            .record()
            .id
            .clone();
        let out = self
            .engine
            .execute(&id, CancellationToken::new(), Observer::none())
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
        t0.elapsed()
    }
}

/// The median of a few timings, and the ratio line every node benchmark prints.
pub fn report(what: &str, mut one: Vec<Duration>, mut twenty: Vec<Duration>, goal: f64) {
    one.sort();
    twenty.sort();
    let (o, t) = (one[one.len() / 2], twenty[twenty.len() / 2]);
    println!("{what} (median of {}):", one.len());
    println!("  1 node:   {:>7.0} ms", o.as_secs_f64() * 1e3);
    println!("  20 nodes: {:>7.0} ms", t.as_secs_f64() * 1e3);
    println!(
        "  ratio:    {:.2}x (goal <= {goal}x)",
        t.as_secs_f64() / o.as_secs_f64()
    );
}
