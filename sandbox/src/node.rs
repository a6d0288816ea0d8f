//! [`Node`]: a stand-in NixOS machine: an sshd on its own loopback address, in its own namespaces.
//!
//! Each node runs `sshd` under `unshare` with private mount, UTS and PID
//! namespaces: its own hostname, and its own `/etc/nixos`, `/root`,
//! `/run/keys`, `/run/containers` and `/var/lib` (bind mounts of folders in the node's temp
//! directory). Stand-ins for NixOS's own tools sit in `/usr/local/sbin`,
//! first on root's PATH; see [`STANDINS`]. `systemd-creds` is the real one.
//!
//! Killing the `unshare` process ends the PID namespace, which takes every
//! process of the node (sshd and its sessions) with it; the mounts vanish
//! with the mount namespace. Needs root (mount namespaces, port 22).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to boot.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Hostname.
    pub name: String,
    /// Loopback address sshd listens on (port 22).
    pub ip: Ipv4Addr,
    /// OpenSSH public keys allowed to log in as root.
    pub authorized_keys: Vec<String>,
    /// Time the "boot" takes before sshd starts.
    pub boot_delay: Duration,
    /// cloud-init user data, left at `/var/lib/cloud/user-data`.
    pub user_data: Option<String>,
}

/// Where a booted node can be reached and inspected.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Hostname.
    pub name: String,
    /// Its address; sshd is on port 22.
    pub ip: Ipv4Addr,
    /// The node's SSH host public key line.
    pub host_key: String,
    /// The host folder behind the node's `/etc/nixos`.
    pub etc_nixos: PathBuf,
    /// The host folder behind the node's `/var/lib`.
    pub var_lib: PathBuf,
    /// The host folder behind the node's `/root`.
    pub root: PathBuf,
    /// The pid of the process that holds the node's namespaces.
    pub pid: u32,
}

/// A running node; stopped, with all its processes and state, on drop.
pub struct Node {
    info: NodeInfo,
    child: Child,
    _dir: tempfile::TempDir,
}

/// The stand-ins for NixOS tools: (name, script).
pub const STANDINS: [(&str, &str); 5] = [
    ("nixos-rebuild", include_str!("standins/nixos-rebuild")),
    ("nixos-infect", include_str!("standins/nixos-infect")),
    ("nixos-version", include_str!("standins/nixos-version")),
    (
        "nix-collect-garbage",
        include_str!("standins/nix-collect-garbage"),
    ),
    ("systemctl", include_str!("standins/systemctl")),
];

fn write(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

impl Node {
    /// Boots a node and waits until its sshd accepts connections.
    pub async fn boot(spec: NodeSpec) -> std::io::Result<Node> {
        tokio::time::sleep(spec.boot_delay).await;
        let dir = tempfile::Builder::new()
            .prefix(&format!("nix-infra-node-{}-", spec.name))
            .tempdir()?;
        let d = dir.path();
        for sub in [
            "etc-nixos",
            "root/.ssh",
            "run-keys",
            "run-containers",
            "var-lib",
            "bin",
            "ssh",
        ] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        write(
            &d.join("root/.ssh/authorized_keys"),
            &(spec.authorized_keys.join("\n") + "\n"),
            0o600,
        )?;
        if let Some(data) = &spec.user_data {
            std::fs::create_dir_all(d.join("var-lib/cloud"))?;
            write(&d.join("var-lib/cloud/user-data"), data, 0o600)?;
        }
        for (name, script) in STANDINS {
            write(&d.join("bin").join(name), script, 0o755)?;
        }
        let key = d.join("ssh/ssh_host_ed25519_key");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", &spec.name, "-f"])
            .arg(&key)
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other("ssh-keygen failed"));
        }
        let host_key = std::fs::read_to_string(key.with_extension("pub"))?
            .trim()
            .to_string();
        let config = format!(
            "ListenAddress {ip}:22\nHostKey {key}\nPidFile none\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nAuthorizedKeysFile /root/.ssh/authorized_keys\n\
             Subsystem sftp internal-sftp\nLogLevel ERROR\nMaxStartups 100\nMaxSessions 100\n\
             SetEnv STORAGE_DRIVER=vfs\n",
            ip = spec.ip,
            key = key.display()
        );
        write(&d.join("ssh/sshd_config"), &config, 0o600)?;
        // Mount points must exist on the host; they stay empty there.
        for p in ["/etc/nixos", "/run/keys", "/run/sshd", "/run/containers"] {
            std::fs::create_dir_all(p)?;
        }
        let q = |p: &str| shell_quote(&d.join(p));
        let script = format!(
            "set -e\nhostname {name}\n\
             mount --bind {etc} /etc/nixos\nmount --bind {root} /root\n\
             mount --bind {keys} /run/keys\nmount --bind {lib} /var/lib\n\
             mount --bind {containers} /run/containers\n\
             mount --bind {bin} /usr/local/sbin\n\
             exec /usr/sbin/sshd -D -e -f {cfg}\n",
            name = spec.name,
            etc = q("etc-nixos"),
            root = q("root"),
            keys = q("run-keys"),
            containers = q("run-containers"),
            lib = q("var-lib"),
            bin = q("bin"),
            cfg = q("ssh/sshd_config"),
        );
        let log = std::fs::File::create(d.join("sshd.log"))?;
        let mut child = Command::new("setpriv")
            .args([
                "--pdeathsig",
                "KILL",
                "unshare",
                "--mount",
                "--uts",
                "--pid",
                "--fork",
            ])
            .args([
                "--kill-child",
                "--mount-proc",
                "--propagation",
                "private",
                "sh",
                "-c",
            ])
            .arg(script)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let addr = SocketAddr::from((spec.ip, 22));
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "node {} exited ({status}): {log}",
                    spec.name
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "sshd of node {} did not start",
                    spec.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Node {
            info: NodeInfo {
                name: spec.name,
                ip: spec.ip,
                host_key,
                etc_nixos: d.join("etc-nixos"),
                var_lib: d.join("var-lib"),
                root: d.join("root"),
                pid: child.id(),
            },
            child,
            _dir: dir,
        })
    }

    /// Where the node can be reached and inspected.
    pub fn info(&self) -> NodeInfo {
        self.info.clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // unshare dies, --kill-child takes the namespace's init (sshd), and the
        // kernel then ends every process of the PID namespace. That happens
        // asynchronously, so wait until the init is gone: then its port is closed.
        let pid = self.child.id();
        let inner: Vec<u32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        for p in inner {
            while running(p) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Whether a process exists and is not a zombie.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}
