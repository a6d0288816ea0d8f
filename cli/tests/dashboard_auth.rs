//! Who may read the dashboard (`serve --auth`), its security headers, and
//! the login in a real browser (Debian's Chromium, driven by ChromeDriver).

mod common;

use common::{cli, ok, serve, serve_with};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};

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
            csp.contains("script-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        let body = r.text().await.unwrap();
        for script in ["<script", "onchange=", "onclick=", "javascript:"] {
            assert!(!body.contains(script), "{path} has {script}");
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

/// ChromeDriver on a free loopback port, and a W3C WebDriver session on
/// headless Chromium; both end on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (scripts/setup.sh installs chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        // Ready when /status says so; each try waits for its answer, no sleeps.
        let mut ready = false;
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                ready = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(ready, "chromedriver did not start");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let r = self
            .http
            .request(method, url)
            .json(&body)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert!(v["value"].get("error").is_none(), "{path}: {v}");
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", json!({}))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The page's source once it contains `text`: a click's navigation
    /// ends after the click does, so the source is read until it has come.
    async fn source_with(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let source = self.call(reqwest::Method::GET, "/source", json!({})).await;
            let source = source.as_str().unwrap_or_default().to_string();
            if source.contains(text) {
                return source;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never showed {text:?}: {source}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn log_in(&self, token: &str) {
        let field = self.element("#token").await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{field}/value"),
            json!({ "text": token }),
        )
        .await;
        let button = self.element("#login").await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{button}/click"),
            json!({}),
        )
        .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
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
