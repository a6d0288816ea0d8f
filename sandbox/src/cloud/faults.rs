//! The faults the test cloud injects ([`super::Faults`]): latency, 429s
//! with Hetzner's rate-limit headers (counted, or a share that empties the
//! bucket until its reset), and 503s.

use super::Shared;
use super::api::{ApiError, App};
use axum::extract::{Request, State as Ext};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the fault settings make of one request: its latency, a 429 with
/// its reset (Unix seconds), or a 503.
///
/// `from` is the client's connection: a connection that was told a reset
/// and asks again before it is early (requests on one connection follow one
/// another, so that client had read the 429).
fn roll(app: &Shared, from: Option<SocketAddr>) -> (std::time::Duration, Option<u64>, bool) {
    let mut f = app.faults.lock().unwrap_or_else(|p| p.into_inner());
    let mut l = app.limiter.lock().unwrap_or_else(|p| p.into_inner());
    let now = SystemTime::now();
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let now_s = secs(now);
    l.told.retain(|_, reset| *reset > now_s);
    if let Some(c) = from
        && l.told.contains_key(&c)
    {
        l.early += 1;
    }
    // An exhausted limit answers 429 until its reset, whoever asks.
    if let Some(reset) = l.window {
        if now_s < reset {
            if let Some(c) = from {
                l.told.insert(c, reset);
            }
            return (f.latency, Some(reset), false);
        }
        l.window = None;
    }
    let counted = f.rate_limited > 0;
    f.rate_limited = f.rate_limited.saturating_sub(1);
    if counted {
        return (f.latency, Some(secs(now + f.rate_limit_reset)), false);
    }
    use rand::Rng;
    if f.rate_limited_share > 0.0 && l.rng.random::<f64>() < f.rate_limited_share {
        let reset = secs(now + f.rate_limit_reset) + 1;
        l.window = Some(reset);
        if let Some(c) = from {
            l.told.insert(c, reset);
        }
        return (f.latency, Some(reset), false);
    }
    let failing = f.server_errors > 0
        || (f.server_error_share > 0.0 && l.rng.random::<f64>() < f.server_error_share);
    f.server_errors = f.server_errors.saturating_sub(1);
    (f.latency, None, failing)
}

pub(super) async fn faults(Ext(app): App, req: Request, next: Next) -> Response {
    let from = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (latency, limited, failing) = roll(&app, from);
    {
        let mut l = app.limiter.lock().unwrap_or_else(|p| p.into_inner());
        l.served.0 += u32::from(limited.is_some());
        l.served.1 += u32::from(failing);
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(reset) = limited {
        let mut r = ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "limit of 3600 requests per hour reached".into(),
        )
        .into_response();
        let h = r.headers_mut();
        h.insert("RateLimit-Limit", HeaderValue::from_static("3600"));
        h.insert("RateLimit-Remaining", HeaderValue::from_static("0"));
        h.insert("RateLimit-Reset", HeaderValue::from(reset));
        return r;
    }
    if failing {
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "service temporarily unavailable".into(),
        )
        .into_response();
    }
    next.run(req).await
}
