//! The typed [`Request`] a `cluster`/`fleet` command makes, without running
//! it: what `cluster::run` starts, `plan` plans, and the tests compare.

use super::cluster::{ClusterCommand, ServerArgs};
use super::etcd::EtcdQuery;
use crate::Failure;
use crate::args::{ExecArgs, RunArgs};
use workflows::request::{Request, ServerOptions};

/// A command that starts a run: its request and how to execute it.
#[derive(Debug)]
pub struct Started {
    /// The request.
    pub request: Request,
    /// How the run executes.
    pub exec: ExecArgs,
    /// Never ask (`--batch`).
    pub batch: bool,
    /// How long SSH masters stay up for the next process (`cmd --ssh-persist`).
    pub ssh_persist: std::time::Duration,
}

/// A command that starts no run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Direct {
    /// `ssh`: a shell (or a command) on one node.
    Ssh {
        /// The node.
        target: String,
        /// A command instead of a shell.
        command: Vec<String>,
    },
    /// `port-forward`: a local port to a port on the node.
    PortForward {
        /// The node.
        target: String,
        /// On 127.0.0.1 here.
        local_port: u16,
        /// On the node.
        remote_port: u16,
    },
    /// `etcd …`.
    Etcd(EtcdQuery),
    /// `ssh-close`: the SSH masters `cmd` kept.
    SshClose,
}

impl From<ServerArgs> for ServerOptions {
    fn from(s: ServerArgs) -> Self {
        ServerOptions {
            server_type: s.server_type,
            image: s.image,
            location: s.location,
            nixos_version: s.nixos_version,
            placement_group: s.placement_group,
        }
    }
}

fn started(request: Request, run: RunArgs) -> Started {
    Started {
        request,
        exec: run.exec,
        batch: run.batch,
        ssh_persist: std::time::Duration::ZERO,
    }
}

