//! [`Node`]: a stand-in server: an sshd on its own loopback address, in its own namespaces.
//!
//! Each node runs under `unshare` with private mount, UTS and PID namespaces:
//! its own hostname, and its own `/etc/nixos` (empty), `/root`, `/run/keys`,
//! `/run/containers`, `/var/lib` and `/usr/local/sbin` (bind mounts of
//! folders in the node's temp directory), and its own boot id.
//!
//! A node starts as Hetzner's stock image does: bash, curl, tar, systemd's
//! `systemctl`/`journalctl`/`reboot` ([`IMAGE_STANDINS`], first on root's PATH), and no
//! `nixos-*` command. NixOS's tools arrive only through the installer the
//! cloud serves ([`crate::installer`]), and only after the reboot that
//! follows it. `systemd-creds` is the real one.
//!
//! **Reboot.** The namespace's init is a small shell loop: it "boots" (what an
//! installer staged becomes the system, the boot id changes) and starts sshd;
//! on SIGHUP, which the `reboot` stand-in sends it, it lets the old system
//! run on for [`NodeSpec::shutdown_delay`] (as systemd takes a while to stop
//! units: sshd still answers, sessions stay open; none by default), kills
//! every other process of the node (`kill -KILL -1` from a PID namespace's
//! init reaches exactly that namespace), waits for sshd to be gone and boots
//! again: same address, same host key (unless
//! [`Node::change_host_key_on_next_boot`]). The old sshd is reaped before the
//! new one binds.
//!
//! The node's sshd runs with `-r` (no re-exec per connection): on a real
//! server that CPU is the server's, here it is the same two cores the client
//! runs on, and a benchmark of 20 nodes would measure the stand-in's overhead.
//!
//! Killing the `unshare` process ends the PID namespace, which takes every
//! process of the node (sshd and its sessions) with it; the mounts vanish
//! with the mount namespace. Needs root (mount namespaces, port 22).

use std::net::{Ipv4Addr, SocketAddr};
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
    /// Time a reboot leaves the old system running before it goes down.
    pub shutdown_delay: Duration,
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

