//! Cluster state as the Dart nix-infra leaves it, made the way it makes it,
//! for the tests that carry such a cluster over: its openssl CA under
//! `ca/`, its RSA SSH key under `ssh/`, and its flat, base64-only secrets.

use std::path::Path;
use std::process::Command;

fn run(dir: &Path, args: &[&str], pass: &str) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .env("CA_PASS", pass)
        .env("INTERMEDIATE_CA_PASS", pass)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root and an intermediate CA in `repo/ca/`, laid out as the Dart tool's
/// `init` lays them out, both keys encrypted with `pass`
/// (`CA_PASS`, `INTERMEDIATE_CA_PASS`).
pub fn make_ca(repo: &Path, pass: &str) {
    let ca = repo.join("ca");
    for d in [
        "certs",
        "private",
        "intermediate/certs",
        "intermediate/private",
        "intermediate/csr",
    ] {
        std::fs::create_dir_all(ca.join(d)).unwrap();
    }
    let root_ext = "basicConstraints=critical,CA:true\nkeyUsage=critical,digitalSignature,cRLSign,keyCertSign\n\
                    subjectKeyIdentifier=hash\n";
    let int_ext = "basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,digitalSignature,cRLSign,keyCertSign\n\
                   subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always,issuer\n";
    std::fs::write(ca.join("root.ext"), root_ext).unwrap();
    std::fs::write(ca.join("intermediate.ext"), int_ext).unwrap();
    run(
        &ca,
        &[
            "genrsa",
            "-aes256",
            "-passout",
            "env:CA_PASS",
            "-out",
            "private/ca.key.pem",
            "2048",
        ],
        pass,
    );
    run(
        &ca,
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "private/ca.key.pem",
            "-passin",
            "env:CA_PASS",
            "-days",
            "30",
            "-sha256",
            "-subj",
            "/C=SE/ST=unknown/O=Example/CN=Example Root CA",
            "-extensions",
            "v3_ca",
            "-addext",
            "keyUsage=critical,digitalSignature,cRLSign,keyCertSign",
            "-out",
            "certs/ca.cert.pem",
        ],
        pass,
    );
    run(
        &ca,
        &[
            "genrsa",
            "-aes256",
            "-passout",
            "env:INTERMEDIATE_CA_PASS",
            "-out",
            "intermediate/private/intermediate.key.pem",
            "2048",
        ],
        pass,
    );
    run(
        &ca,
        &[
            "req",
            "-new",
            "-sha256",
            "-key",
            "intermediate/private/intermediate.key.pem",
            "-passin",
            "env:INTERMEDIATE_CA_PASS",
            "-subj",
            "/C=SE/ST=unknown/O=Example/CN=Example Intermediate CA",
            "-out",
            "intermediate/csr/intermediate.csr.pem",
        ],
        pass,
    );
    run(
        &ca,
        &[
            "x509",
            "-req",
            "-in",
            "intermediate/csr/intermediate.csr.pem",
            "-CA",
            "certs/ca.cert.pem",
            "-CAkey",
            "private/ca.key.pem",
            "-passin",
            "env:CA_PASS",
            "-CAcreateserial",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            "intermediate.ext",
            "-out",
            "intermediate/certs/intermediate.cert.pem",
        ],
        pass,
    );
    let chain = [
        std::fs::read_to_string(ca.join("certs/ca.cert.pem")).unwrap(),
        std::fs::read_to_string(ca.join("intermediate/certs/intermediate.cert.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(ca.join("intermediate/certs/ca-chain.cert.pem"), chain).unwrap();
}

/// The Dart tool's SSH key: RSA, `repo/ssh/<name>` and `.pub`, no passphrase.
pub fn make_ssh_key(repo: &Path, name: &str) {
    std::fs::create_dir_all(repo.join("ssh")).unwrap();
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "rsa",
            "-b",
            "2048",
            "-N",
            "",
            "-C",
            "ops@example.org",
            "-f",
        ])
        .arg(repo.join("ssh").join(name))
        .status()
        .unwrap();
    assert!(status.success());
}

/// A secret as the Dart tool stores it: `repo/secrets/<name>`, the value in
/// base64 (what `openssl enc -pbkdf2 -a` writes without a cipher), wrapped at 64.
pub fn store_flat_secret(repo: &Path, name: &str, value: &str) {
    std::fs::create_dir_all(repo.join("secrets")).unwrap();
    let out = Command::new("openssl")
        .args(["enc", "-pbkdf2", "-a", "-pass", "env:SECRETS_PASS", "-out"])
        .arg(repo.join("secrets").join(name))
        .env("SECRETS_PASS", "my_secrets_password")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(value.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "openssl enc");
}