/// The request a command makes (or, for one that starts no run, what it
/// does), refusing what nix-infra does not do.
pub fn request(cmd: ClusterCommand, fleet: bool) -> Result<Result<Started, Direct>, Failure> {
    use ClusterCommand as C;
    Ok(Ok(match cmd {
        C::Up {
            ctrl,
            workers,
            ingress,
            server,
            run,
        } => {
            let server = server.into();
            let r = Request::Up {
                ctrl,
                workers,
                ingress,
                server,
                fleet,
            };
            started(r, run)
        }
        C::Provision {
            target,
            role,
            mutation,
            server,
            run,
            ..
        } => {
            if let Some(m) = mutation {
                return Err(Failure::usage(format!(
                    "--mutation {m}: not supported; nix-infra installs NixOS with its pinned \
                     nixos-infect (or NIXOS_INFECT_URL with NIXOS_INFECT_SHA256)"
                )));
            }
            let server = server.into();
            let r = Request::Provision {
                target,
                role,
                fleet,
                server,
            };
            started(r, run)
        }
        C::Adopt {
            target,
            role,
            ctrl,
            run,
        } => {
            let r = Request::Adopt {
                target,
                role,
                fleet,
                ctrl_nodes: ctrl.ctrl_nodes,
            };
            started(r, run)
        }
        C::InitCtrl { target, ctrl, run } => {
            let r = Request::InitCtrl {
                target,
                fleet,
                nixos_version: ctrl.nixos_version,
                cluster_uuid: ctrl.cluster_uuid,
            };
            started(r, run)
        }
        C::UpdateCtrl {
            target,
            ctrl,
            rebuild,
            run,
        } => {
            let r = Request::UpdateCtrl {
                target,
                fleet,
                nixos_version: ctrl.nixos_version,
                cluster_uuid: ctrl.cluster_uuid,
                rebuild: rebuild.rebuilds(),
            };
            started(r, run)
        }
        C::InitNode {
            target,
            groups,
            node,
            run,
        } => {
            let r = Request::InitNode {
                target,
                groups,
                fleet,
                ctrl_nodes: node.ctrl.ctrl_nodes,
                node_type: node.node_module,
                nixos_version: node.nixos_version,
            };
            started(r, run)
        }
        C::UpdateNode {
            target,
            node,
            rebuild,
            run,
        } => {
            let r = Request::UpdateNode {
                target,
                fleet,
                ctrl_nodes: node.ctrl.ctrl_nodes,
                node_type: node.node_module,
                nixos_version: node.nixos_version,
                rebuild: rebuild.rebuilds(),
            };
            started(r, run)
        }
        C::DeployApps {
            target,
            test_dir,
            rebuild,
            run,
        } => {
            let r = Request::DeployApps {
                target,
                fleet,
                rebuild: rebuild.rebuilds(),
                test_dir,
            };
            started(r, run)
        }
        C::Unregister { target, run } => started(Request::Unregister { target, fleet }, run),
        C::Destroy { target, ctrl, run } => {
            let r = Request::Destroy {
                target,
                fleet,
                ctrl_nodes: ctrl.ctrl_nodes,
            };
            started(r, run)
        }
        C::Cmd {
            target,
            env_vars,
            ssh_persist,
            command,
            run,
        } => {
            let r = Request::Cmd {
                target,
                fleet,
                command: command.join(" "),
                env_vars,
            };
            Started {
                ssh_persist: std::time::Duration::from_secs(ssh_persist),
                ..started(r, run)
            }
        }
        C::Action {
            target,
            app,
            cmd,
            env_vars,
            save_as_secret,
            args,
            run,
        } => {
            let r = Request::Action {
                target,
                fleet,
                app,
                cmd,
                args,
                env_vars,
                save_as_secret,
            };
            started(r, run)
        }
        C::Upload {
            target,
            src,
            dst,
            files,
            remote_path,
            run,
        } => {
            let files = files
                .iter()
                .flat_map(|f| f.split_whitespace())
                .map(Into::into)
                .collect();
            let r = Request::Upload {
                target,
                fleet,
                src,
                dst,
                files,
                remote_path,
            };
            started(r, run)
        }
        C::Gc { target, run } => started(Request::Gc { target, fleet }, run),
        C::UpgradeNixos {
            target,
            batch_size,
            batch,
            nixos_version,
            exec,
        } => {
            let (size, batch) = upgrade_batch(batch_size, batch.as_deref())?;
            let request = Request::UpgradeNixos {
                target,
                fleet,
                batch: size,
                nixos_version,
            };
            Started {
                request,
                exec,
                batch,
                ssh_persist: std::time::Duration::ZERO,
            }
        }
        C::Rollback { target, run } => started(Request::Rollback { target, fleet }, run),
        C::PortForward {
            target,
            local_port,
            remote_port,
            ..
        } => {
            return Ok(Err(Direct::PortForward {
                target,
                local_port,
                remote_port,
            }));
        }
        C::Ssh {
            target, command, ..
        } => return Ok(Err(Direct::Ssh { target, command })),
        C::Etcd(args) => return Ok(Err(Direct::Etcd(args.query()?))),
        C::SshClose => return Ok(Err(Direct::SshClose)),
    }))
}

/// `upgrade-nixos`'s batch size and whether not to ask: `--batch-size N`;
/// `--batch` alone never asks (the Dart tool's), `--batch N` is the batch
/// size (this tool's earlier spelling).
fn upgrade_batch(size: Option<u32>, batch: Option<&str>) -> Result<(u32, bool), Failure> {
    let old = match batch {
        None | Some("") => None,
        Some(n) => match n.parse::<u32>() {
            Ok(k) if k >= 1 => Some(k),
            _ => {
                return Err(Failure::usage(format!(
                    "--batch {n}: --batch takes no value, or the nodes per batch (a number from 1); \
                     prefer --batch-size {n}"
                )));
            }
        },
    };
    match (size, old) {
        (Some(a), Some(b)) if a != b => Err(Failure::usage(format!(
            "--batch-size {a} and --batch {b} disagree; give --batch-size only"
        ))),
        (a, b) => Ok((a.or(b).unwrap_or(1), batch.is_some())),
    }
}
