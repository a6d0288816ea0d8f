//! # testkit: real components for nix-infra's tests, started in temp directories
//!
//! Tests never mock nix-infra's own code paths. They start the real thing:
//! - [`Postgres`]: a throwaway server (initdb, trust auth, 127.0.0.1, a free
//!   port) that hands out a fresh database per test.
//! - The test cloud (a fake Hetzner API with sshd nodes on loopback) and
//!   etcd land here next.
//!
//! ```text
//!   tests/tests/*.rs, cli/tests/*.rs ──► testkit ──► postgres, etcd, sshd (child processes)
//! ```
//!
//! Every process is a child of the test: it is stopped on drop (also after a
//! panic), and started under `setpriv --pdeathsig KILL`, so it dies with the
//! test process even when the test is killed. Everything listens on
//! 127.0.0.1 only.
//!
//! Root: Postgres refuses to run as root, so when the tests run as root (CI)
//! the server runs as the `postgres` user that Debian's package creates.
//!
//! ```no_run
//! let pg = testkit::Postgres::start().unwrap();
//! let url = pg.fresh_database().unwrap(); // postgres://postgres@127.0.0.1:PORT/db_1
//! # drop(url);
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