/// What the image brings in `/usr/local/sbin`: stand-ins for systemd's
/// `systemctl` (records unit actions and journals them), `journalctl`
/// (reads that journal) and `reboot`: (name, script).
pub const IMAGE_STANDINS: [(&str, &str); 3] = [
    ("systemctl", include_str!("standins/systemctl")),
    ("journalctl", include_str!("standins/journalctl")),
    ("reboot", include_str!("standins/reboot")),
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
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", spec.name))
            .tempdir()?;
        let d = dir.path();
        write(&d.join("owner"), &std::process::id().to_string(), 0o644)?;
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
        for (name, script) in IMAGE_STANDINS {
            write(&d.join("bin").join(name), script, 0o755)?;
        }
        // Bind-mounted over the node's /proc/sys/kernel/random/boot_id; each boot writes it.
        write(&d.join("boot_id"), "", 0o644)?;
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
        let script = init_script(&spec.name, d, spec.shutdown_delay);
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
            if listening(addr) {
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

    /// Where the node can be reached and inspected (its host key as it is now).
    pub fn info(&self) -> NodeInfo {
        let key = self._dir.path().join("ssh/ssh_host_ed25519_key.pub");
        let host_key = std::fs::read_to_string(key)
            .map(|k| k.trim().to_string())
            .unwrap_or_else(|_| self.info.host_key.clone());
        NodeInfo {
            host_key,
            ..self.info.clone()
        }
    }

    /// Makes the node come back from its next reboot with a new host key: a
    /// reinstall that lost the old one, or another machine on its address.
    pub fn change_host_key_on_next_boot(&self) -> std::io::Result<()> {
        std::fs::write(self._dir.path().join("ssh/rekey"), "")
    }
}

/// How a node's state folder in the temp dir is named: this, its name, a random part.
const DIR_PREFIX: &str = "nix-infra-node-";

/// Removes the state nodes of dead processes left in the temp dir. A node's
/// state goes with the node when its process drops it; a process killed
/// outright takes its nodes along (their parent-death signal) but cannot
/// remove their state, up to 125 MB each (etcd preallocates its WAL).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let path = entry.path();
        // Only a folder of this user that nobody else can write: what is in
        // it is what a node of ours put there (the temp dir is everyone's).
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        let ours = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.uid() == me);
        let folder_ok = std::fs::symlink_metadata(&path)
            .is_ok_and(|m| m.is_dir() && m.uid() == me && m.mode() & 0o022 == 0);
        let owner_file = path.join("owner");
        let file_ok = ours(&owner_file)
            && std::fs::symlink_metadata(&owner_file).is_ok_and(|m| m.is_file() && m.len() < 32);
        // A folder without an owner is being set up, or not a node's.
        let Some(owner) = (folder_ok && file_ok)
            .then(|| std::fs::read_to_string(&owner_file).ok())
            .flatten()
            .and_then(|o| o.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if !running(owner) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// The script the node's namespaces run as their init (see the module docs).
fn init_script(name: &str, d: &Path, shutdown: Duration) -> String {
    let q = |p: &str| shell_quote(&d.join(p));
    let key = q("ssh/ssh_host_ed25519_key");
    format!(
        "set -e\nhostname {name}\n\
         mount --bind {etc} /etc/nixos\nmount --bind {root} /root\n\
         mount --bind {keys} /run/keys\nmount --bind {lib} /var/lib\n\
         mount --bind {containers} /run/containers\n\
         mount --bind {bin} /usr/local/sbin\n\
         mount --bind {boot_id} /proc/sys/kernel/random/boot_id\n\
         set +e\nreboot=0\ntrap 'reboot=1' HUP\n\
         while :; do\n\
           if [ -e /var/lib/nixos-standin/lustrate ]; then\n\
             cp /var/lib/nixos-standin/system/bin/* /usr/local/sbin/ && rm -f /var/lib/nixos-standin/lustrate\n\
           fi\n\
           if [ -e {rekey} ]; then\n\
             rm -f {key} {key}.pub && ssh-keygen -q -t ed25519 -N '' -C {name} -f {key} && rm -f {rekey}\n\
           fi\n\
           read -r uuid < /proc/sys/kernel/random/uuid && echo \"$uuid\" > {boot_id}\n\
           /usr/sbin/sshd -D -e -r -f {cfg} &\n\
           sshd=$!\n\
           while [ \"$reboot\" = 0 ]; do\n\
             wait \"$sshd\"\n\
             [ \"$reboot\" = 0 ] && ! kill -0 \"$sshd\" 2>/dev/null && exit 0\n\
           done\n\
           reboot=0\n\
           {shutdown}\
           kill -KILL -1\n\
           wait \"$sshd\"\n\
         done\n",
        name = shell_quote(Path::new(name)),
        etc = q("etc-nixos"),
        root = q("root"),
        keys = q("run-keys"),
        containers = q("run-containers"),
        lib = q("var-lib"),
        bin = q("bin"),
        boot_id = q("boot_id"),
        rekey = q("ssh/rekey"),
        cfg = q("ssh/sshd_config"),
        shutdown = match shutdown.as_millis() {
            0 => String::new(),
            ms => format!("sleep {}.{:03}\n", ms / 1000, ms % 1000),
        },
    )
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

/// Whether a socket listens on `addr`, read from the kernel's table rather than
/// by connecting: a connection would cost sshd a fork and a re-exec, which the
/// node's CPU (here, the same two cores as the client) pays for nothing.
fn listening(addr: SocketAddr) -> bool {
    let SocketAddr::V4(v4) = addr else {
        return false;
    };
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|line| listens_on(line, v4))
}

/// Whether one line of `/proc/net/tcp` is a listening socket bound to `addr`.
fn listens_on(line: &str, addr: std::net::SocketAddrV4) -> bool {
    let mut fields = line.split_whitespace().skip(1);
    let (Some(local), Some(_remote), Some(state)) = (fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let Some((ip, port)) = local.split_once(':') else {
        return false;
    };
    // The address is the in-memory (network-order) word printed as a native u32.
    let ip = u32::from_str_radix(ip, 16).map(|v| Ipv4Addr::from(v.to_ne_bytes()));
    let port = u16::from_str_radix(port, 16);
    state == "0A" && ip == Ok(*addr.ip()) && port == Ok(addr.port())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_seen_without_connecting_to_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(listening(addr));
        let other = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), addr.port()));
        assert!(!listening(other), "another address on the same port");
        drop(listener);
        assert!(!listening(addr));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn only_the_listen_state_counts() {
        let addr = std::net::SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 22);
        let listen =
            "   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1";
        let established =
            "   1: 0100007F:0016 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 0 0 2";
        assert!(listens_on(listen, addr));
        assert!(!listens_on(established, addr));
        assert!(!listens_on("garbage", addr));
    }
}
