//! # sandbox: a local Hetzner Cloud to try a cluster on, with no account and no cost
//!
//! `nix-infra sandbox` and `nix-infra demo` run it for users; the tests run
//! the same thing. It fakes only what this machine cannot host:
//! - [`TestCloud`]: a fake Hetzner Cloud API (axum, loopback only) with
//!   labels, pagination, actions that finish after a delay, and injectable
//!   faults ([`Faults`]). Hetzner's own clients work against it unchanged.
//! - [`Node`]: with [`CloudConfig::nodes`], each server boots a real sshd on
//!   its own loopback address, in its own namespaces, as Hetzner's stock
//!   image: bash, curl, tar, no `nixos-*` command, an empty `/etc/nixos`.
//! - [`installer`]: the nixos-infect stand-in the cloud serves (with its
//!   sha256) at [`TestCloud::installer_url`]; it brings NixOS's tool stand-ins,
//!   which take over at the node's next reboot.
//!
//! ```text
//!   nix-infra sandbox serve ──┐
//!   nix-infra-testcloud ──────┼──► TestCloud ──► Node (setpriv … unshare … sshd) per server
//!   tests (via testkit) ──────┘
//! ```
//!
//! Nothing here is test-only: the contract check against Hetzner's OpenAPI
//! description lives in `testkit`, which reads the responses a cloud keeps
//! when [`CloudConfig::record`] is on. Recording is off by default (the
//! sandbox serves for as long as a user likes, so it keeps no history).
//!
//! Root is needed for nodes (mount, UTS and PID namespaces; sshd on port 22);
//! the API alone needs nothing. Every process is started under
//! `setpriv --pdeathsig KILL`, so nodes die with the cloud's process.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let cloud = sandbox::TestCloud::start(sandbox::CloudConfig { nodes: true, ..Default::default() }).await?;
//! println!("HCLOUD_ENDPOINT={} HCLOUD_TOKEN={}", cloud.endpoint(), cloud.token());
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cloud;
pub mod installer;
pub mod local;
pub mod node;

pub use cloud::{CloudConfig, Faults, Recorded, TestCloud};
pub use node::{Node, NodeInfo, NodeSpec};
