//! The sandbox serves for as long as a user likes, so its memory must stay flat
//! under a steady stream of API calls: it keeps no history of what it sent.
//!
//! The cloud runs as a child process (`nix-infra-testcloud` with its default
//! flags, which is [`sandbox::CloudConfig::sandbox`], exactly what
//! `nix-infra sandbox serve` runs), so the resident set measured is its own.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_nix-infra-testcloud");
const TOKEN: &str = "rss-t0ken";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGt2Xq7t0c8m3vQp3m4h6v1cW7S0W2d0oC1zJtI7m2Wb rss@nix-infra";
const MIB: u64 = 1024 * 1024;

/// The serving process; stopped on drop, also when the test panics.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.0.wait();
    }
}

/// `VmRSS` of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kb * 1024
}

/// One round of calls a client makes: catalogs, lists, a key made and
/// deleted again (so the cloud's state ends as it began), a 404 and a 401.
/// Returns how many requests it sent.
async fn round(http: &reqwest::Client, endpoint: &str, i: usize) -> usize {
    let get = |path: &str| http.get(format!("{endpoint}{path}")).bearer_auth(TOKEN);
    let mut sent = 0;
    for path in [
        "/server_types",
        "/locations",
        "/images",
        "/servers?label_selector=nix-infra.cluster%3Drss",
        "/ssh_keys",
        "/placement_groups",
    ] {
        let r = get(path).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.bytes().await.unwrap();
        sent += 1;
    }
    let created: Value = http
        .post(format!("{endpoint}/ssh_keys"))
        .bearer_auth(TOKEN)
        .json(&json!({
            "name": format!("rss-{i}"),
            "public_key": KEY,
            "labels": {"round": i.to_string()}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["ssh_key"]["id"].as_i64().expect("a created key");
    let r = http
        .delete(format!("{endpoint}/ssh_keys/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = get("/servers/424242").send().await.unwrap();
    assert_eq!(r.status(), 404);
    r.bytes().await.unwrap();
    let r = http
        .get(format!("{endpoint}/servers"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token");
    r.bytes().await.unwrap();
    sent + 4
}

/// Sends rounds until `until` requests have been sent in all.
async fn stream(http: &reqwest::Client, endpoint: &str, sent: &mut usize, until: usize) {
    while *sent < until {
        *sent += round(http, endpoint, *sent).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_serve_keeps_flat_memory_under_a_steady_stream_of_calls() {
    // No flags beyond address and token: the sandbox's own configuration.
    // setpriv execs the cloud (same pid) and kills it if this test dies.
    let mut child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", BIN, "--listen", "127.0.0.1:0"])
        .env("HCLOUD_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut served = Served(child);
    let pid = served.0.id();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let endpoint = line
        .trim()
        .strip_prefix("HCLOUD_ENDPOINT=")
        .unwrap_or_else(|| panic!("first line is not the endpoint: {line}"))
        .to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");

    let http = reqwest::Client::new();
    let mut sent = 0;
    stream(&http, &endpoint, &mut sent, 1_000).await;
    let after_1k = rss(pid);
    stream(&http, &endpoint, &mut sent, 10_000).await;
    let after_10k = rss(pid);
    assert!(sent < 10_010, "bounded: {sent} requests");
    eprintln!(
        "sandbox RSS: {:.1} MiB after 1,000 requests, {:.1} MiB after {sent}",
        after_1k as f64 / MIB as f64,
        after_10k as f64 / MIB as f64
    );
    assert!(
        after_10k <= after_1k + 10 * MIB,
        "memory grows with requests: {after_1k} bytes after 1,000, {after_10k} after {sent}"
    );
    assert!(
        served.0.try_wait().unwrap().is_none(),
        "the cloud is still serving"
    );
}
