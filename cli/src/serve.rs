//! `nix-infra serve`: the dashboard (runs, a run's DAG, schedules, the
//! cluster) and the JSON API behind it, on axum.
//!
//! Reads are open to whoever can reach the address (127.0.0.1 by default),
//! unless `--auth reads` (see `crate::serve_auth`, which also sets the
//! security headers). Starting, resuming and cancelling runs need `Authorization: Bearer TOKEN`,
//! compared in constant time; the token is `NIX_INFRA_API_TOKEN`, or one made
//! at start and kept in `DIR/.nix-infra/api-token` (0600). Runs started here
//! execute in this process; on Ctrl-C or SIGTERM they are handed back, and any
//! worker or `runs resume` continues them.

use crate::serve_auth::{self, Auth, Gate};
use crate::{Context, Failure, views};
use anyhow::anyhow;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::{get, post};
use engine::{CancelOutcome, Engine, Observer, RunFilter, RunStatus};
use observability::dashboard::{self, ClusterView, RunsFilter};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use workflows::cluster::ClusterError;
use workflows::request::{Origin, Request, RunSecret};

#[derive(Clone)]
struct App {
    engine: Engine,
    origin: Arc<Origin>,
    token: Arc<String>,
    cluster: Arc<RwLock<ClusterView>>,
    suspend: CancellationToken,
}

type Reply = Result<Response, (StatusCode, Json<Value>)>;

fn problem(status: StatusCode, message: impl std::fmt::Display) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": message.to_string() })))
}

fn engine_error(e: engine::EngineError) -> (StatusCode, Json<Value>) {
    use engine::EngineError::*;
    let status = match &e {
        UnknownWorkflow { .. }
        | Plan(_)
        | InvalidRunId(_)
        | RunIdConflict { .. }
        | UnknownStep { .. } => StatusCode::BAD_REQUEST,
        Store(engine::StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
        Busy { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    problem(status, e)
}

/// 401 unless the request carries the token.
fn authorize(app: &App, headers: &HeaderMap) -> Result<(), (StatusCode, Json<Value>)> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(app.token.as_bytes())) {
        Ok(())
    } else {
        Err(problem(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required (NIX_INFRA_API_TOKEN or DIR/.nix-infra/api-token)",
        ))
    }
}

#[derive(Deserialize, Default)]
struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
}

fn filter_of(q: &ListQuery) -> Result<RunFilter, (StatusCode, Json<Value>)> {
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => vec![
            s.parse::<RunStatus>()
                .map_err(|e| problem(StatusCode::BAD_REQUEST, e))?,
        ],
        None => Vec::new(),
    };
    Ok(RunFilter {
        workflow: q.workflow.clone().filter(|w| !w.is_empty()),
        statuses: status,
        limit: Some(q.limit.unwrap_or(100).clamp(1, 1000)),
        ..RunFilter::default()
    })
}

async fn runs_page(State(app): State<App>, Query(q): Query<ListQuery>) -> Reply {
    let runs = app
        .engine
        .list(&filter_of(&q)?)
        .await
        .map_err(engine_error)?;
    let workflows: Vec<String> = app
        .engine
        .registry()
        .iter()
        .map(|w| w.name().to_string())
        .collect();
    let f = RunsFilter {
        workflow: q.workflow.filter(|w| !w.is_empty()),
        status: q.status.filter(|s| !s.is_empty()),
    };
    Ok(Html(dashboard::runs_page(&runs, &f, &workflows)).into_response())
}

/// `GET /runs/{id}?step=NAME`: one step's log only.
#[derive(Deserialize, Default)]
struct StepQuery {
    #[serde(default)]
    step: Option<String>,
}

async fn run_page(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<StepQuery>,
) -> Reply {
    let state = app.engine.load(&id).await.map_err(engine_error)?;
    let logs = app.engine.logs(&id, None).await.map_err(engine_error)?;
    let trace = observability::traces::trace_id(&id).to_string();
    let page = dashboard::run_page(&state, &logs, &trace, q.step.as_deref());
    Ok(Html(page).into_response())
}

async fn schedules_page(State(app): State<App>) -> Reply {
    let s = app
        .engine
        .store()
        .schedules()
        .await
        .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Html(dashboard::schedules_page(&s)).into_response())
}

async fn cluster_page(State(app): State<App>) -> Reply {
    let view = app.cluster.read().map(|v| v.clone()).unwrap_or_default();
    Ok(Html(dashboard::cluster_page(&view)).into_response())
}

