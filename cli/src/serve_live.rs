//! Live pages: server-sent events that say when a page's data changed, and
//! the small script (`/assets/live.js`, the only script the pages load) that
//! then fetches the page again and swaps its `<main>` in place, without a
//! reload. The events come from the store, polled here, so a run executed
//! by any process (a CLI, a worker, CI) shows up.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use engine::{Engine, RunFilter};
use futures::{Stream, StreamExt};
use std::convert::Infallible;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the store is looked at for changes.
const TICK: Duration = Duration::from_millis(250);

/// The script every page loads: on a `changed` event, fetch the page and
/// swap `<main>`; stop listening once the page says nothing more will change.
pub const LIVE_JS: &str = r#"// nix-infra dashboard: live updates over server-sent events.
(() => {
  const src = document.body.dataset.events;
  if (!src) return;
  const events = new EventSource(src);
  let busy = false, again = false;
  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await fetch(location.href, { credentials: "same-origin" });
      if (r.ok) {
        const doc = new DOMParser().parseFromString(await r.text(), "text/html");
        const next = doc.querySelector("main");
        if (next) document.querySelector("main").replaceWith(next);
        document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
        if (!doc.body.dataset.events) events.close();
      }
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  };
  events.addEventListener("changed", refresh);
})();
"#;

/// `GET /assets/live.js`.
pub async fn live_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        LIVE_JS,
    )
}

/// What a run's page shows, reduced to what changes: its status, each
/// attempt's status and how many log lines it has.
async fn run_print(engine: &Engine, id: &str) -> Option<(String, bool)> {
    let state = engine.load(id).await.ok()?;
    let logs = engine.logs(id, None).await.ok()?.len();
    let attempts: Vec<String> = state
        .attempts
        .iter()
        .map(|a| format!("{}#{}:{}", a.step, a.number, a.status))
        .collect();
    let print = format!("{}|{}|{logs}", state.run.status, attempts.join(","));
    Some((print, state.run.status.is_final()))
}

/// A stream of `changed` events: one when it starts (what changed between
/// the page's rendering and its subscribing is not lost), then one each
/// time `look` sees something new; it ends after the look that says it was
/// the last.
fn changes<F, Fut>(look: F) -> impl Stream<Item = Result<Event, Infallible>>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<(String, bool)>> + Send,
{
    futures::stream::unfold(
        (look, None::<String>, false),
        |(look, last, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some((print, end)) = look().await
                    && last.as_deref() != Some(print.as_str())
                {
                    // Browsers drop an event whose data is empty: it carries a word.
                    let changed = Event::default().event("changed").data("changed");
                    return Some((Ok(changed), (look, Some(print), end)));
                }
                tokio::time::sleep(TICK).await;
            }
        },
    )
}

/// What the event streams need: the engine, and the server's stop, which
/// ends every stream (so a stop does not wait for open tabs).
#[derive(Clone)]
pub struct Live {
    /// The engine over the store.
    pub engine: Engine,
    /// Fired when the server stops.
    pub stop: CancellationToken,
}

/// `GET /api/runs/{id}/events`: `changed` whenever the run's page would show
/// something new, until the run has ended; 404 for a run that does not exist.
pub async fn run_events(
    State(live): State<Live>,
    Path(id): Path<String>,
) -> axum::response::Response {
    if live.engine.load(&id).await.is_err() {
        return (StatusCode::NOT_FOUND, format!("no run {id}")).into_response();
    }
    let engine = live.engine.clone();
    let stream = changes(move || {
        let (engine, id) = (engine.clone(), id.clone());
        async move { run_print(&engine, &id).await }
    });
    let stop = live.stop.clone();
    let stream = stream.take_until(async move { stop.cancelled().await });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET /api/events`: `changed` whenever the runs list would show something new.
pub async fn list_events(State(live): State<Live>) -> impl IntoResponse {
    let engine = live.engine.clone();
    let stop = live.stop.clone();
    let stream = changes(move || {
        let engine = engine.clone();
        async move {
            let filter = RunFilter {
                limit: Some(200),
                ..RunFilter::default()
            };
            let runs = engine.list(&filter).await.ok()?;
            let print: Vec<String> = runs
                .iter()
                .map(|r| format!("{}:{}", r.id, r.status))
                .collect();
            Some((print.join(","), false))
        }
    });
    let stream = stream.take_until(async move { stop.cancelled().await });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
