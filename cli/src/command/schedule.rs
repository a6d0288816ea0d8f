//! `nix-infra schedule …`: add, list, pause, resume, remove, history.

use crate::args::Global;
use crate::views::timestamp;
use crate::{Context, Failure};
use anyhow::anyhow;
use clap::{Subcommand, ValueEnum};
use engine::schedule::{self, Cron};
use engine::{CatchUp, EngineError, RunFilter, Schedule, now_millis};
use serde_json::json;

/// `nix-infra schedule …`
#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Add a schedule; every fire time starts exactly one run.
    Add {
        /// Unique name (A-Z a-z 0-9 . _ -).
        name: String,
        /// Cron expression: 5 fields, or 6 with seconds first ("*/10 * * * * *").
        #[arg(long)]
        cron: String,
        /// Time zone the expression is read in (IANA name).
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// The workflow each fire starts.
        #[arg(long)]
        workflow: String,
        /// Its input as JSON.
        #[arg(long, default_value = "{}", value_name = "JSON")]
        input: String,
        /// Fire times missed while no worker ran: skip them, or fire once for the latest.
        #[arg(long, value_enum, default_value_t = CatchUpArg::Skip)]
        catch_up: CatchUpArg,
        /// Resources each run locks, comma-separated (e.g. node/worker1).
        #[arg(long, value_delimiter = ',')]
        resources: Vec<String>,
    },
    /// List schedules.
    List,
    /// Stop a schedule from firing.
    Pause {
        /// The schedule.
        name: String,
    },
    /// Let a paused schedule fire again.
    Resume {
        /// The schedule.
        name: String,
    },
    /// Delete a schedule (its runs stay).
    Remove {
        /// The schedule.
        name: String,
    },
    /// The runs a schedule started, one per fire time.
    History {
        /// The schedule.
        name: String,
    },
}

/// `--catch-up` values.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUpArg {
    /// Drop missed fire times.
    Skip,
    /// Fire once for the latest missed fire time.
    Once,
}

/// Checks a new schedule completely before anything is written.
pub fn check_add(cmd: &ScheduleCommand) -> Result<(), Failure> {
    if let ScheduleCommand::Add {
        name,
        cron,
        tz,
        workflow,
        input,
        ..
    } = cmd
    {
        let usage = |e: String| Failure::Usage(anyhow!(e));
        schedule::validate_name(name).map_err(|e| usage(e.to_string()))?;
        Cron::parse(cron, tz).map_err(|e| usage(e.to_string()))?;
        let input = serde_json::from_str(input)
            .map_err(|e| Failure::usage(format!("--input is not valid JSON: {e}")))?;
        workflows::request::plan(workflow, &input)?;
    }
    Ok(())
}

/// Runs one `schedule` subcommand.
pub async fn run(global: Global, cmd: ScheduleCommand) -> Result<(), Failure> {
    check_add(&cmd)?;
    let ctx = &Context::open(global).await?;
    let store = ctx.engine.store();
    let db = |e: engine::StoreError| Failure::from(EngineError::from(e));
    let missing = |name: &str| Failure::Usage(anyhow!("no schedule named `{name}`"));
    match cmd {
        ScheduleCommand::Add {
            name,
            cron,
            tz,
            workflow,
            input,
            catch_up,
            resources,
        } => {
            let now = now_millis();
            let s = Schedule {
                name: name.clone(),
                cron: cron.clone(),
                tz: tz.clone(),
                workflow,
                input: serde_json::from_str(&input).map_err(|e| Failure::Usage(e.into()))?,
                catch_up: match catch_up {
                    CatchUpArg::Skip => CatchUp::Skip,
                    CatchUpArg::Once => CatchUp::Once,
                },
                resources,
                paused: false,
                // Fire times from now on; nothing before the schedule existed.
                last_fire: now,
                created_at: now,
            };
            if !store.add_schedule(&s).await.map_err(db)? {
                return Err(Failure::Usage(anyhow!(
                    "a schedule named `{name}` already exists"
                )));
            }
            let next = Cron::parse(&cron, &tz)
                .ok()
                .and_then(|c| c.next_after(now))
                .map(timestamp)
                .unwrap_or_default();
            if ctx.json() {
                println!("{}", json!({"name": name, "next_fire": next}));
            } else {
                println!(
                    "schedule {name} added; next fire {next} (a running `nix-infra worker` fires it)"
                );
            }
        }
        ScheduleCommand::List => {
            let list = store.schedules().await.map_err(db)?;
            if ctx.json() {
                let items: Vec<_> = list
                    .iter()
                    .map(|s| {
                        let next = Cron::parse(&s.cron, &s.tz)
                            .ok()
                            .and_then(|c| c.next_after(now_millis()));
                        json!({
                            "name": s.name, "cron": s.cron, "tz": s.tz, "workflow": s.workflow,
                            "input": s.input, "catch_up": s.catch_up, "resources": s.resources,
                            "paused": s.paused, "next_fire": next.map(timestamp),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(items));
            } else if list.is_empty() {
                println!("no schedules");
            } else {
                for s in list {
                    let state = if s.paused { "paused" } else { "active" };
                    println!(
                        "{:<20} {:<20} {:<8} {:<7} {}",
                        s.name, s.cron, s.tz, state, s.workflow
                    );
                }
            }
        }
        ScheduleCommand::Pause { name } => {
            if !store.set_schedule_paused(&name, true).await.map_err(db)? {
                return Err(missing(&name));
            }
            println!("schedule {name} paused");
        }
        ScheduleCommand::Resume { name } => {
            if !store.set_schedule_paused(&name, false).await.map_err(db)? {
                return Err(missing(&name));
            }
            println!("schedule {name} resumed");
        }
        ScheduleCommand::Remove { name } => {
            if !store.remove_schedule(&name).await.map_err(db)? {
                return Err(missing(&name));
            }
            println!("schedule {name} removed");
        }
        ScheduleCommand::History { name } => {
            let runs = ctx
                .engine
                .list(&RunFilter {
                    id_prefix: Some(schedule::run_id_prefix(&name)),
                    ..RunFilter::default()
                })
                .await?;
            let mut rows: Vec<(i64, String, String)> = runs
                .iter()
                .filter_map(|r| {
                    Some((
                        schedule::fire_time_of(&r.id)?,
                        r.id.clone(),
                        r.status.to_string(),
                    ))
                })
                .collect();
            rows.sort();
            if ctx.json() {
                let items: Vec<_> = rows
                    .iter()
                    .map(|(t, id, st)| {
                        json!({"fire_time": timestamp(*t), "run_id": id, "status": st})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(items));
            } else {
                for (t, id, st) in rows {
                    println!("{}  {:<10} {id}", timestamp(t), st);
                }
            }
        }
    }
    Ok(())
}
