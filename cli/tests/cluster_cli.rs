//! `nix-infra init` and `nix-infra secrets` as users run them.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_nix-infra");

fn cli(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("SECRETS_PASS")
        .env_remove("SECRETS_PWD")
        .env_remove("DATABASE_URL")
        .arg("-d")
        .arg(dir);
    c
}

#[test]
fn init_creates_keys_and_ca_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(dir.path())
        .args(["init", "--batch", "--cluster", "c1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "keys/age.key",
        "keys/id_ed25519",
        "keys/id_ed25519.pub",
        "ca/root.pem",
        "ca/intermediate.key.age",
    ] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    let before = std::fs::read(dir.path().join("keys/age.key")).unwrap();
    let ca_before = std::fs::read(dir.path().join("ca/root.pem")).unwrap();
    let out = cli(dir.path())
        .args(["init", "--output", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["created"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(
        std::fs::read(dir.path().join("keys/age.key")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(dir.path().join("ca/root.pem")).unwrap(),
        ca_before
    );
}

#[test]
fn secrets_round_trip_from_stdin_and_files_and_refuse_the_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        cli(dir.path())
            .arg("init")
            .output()
            .unwrap()
            .status
            .success()
    );
    let mut child = cli(dir.path())
        .args(["secrets", "store", "--name", "db"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret-from-stdin")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let file = dir.path().join("value.txt");
    std::fs::write(&file, "file-secret").unwrap();
    let out = cli(dir.path())
        .args(["secrets", "store", "--name", "api"])
        .arg("--secret-file")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());

    let get = |name: &str| {
        cli(dir.path())
            .args(["secrets", "get", "--name", name])
            .output()
            .unwrap()
    };
    assert_eq!(get("db").stdout, b"s3cret-from-stdin");
    assert_eq!(get("api").stdout, b"file-secret");
    let list = cli(dir.path())
        .args(["secrets", "list", "--output", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("\"db\"") && !text.contains("s3cret"),
        "{text}"
    );
    for entry in walk(&dir.path().join("secrets")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(6).any(|w| w == b"s3cret"),
            "plaintext in {}",
            entry.display()
        );
    }

    let wrong = cli(dir.path())
        .env("SECRETS_PASS", "guess")
        .args(["secrets", "get", "--name", "db"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("cannot decrypt secret `db`"));
    let empty = cli(dir.path())
        .args(["secrets", "store", "--name", "x"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        cli(dir.path())
            .args(["secrets", "remove", "--name", "db"])
            .output()
            .unwrap()
            .status
            .success()
    );
    assert_eq!(get("db").status.code(), Some(2));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn env_names_the_file_secrets_pass_comes_from_and_reads_dart_templates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(cli(d).arg("init").output().unwrap().status.success());
    std::fs::write(d.join("ci.env"), "SECRETS_PASS=pass-from-ci-env\n").unwrap();
    let with_env = || {
        let mut c = cli(d);
        c.arg("--env").arg(d.join("ci.env"));
        c
    };
    let mut store = with_env()
        .args(["secrets", "store", "--name", "token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    store.stdin.take().unwrap().write_all(b"v1").unwrap();
    assert!(store.wait().unwrap().success());
    let got = with_env()
        .args(["secrets", "get", "--name", "token"])
        .output()
        .unwrap();
    assert_eq!(got.stdout, b"v1");
    // A Dart template's env file: an unquoted value with spaces, and the
    // passphrase under its older name SECRETS_PWD.
    std::fs::write(
        d.join("dart.env"),
        "# Certificate Authority\nCERT_COMPANY=Your Company Inc\nCA_PASS=\n\
         SECRETS_PWD=pass-from-ci-env\n",
    )
    .unwrap();
    let got = cli(d)
        .arg("--env")
        .arg(d.join("dart.env"))
        .args(["secrets", "get", "--name", "token"])
        .output()
        .unwrap();
    assert_eq!(
        got.stdout,
        b"v1",
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    // Without the file, the cluster identity is the key, and it cannot read it.
    let other = cli(d)
        .args(["secrets", "get", "--name", "token"])
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other.stderr).contains("cannot decrypt secret `token`"));
}
