//! Every run as one OpenTelemetry trace, exported over OTLP.
//!
//! - The trace id is derived from the run id, so every execution of a run (the
//!   first, and each resume, from any process) lands in the same trace;
//!   [`trace_id`] tells it.
//! - The root span (`run <workflow>`, from the run's creation to its first
//!   execution's start) is sent when the first execution starts, so it exists
//!   even if that process is killed. Each execution is a span under it
//!   (`execute <workflow>`, with its `outcome`), sent when the execution ends.
//! - Each step attempt is a span under the root, with `workflow`, `run.id`, `step`,
//!   `attempt`, `outcome`, `error`, and where they apply `node` and
//!   `hcloud.server.id`. A retry is an event on the attempt that failed.
//! - Spans are exported as they end, so a process killed mid-run has already
//!   sent the spans of its finished steps.
//!
//! Configuration is the standard one: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (`grpc` or `http/protobuf`, the default), `OTEL_SERVICE_NAME` (default
//! `nix-infra`), `OTEL_TRACES_EXPORTER=none` to turn it off. With no endpoint
//! configured, [`RunTraces::from_env`] returns `None`: no channel, no task,
//! nothing sent.

use engine::{Observer, RunEvent, RunRecord, RunStatus, Watcher};
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanLinks};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

/// FNV-1a over `data`, from `seed`: stable across builds and platforms.
fn fnv(seed: u64, data: &[u8]) -> u64 {
    data.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The trace id of a run: the same in every process, for every execution.
pub fn trace_id(run_id: &str) -> TraceId {
    let hi = fnv(0xcbf2_9ce4_8422_2325, run_id.as_bytes());
    let lo = fnv(0x6c62_272e_07bb_0142, run_id.as_bytes());
    let id = (u128::from(hi) << 64) | u128::from(lo);
    TraceId::from(id.max(1))
}

/// The span id of a run's root span (its first execution).
fn root_span(run_id: &str) -> SpanId {
    SpanId::from(fnv(0x8422_2325_cbf2_9ce4, format!("{run_id}/run").as_bytes()).max(1))
}

/// Exports runs as traces; see the module docs.
pub struct RunTraces {
    exporter: tokio::sync::Mutex<SpanExporter>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    scope: InstrumentationScope,
    failing: std::sync::atomic::AtomicBool,
}

impl RunTraces {
    /// The exporter the standard environment variables configure, or `None`
    /// when none is (the default: nothing is sent).
    pub fn from_env() -> Result<Option<Arc<RunTraces>>, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        match var("OTEL_TRACES_EXPORTER").as_deref() {
            Some("none") => return Ok(None),
            Some("otlp") | None => {}
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER={other}: only otlp and none are supported"
                ));
            }
        }
        let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
        if endpoint.is_none() && var("OTEL_TRACES_EXPORTER").is_none() {
            return Ok(None);
        }
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "http/protobuf".into());
        let built = match protocol.as_str() {
            "grpc" => SpanExporter::builder().with_tonic().build(),
            "http/protobuf" => SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .build(),
            other => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other}: use grpc or http/protobuf"
                ));
            }
        };
        let mut exporter = built.map_err(|e| format!("OTLP exporter: {e}"))?;
        let mut resource = Resource::builder();
        if var("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("nix-infra");
        }
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource.build());
        Ok(Some(Arc::new(RunTraces {
            exporter: tokio::sync::Mutex::new(exporter),
            tasks: Mutex::new(Vec::new()),
            failing: std::sync::atomic::AtomicBool::new(false),
            scope: InstrumentationScope::builder("nix-infra")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })))
    }

    /// The engine watcher that turns each execution's events into spans.
    pub fn watcher(self: &Arc<Self>) -> Watcher {
        let this = self.clone();
        Arc::new(move |run: &RunRecord| {
            let (observer, events) = Observer::channel();
            let task = tokio::spawn(this.clone().follow(run.clone(), events));
            if let Ok(mut tasks) = this.tasks.lock() {
                tasks.retain(|t| !t.is_finished());
                tasks.push(task);
            }
            observer
        })
    }

    /// Waits (up to 5 s in all) for every followed execution's spans to be sent;
    /// call before exiting.
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        // A collector that does not answer must not hold the process.
        if tokio::time::timeout(std::time::Duration::from_secs(5), all)
            .await
            .is_err()
        {
            eprintln!("warning: gave up waiting for the trace collector");
            for a in aborts {
                a.abort();
            }
        }
        let _ = opentelemetry_sdk::trace::SpanExporter::shutdown(&mut *self.exporter.lock().await);
    }

    async fn send(&self, span: SpanData) {
        use opentelemetry_sdk::trace::SpanExporter as _;
        use std::sync::atomic::Ordering;
        match self.exporter.lock().await.export(vec![span]).await {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            // Said once per outage, not once per span.
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    eprintln!("warning: exporting traces failed: {e}");
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &self,
        run: &RunRecord,
        id: SpanId,
        parent: SpanId,
        name: String,
        start: SystemTime,
        mut attributes: Vec<KeyValue>,
        events: Vec<Event>,
        error: Option<String>,
    ) -> SpanData {
        attributes.insert(0, KeyValue::new("workflow", run.workflow.clone()));
        attributes.insert(1, KeyValue::new("run.id", run.id.clone()));
        let status = match error {
            Some(e) => {
                attributes.push(KeyValue::new("error", e.clone()));
                Status::error(e)
            }
            None => Status::Ok,
        };
        SpanData {
            span_context: SpanContext::new(
                trace_id(&run.id),
                id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: parent,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: start,
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: {
                let mut e = SpanEvents::default();
                e.events = events;
                e
            },
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }

    async fn follow(self: Arc<Self>, run: RunRecord, mut events: UnboundedReceiver<RunEvent>) {
        let ids = RandomIdGenerator::default();
        let mut exec: Option<(SpanId, SpanId, SystemTime)> = None;
        let mut open: HashMap<(String, i64), (SpanId, SystemTime)> = HashMap::new();
        let mut finished = false;
        while let Some(event) = events.recv().await {
            match event {
                RunEvent::Started { done, .. } => {
                    let root = root_span(&run.id);
                    if done == 0 {
                        // The first execution: the root goes out now, whatever happens next.
                        let created = SystemTime::UNIX_EPOCH
                            + std::time::Duration::from_millis(run.created_at.max(0) as u64);
                        let name = format!("run {}", run.workflow);
                        let span = self.span(
                            &run,
                            root,
                            SpanId::INVALID,
                            name,
                            created,
                            Vec::new(),
                            Vec::new(),
                            None,
                        );
                        self.send(span).await;
                    }
                    exec = Some((ids.new_span_id(), root, SystemTime::now()));
                }
                RunEvent::StepStarted { step, attempt, .. } => {
                    open.insert((step, attempt), (ids.new_span_id(), SystemTime::now()));
                }
                RunEvent::StepSucceeded {
                    step,
                    subject,
                    attempt,
                    output,
                    ..
                } => {
                    let Some((id, start)) = open.remove(&(step.clone(), attempt)) else {
                        continue;
                    };
                    let parent = root_span(&run.id);
                    let attrs = step_attributes(
                        (&step, subject.as_deref()),
                        attempt,
                        "succeeded",
                        Some(&output),
                    );
                    let span = self.span(&run, id, parent, step, start, attrs, Vec::new(), None);
                    self.send(span).await;
                }
                RunEvent::StepFailed {
                    step,
                    subject,
                    attempt,
                    error,
                    retry_in,
                } => {
                    let Some((id, start)) = open.remove(&(step.clone(), attempt)) else {
                        continue;
                    };
                    let parent = root_span(&run.id);
                    let outcome = if retry_in.is_some() {
                        "retrying"
                    } else {
                        "failed"
                    };
                    let attrs =
                        step_attributes((&step, subject.as_deref()), attempt, outcome, None);
                    let mut events = Vec::new();
                    if let Some(wait) = retry_in {
                        events.push(Event::new(
                            "retry",
                            SystemTime::now(),
                            vec![
                                KeyValue::new("retry.attempt", attempt + 1),
                                KeyValue::new("retry.in_ms", wait.as_millis() as i64),
                            ],
                            0,
                        ));
                    }
                    let span = self.span(&run, id, parent, step, start, attrs, events, Some(error));
                    self.send(span).await;
                }
                RunEvent::Finished { status, error } => {
                    finished = true;
                    if let Some((id, parent, start)) = exec.take() {
                        let attrs = vec![KeyValue::new("outcome", status.to_string())];
                        let error = error.filter(|_| status != RunStatus::Succeeded);
                        let name = format!("execute {}", run.workflow);
                        let span =
                            self.span(&run, id, parent, name, start, attrs, Vec::new(), error);
                        self.send(span).await;
                    }
                }
            }
        }
        if !finished && let Some((id, parent, start)) = exec {
            // Handed back or interrupted: the execution ends here; another continues the trace.
            let attrs = vec![KeyValue::new("outcome", "interrupted")];
            let span = self.span(
                &run,
                id,
                parent,
                format!("execute {}", run.workflow),
                start,
                attrs,
                Vec::new(),
                None,
            );
            self.send(span).await;
        }
    }
}

/// An attempt's attributes; `node` from the step's subject (the node it acts
/// on), the server id from outputs that carry one.
fn step_attributes(
    (step, subject): (&str, Option<&str>),
    attempt: i64,
    outcome: &str,
    output: Option<&serde_json::Value>,
) -> Vec<KeyValue> {
    let mut a = vec![
        KeyValue::new("step", step.to_string()),
        KeyValue::new("attempt", attempt),
        KeyValue::new("outcome", outcome.to_string()),
    ];
    if let Some(n) = subject {
        a.push(KeyValue::new("node", n.to_string()));
    }
    if let Some(id) = output
        .and_then(|o| o.get("id"))
        .and_then(serde_json::Value::as_i64)
    {
        a.push(KeyValue::new("hcloud.server.id", id));
    }
    a
}