async fn api_runs(State(app): State<App>, Query(q): Query<ListQuery>) -> Reply {
    let runs = app
        .engine
        .list(&filter_of(&q)?)
        .await
        .map_err(engine_error)?;
    Ok(Json(Value::Array(runs.iter().map(views::run_summary).collect())).into_response())
}

async fn api_run(State(app): State<App>, Path(id): Path<String>) -> Reply {
    let state = app.engine.load(&id).await.map_err(engine_error)?;
    let steps = engine::inspect::step_views(&state);
    let mut detail = views::run_detail(&state, &steps);
    detail["trace_id"] = json!(observability::traces::trace_id(&id).to_string());
    Ok(Json(detail).into_response())
}

/// The body of `POST /api/runs`: a typed request (`{"request": "init-node",
/// "target": "worker1"}`, the same checks as the CLI's), or a workflow and
/// its input (`{"workflow": "diag.chain", "input": {…}}`, as `runs start`);
/// either with an optional `run_id`.
fn start_request(mut body: Value) -> Result<(Request, Option<String>), (StatusCode, Json<Value>)> {
    let bad = |m: String| problem(StatusCode::BAD_REQUEST, m);
    let Some(fields) = body.as_object_mut() else {
        return Err(bad("the body is not a JSON object".into()));
    };
    let run_id = match fields.remove("run_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(other) => return Err(bad(format!("run_id must be a string, not {other}"))),
    };
    if !fields.contains_key("request") {
        fields.insert("request".into(), json!("workflow"));
    }
    let request = serde_json::from_value(body).map_err(|e| bad(e.to_string()))?;
    Ok((request, run_id))
}

/// Executes a run in this process; Ctrl-C hands it back. The run's own
/// secret is removed once it succeeded.
fn spawn(app: &App, id: String, secret: Option<RunSecret>) {
    let (engine, suspend) = (app.engine.clone(), app.suspend.clone());
    tokio::spawn(async move {
        match engine
            .execute_with(&id, CancellationToken::new(), suspend, Observer::none())
            .await
        {
            Ok(outcome) if outcome.status == RunStatus::Succeeded => {
                if let Some(s) = secret {
                    s.forget();
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(run = %id, "execution ended: {e}"),
        }
    });
}

async fn api_start(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Reply {
    authorize(&app, &headers)?;
    let Json(body) = body.map_err(|e| problem(StatusCode::BAD_REQUEST, e.body_text()))?;
    let (request, run_id) = start_request(body)?;
    let checked = request
        .check(&app.origin, run_id)
        .await
        .map_err(|e| match e {
            ClusterError::Refused(m) => problem(StatusCode::BAD_REQUEST, m),
            ClusterError::Adoptable { message, .. } => problem(StatusCode::CONFLICT, message),
            ClusterError::Unavailable(m) => problem(StatusCode::BAD_GATEWAY, m),
        })?;
    if let Some(s) = &checked.run_secret {
        s.store()
            .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    }
    let created = app
        .engine
        .create(&checked.workflow, checked.input, checked.run_id)
        .await
        .map_err(|e| {
            if let Some(s) = &checked.run_secret {
                s.forget();
            }
            engine_error(e)
        })?;
    let run = created.record().clone();
    if !run.status.is_final() {
        spawn(&app, run.id.clone(), checked.run_secret);
    }
    Ok((StatusCode::ACCEPTED, Json(views::run_summary(&run))).into_response())
}

/// `POST /api/runs/{id}/resume?rerun_uncertain=true`.
#[derive(Deserialize, Default)]
struct ResumeQuery {
    #[serde(default)]
    rerun_uncertain: bool,
}

async fn api_resume(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ResumeQuery>,
) -> Reply {
    authorize(&app, &headers)?;
    let state = app.engine.load(&id).await.map_err(engine_error)?;
    if state.run.status == RunStatus::Succeeded {
        return Err(problem(
            StatusCode::CONFLICT,
            format!("run {id} already succeeded"),
        ));
    }
    // As `runs resume`: what may have run is run again only when asked for.
    let uncertain = workflows::request::uncertain_steps(&state);
    if !uncertain.is_empty() && !q.rerun_uncertain {
        return Err(problem(
            StatusCode::CONFLICT,
            format!(
                "{}; resume with ?rerun_uncertain=true to run it again",
                workflows::request::may_have_run(&id, &uncertain)
            ),
        ));
    }
    spawn(&app, id.clone(), None);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "resuming": true })),
    )
        .into_response())
}

