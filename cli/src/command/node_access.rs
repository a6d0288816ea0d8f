//! The `cluster`/`fleet` commands that start no run: `ssh`, `port-forward`
//! (interactive) and `etcd …` (a read of the registry, or etcdctl on a node).

use super::cluster::Direct;
use super::etcd::{EtcdQuery, EtcdWhat};
use crate::Failure;
use crate::args::{Global, Output};
use serde_json::json;
use tasks::provider::ServerInfo;
use tasks::registry::AppKind;
use tasks::ssh::{LineSink, Remote, Stream};
use workflows::agent::remote;
use workflows::cluster::Cluster;
use workflows::request::targets;

/// The node's server, from the provider.
async fn server(c: &Cluster, target: &str) -> Result<(String, ServerInfo), Failure> {
    let nodes = targets(target)?;
    let [node] = nodes.as_slice() else {
        return Err(Failure::usage("--target names one node here"));
    };
    Ok((node.to_string(), remote::server(c, node.as_str()).await?))
}

/// The node's name and public address, from the provider.
async fn address(c: &Cluster, target: &str) -> Result<(String, String), Failure> {
    let (node, s) = server(c, target).await?;
    Ok((node, s.ipv4.unwrap_or_default()))
}

/// An SSH connection to the node, with its own login if servers.yaml gives one.
async fn connect(c: &Cluster, target: &str) -> Result<(String, ServerInfo, Remote), Failure> {
    let (node, s) = server(c, target).await?;
    let r = remote::connect(c, &node, &s)
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    Ok((node, s, r))
}

/// Runs a command that starts no run (`fleet`: the node is a fleet node).
pub async fn run(global: &Global, cmd: Direct, fleet: bool) -> Result<(), Failure> {
    let c = global.origin().cluster()?;
    match cmd {
        Direct::Ssh { target, command } => ssh(&c, &target, &command).await,
        Direct::PortForward {
            target,
            local_port,
            remote_port,
        } => forward(&c, &target, local_port, remote_port, fleet).await,
        Direct::Etcd(EtcdQuery {
            target: Some(target),
            what: EtcdWhat::Ctl(words),
        }) => etcdctl(&c, &target, &words).await,
        Direct::Etcd(q) => etcd(&c, q, global.output).await,
        Direct::SshClose => ssh_close(&c, global.output).await,
    }
}

async fn ssh_close(c: &Cluster, output: Output) -> Result<(), Failure> {
    let kept = workflows::node::kept_connections(&c.dir);
    let closed = kept.close_all().await.map_err(|e| {
        Failure::other(format!(
            "closing the SSH connections in {}: {e}",
            kept.dir.display()
        ))
    })?;
    match output {
        Output::Json => println!("{}", json!({ "closed": closed })),
        Output::Text => println!("closed {closed} SSH connection(s) kept for this cluster"),
    }
    Ok(())
}

async fn ssh(c: &Cluster, target: &str, command: &[String]) -> Result<(), Failure> {
    let (_, s) = server(c, target).await?;
    let ip = s.ipv4.clone().unwrap_or_default();
    // The server's own login (servers.yaml), else the cluster's key as root.
    let (key, user) = match s.login {
        Some(l) => (l.key, l.user),
        None => (c.ssh_key().private, "root".to_string()),
    };
    let status = std::process::Command::new("ssh")
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            c.dir.join("ssh/known_hosts").display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg(format!("{user}@{ip}"))
        .args(command)
        .status()
        .map_err(|e| Failure::other(format!("ssh: {e}")))?;
    match status.code() {
        Some(0) => Ok(()),
        _ => Err(Failure::other(format!(
            "ssh to {target} exited with {status}"
        ))),
    }
}

/// Forwards `local` to `remote` on the node: on its overlay address in
/// the cluster (as the Dart tool does), on its loopback for a fleet node.
async fn forward(
    c: &Cluster,
    target: &str,
    local: u16,
    remote: u16,
    fleet: bool,
) -> Result<(), Failure> {
    let (node, s, r) = connect(c, target).await?;
    let host: std::net::IpAddr = if fleet {
        [127, 0, 0, 1].into()
    } else {
        let ip = s.ipv4.clone().unwrap_or_default();
        let reg = registry(c, None).await?;
        let overlay = reg
            .overlay_ip(&ip)
            .await
            .map_err(|e| Failure::Other(e.into()))?
            .ok_or_else(|| {
                Failure::usage(format!(
                    "{node} has no overlay address (only initialised cluster and ingress nodes have one)"
                ))
            })?;
        overlay
            .parse()
            .map_err(|e| Failure::other(format!("overlay address {overlay}: {e}")))?
    };
    let from = std::net::SocketAddr::from(([127, 0, 0, 1], local));
    let to = std::net::SocketAddr::new(host, remote);
    r.forward(from, to)
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    eprintln!("forwarding {from} → {node}:{to} (Ctrl-C stops)");
    crate::signal::stop_requested().await;
    let _ = r.close().await;
    Ok(())
}

