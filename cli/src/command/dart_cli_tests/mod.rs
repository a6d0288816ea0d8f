//! Every way the Dart nix-infra's users call it (its source and docs, the
//! templates' `cli` wrappers and `__test__/*.sh`), parsed as this CLI parses
//! it, and the request (or direct action) it makes. A flag that is ignored
//! or misread changes a compared field and fails its row.

use super::cluster::{Direct, request as cluster_request};
use super::etcd::{EtcdQuery, EtcdWhat};
use super::{Cli, Command};
use crate::args::Global;
use clap::Parser;
use serde_json::{Value, json};
use std::path::PathBuf;

/// What an invocation does, as far as it can be known without running it.
#[derive(Debug)]
enum Does {
    /// Starts a run with this request (JSON), asking nothing when `batch`.
    Run { request: Value, batch: bool },
    /// Starts no run.
    Direct(Direct),
    /// `init`, `ssh-key`, `secrets store`: parsed; their flags are listed.
    Local(Value),
}

/// The working directory of the rows (made absolute, as the templates' `-d "$WORK_DIR"`).
const WD: &str = "/srv/nonexistent/ha-cluster";

fn parse(argv: &[&str]) -> Result<(Global, Does), String> {
    let cli = Cli::try_parse_from(std::iter::once("nix-infra").chain(argv.iter().copied()))
        .map_err(|e| e.to_string())?;
    let run = |s: crate::command::cluster_request::Started| Does::Run {
        request: serde_json::to_value(&s.request).unwrap(),
        batch: s.batch,
    };
    let does = match cli.command {
        Command::Cluster(c) => match cluster_request(c, false).map_err(|e| format!("{e:?}"))? {
            Ok(s) => run(s),
            Err(d) => Does::Direct(d),
        },
        Command::Fleet(c) => match cluster_request(c, true).map_err(|e| format!("{e:?}"))? {
            Ok(s) => run(s),
            Err(d) => Does::Direct(d),
        },
        Command::Registry(a) => {
            let (r, run) = super::registry::request(a).map_err(|e| format!("{e:?}"))?;
            Does::Run {
                request: serde_json::to_value(&r).unwrap(),
                batch: run.batch,
            }
        }
        Command::Etcd(a) => Does::Direct(Direct::Etcd(a.query().map_err(|e| format!("{e:?}"))?)),
        Command::Init(a) => Does::Local(json!({
            "init": {"batch": a.batch, "no_cert_auth": a.no_cert_auth, "ssh_email": a.ssh_email}
        })),
        Command::SshKey(k) => Does::Local(json!({ "ssh-key": format!("{k:?}") })),
        Command::Secrets(s) => Does::Local(json!({ "secrets": format!("{s:?}") })),
        other => return Err(format!("not a Dart command: {other:?}")),
    };
    Ok((cli.global, does))
}

/// Every field of `want` is in `got` with that value.
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| contains(gv, v))),
        _ => got == want,
    }
}

/// A row: the argv, and the request fields it must make (with `--batch` or not).
fn runs(argv: &[&str], batch: bool, want: Value) {
    let (_, does) = parse(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Does::Run { request, batch: b } = does else {
        panic!("{argv:?}: starts no run: {does:?}");
    };
    assert!(
        contains(&request, &want),
        "{argv:?}\n  made: {request}\n  want: {want}"
    );
    assert_eq!(b, batch, "{argv:?}: --batch");
}

fn direct(argv: &[&str], want: Direct) {
    let (_, does) = parse(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    match does {
        Does::Direct(d) => assert_eq!(d, want, "{argv:?}"),
        other => panic!("{argv:?}: {other:?}"),
    }
}

fn refused(argv: &[&str], words: &str) {
    let e = parse(argv)
        .err()
        .unwrap_or_else(|| panic!("{argv:?} parsed"));
    assert!(e.contains(words), "{argv:?}: {e}");
}

fn etcd(target: &str, what: EtcdWhat) -> Direct {
    Direct::Etcd(EtcdQuery {
        target: Some(target.into()),
        what,
    })
}

mod dart_tool;
mod templates;
