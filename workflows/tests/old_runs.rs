//! Runs stored by the build before typed steps and step subjects still load,
//! plan the same, decode as the typed outputs and resume.
//!
//! The fixtures in `workflows/tests/fixtures/` were written by that build (commit
//! 64a34e7): `tests/tests/make_old_fixture.rs`, added in commit 232d698 and
//! removed once the code changed (`git show 232d698:tests/tests/make_old_fixture.rs`),
//! was run there with
//! `SQLX_OFFLINE=true cargo test -p nix-infra-tests --test make_old_fixture -- --ignored`.
//! It started the test cloud (API only, no nodes) with two servers, `ctrl1`
//! (ctrl) and `w1` (cluster), and stored in a SQLite database
//! (`runs-before-typed-steps.sqlite`, copied out with `VACUUM INTO`):
//! - `old-diag-chain`: `diag.chain` of 3 steps, step 2 failing its only
//!   attempt (`fail_times` 1, `max_attempts` 1): failed, step 1 done;
//! - `old-cluster-up`: `cluster.up` for both nodes, planned, never executed;
//! - `old-node-init`: `node.init`, `locate` done (both servers), `certs/*`
//!   failed (no CA), the rest blocked;
//! - `old-node-adopt`, `old-node-destroy`: done.
//!
//! Beside it, `plans-before-typed-steps.json` holds every workflow's plan
//! for one sample input each, as that build planned them.

use engine::inspect::step_views;
use engine::{Engine, Observer, Plan, RunFilter, RunStatus};
use serde_json::Value;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use workflows::node::kinds::{Deleted, Forgotten, Located, Revoked, Server, Unregistered};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// An engine over a copy of the old database (the fixture stays untouched).
async fn old_engine() -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{FIXTURES}/runs-before-typed-steps.sqlite"),
        dir.path().join("state.db"),
    )
    .unwrap();
    let store = storage::connect(&testkit::sqlite_url(dir.path()))
        .await
        .unwrap();
    let engine = Engine::new(Arc::new(store), workflows::registry());
    (engine, dir)
}

/// The stored output of `step`'s successful attempt in `run`.
async fn output(engine: &Engine, run: &str, step: &str) -> Value {
    let state = engine.load(run).await.unwrap();
    state
        .attempts
        .iter()
        .find(|a| a.step == step && a.output.is_some())
        .and_then(|a| a.output.clone())
        .unwrap_or_else(|| panic!("{run}: no output of {step}"))
}

#[tokio::test]
async fn old_plans_load_with_derived_subjects_and_known_kinds() {
    let (engine, _dir) = old_engine().await;
    let runs = engine.list(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 5, "{runs:?}");
    for run in runs {
        let state = engine.load(&run.id).await.unwrap();
        let plan = &state.run.plan;
        let wf = engine.registry().get(&run.workflow).unwrap();
        wf.check_kinds(plan).unwrap();
        for s in &plan.steps {
            assert_eq!(s.subject, None, "{}: stored before subjects", s.name);
            let node = s.name.split_once('/').map(|(_, n)| n);
            assert_eq!(s.subject(), node, "{}", s.name);
        }
        for v in step_views(&state) {
            assert_eq!(v.subject.as_deref(), v.name.split_once('/').map(|(_, n)| n));
        }
    }
    let up = engine.load("old-cluster-up").await.unwrap();
    let config = up.run.plan.step("config/w1").unwrap();
    assert_eq!(config.subject(), Some("w1"));
    assert!(up.run.plan.step("ctrl").unwrap().subject().is_none());
}

#[tokio::test]
async fn old_outputs_decode_as_the_typed_outputs() {
    let (engine, _dir) = old_engine().await;
    let located: Located =
        serde_json::from_value(output(&engine, "old-node-init", "locate").await).unwrap();
    let names: Vec<&str> = located.servers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["ctrl1", "w1"]);
    let w1 = &located.servers["w1"];
    assert!(w1.ipv4.as_deref().unwrap().starts_with("127."), "{w1:?}");
    assert_eq!(w1.role, Some(workflows::domain::Role::Cluster));
    let adopted: Server =
        serde_json::from_value(output(&engine, "old-node-adopt", "adopt/ctrl1").await).unwrap();
    assert_eq!(adopted.node.as_ref().map(|n| n.as_str()), Some("ctrl1"));
    assert_eq!(adopted.role, Some(workflows::domain::Role::Ctrl));
    let d = "old-node-destroy";
    let _: Unregistered =
        serde_json::from_value(output(&engine, d, "unregister/w1").await).unwrap();
    let deleted: Deleted = serde_json::from_value(output(&engine, d, "delete/w1").await).unwrap();
    assert!(deleted.ipv4.is_some());
    let _: Revoked = serde_json::from_value(output(&engine, d, "revoke/w1").await).unwrap();
    let _: Forgotten = serde_json::from_value(output(&engine, d, "forget/w1").await).unwrap();
}