async fn api_cancel(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    authorize(&app, &headers)?;
    let outcome = app.engine.cancel(&id).await.map_err(engine_error)?;
    let said = match outcome {
        CancelOutcome::Cancelled => "cancelled",
        CancelOutcome::Requested => "requested",
        CancelOutcome::AlreadyFinal(_) => "already finished",
    };
    Ok(Json(json!({ "id": id, "cancel": said })).into_response())
}

async fn api_schedules(State(app): State<App>) -> Reply {
    let s = app
        .engine
        .store()
        .schedules()
        .await
        .map_err(|e| problem(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let list: Vec<Value> = s
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "cron": s.cron,
                "tz": s.tz,
                "workflow": s.workflow,
                "paused": s.paused,
                "catch_up": s.catch_up,
                "last_fire": (s.last_fire > 0).then(|| views::timestamp(s.last_fire))
            })
        })
        .collect();
    Ok(Json(Value::Array(list)).into_response())
}

async fn api_cluster(State(app): State<App>) -> Reply {
    let view = app.cluster.read().map(|v| v.clone()).unwrap_or_default();
    Ok(Json(json!(view)).into_response())
}

/// The API token: `NIX_INFRA_API_TOKEN`, else the one kept in the working directory (made if missing).
pub(crate) fn token(dir: &std::path::Path) -> Result<(String, String), Failure> {
    if let Some(t) = std::env::var("NIX_INFRA_API_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok((t, "NIX_INFRA_API_TOKEN".into()));
    }
    let path = dir.join(".nix-infra").join("api-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        return Ok((t.trim().to_string(), path.display().to_string()));
    }
    let bytes: [u8; 32] = rand::random();
    let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    tasks::secrets::write_atomic(&path, t.as_bytes())
        .map_err(|e| Failure::Other(anyhow!("{}: {e}", path.display())))?;
    Ok((t, path.display().to_string()))
}

/// Serves until Ctrl-C or SIGTERM.
pub async fn run(ctx: &Context, listen: SocketAddr, auth: Auth) -> Result<(), Failure> {
    let (token, from) = token(&ctx.global.working_dir)?;
    let token = Arc::new(token);
    let gate = Gate::new(auth, token.clone());
    let cluster = Arc::new(RwLock::new(ClusterView::default()));
    let dir = ctx.global.origin().cluster().ok();
    let app = App {
        engine: ctx.engine.clone(),
        // A request over HTTP may not make this process read its files.
        origin: Arc::new(Origin {
            local_files: false,
            ..ctx.global.origin()
        }),
        token,
        cluster: cluster.clone(),
        suspend: CancellationToken::new(),
    };
    if let Some(dir) = dir {
        let cluster = cluster.clone();
        let engine = app.engine.clone();
        tokio::spawn(async move {
            loop {
                let view = crate::health::check(&dir, &engine).await;
                if let Ok(mut v) = cluster.write() {
                    *v = view;
                }
                tokio::time::sleep(Duration::from_secs(15)).await;
            }
        });
    }
    let router = axum::Router::new()
        .route("/", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/schedules", get(schedules_page))
        .route("/cluster", get(cluster_page))
        .route("/api/runs", get(api_runs).post(api_start))
        .route("/api/runs/{id}", get(api_run))
        .route("/api/runs/{id}/resume", post(api_resume))
        .route("/api/runs/{id}/cancel", post(api_cancel))
        .route("/api/schedules", get(api_schedules))
        .route("/assets/live.js", get(crate::serve_live::live_js))
        .route("/api/cluster", get(api_cluster))
        .with_state(app.clone())
        .merge(
            axum::Router::new()
                .route("/api/events", get(crate::serve_live::list_events))
                .route("/api/runs/{id}/events", get(crate::serve_live::run_events))
                .with_state(crate::serve_live::Live {
                    engine: app.engine.clone(),
                    stop: app.suspend.clone(),
                }),
        )
        .merge(
            axum::Router::new()
                .route(
                    "/login",
                    get(serve_auth::login_page).post(serve_auth::login),
                )
                .with_state(gate.clone()),
        )
        .layer(axum::middleware::from_fn_with_state(
            gate,
            serve_auth::guard,
        ));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Usage(anyhow!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Other(e.into()))?;
    if !addr.ip().is_loopback() {
        eprintln!("warning: serving on {addr}, beyond this machine; put TLS in front of it");
    }
    let reads = match auth {
        Auth::Reads => "reads need it too",
        Auth::Writes | Auth::None => "reads are open",
    };
    eprintln!("dashboard on http://{addr}/  (API token: {from}; {reads})");
    let suspend = app.suspend.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            crate::signal::stop_requested().await;
            suspend.cancel();
        })
        .await
        .map_err(|e| Failure::Other(e.into()))
}
