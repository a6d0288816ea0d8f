//! Servers of the test cloud boot real sshd nodes: log in, isolation, NixOS stand-ins, teardown.

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

    let out = c.ssh(&node, "nixos-version", None);
    assert_eq!(
        out.status.code(),
        Some(127),
        "not NixOS before nixos-infect"
    );
    let out = c.ssh(&node, "nixos-infect && nixos-version", None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("(Vicuna)"));

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
