//! `nix-infra plan …`: the steps a command would run, checked exactly as the
//! command would check them; or, for an existing --run-id, the run's
//! persisted plan and which of its steps are done.

use crate::args::Global;
use crate::{Context, Failure};
use clap::Subcommand;
use engine::RunStatus;
use serde_json::json;

/// `nix-infra plan …`
#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// The plan of a cluster command.
    #[command(subcommand)]
    Cluster(super::cluster::ClusterCommand),
    /// The plan of a fleet command.
    #[command(subcommand)]
    Fleet(super::cluster::ClusterCommand),
    /// The plan of an app command.
    #[command(subcommand)]
    App(super::app::AppCommand),
}

/// `nix-infra plan …`: the steps a command would run (or, for an existing
/// --run-id, the run's persisted plan and which steps are done).
pub async fn run(global: &Global, cmd: PlanCommand) -> Result<(), Failure> {
    let fleet = matches!(&cmd, PlanCommand::Fleet(_));
    if let Some(id) = &global.run_id {
        let ctx = Context::open(global.clone()).await?;
        if let Ok(state) = ctx.engine.load(id).await {
            let views = engine::inspect::step_views(&state);
            if ctx.json() {
                let steps: Vec<_> = views
                    .iter()
                    .map(|v| {
                        json!({"name": v.name, "kind": v.kind, "deps": v.deps, "status": v.status})
                    })
                    .collect();
                let run = json!({
                    "run": id,
                    "workflow": state.run.workflow,
                    "status": state.run.status,
                    "steps": steps
                });
                println!("{run}");
            } else {
                let done = views
                    .iter()
                    .filter(|v| v.status == engine::StepStatus::Succeeded)
                    .count();
                println!(
                    "run {id} ({}, {}): {done} of {} steps done",
                    state.run.workflow,
                    state.run.status,
                    views.len()
                );
                for v in &views {
                    println!(
                        "  {:<10} {:<24} after {}",
                        v.status.to_string(),
                        v.name,
                        deps(&v.deps)
                    );
                }
                if state.run.status != RunStatus::Succeeded {
                    println!("continue it: nix-infra runs resume {id}");
                }
            }
            return Ok(());
        }
    }
    let request = match cmd {
        PlanCommand::Cluster(c) | PlanCommand::Fleet(c) => super::cluster::request(c, fleet)?
            .map(|s| s.request)
            .map_err(|_| Failure::usage("this command starts no run, so it has no plan"))?,
        PlanCommand::App(c) => super::app::request(c).0,
    };
    let checked = crate::start::check(global, request).await?;
    let workflow = checked.workflow.as_str();
    let plan = workflows::request::plan(workflow, &checked.input)?;
    if global.output == crate::args::Output::Json {
        let steps: Vec<_> = plan
            .steps
            .iter()
            .map(|s| json!({"name": s.name, "kind": s.kind, "deps": s.deps}))
            .collect();
        println!("{}", json!({"workflow": workflow, "steps": steps}));
    } else {
        println!("{workflow}: {} steps", plan.steps.len());
        for s in &plan.steps {
            println!("  {:<24} after {}", s.name, deps(&s.deps));
        }
    }
    Ok(())
}

fn deps(d: &[String]) -> String {
    if d.is_empty() {
        "-".into()
    } else {
        d.join(", ")
    }
}