#[tokio::test]
async fn an_old_diag_chain_resumes_to_success() {
    let (engine, _dir) = old_engine().await;
    let out = engine
        .execute("old-diag-chain", CancellationToken::new(), Observer::none())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Succeeded, "{out:?}");
    // step-2 read step-1's output, stored by the old build, as the typed sum.
    assert_eq!(
        output(&engine, "old-diag-chain", "step-3").await,
        serde_json::json!({"index": 3, "sum": 6})
    );
}

#[tokio::test]
async fn an_old_node_destroy_forks_and_its_forget_reads_the_old_delete_output() {
    let (engine, _dir) = old_engine().await;
    let fork = engine
        .fork(
            "old-node-destroy",
            "forget/w1",
            Some("forked-destroy".into()),
        )
        .await
        .unwrap();
    // The cluster directory of the old run is gone: forget has no known_hosts
    // to edit, but it reads `delete/w1`'s output first.
    let out = engine
        .execute(&fork.id, CancellationToken::new(), Observer::none())
        .await
        .unwrap();
    assert_eq!(out.status, RunStatus::Succeeded, "{out:?}");
    let state = engine.load(&fork.id).await.unwrap();
    let forget: Vec<_> = state
        .attempts
        .iter()
        .filter(|a| a.step == "forget/w1")
        .collect();
    assert_eq!(forget.len(), 1);
    assert_eq!(forget[0].status, engine::AttemptStatus::Succeeded);
}

/// A plan as stored, without the subjects this build adds.
fn without_subjects(plan: &Plan) -> Value {
    let mut v = serde_json::to_value(plan).unwrap();
    for s in v["steps"].as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("subject");
    }
    v
}

/// `plan` without the `reboot/<node>` steps this build adds between
/// `install/<node>` and `verify/<node>` (and without verify's dependency on
/// them), and without the dependencies of `config/<node>` on the other
/// nodes' `overlay/<other>` (every lease is there before any node renders).
fn without_reboots(plan: &Plan) -> Plan {
    let mut plan = plan.clone();
    plan.steps.retain(|s| s.kind != "reboot");
    for s in &mut plan.steps {
        s.deps.retain(|d| !d.starts_with("reboot/"));
        if s.kind == "config" {
            let own = format!("overlay/{}", s.subject.as_deref().unwrap_or_default());
            s.deps.retain(|d| !d.starts_with("overlay/") || *d == own);
        }
    }
    plan
}

/// Outside the Dart layout (every sample), a `config/<node>` waits for its
/// own lease only: a node that fails elsewhere blocks no other.
fn configs_wait_for_every_lease(workflow: &str, plan: &Plan) {
    for s in plan.steps.iter().filter(|s| s.kind == "config") {
        let own = format!("overlay/{}", s.subject.as_deref().unwrap_or_default());
        for d in s.deps.iter().filter(|d| d.starts_with("overlay/")) {
            assert_eq!(*d, own, "{workflow}: {}", s.name);
        }
    }
}

#[test]
fn every_workflow_plans_what_the_old_build_planned_plus_subjects_and_reboots() {
    let text =
        std::fs::read_to_string(format!("{FIXTURES}/plans-before-typed-steps.json")).unwrap();
    let old: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    let registry = workflows::registry();
    assert_eq!(
        old.len(),
        registry.iter().count(),
        "a sample for every workflow"
    );
    for (workflow, sample) in old {
        let planned = registry
            .get(&workflow)
            .unwrap()
            .plan(&sample["input"])
            .unwrap();
        let reboots = planned.steps.iter().filter(|s| s.kind == "reboot").count();
        let provisions = matches!(workflow.as_str(), "node.provision" | "cluster.up");
        let nodes = sample["input"]["nodes"].as_array().map_or(0, Vec::len);
        assert_eq!(reboots, if provisions { nodes } else { 0 }, "{workflow}");
        for r in planned.steps.iter().filter(|s| s.kind == "reboot") {
            let node = r.subject.as_deref().unwrap();
            assert_eq!(
                r.deps,
                [format!("install/{node}"), format!("create/{node}")]
            );
            let verify = planned.step(&format!("verify/{node}")).unwrap();
            assert!(verify.deps.contains(&r.name), "{workflow}: {}", verify.name);
        }
        configs_wait_for_every_lease(&workflow, &planned);
        let new = without_reboots(&planned);
        assert_eq!(without_subjects(&new), sample["plan"], "{workflow}");
        let old_plan: Plan = serde_json::from_value(sample["plan"].clone()).unwrap();
        for (n, o) in new.steps.iter().zip(&old_plan.steps) {
            assert_eq!(n.subject.as_deref(), o.subject(), "{workflow}: {}", n.name);
        }
    }
}
