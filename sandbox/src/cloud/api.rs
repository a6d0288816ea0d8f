//! The HTTP surface of the fake Hetzner API (axum): auth, faults, recording (when on), resources.

use super::labels::Selector;
use super::state::{self, PlacementGroup, Server, SshKey, State};
use super::{Recorded, Shared, json};
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State as Ext};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

pub(super) type App = Ext<Arc<Shared>>;
pub(super) type Reply = Result<(StatusCode, Json<Value>), ApiError>;

/// An error in Hetzner's shape.
pub struct ApiError(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json::error(self.1, &self.2))).into_response()
    }
}

pub(super) fn not_found(what: &str, id: i64) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{what} with ID '{id}' not found"),
    )
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "invalid_input", message.into())
}

/// Marks a response whose body must reach the client untouched (a dropped response).
#[derive(Clone, Copy)]
struct Dropped;

/// Builds the router for `/v1`.
pub fn router(shared: Arc<Shared>) -> Router {
    let v1 = Router::new()
        .route("/ssh_keys", get(list_ssh_keys).post(create_ssh_key))
        .route("/ssh_keys/{id}", get(get_ssh_key).delete(delete_ssh_key))
        .route("/servers", get(list_servers).post(create_server))
        .route(
            "/servers/{id}",
            get(get_server)
                .put(super::update::update_server)
                .delete(delete_server),
        )
        .route("/servers/{id}/actions", get(server_actions))
        .route("/actions/{id}", get(get_action))
        .route(
            "/placement_groups",
            get(list_placement_groups).post(create_placement_group),
        )
        .route(
            "/placement_groups/{id}",
            get(get_placement_group).delete(delete_placement_group),
        )
        .route("/server_types", get(list_server_types))
        .route("/locations", get(list_locations))
        .route("/images", get(list_images))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            super::faults::faults,
        ))
        .layer(middleware::from_fn_with_state(shared.clone(), auth));
    // Outermost, so refusals (401, 429, 503) are checked against the contract
    // too; only when recording is on, so a cloud that does not record never
    // buffers a body.
    let v1 = if shared.recorded.is_some() {
        v1.layer(middleware::from_fn_with_state(shared.clone(), record))
    } else {
        v1
    };
    Router::new()
        .nest("/v1", v1)
        .route(crate::installer::PATH, get(installer))
        .with_state(shared)
}

/// The nixos-infect stand-in, as a raw file (no token, like GitHub's).
async fn installer() -> Response {
    (
        [("content-type", "text/x-shellscript; charset=utf-8")],
        crate::installer::script(),
    )
        .into_response()
}

async fn auth(Ext(app): App, headers: HeaderMap, req: Request, next: Next) -> Response {
    let expected = format!("Bearer {}", app.config.token);
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == expected => next.run(req).await,
        _ => ApiError(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unable to authenticate".into(),
        )
        .into_response(),
    }
}

async fn record(Ext(app): App, req: Request, next: Next) -> Response {
    let Some(recorded) = &app.recorded else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let response = next.run(req).await;
    if response.extensions().get::<Dropped>().is_some() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
        recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Recorded {
                method: method.to_string().to_lowercase(),
                path: format!("/{}", path.trim_start_matches("/v1/")),
                status: parts.status.as_u16(),
                body: value,
            });
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    name: Option<String>,
    fingerprint: Option<String>,
    label_selector: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

/// Filters by name and labels, then cuts a page: `(items, meta)`.
fn page<T: Clone>(
    q: &ListQuery,
    items: impl Iterator<Item = (T, String, BTreeMap<String, String>)>,
) -> Result<(Vec<T>, Value), ApiError> {
    let selector = Selector::parse(q.label_selector.as_deref().unwrap_or("")).map_err(invalid)?;
    let per_page = q.per_page.unwrap_or(25);
    let page = q.page.unwrap_or(1);
    if per_page == 0 || per_page > 50 || page == 0 {
        return Err(invalid("page must be ≥ 1 and per_page between 1 and 50"));
    }
    let all: Vec<T> = items
        .filter(|(_, name, _)| q.name.as_ref().is_none_or(|n| n == name))
        .filter(|(_, _, labels)| selector.matches(labels))
        .map(|(t, _, _)| t)
        .collect();
    let meta = json::meta(page, per_page, all.len());
    let start = (page - 1) * per_page;
    Ok((all.into_iter().skip(start).take(per_page).collect(), meta))
}

