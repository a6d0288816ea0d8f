//! [`Etcd`]: a real single-member etcd (Debian `etcd-server`), plain or with mutual TLS.

use crate::process::{free_port, guarded};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// PEM files for an etcd that requires client certificates.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// The CA that signs client certificates (and the server's).
    pub ca_pem: String,
    /// The server certificate; its SANs must cover the listen address.
    pub cert_pem: String,
    /// The server's private key.
    pub key_pem: String,
}

/// A running etcd in a temp directory; stopped on drop.
pub struct Etcd {
    child: Child,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// A plain (no TLS) etcd on 127.0.0.1, for unit tests.
    pub fn start_plain() -> std::io::Result<Etcd> {
        Self::start(IpAddr::V4(Ipv4Addr::LOCALHOST), None)
    }

    /// An etcd on `ip` that serves clients over TLS and requires a certificate signed by the CA.
    pub fn start_tls(ip: Ipv4Addr, tls: &EtcdTls) -> std::io::Result<Etcd> {
        Self::start(IpAddr::V4(ip), Some(tls))
    }

    fn start(ip: IpAddr, tls: Option<&EtcdTls>) -> std::io::Result<Etcd> {
        if !ip.is_loopback() {
            return Err(std::io::Error::other(
                "etcd for tests listens on loopback only",
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("nix-infra-etcd-")
            .tempdir()?;
        let (client, peer) = (free_port()?, free_port()?);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://{ip}:{client}");
        let mut cmd = guarded(Path::new("etcd"), None);
        cmd.args(["--name", "test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args(["--listen-peer-urls", &format!("http://{ip}:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{ip}:{peer}"),
            ])
            .args(["--initial-cluster", &format!("test=http://{ip}:{peer}")])
            .args(["--log-outputs", "stderr"]);
        if let Some(tls) = tls {
            let write = |name: &str, text: &str| -> std::io::Result<std::path::PathBuf> {
                let p = dir.path().join(name);
                std::fs::write(&p, text)?;
                Ok(p)
            };
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(write("ca.pem", &tls.ca_pem)?)
                .arg("--cert-file")
                .arg(write("server.pem", &tls.cert_pem)?)
                .arg("--key-file")
                .arg(write("server-key.pem", &tls.key_pem)?);
        }
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let mut child = cmd
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = SocketAddr::new(ip, client);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "etcd exited ({status}): {log}"
                )));
            }
            let log = std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default();
            if log.contains("ready to serve client requests")
                && TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "etcd did not become ready: {log}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Etcd {
            child,
            endpoint,
            dir,
        })
    }

    /// The client URL, e.g. `https://127.0.10.1:23791`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// etcd's log, for diagnosing a failed test.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Etcd {
    /// The server's pid, to check it is gone after drop.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
