//! What the cluster CLI tests share: the binary, a sandbox guard, the fake cloud's servers.
#![allow(dead_code)]

pub mod browser;
pub mod mcp;
pub mod otlp;

use age::secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::io::Write;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tasks::provider::{Hetzner, Provider};
use tasks::registry::{Registry, RegistryTls};
use tasks::ssh::{Discard, Remote};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_nix-infra");

/// `nix-infra -d DIR` with no state or credentials inherited from the caller.
pub fn cli(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("DATABASE_URL")
        .env_remove("HCLOUD_TOKEN")
        .env_remove("HCLOUD_ENDPOINT")
        .env_remove("SECRETS_PASS")
        .env_remove("SECRETS_PWD")
        .env_remove("ETCD_ENDPOINTS")
        // A sandbox this test starts stops with the test, even if the test is killed.
        .env("NIX_INFRA_SANDBOX_OWNER", std::process::id().to_string())
        .arg("-d")
        .arg(dir)
        .args(["--lease-ttl", "2"]);
    c
}

/// Stops the directory's sandbox (and its nodes) when dropped.
pub struct Down(pub PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = cli(&self.0).args(["sandbox", "down"]).output();
    }
}

/// Runs a command, asserting it succeeded; returns its stdout.
pub fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}\nstdout: {}\nstderr: {}",
        c,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The variables of `DIR/.env`.
pub fn env(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dir.join(".env"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The cluster's name: its directory's name.
pub fn cluster_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string()
}

/// (node, ipv4) of every server the sandbox holds for the cluster, sorted by node.
pub async fn servers(dir: &Path) -> Vec<(String, String)> {
    let env = env(dir);
    let p = Hetzner::new(&env["HCLOUD_ENDPOINT"], &env["HCLOUD_TOKEN"]).unwrap();
    let mut out: Vec<_> = p
        .list_servers(&cluster_name(dir))
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.ipv4.unwrap_or_default()))
        .collect();
    out.sort();
    out
}

/// `runs show ID --output json`.
pub fn show(dir: &Path, id: &str) -> serde_json::Value {
    let out = cli(dir)
        .args(["runs", "show", id, "--output", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts `c`, kills it with SIGKILL as soon as a line of its stderr contains `marker`.
pub fn kill_9_at(c: &mut Command, marker: &str) {
    kill_9_after(c, marker, || {});
}

/// Starts `c`; once a line of its stderr contains `marker`, runs `then`, and kills `c` with SIGKILL.
pub fn kill_9_after(c: &mut Command, marker: &str, then: impl FnOnce()) {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        if line.unwrap().contains(marker) {
            break;
        }
    }
    then();
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A cluster repo from the example, with its app's secret stored and a sandbox running.
pub fn cluster_repo(dir: &Path, greeting: &str) {
    ok(cli(dir).args(["init", "--example"]));
    let mut store = cli(dir)
        .args(["secrets", "store", "--name", "hello-greeting"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    store
        .stdin
        .take()
        .unwrap()
        .write_all(greeting.as_bytes())
        .unwrap();
    assert!(store.wait().unwrap().success());
    ok(cli(dir).args(["sandbox", "up"]));
}

/// The cluster's etcd, as the orchestrator sees it.
pub async fn etcd(dir: &Path, ctrl_ip: &str) -> Registry {
    etcd_at(dir, &format!("https://{ctrl_ip}:2379")).await
}

/// The etcd at `endpoint`, as the cluster's orchestrator sees it.
pub async fn etcd_at(dir: &Path, endpoint: &str) -> Registry {
    let key = tasks::secrets::SecretKey::load_identity(&dir.join("keys/age.key")).unwrap();
    let ca = tasks::ca::Ca::load(&dir.join("ca"), key).unwrap();
    let me = ca.orchestrator().unwrap();
    let tls = RegistryTls {
        ca_pem: ca.root_pem().into(),
        cert_pem: me.cert_pem.clone(),
        key_pem: me.key_pem.expose_secret().into(),
    };
    Registry::connect(&[endpoint.to_string()], Some(&tls))
        .await
        .unwrap()
}

/// Runs `cmd` on a node over SSH and returns its stdout.
pub async fn on_node(dir: &Path, node: &str, ip: &str, cmd: &str) -> String {
    let r = Remote::connect(&workflows::node::ssh_config(dir), node, ip)
        .await
        .unwrap();
    let out = r.run(cmd, None, &Discard, None).await.unwrap();
    let _ = r.close().await;
    out.stdout
}

/// A `nix-infra worker` process; killed (SIGKILL) on drop if still running.
pub struct Worker(pub std::process::Child);

impl Worker {
    /// Starts a worker on the cluster directory's state.
    pub fn start(dir: &Path, url: &str) -> Worker {
        let child = cli(dir)
            .env("DATABASE_URL", url)
            .args(["worker", "--concurrency", "4"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Worker(child)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The last stdout line as JSON.
pub fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap()
}

/// `METHOD path` with an optional bearer token and body; returns (status, body).
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         {auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A running `nix-infra serve`; killed on drop.
pub struct Server {
    /// The `serve` process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(dir: &Path) -> Server {
    serve_with(dir, &[])
}

/// `nix-infra serve` with more flags (token `test-token-1f2e`).
pub fn serve_with(dir: &Path, flags: &[&str]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = cli(dir)
        .env("NIX_INFRA_API_TOKEN", "test-token-1f2e")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    assert!(line.starts_with("dashboard on http://127.0.0.1:"), "{line}");
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// The example repo, as a user would copy it.
pub fn dart_repo(dir: &Path) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/dart-cluster");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", example.display()))
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::copy(dir.join("env.example"), dir.join(".env")).unwrap();
    ok(cli(dir).args(["init"]));
    for (name, value) in [
        ("hello-greeting", "hello from [%%localhost.hostname%%]"),
        (
            "private-cache-netrc",
            "machine cache.example.org login me password pw-9d1c",
        ),
        (
            "nix-store.trusted-public-keys-cache1",
            "cache.example.org-1:c2lnbmluZy1rZXk=",
        ),
    ] {
        store(dir, name, value);
    }
}

/// `nix-infra -d DIR ARGS` on a terminal (util-linux `script` gives it a
/// pty), typing `typed`; returns its exit code and what the terminal showed.
pub fn on_terminal(dir: &Path, args: &[&str], typed: &str) -> (Option<i32>, String) {
    let c = {
        let mut c = cli(dir);
        c.args(args);
        c
    };
    let line: Vec<String> = std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
        .collect();
    let mut t = Command::new("script");
    t.args(["-qec", &line.join(" "), "/dev/null"]);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    let mut child = t
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

pub fn store(dir: &Path, name: &str, value: &str) {
    let mut c = cli(dir)
        .args(["secrets", "store", "--name", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "store {name}");
}

/// A repo with a sandbox and one fleet node `name` provisioned: its address.
pub async fn one_fleet_node(dir: &Path, name: &str) -> String {
    ok(cli(dir).arg("init"));
    ok(cli(dir).args(["sandbox", "up"]));
    ok(cli(dir).args(["fleet", "provision", "--target", name]));
    servers(dir)
        .await
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, ip)| ip)
        .expect("the provisioned server")
}
