//! MCP over streamable HTTP, behind the dashboard's API token: every request
//! must carry `Authorization: Bearer <token>`; rmcp's own checks keep the
//! `Host` to loopback names.

use crate::Mcp;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

/// An axum router serving `server` at `/mcp`, for requests that carry
/// `token` as a bearer token; `stop` ends its sessions.
pub fn router(server: Mcp, token: String, stop: CancellationToken) -> axum::Router {
    let config = StreamableHttpServerConfig::default().with_cancellation_token(stop);
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let token: Arc<str> = token.into();
    axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let token = token.clone();
                async move { authorized(&token, req, next).await }
            },
        ))
}

async fn authorized(token: &str, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "give the dashboard's API token: Authorization: Bearer <token> (NIX_INFRA_API_TOKEN, or .nix-infra/api-token in the cluster repo)",
        )
            .into_response()
    }
}
