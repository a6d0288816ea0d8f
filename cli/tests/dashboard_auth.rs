//! Who may read the dashboard (`serve --auth`), its security headers, and
//! the login in a real browser (Debian's Chromium, driven by ChromeDriver).

mod common;

use common::browser::Browser;
use common::{cli, ok, serve, serve_with};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use serde_json::json;
use std::path::Path;

const TOKEN: &str = "test-token-1f2e";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn a_run(dir: &Path) {
    ok(cli(dir).args([
        "runs",
        "start",
        "diag.chain",
        "--run-id",
        "good",
        "--input",
        r#"{"steps":2}"#,
    ]));
}

#[tokio::test]
async fn by_default_reads_are_open_on_loopback_and_every_answer_has_the_security_headers() {
    let d = tempfile::tempdir().unwrap();
    a_run(d.path());
    let server = serve(d.path());
    let http = client();
    for path in ["/", "/runs/good", "/schedules", "/cluster", "/api/runs"] {
        let r = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers().clone();
        let csp = h[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        let body = r.text().await.unwrap();
        // The one script is the dashboard's own file; nothing inline.
        let live = r#"<script src="/assets/live.js" defer></script>"#;
        assert!(
            !body.replace(live, "").contains("<script"),
            "{path} has another script"
        );
        for inline in ["onchange=", "onclick=", "onload=", "javascript:"] {
            assert!(!body.contains(inline), "{path} has {inline}");
        }
    }
    // Open reads beyond loopback are refused before anything listens.
    let out = cli(d.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--auth reads") && err.contains("--auth none"),
        "{err}"
    );
}

#[tokio::test]
async fn with_auth_reads_every_read_needs_the_token_or_the_login_cookie() {
    let d = tempfile::tempdir().unwrap();
    a_run(d.path());
    let server = serve_with(d.path(), &["--auth", "reads"]);
    let http = client();
    let get = |path: &str, auth: Option<(&str, String)>| {
        let mut r = http.get(format!("{}{path}", server.base));
        if let Some((k, v)) = auth {
            r = r.header(k, v);
        }
        r.send()
    };
    // Nothing without it: pages send browsers to the login, the API says 401.
    let page = get("/runs/good", None).await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()[LOCATION], "/login?next=/runs/good");
    assert!(page.headers().contains_key(CONTENT_SECURITY_POLICY));
    for path in [
        "/api/runs",
        "/api/runs/good",
        "/api/schedules",
        "/api/cluster",
    ] {
        assert_eq!(
            get(path, None).await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let bearer = || Some(("authorization", format!("Bearer {TOKEN}")));
    assert_eq!(
        get("/api/runs/good", bearer()).await.unwrap().status(),
        StatusCode::OK
    );
    let wrong = Some(("authorization", "Bearer nope".to_string()));
    assert_eq!(
        get("/api/runs", wrong).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // The login form: a wrong token is refused; the right one sets an
    // HttpOnly, SameSite=Strict cookie and returns to a local page only.
    let login = |token: &str, next: &str| {
        http.post(format!("{}/login", server.base))
            .form(&[("token", token), ("next", next)])
            .send()
    };
    assert_eq!(
        login("nope", "/").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = login(TOKEN, "//elsewhere.example/").await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/");
    let r = login(TOKEN, "/runs/good").await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/runs/good");
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie is not the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let with_cookie = || Some(("cookie", session.clone()));
    assert_eq!(
        get("/runs/good", with_cookie()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/api/runs", with_cookie()).await.unwrap().status(),
        StatusCode::OK
    );
    // The cookie opens reads only: a write still needs the header.
    let cancel = http
        .post(format!("{}/api/runs/good/cancel", server.base))
        .header("cookie", session.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_browser_logs_in_with_the_token_and_cannot_read_the_cookie() {
    let d = tempfile::tempdir().unwrap();
    a_run(d.path());
    let server = serve_with(d.path(), &["--auth", "reads"]);
    let b = Browser::start().await;
    b.go(&format!("{}/runs/good", server.base)).await;
    assert!(
        b.url().await.contains("/login?next=/runs/good"),
        "{}",
        b.url().await
    );
    b.log_in("not-the-token").await;
    b.source_with("That is not the API token").await;
    b.go(&format!("{}/login?next=/runs/good", server.base))
        .await;
    b.log_in(TOKEN).await;
    b.source_with("Run good").await;
    assert!(b.url().await.ends_with("/runs/good"), "{}", b.url().await);
    // The page's own scripts cannot see the session: it is HttpOnly.
    let seen = b
        .call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": "return document.cookie", "args": []}),
        )
        .await;
    assert_eq!(seen, json!(""), "document.cookie");
    let cookies = b.call(reqwest::Method::GET, "/cookie", json!({})).await;
    let session = cookies
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "nix_infra_session")
        .expect("the session cookie");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    b.call(reqwest::Method::DELETE, "", json!({})).await;
}
