//! Servers of the test cloud boot real sshd nodes: log in, isolation, the
//! stock image, the installer stand-in and reboots, NixOS stand-ins, teardown.

use sandbox::{CloudConfig, NodeInfo, TestCloud};
use serde_json::{Value, json};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Client {
    http: reqwest::Client,
    cloud: TestCloud,
    key: PathBuf,
    known_hosts: PathBuf,
    _dir: tempfile::TempDir,
}

impl Client {
    async fn start() -> Client {
        let cloud = TestCloud::start(CloudConfig {
            nodes: true,
            action_delay: Duration::from_millis(50),
            boot_delay: Duration::from_millis(100),
            ..CloudConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(ok.success());
        let c = Client {
            http: reqwest::Client::new(),
            cloud,
            key: key.clone(),
            known_hosts: dir.path().join("known_hosts"),
            _dir: dir,
        };
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let r = c
            .call(
                reqwest::Method::POST,
                "/ssh_keys",
                json!({"name": "me", "public_key": public.trim()}),
            )
            .await;
        assert_eq!(r.0, 201, "{}", r.1);
        c
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.cloud.endpoint()))
            .bearer_auth(self.cloud.token());
        if !body.is_null() {
            rb = rb.json(&body);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates a server and waits until the API says it is running (its sshd answers).
    async fn server(&self, name: &str) -> (i64, NodeInfo) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/servers",
                json!({
                    "name": name,
                    "server_type": "cx22",
                    "image": "debian-12",
                    "ssh_keys": ["me"],
                    "user_data": "#cloud-config\n"
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let id = body["server"]["id"].as_i64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, s) = self
                .call(reqwest::Method::GET, &format!("/servers/{id}"), Value::Null)
                .await;
            if s["server"]["status"] == "running" {
                let node = self.cloud.node(name).expect("a running server has a node");
                assert_eq!(s["server"]["public_net"]["ipv4"]["ip"], node.ip.to_string());
                // Trust exactly this node's host key: strict checking stays on.
                let line = format!("{} {}\n", node.ip, node.host_key);
                let mut known = std::fs::read_to_string(&self.known_hosts).unwrap_or_default();
                known.push_str(&line);
                std::fs::write(&self.known_hosts, known).unwrap();
                return (id, node);
            }
            assert!(Instant::now() < deadline, "server {name} never came up");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn ssh(&self, node: &NodeInfo, command: &str, stdin: Option<&str>) -> Output {
        let mut child = Command::new("ssh")
            .arg("-i")
            .arg(&self.key)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
            ])
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg(format!("root@{}", node.ip))
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                pipe.write_all(text.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    }
}

impl Client {
    /// The node's boot id, if it answers.
    fn boot_id(&self, node: &NodeInfo) -> Option<String> {
        let out = self.ssh(node, "cat /proc/sys/kernel/random/boot_id", None);
        out.status
            .success()
            .then(|| text(&out.stdout).trim().to_string())
    }

    /// Waits until the node answers (strict host key checking) with a boot id other than `old`.
    async fn wait_for_boot(&self, node: &NodeInfo, old: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(id) = self.boot_id(node).filter(|id| id != old) {
                return id;
            }
            assert!(Instant::now() < deadline, "{} never came back", node.name);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `systemctl reboot` on the node; returns once it answers with a new boot id.
    async fn reboot(&self, node: &NodeInfo) -> String {
        let old = self
            .boot_id(node)
            .expect("the node answers before its reboot");
        // The session may end before the command answers: that is the reboot.
        let _ = self.ssh(node, "systemctl reboot", None);
        self.wait_for_boot(node, &old).await
    }

    /// Fetches the cloud's installer on the node, checks its hash there and runs it.
    fn install(&self, node: &NodeInfo, env: &str) -> Output {
        let cmd = format!(
            "curl -fsSL {url} -o /root/nixos-infect && echo '{sha}  /root/nixos-infect' | sha256sum -c - && {env} bash /root/nixos-infect",
            url = self.cloud.installer_url(),
            sha = self.cloud.installer_sha256(),
        );
        self.ssh(node, &cmd, None)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booted_node_is_its_own_machine() {
    let c = Client::start().await;
    let (_, n1) = c.server("node1").await;
    let (_, n2) = c.server("node2").await;
    assert_ne!(n1.ip, n2.ip);

    let out = c.ssh(
        &n1,
        "hostname; id -u; echo hello > /etc/nixos/marker; ls /etc/nixos",
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "node1\n0\nmarker\n");
    // The node's /etc/nixos is its own: the host folder behind it has the file,
    // the other node and the host itself do not.
    assert_eq!(
        std::fs::read_to_string(n1.etc_nixos.join("marker")).unwrap(),
        "hello\n"
    );
    assert!(!Path::new("/etc/nixos/marker").exists());
    let out = c.ssh(
        &n2,
        "hostname; ls -A /etc/nixos; cat /var/lib/cloud/user-data",
        None,
    );
    assert_eq!(text(&out.stdout), "node2\n#cloud-config\n");

    // A wrong host key is refused (strict checking, as nix-infra uses it).
    let forged = format!("{} {}\n", n2.ip, n1.host_key);
    std::fs::write(&c.known_hosts, forged).unwrap();
    let out = c.ssh(&n2, "true", None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nixos_stand_ins_check_configs_and_record_generations() {
    let c = Client::start().await;
    let (_, node) = c.server("builder").await;

    let out = c.install(
        &node,
        "NO_REBOOT=1 PROVIDER=hetznercloud NIX_CHANNEL=nixos-24.11",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("runs from the next boot"));
    let out = c.ssh(&node, "nixos-version; ls /etc/nixos", None);
    assert_eq!(
        text(&out.stdout),
        "configuration.nix\nhardware-configuration.nix\nnetworking.nix\n",
        "the installer wrote the configuration; NixOS waits for the reboot"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("nixos-version") && stderr.contains("not found"),
        "{stderr}"
    );
    let config = std::fs::read_to_string(node.etc_nixos.join("configuration.nix")).unwrap();
    assert!(config.contains("./networking.nix") && config.contains("ssh-ed25519 "));
    let network = std::fs::read_to_string(node.etc_nixos.join("networking.nix")).unwrap();
    assert!(
        network.contains(&format!("address = \"{}\"", node.ip)),
        "{network}"
    );
    c.reboot(&node).await;
    let out = c.ssh(&node, "nixos-version", None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "24.11.20241201.0000000 (Vicuna)\n");

    let bad = "{ config, ... }: {\n  services.openssh.enable = true\n}\n";
    let out = c.ssh(
        &node,
        "cat > /etc/nixos/configuration.nix && nixos-rebuild switch",
        Some(bad),
    );
    assert!(
        !out.status.success(),
        "a syntax error must fail the rebuild"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("syntax error") && stderr.contains("/etc/nixos/configuration.nix:3"),
        "{stderr}"
    );

    let good = "{ config, ... }: {\n  imports = [ ./hardware-configuration.nix ];\n  services.openssh.enable = true;\n}\n";
    let out = c.ssh(
        &node,
        "cat > /etc/nixos/configuration.nix && nixos-rebuild switch",
        Some(good),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("generation 2"));
    let out = c.ssh(
        &node,
        "nixos-rebuild switch --rollback && systemctl restart confd && nix-collect-garbage -d",
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lib = &node.var_lib;
    assert_eq!(
        std::fs::read_to_string(lib.join("nixos-standin/current")).unwrap(),
        "1\n"
    );
    assert_eq!(
        std::fs::read_to_string(lib.join("nixos-standin/systemctl.log")).unwrap(),
        "restart confd\n"
    );

    // The real systemd-creds, keyed per node.
    let out = c.ssh(
        &node,
        "mkdir -p /root/secrets && systemd-creds encrypt --with-key=host --name=db - /root/secrets/db && systemd-creds decrypt --name=db /root/secrets/db -",
        Some("s3cret"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "s3cret");
    assert!(
        lib.join("systemd/credential.secret").exists(),
        "the credential key is the node's own"
    );
    let stored = std::fs::read(node.root.join("secrets/db")).unwrap();
    assert!(!stored.windows(6).any(|w| w == b"s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_server_stops_its_node() {
    let c = Client::start().await;
    let (id, node) = c.server("doomed").await;
    let session = c.ssh(&node, "echo up", None);
    assert_eq!(text(&session.stdout), "up\n");
    assert!(alive(node.pid));
    let (status, _) = c
        .call(
            reqwest::Method::DELETE,
            &format!("/servers/{id}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    assert!(!alive(node.pid), "the node's processes are gone");
    assert!(
        TcpStream::connect_timeout(&SocketAddr::from((node.ip, 22)), Duration::from_millis(200))
            .is_err()
    );
    assert!(!node.etc_nixos.exists(), "the node's state is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_server_is_the_stock_image() {
    let c = Client::start().await;
    let (_, node) = c.server("fresh").await;
    let out = c.ssh(
        &node,
        "command -v bash curl tar sha256sum systemctl; ls -A /etc/nixos; \
         test -e /etc/nixos/configuration.nix || echo no-config",
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(
        lines.len(),
        6,
        "five tools, then an empty /etc/nixos: {lines:?}"
    );
    assert_eq!(lines[5], "no-config");
    for tool in [
        "nixos-version",
        "nixos-rebuild",
        "nixos-infect",
        "nixos-generate-config",
    ] {
        let out = c.ssh(&node, &format!("command -v {tool}"), None);
        assert!(
            !out.status.success(),
            "{tool} on a stock image: {}",
            text(&out.stdout)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installer_is_served_with_its_hash_and_reboots_unless_told_not_to() {
    use sha2::Digest;
    let c = Client::start().await;
    let url = c.cloud.installer_url();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/installer/nixos-infect"));
    // A raw file: no token needed.
    let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    let sha: String = sha2::Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha, c.cloud.installer_sha256());
    assert!(
        c.cloud
            .env_lines()
            .contains(&format!("NIXOS_INFECT_SHA256={sha}\n"))
    );

    let (_, node) = c.server("selfboot").await;
    let out = c.ssh(
        &node,
        "setsid sleep 600 > /dev/null 2>&1 < /dev/null & echo started",
        None,
    );
    assert_eq!(text(&out.stdout), "started\n");
    let before = c.boot_id(&node).unwrap();
    // Without NO_REBOOT the installer ends with a reboot, as the real one does.
    let _ = c.install(&node, "PROVIDER=hetznercloud NIX_CHANNEL=nixos-25.05");
    c.wait_for_boot(&node, &before).await;
    let out = c.ssh(
        &node,
        "nixos-version; pgrep -x sleep || echo no-sleep",
        None,
    );
    assert_eq!(
        text(&out.stdout),
        "25.05.20241201.0000000 (Warbler)\nno-sleep\n",
        "the channel asked for; the reboot ended every process"
    );
    assert_eq!(
        c.cloud.node("selfboot").unwrap().ip,
        node.ip,
        "same address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_keeps_the_host_key_unless_the_node_loses_it() {
    let c = Client::start().await;
    let (_, node) = c.server("rekeyed").await;
    let first = c.boot_id(&node).unwrap();
    // Strict checking against the key pinned at creation: the reboot kept it.
    let second = c.reboot(&node).await;
    assert_ne!(first, second);
    assert_eq!(c.cloud.node("rekeyed").unwrap().host_key, node.host_key);

    assert!(c.cloud.change_host_key_on_reboot("rekeyed").unwrap());
    let _ = c.ssh(&node, "systemctl reboot", None);
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let out = c.ssh(&node, "true", None);
        let stderr = text(&out.stderr);
        if stderr.contains("HOST IDENTIFICATION HAS CHANGED") {
            break stderr;
        }
        assert!(
            Instant::now() < deadline,
            "the new key was never presented: {stderr}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(!refused.is_empty());
    assert_ne!(c.cloud.node("rekeyed").unwrap().host_key, node.host_key);
}