pub(super) fn lock(app: &Shared) -> std::sync::MutexGuard<'_, State> {
    app.state.lock().unwrap_or_else(|p| p.into_inner())
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid request body: {e}")))
}

async fn list_ssh_keys(Ext(app): App, Query(q): Query<ListQuery>) -> Reply {
    let s = lock(&app);
    let (keys, meta) = page(
        &q,
        s.ssh_keys
            .values()
            .filter(|k| q.fingerprint.as_ref().is_none_or(|f| &k.fingerprint == f))
            .map(|k| (k.clone(), k.name.clone(), k.labels.clone())),
    )?;
    let keys: Vec<Value> = keys.iter().map(State::ssh_key_json).collect();
    Ok((
        StatusCode::OK,
        Json(json!({ "ssh_keys": keys, "meta": meta })),
    ))
}

#[derive(Deserialize)]
struct NewKey {
    name: String,
    public_key: String,
    labels: Option<BTreeMap<String, String>>,
}

async fn create_ssh_key(Ext(app): App, raw: Bytes) -> Reply {
    let req: NewKey = body(&raw)?;
    let fingerprint =
        state::fingerprint(&req.public_key).ok_or_else(|| invalid("invalid public key"))?;
    let mut s = lock(&app);
    if s.ssh_keys.values().any(|k| k.name == req.name) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "uniqueness_error",
            "SSH key with the same name already exists".into(),
        ));
    }
    if s.ssh_keys.values().any(|k| k.fingerprint == fingerprint) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "uniqueness_error",
            "SSH key with the same fingerprint already exists".into(),
        ));
    }
    let id = s.id();
    let key = SshKey {
        id,
        name: req.name,
        public_key: req.public_key,
        fingerprint,
        labels: req.labels.unwrap_or_default(),
        created: SystemTime::now(),
    };
    let out = State::ssh_key_json(&key);
    s.ssh_keys.insert(id, key);
    Ok((StatusCode::CREATED, Json(json!({ "ssh_key": out }))))
}

async fn get_ssh_key(Ext(app): App, Path(id): Path<i64>) -> Reply {
    let s = lock(&app);
    let k = s
        .ssh_keys
        .get(&id)
        .ok_or_else(|| not_found("SSH key", id))?;
    Ok((
        StatusCode::OK,
        Json(json!({ "ssh_key": State::ssh_key_json(k) })),
    ))
}

