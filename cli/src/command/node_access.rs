//! The `cluster`/`fleet` commands that start no run: `ssh`, `port-forward`
//! (interactive) and `etcd …` (a read of the registry).

use super::cluster::{ClusterCommand, EtcdWhat};
use crate::Failure;
use crate::args::{Global, Output};
use serde_json::json;
use tasks::registry::AppKind;
use workflows::cluster::Cluster;
use workflows::request::targets;

/// The node's name and public address, from the provider.
async fn address(c: &Cluster, target: &str) -> Result<(String, String), Failure> {
    let nodes = targets(target)?;
    let [node] = nodes.as_slice() else {
        return Err(Failure::usage("--target names one node here"));
    };
    let ip = c
        .servers()
        .await?
        .into_iter()
        .find(|s| s.node() == Some(node.as_str()))
        .and_then(|s| s.ipv4)
        .ok_or_else(|| Failure::usage(format!("no server named {node} in cluster {}", c.name)))?;
    Ok((node.to_string(), ip))
}

/// Runs a command that starts no run.
pub async fn run(global: &Global, cmd: ClusterCommand) -> Result<(), Failure> {
    let c = global.origin().cluster()?;
    match cmd {
        ClusterCommand::Ssh { target, command } => ssh(&c, &target, &command).await,
        ClusterCommand::PortForward {
            target,
            local_port,
            remote_port,
        } => forward(&c, &target, local_port, remote_port).await,
        ClusterCommand::Etcd { what } => etcd(&c, what, global.output).await,
        other => Err(Failure::other(format!("{other:?} starts a run"))),
    }
}

async fn ssh(c: &Cluster, target: &str, command: &[String]) -> Result<(), Failure> {
    let (_, ip) = address(c, target).await?;
    let status = std::process::Command::new("ssh")
        .arg("-i")
        .arg(c.ssh_key().private)
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
        .arg(format!("root@{ip}"))
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

async fn forward(c: &Cluster, target: &str, local: u16, remote: u16) -> Result<(), Failure> {
    let (node, ip) = address(c, target).await?;
    let r = tasks::ssh::Remote::connect(&workflows::node::ssh_config_for(c), &node, &ip)
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    let from = std::net::SocketAddr::from(([127, 0, 0, 1], local));
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], remote));
    r.forward(from, to)
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    eprintln!("forwarding {from} → {node}:{remote} (Ctrl-C stops)");
    crate::signal::stop_requested().await;
    let _ = r.close().await;
    Ok(())
}

async fn etcd(c: &Cluster, what: EtcdWhat, output: Output) -> Result<(), Failure> {
    c.provider()?;
    let reg = workflows::node::open_registry(&workflows::node::NodesInput::of(c))
        .await
        .map_err(|e| Failure::other(e.message))?;
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