/// The registry: through `target`'s etcd when one is named, else every control node's.
async fn registry(c: &Cluster, target: Option<&str>) -> Result<tasks::registry::Registry, Failure> {
    c.provider()?;
    let i = workflows::node::NodesInput::of(c);
    let reg = match target {
        Some(t) => {
            let (_, ip) = address(c, t).await?;
            workflows::node::open_registry_at(&i, &[format!("https://{ip}:2379")]).await
        }
        None => workflows::node::open_registry(&i).await,
    };
    reg.map_err(|e| Failure::other(e.message))
}

/// Prints a remote command's output: stdout here on stdout, stderr on stderr.
struct Print;

impl LineSink for Print {
    fn line(&self, stream: Stream, line: &str) {
        match stream {
            Stream::Stdout => println!("{line}"),
            Stream::Stderr => eprintln!("{line}"),
        }
    }
}

/// `etcd ctl WORDS…`: etcdctl on the node with its own client certificate,
/// against its etcd; the words joined with spaces, read by its shell (as the
/// Dart tool runs them).
async fn etcdctl(c: &Cluster, target: &str, words: &[String]) -> Result<(), Failure> {
    let (node, s, r) = connect(c, target).await?;
    let ip = s.ipv4.unwrap_or_default();
    let script = remote::etcdctl_script(&ip, &words.join(" "));
    let result = r.run("sh -s", Some(script.as_bytes()), &Print, None).await;
    let _ = r.close().await;
    match result {
        Ok(_) => Ok(()),
        Err(tasks::ssh::SshError::Exit { code, .. }) => Err(Failure::other(format!(
            "etcdctl on {node} exited with {code}"
        ))),
        Err(e) => Err(Failure::Other(e.into())),
    }
}

async fn etcd(c: &Cluster, q: EtcdQuery, output: Output) -> Result<(), Failure> {
    let what = q.what;
    let reg = registry(c, q.target.as_deref()).await?;
    let err = |e: tasks::registry::RegistryError| Failure::Other(e.into());
    let json = output == Output::Json;
    match what {
        EtcdWhat::Nodes => {
            let nodes = reg.nodes().await.map_err(err)?;
            if json {
                println!("{}", json!(nodes));
            } else {
                println!("{:<14} {:<16} SERVICES", "NODE", "ADDRESS");
                for n in nodes {
                    println!("{:<14} {:<16} {}", n.name, n.ipv4, n.services.join(","));
                }
            }
        }
        EtcdWhat::Network => {
            let subnets = reg.overlay().await.map_err(err)?;
            if json {
                let rows: Vec<_> = subnets
                    .iter()
                    .map(|s| json!({"subnet": s.subnet, "public_ip": s.public_ip}))
                    .collect();
                println!("{}", json!(rows));
            } else {
                println!("{:<18} PUBLIC IP", "SUBNET");
                for s in subnets {
                    println!("{:<18} {}", s.subnet, s.public_ip);
                }
            }
        }
        EtcdWhat::Ctl(_) => return Err(Failure::usage("etcd ctl: give --target")),
        EtcdWhat::Services | EtcdWhat::Backends | EtcdWhat::Frontends => {
            let kind = match what {
                EtcdWhat::Services => AppKind::Service,
                EtcdWhat::Backends => AppKind::Backend,
                _ => AppKind::Frontend,
            };
            let apps = reg.apps(kind).await.map_err(err)?;
            if json {
                let rows: serde_json::Map<String, serde_json::Value> = apps
                    .iter()
                    .map(|(name, a)| {
                        (
                            name.clone(),
                            json!({"meta_data": a.meta, "instances": a.instances}),
                        )
                    })
                    .collect();
                println!("{}", serde_json::Value::Object(rows));
            } else {
                println!("{:<16} {:<6} INSTANCES", "APP", "PORT");
                for (name, a) in apps {
                    let port = a
                        .meta
                        .as_ref()
                        .and_then(|m| m.publish.port)
                        .map_or_else(|| "-".into(), |p| p.to_string());
                    let inst: Vec<String> = a
                        .instances
                        .values()
                        .map(|i| match i.port {
                            Some(p) => format!("{}@{}:{p}", i.node, i.ipv4),
                            None => format!("{}@{}", i.node, i.ipv4),
                        })
                        .collect();
                    println!("{name:<16} {port:<6} {}", inst.join(" "));
                }
            }
        }
    }
    Ok(())
}