async fn delete_ssh_key(Ext(app): App, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    lock(&app)
        .ssh_keys
        .remove(&id)
        .ok_or_else(|| not_found("SSH key", id))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_servers(Ext(app): App, Query(q): Query<ListQuery>) -> Reply {
    let s = lock(&app);
    let (servers, meta) = page(
        &q,
        s.servers
            .values()
            .map(|v| (v.clone(), v.name.clone(), v.labels.clone())),
    )?;
    let servers: Vec<Value> = servers
        .iter()
        .map(|v| s.server_json(v, app.config.action_delay))
        .collect();
    Ok((
        StatusCode::OK,
        Json(json!({ "servers": servers, "meta": meta })),
    ))
}

#[derive(Deserialize)]
struct NewServer {
    name: String,
    server_type: String,
    image: String,
    location: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    ssh_keys: Option<Vec<Value>>,
    placement_group: Option<i64>,
    user_data: Option<String>,
}

async fn create_server(Ext(app): App, raw: Bytes) -> Result<Response, ApiError> {
    let req: NewServer = body(&raw)?;
    let server_type = state::find_server_type(&req.server_type)
        .ok_or_else(|| invalid(format!("unknown server type '{}'", req.server_type)))?;
    let image = state::find_image(&req.image)
        .ok_or_else(|| invalid(format!("unknown image '{}'", req.image)))?;
    let location = match &req.location {
        Some(l) => {
            state::find_location(l).ok_or_else(|| invalid(format!("unknown location '{l}'")))?
        }
        None => json::DEFAULT_LOCATION,
    };
    let delay = app.config.action_delay;
    let (response, server) = {
        let mut s = lock(&app);
        if s.servers.values().any(|v| v.name == req.name) {
            return Err(ApiError(
                StatusCode::CONFLICT,
                "uniqueness_error",
                "server name is already used".into(),
            ));
        }
        let mut keys = Vec::new();
        for k in req.ssh_keys.iter().flatten() {
            let text = k
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| k.to_string());
            let key = s
                .ssh_keys
                .values()
                .find(|x| x.name == text || x.id.to_string() == text)
                .ok_or_else(|| invalid(format!("SSH key '{text}' not found")))?;
            keys.push(key.name.clone());
        }
        if let Some(pg) = req.placement_group
            && !s.placement_groups.contains_key(&pg)
        {
            return Err(invalid(format!("placement group {pg} not found")));
        }
        let id = s.id();
        let ipv4 = app.allocate_ip()?;
        let server = Server {
            id,
            name: req.name,
            labels: req.labels.unwrap_or_default(),
            server_type,
            image,
            location,
            placement_group: req.placement_group,
            ssh_keys: keys,
            user_data: req.user_data,
            ipv4,
            created: SystemTime::now(),
            booted: app.nodes.is_none(),
        };
        s.servers.insert(id, server.clone());
        let action = s.action("create_server", (id, "server"), delay);
        let start = s.action("start_server", (id, "server"), delay);
        let out = json!({
            "server": s.server_json(&server, delay),
            "action": State::action_json(&s.actions[&action]),
            "next_actions": [State::action_json(&s.actions[&start])],
            "root_password": null,
        });
        (out, server)
    };
    app.boot(server);
    let dropped = {
        let mut f = app.faults.lock().unwrap_or_else(|p| p.into_inner());
        let d = f.dropped_creates > 0;
        f.dropped_creates = f.dropped_creates.saturating_sub(1);
        d
    };
    if dropped {
        // The server exists, but the client never gets the answer: the body breaks off.
        let broken = futures::stream::once(async {
            Err::<Bytes, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "response dropped",
            ))
        });
        let mut r = Response::new(Body::from_stream(broken));
        *r.status_mut() = StatusCode::CREATED;
        r.extensions_mut().insert(Dropped);
        return Ok(r);
    }
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

async fn get_server(Ext(app): App, Path(id): Path<i64>) -> Reply {
    let s = lock(&app);
    let v = s.servers.get(&id).ok_or_else(|| not_found("server", id))?;
    Ok((
        StatusCode::OK,
        Json(json!({ "server": s.server_json(v, app.config.action_delay) })),
    ))
}

async fn delete_server(Ext(app): App, Path(id): Path<i64>) -> Reply {
    let action = {
        let mut s = lock(&app);
        s.servers
            .remove(&id)
            .ok_or_else(|| not_found("server", id))?;
        let a = s.action("delete_server", (id, "server"), app.config.action_delay);
        State::action_json(&s.actions[&a])
    };
    app.shutdown_node(id);
    Ok((StatusCode::OK, Json(json!({ "action": action }))))
}

async fn server_actions(Ext(app): App, Path(id): Path<i64>, Query(q): Query<ListQuery>) -> Reply {
    let s = lock(&app);
    let actions = s.actions.values().filter(|a| a.resource.0 == id).cloned();
    let (actions, meta) = page(&q, actions.map(|a| (a, String::new(), BTreeMap::new())))?;
    let actions: Vec<Value> = actions.iter().map(State::action_json).collect();
    Ok((
        StatusCode::OK,
        Json(json!({ "actions": actions, "meta": meta })),
    ))
}

