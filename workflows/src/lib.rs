//! # workflows: nix-infra's lifecycles as durable DAGs
//!
//! Each workflow turns a run input into a [`engine::Plan`] and glues a
//! `tasks` adapter into each step. The steps here are thin: the engine
//! owns durability, the adapters own side effects. Every step kind is an
//! [`engine::Step`] with typed params and output ([`node::kinds`] lists the
//! node workflows' kinds), so a step reads its dependencies' outputs as
//! the types they declared.
//!
//! ```text
//!   cli ──► workflows ──┬──► engine  (plans, runs, retries)
//!                       └──► tasks   (hcloud, ssh, etcd, certs, secrets)
//! ```
//!
//! Built in so far:
//! - [`diag`]: `diag.chain` and `diag.fanout`, synthetic workflows for
//!   checking a setup, for the tests and for the benchmarks.
//! - [`node`]: the node lifecycles, fanned out per node:
//!   - `node.provision`: create or adopt the server, wait for SSH, install NixOS, reboot, verify;
//!   - `node.init`: by type, certificates → etcd (ctrl), or certificates →
//!     overlay subnet → configuration → secrets → rebuild → confd → register;
//!   - `node.update` (update-node, deploy-apps), `node.unregister`;
//!   - `node.destroy`: unregister, delete, revoke, forget the host key;
//!   - `node.adopt`: label servers made by another tool as this cluster's nodes;
//!   - `cluster.up`: all of the above in one run, control nodes first.
//!   - day 2: `node.cmd`, `node.action`, `node.upload`, `nix.gc`,
//!     `nixos.upgrade` (rolling batches), `nixos.rollback`, `image.publish`;
//!   - apps ([`node::app`]): `app.register`, `app.deploy`,
//!     `app.register_instance`, `app.unregister_instance`, `app.remove`,
//!     `app.unregister`;
//!   - `secret.rotate`: stage, deploy where used, restart, verify, retire.
//! - [`preflight`]: the checks of every target node's configuration
//!   (placeholders, Nix syntax, secrets) that requests make before a run
//!   exists, and that `nix-infra check` runs alone.
//!
//! ```
//! let registry = workflows::registry();
//! let chain = registry.get("diag.chain").unwrap();
//! let plan = chain.plan(&serde_json::json!({"steps": 3})).unwrap();
//! assert_eq!(plan.steps[2].deps, vec!["step-2".to_string()]);
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod cluster;
pub mod diag;
pub mod domain;
pub mod envfile;
pub mod init;
pub mod node;
pub mod preflight;
pub mod report;
pub mod request;

/// Every workflow this build knows, ready for [`engine::Engine::new`].
pub fn registry() -> engine::Registry {
    let mut r = engine::Registry::new();
    r.register(diag::chain());
    r.register(diag::fanout());
    r.register(node::provision());
    r.register(node::destroy());
    r.register(node::adopt());
    r.register(node::init());
    r.register(node::update());
    r.register(node::unregister());
    r.register(node::up());
    r.register(node::cmd());
    r.register(node::action());
    r.register(node::upload());
    r.register(node::gc());
    r.register(node::rollback());
    r.register(node::upgrade());
    r.register(node::publish_image());
    r.register(node::app::register());
    r.register(node::app::deploy());
    r.register(node::app::register_instance());
    r.register(node::app::unregister_instance());
    r.register(node::app::remove());
    r.register(node::app::unregister());
    r.register(node::rotate());
    r
}
