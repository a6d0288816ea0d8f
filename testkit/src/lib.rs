//! # testkit: real components for nix-infra's tests, started in temp directories
//!
//! Tests never mock nix-infra's own code paths. They start the real thing:
//! - [`Postgres`]: a throwaway server that hands out a fresh database per test.
//! - [`Etcd`]: a real etcd, plain or with mutual TLS.
//! - [`stores`]: an engine store on each backend, and [`on_both_backends!`].
//! - [`contract`]: checks the responses a recording test cloud sent against
//!   Hetzner's OpenAPI description.
//! - The test cloud itself (fake Hetzner API, sshd nodes) is the `sandbox`
//!   crate, which users run too; its main items are re-exported here.
//!
//! ```text
//!   */tests/*.rs, benches ──► testkit ──► postgres, etcd (child processes)
//!                                └──────► sandbox::TestCloud ──► sshd nodes
//! ```
//!
//! testkit is a dev-dependency only (`publish = false`): the `nix-infra`
//! binary never links it, nor jsonschema.
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
//! let cloud = testkit::TestCloud::start(testkit::CloudConfig { record: true, ..Default::default() }).await?;
//! // ... drive the API ...
//! let failures = testkit::contract::Contract::load().unwrap().check_all(&cloud.recorded());
//! assert!(failures.is_empty(), "{}", failures.join("\n"));
//! let pg = testkit::Postgres::start()?;
//! let url = pg.fresh_database()?; // postgres://postgres@127.0.0.1:PORT/db_1
//! # drop(url); Ok(()) }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod contract;
pub mod dart;
mod etcd;
mod postgres;
mod process;
pub mod stores;

pub use etcd::{Etcd, EtcdTls};
pub use postgres::Postgres;
pub use process::{free_port, sqlite_url};
pub use sandbox::{CloudConfig, Faults, Node, NodeInfo, NodeSpec, Recorded, TestCloud};