async fn get_action(Ext(app): App, Path(id): Path<i64>) -> Reply {
    let s = lock(&app);
    let a = s.actions.get(&id).ok_or_else(|| not_found("action", id))?;
    Ok((
        StatusCode::OK,
        Json(json!({ "action": State::action_json(a) })),
    ))
}

async fn list_placement_groups(Ext(app): App, Query(q): Query<ListQuery>) -> Reply {
    let s = lock(&app);
    let (groups, meta) = page(
        &q,
        s.placement_groups
            .values()
            .map(|g| (g.clone(), g.name.clone(), g.labels.clone())),
    )?;
    let groups: Vec<Value> = groups.iter().map(|g| s.placement_group_json(g)).collect();
    Ok((
        StatusCode::OK,
        Json(json!({ "placement_groups": groups, "meta": meta })),
    ))
}

#[derive(Deserialize)]
struct NewGroup {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    labels: Option<BTreeMap<String, String>>,
}

async fn create_placement_group(Ext(app): App, raw: Bytes) -> Reply {
    let req: NewGroup = body(&raw)?;
    if req.kind != "spread" {
        return Err(invalid(format!(
            "unknown placement group type '{}'",
            req.kind
        )));
    }
    let mut s = lock(&app);
    if s.placement_groups.values().any(|g| g.name == req.name) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "uniqueness_error",
            "placement group name is already used".into(),
        ));
    }
    let id = s.id();
    let g = PlacementGroup {
        id,
        name: req.name,
        labels: req.labels.unwrap_or_default(),
        created: SystemTime::now(),
    };
    let out = s.placement_group_json(&g);
    s.placement_groups.insert(id, g);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "placement_group": out, "action": null })),
    ))
}

async fn get_placement_group(Ext(app): App, Path(id): Path<i64>) -> Reply {
    let s = lock(&app);
    let g = s
        .placement_groups
        .get(&id)
        .ok_or_else(|| not_found("placement group", id))?;
    Ok((
        StatusCode::OK,
        Json(json!({ "placement_group": s.placement_group_json(g) })),
    ))
}

async fn delete_placement_group(
    Ext(app): App,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let mut s = lock(&app);
    if s.servers.values().any(|v| v.placement_group == Some(id)) {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "resource_in_use",
            "placement group still has servers".into(),
        ));
    }
    s.placement_groups
        .remove(&id)
        .ok_or_else(|| not_found("placement group", id))?;
    Ok(StatusCode::NO_CONTENT)
}

fn catalog(q: &ListQuery, key: &str, names: Vec<(&'static str, Value)>) -> Reply {
    let (items, meta) = page(
        q,
        names
            .into_iter()
            .map(|(n, v)| (v, n.to_string(), BTreeMap::new())),
    )?;
    Ok((StatusCode::OK, Json(json!({ key: items, "meta": meta }))))
}

async fn list_server_types(Query(q): Query<ListQuery>) -> Reply {
    catalog(
        &q,
        "server_types",
        json::SERVER_TYPES
            .iter()
            .enumerate()
            .map(|(i, t)| (t.0.name, json::server_type(i)))
            .collect(),
    )
}

async fn list_locations(Query(q): Query<ListQuery>) -> Reply {
    catalog(
        &q,
        "locations",
        json::LOCATIONS
            .iter()
            .enumerate()
            .map(|(i, l)| (l.0.name, json::location(i)))
            .collect(),
    )
}

async fn list_images(Query(q): Query<ListQuery>) -> Reply {
    catalog(
        &q,
        "images",
        json::IMAGES
            .iter()
            .enumerate()
            .map(|(i, m)| (m.0.name, json::image(i)))
            .collect(),
    )
}
