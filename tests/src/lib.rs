//! # testkit: real components for nix-infra's tests, started in temp directories
//!
//! Tests never mock nix-infra's own code paths. They start the real thing,
//! and fake only what this machine cannot host:
//! - [`TestCloud`]: a fake Hetzner Cloud API (axum) whose responses follow
//!   Hetzner's OpenAPI description ([`contract`] checks them), with labels,
//!   pagination, actions that finish after a delay, and injectable faults.
//!   With [`CloudConfig::nodes`], each server boots a [`Node`]: a real sshd on
//!   its own loopback address, in its own namespaces, with stand-ins for
//!   NixOS's tools.
//! - [`Etcd`]: a real etcd, plain or with mutual TLS.
//! - [`Postgres`]: a throwaway server that hands out a fresh database per test.
//!
//! ```text
//!   tests/tests/*.rs, cli/tests/*.rs ──► testkit ──► postgres, etcd, sshd (child processes)
//!   nix-infra-testcloud (binary) ─────► testkit::TestCloud
//! ```
//!
//! Every process is a child of the test: it is stopped on drop (also after a
//! panic, since drops run while unwinding), and it is started under
//! `setpriv --pdeathsig KILL`, so it dies with the test process even when the
//! test is killed. Everything listens on 127.0.0.0/8 only.
//!
//! Root is needed for: Postgres as the `postgres` user (it refuses root),
//! nodes (mount, UTS and PID namespaces; sshd on port 22). CI runs as root.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let cloud = testkit::TestCloud::start(testkit::CloudConfig { nodes: true, ..Default::default() }).await?;
//! println!("HCLOUD_ENDPOINT={} HCLOUD_TOKEN={}", cloud.endpoint(), cloud.token());
//! let pg = testkit::Postgres::start()?;
//! let url = pg.fresh_database()?; // postgres://postgres@127.0.0.1:PORT/db_1
//! # drop(url); Ok(()) }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cloud;
pub mod contract;
mod etcd;
pub mod node;
mod postgres;
mod process;

pub use cloud::{CloudConfig, Faults, TestCloud};
pub use etcd::{Etcd, EtcdTls};
pub use node::{Node, NodeInfo, NodeSpec};
pub use postgres::Postgres;
pub use process::{free_port, sqlite_url};
