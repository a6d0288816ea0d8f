//! `nix-infra mcp` beyond stdio and the cluster profile: streamable HTTP
//! behind the API token, the dev profile's `nix-prefetch-url` against a
//! loopback server, and bad input refused before anything is served.

mod common;

use common::mcp::{call, done, names, refusal, session, stdio};
use common::{cli, ok};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;

/// Serves each path's bytes on 127.0.0.1 until the test ends: `(base URL, thread)`.
fn files(served: Vec<(&'static str, Vec<u8>)>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            let reply = match served.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = s.write_all(&reply);
        }
    });
    base
}

/// A .tar.gz of one folder `top` holding `hello` ("Hello World\n", with `mode`), files dated `mtime`.
fn tarball(top: &str, mode: u32, mtime: &str) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let folder = d.path().join(top);
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("hello"), "Hello World\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(folder.join("hello"), std::fs::Permissions::from_mode(mode)).unwrap();
    let out = d.path().join("x.tar.gz");
    let made = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg(format!("--mtime={mtime}"))
        .arg("-C")
        .arg(d.path())
        .arg(top)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::read(out).unwrap()
}

#[test]
fn the_dev_profile_hashes_as_nix_does() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(cli(dir).arg("init"));
    let base = files(vec![
        ("/abc", b"abc".to_vec()),
        ("/a.tar.gz", tarball("src-1.0", 0o644, "2020-01-01")),
        ("/b.tar.gz", tarball("other-top", 0o644, "2024-06-30")),
        ("/c.tar.gz", tarball("src-1.0", 0o755, "2020-01-01")),
    ]);
    let abc_sri = "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";
    let calls = json!([
        {"op": "tools"},
        call("nix-prefetch-url", json!({"url": format!("{base}/abc")})),
        call("nix-prefetch-url", json!({"operation": "verify", "url": format!("{base}/abc"), "expected_hash": abc_sri})),
        call("nix-prefetch-url", json!({"operation": "verify", "url": format!("{base}/abc"), "expected_hash": "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="})),
        call("nix-prefetch-url", json!({"operation": "convert", "hash": "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s", "from_format": "nix32", "format": "sri"})),
        call("nix-prefetch-url", json!({"url": format!("{base}/a.tar.gz"), "unpack": true})),
        call("nix-prefetch-url", json!({"url": format!("{base}/b.tar.gz"), "unpack": true})),
        call("nix-prefetch-url", json!({"url": format!("{base}/c.tar.gz"), "unpack": true})),
        call("nix-prefetch-url", json!({"url": format!("{base}/missing")})),
        call("nix-prefetch-url", json!({"url": "file:///etc/passwd"})),
    ]);
    let (a, _) = session(stdio(dir, &["--profile", "dev"]), calls);
    assert_eq!(
        names(&a[0]),
        [
            "check",
            "configuration-files",
            "nix-prefetch-url",
            "plan",
            "run_logs",
            "run_show",
            "runs_list"
        ]
    );
    // Nix's own vector for "abc" (its tests/hash.sh), fetched over loopback.
    assert_eq!(
        done(&a[1])["hash"],
        "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
    );
    assert_eq!(done(&a[2])["matches"], true);
    assert_eq!(done(&a[3])["matches"], false);
    assert_eq!(done(&a[4])["output"], abc_sri);
    // The unpacked hash is the content's: not the top folder's name, not the
    // dates, but the execute bit.
    let (x, y, z) = (
        done(&a[5])["hash"].clone(),
        done(&a[6])["hash"].clone(),
        done(&a[7])["hash"].clone(),
    );
    assert_eq!(x, y);
    assert_ne!(x, z);
    assert_ne!(x, done(&a[1])["hash"]);
    assert!(refusal(&a[8]).contains("HTTP 404"));
    assert!(refusal(&a[9]).contains("only http and https"));
}

#[test]
fn over_http_the_api_token_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(cli(dir).arg("init"));
    let mut server = cli(dir)
        .env("NIX_INFRA_API_TOKEN", "mcp-token-5e2a")
        .args(["mcp", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = BufReader::new(server.stderr.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();
    assert!(url.ends_with("/mcp"), "{first}");

    let (a, _) = session(
        json!({"url": url, "token": "mcp-token-5e2a"}),
        json!([{"op": "info"}, {"op": "tools"}, call("configuration-files", json!({"operation": "list-content"}))]),
    );
    assert_eq!(a[0]["name"], "nix-infra-cluster-mcp");
    assert!(names(&a[1]).contains(&"remote-command".to_string()));
    assert!(done(&a[2])["entries"].is_array());

    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    for token in [None, Some("wrong")] {
        let (status, text) = common::http(&format!("http://{addr}"), "POST", "/mcp", token, body);
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("API token"), "{text}");
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn bad_input_is_refused_before_anything_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(cli(dir).arg("init"));
    std::fs::write(dir.join(".env"), "HCLOUD_TOKEN=\"never closed\n").unwrap();
    let out = cli(dir).arg("mcp").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".env"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "stdout is the protocol's: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    std::fs::remove_file(dir.join(".env")).unwrap();
    let out = cli(dir)
        .args(["mcp", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback only"));
    let out = cli(dir)
        .args(["mcp", "--profile", "everything"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
