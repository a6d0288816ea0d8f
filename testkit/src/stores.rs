//! Shared setup for the engine, storage and worker tests: a store on each backend.

use crate::Postgres;
use engine::{Engine, EngineConfig, Registry, Store};
use std::sync::Arc;
use std::time::Duration;
use storage::SqlStore;

/// Keeps a backend's server or files alive for the test's duration.
pub enum Guard {
    /// The folder holding the SQLite files.
    Sqlite(tempfile::TempDir),
    /// The Postgres server.
    Postgres(Postgres),
}

/// A fresh store on SQLite (a new file) with its guard.
pub async fn sqlite() -> (SqlStore, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let store = storage::connect(&crate::sqlite_url(dir.path()))
        .await
        .unwrap();
    (store, Guard::Sqlite(dir))
}

/// A fresh store on a throwaway Postgres server with its guard.
pub async fn postgres() -> (SqlStore, Guard) {
    let pg = Postgres::start().expect("start postgres (run scripts/setup.sh)");
    let url = pg.fresh_database().unwrap();
    let store = storage::connect(&url).await.unwrap();
    (store, Guard::Postgres(pg))
}

/// Settings for tests: short lease, fast heartbeat, quick cancel grace.
pub fn fast_config() -> EngineConfig {
    EngineConfig {
        lease_ttl: Duration::from_secs(5),
        heartbeat: Duration::from_millis(100),
        cancel_grace: Duration::from_millis(500),
        ..EngineConfig::default()
    }
}

/// An engine over `store` with `registry` and [`fast_config`].
pub fn engine(store: Arc<dyn Store>, registry: Registry) -> Engine {
    Engine::new(store, registry).with_config(fast_config())
}

/// Creates a run of `workflow` and executes it to the end: `(run id, outcome)`.
pub async fn run_to_end(
    engine: &Engine,
    workflow: &str,
    input: serde_json::Value,
) -> (String, engine::RunOutcome) {
    let id = engine
        .create(workflow, input, None)
        .await
        .unwrap()
        .record()
        .id
        .clone();
    let out = engine
        .execute(
            &id,
            tokio_util::sync::CancellationToken::new(),
            engine::Observer::none(),
        )
        .await
        .unwrap();
    (id, out)
}

/// Generates `NAME::sqlite` and `NAME::postgres` tests calling `NAME(store)`
/// (an `Arc<SqlStore>`); the calling crate needs tokio.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let (store, _guard) = $crate::stores::sqlite().await;
                    super::$name(std::sync::Arc::new(store)).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let (store, _guard) = $crate::stores::postgres().await;
                    super::$name(std::sync::Arc::new(store)).await;
                }
            }
        )+
    };
}
