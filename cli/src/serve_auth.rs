//! Who may read the dashboard, and the headers every answer carries.
//!
//! - [`Auth::Writes`] (the default): reads are open to whoever reaches the
//!   address, which must then be loopback; starting, resuming and cancelling
//!   runs need the bearer token.
//! - [`Auth::Reads`]: every page and API call needs the token too, as
//!   `Authorization: Bearer TOKEN` or, for a browser, the session cookie that
//!   `/login` sets (HttpOnly, SameSite=Strict) once given the token. The
//!   cookie opens reads only: writes still need the header, so another site
//!   cannot make a logged-in browser start a run.
//! - [`Auth::None`]: reads are open on any address, said explicitly.
//!
//! Every answer carries a CSP that allows no script at all (the pages have
//! none: they refresh with `<meta>`), `X-Content-Type-Options: nosniff`,
//! frame denial and no referrer.

use crate::Failure;
use anyhow::anyhow;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Who may read what `nix-infra serve` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Auth {
    /// Every page and API call needs the token (header, or the login cookie).
    Reads,
    /// Only starting, resuming and cancelling runs need the token; loopback only.
    Writes,
    /// Reads are open to anyone who can reach the address, on any address.
    None,
}

/// The name of the session cookie.
const COOKIE: &str = "nix_infra_session";

/// What the guard checks against.
#[derive(Clone)]
pub struct Gate {
    /// The policy.
    pub auth: Auth,
    /// The API token.
    pub token: Arc<String>,
    /// This process's session value, made at start (a restart logs browsers out).
    pub session: Arc<String>,
}

impl Gate {
    /// A gate with a fresh session value.
    pub fn new(auth: Auth, token: Arc<String>) -> Gate {
        let bytes: [u8; 32] = rand::random();
        let session = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Gate {
            auth,
            token,
            session: Arc::new(session),
        }
    }

    /// Whether the request carries the token, or (for reads) the session cookie.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|t| bool::from(t.as_bytes().ct_eq(self.token.as_bytes()))) {
            return true;
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))
            .any(|v| bool::from(v.as_bytes().ct_eq(self.session.as_bytes())))
    }
}

/// Refuses to serve open reads beyond this machine unless told `--auth none`.
pub fn check_bind(addr: SocketAddr, auth: Auth) -> Result<(), Failure> {
    if auth == Auth::Writes && !addr.ip().is_loopback() {
        return Err(Failure::Usage(anyhow!(
            "{addr} is reachable beyond this machine, and anyone reaching it would read run logs, \
             step outputs and the cluster's inventory: add --auth reads (the API token for every read), \
             or --auth none to serve reads to anyone"
        )));
    }
    Ok(())
}

/// Every answer gets the security headers; under [`Auth::Reads`], a request
/// without the token or cookie gets 401 (the API) or the login page (pages).
pub async fn guard(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let open = gate.auth != Auth::Reads || path == "/login" || gate.admits(req.headers());
    let mut response = if open {
        next.run(req).await
    } else if path.starts_with("/api/") {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "error": "a bearer token is required (NIX_INFRA_API_TOKEN or DIR/.nix-infra/api-token)"
            })),
        )
            .into_response()
    } else {
        let next = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        Redirect::to(&format!("/login?next={}", urlencode(next))).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Where to go after logging in.
#[derive(Deserialize)]
pub struct After {
    next: Option<String>,
}

/// `GET /login`: the form.
pub async fn login_page(Query(q): Query<After>) -> Html<String> {
    Html(form(&safe_next(q.next.as_deref()), ""))
}

/// What the login form sends.
#[derive(Deserialize)]
pub struct Login {
    token: String,
    next: Option<String>,
}

/// `POST /login`: the token given sets the session cookie.
pub async fn login(State(gate): State<Gate>, Form(f): Form<Login>) -> Response {
    let next = safe_next(f.next.as_deref());
    if !bool::from(f.token.trim().as_bytes().ct_eq(gate.token.as_bytes())) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(form(&next, "<p class=bad>That is not the API token.</p>")),
        )
            .into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        gate.session
    );
    let mut r = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A local path to return to: anything else (another site, `//host`) is `/`.
fn safe_next(next: Option<&str>) -> String {
    match next {
        // Browsers drop tabs and newlines (`/\t/evil` becomes `//evil`): only
        // plain printable ASCII is a path back.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.into()
        }
        _ => "/".into(),
    }
}

fn form(next: &str, note: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Log in · nix-infra</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:40px}}.bad{{color:#b71c1c}}</style></head>\
         <body><h1>nix-infra</h1>{note}<form method=post action=/login>\
         <label>API token <input id=token name=token type=password autocomplete=current-password></label>\
         <input type=hidden name=next value=\"{}\"> <button id=login>Log in</button></form>\
         <p>The token is <code>NIX_INFRA_API_TOKEN</code> or <code>DIR/.nix-infra/api-token</code>.</p>\
         </body></html>",
        observability::dashboard::esc(next)
    )
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_reads_stay_on_loopback_unless_said_otherwise() {
        let out: SocketAddr = "192.0.2.1:8080".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(check_bind(out, Auth::Writes).is_err());
        assert!(check_bind(out, Auth::Reads).is_ok());
        assert!(check_bind(out, Auth::None).is_ok());
        assert!(check_bind(lo, Auth::Writes).is_ok());
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_next(Some("/runs/x?y=1")), "/runs/x?y=1");
        for other in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "runs",
            "/\t/evil.example",
            "/ /x",
        ] {
            assert_eq!(safe_next(Some(other)), "/", "{other}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
