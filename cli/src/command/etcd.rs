//! `nix-infra etcd …` (also `cluster etcd …`): read the registry, or run
//! etcdctl on a control node, as the Dart tool's `etcd` command does.

use crate::Failure;
use crate::args::Global;
use clap::Args;

/// `etcd WHAT… [--target NODE]`
#[derive(Args, Debug, Clone)]
pub struct EtcdArgs {
    /// What to show: nodes, services, backends, frontends or network; or
    /// `ctl ARGS…`: etcdctl with ARGS on the --target control node, with its
    /// client certificate. Any other words are etcdctl's, as after `ctl`
    /// (`etcd "get --prefix /cluster" --target etcd001`). etcdctl's words
    /// are joined with spaces and read by the node's shell, as the Dart tool
    /// does; put them after `--` or in one quoted argument when they start with `-`.
    #[arg(required = true, value_name = "WHAT")]
    words: Vec<String>,
    /// The control node to ask (`ctl` needs one; the lists default to every control node).
    #[arg(long, value_name = "NODE")]
    target: Option<String>,
    /// Accepted (nothing is asked).
    #[arg(long)]
    batch: bool,
}

/// What an `etcd` command asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdQuery {
    /// The control node to ask; none: every control node (the lists only).
    pub target: Option<String>,
    /// What.
    pub what: EtcdWhat,
}

/// What `etcd` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtcdWhat {
    /// Registered nodes.
    Nodes,
    /// Internal services and their instances.
    Services,
    /// Backends and their instances.
    Backends,
    /// Frontends and their instances.
    Frontends,
    /// Overlay subnets (flannel leases).
    Network,
    /// etcdctl with these words, on the target.
    Ctl(Vec<String>),
}

impl EtcdArgs {
    /// The query these words make.
    pub fn query(self) -> Result<EtcdQuery, Failure> {
        let list = |w: &str| match w {
            "nodes" => Some(EtcdWhat::Nodes),
            "services" => Some(EtcdWhat::Services),
            "backends" => Some(EtcdWhat::Backends),
            "frontends" => Some(EtcdWhat::Frontends),
            "network" => Some(EtcdWhat::Network),
            _ => None,
        };
        let what = match self.words.as_slice() {
            [one] if list(one).is_some() => list(one).expect("matched"),
            [ctl, rest @ ..] if ctl == "ctl" => EtcdWhat::Ctl(rest.to_vec()),
            words => EtcdWhat::Ctl(words.to_vec()),
        };
        if let EtcdWhat::Ctl(words) = &what {
            if words.iter().all(|w| w.trim().is_empty()) {
                return Err(Failure::usage("etcd ctl: give etcdctl's arguments"));
            }
            if self.target.is_none() {
                return Err(Failure::usage(
                    "etcd ctl: give the control node to run etcdctl on with --target",
                ));
            }
        }
        Ok(EtcdQuery {
            target: self.target,
            what,
        })
    }
}

/// Runs the top-level `etcd` command (the same as `cluster etcd`).
pub async fn run(global: Global, args: EtcdArgs) -> Result<(), Failure> {
    let direct = super::cluster::Direct::Etcd(args.query()?);
    super::node_access::run(&global, direct, false).await
}
