//! `PUT /servers/{id}`: renaming a server and replacing its labels (how
//! `nix-infra cluster adopt` labels servers made by other tools).

use super::api::{ApiError, App, Reply, lock, not_found};
use axum::Json;
use axum::extract::{Path, State as Ext};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateServer {
    name: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

/// `PUT /servers/{id}`: a new name and/or labels (labels replace the old ones).
pub(super) async fn update_server(
    Ext(app): App,
    Path(id): Path<i64>,
    Json(req): Json<UpdateServer>,
) -> Reply {
    let mut s = lock(&app);
    let taken = req
        .name
        .as_ref()
        .is_some_and(|n| s.servers.values().any(|v| v.id != id && &v.name == n));
    if taken {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "uniqueness_error",
            "server name is already used".into(),
        ));
    }
    let v = s
        .servers
        .get_mut(&id)
        .ok_or_else(|| not_found("server", id))?;
    if let Some(n) = req.name {
        v.name = n;
    }
    if let Some(l) = req.labels {
        v.labels = l;
    }
    let v = v.clone();
    Ok((
        StatusCode::OK,
        Json(json!({ "server": s.server_json(&v, app.config.action_delay) })),
    ))
}
