//! Reaching nodes directly: upload, ssh, port-forward, images into their
//! podman, and reading the registry as a Dart-era cluster wrote it.

mod common;

use common::{Down, cli, etcd_at, last_json, ok};
use std::path::Path;

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_ssh_port_forward_and_publish_image_reach_the_nodes() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    ok(cli(dir).arg("init"));
    ok(cli(dir).args(["sandbox", "up"]));
    ok(cli(dir).args(["fleet", "provision", "--target", "f1 f2"]));

    write(dir, "motd.txt", "welcome to f\n");
    let motd = dir.join("motd.txt");
    ok(cli(dir)
        .args([
            "fleet",
            "upload",
            "--target",
            "f1 f2",
            "--dst",
            "/root/motd.txt",
            "--src",
        ])
        .arg(&motd));
    for n in ["f1", "f2"] {
        assert_eq!(
            ok(cli(dir).args(["fleet", "ssh", "--target", n, "cat", "/root/motd.txt"])),
            "welcome to f\n"
        );
    }

    // The node shares this machine's loopback: forward a local port to a listener here.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let remote = listener.local_addr().unwrap().port();
    let local = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut fwd = cli(dir)
        .args([
            "fleet",
            "port-forward",
            "--target",
            "f1",
            "--local-port",
            &local.to_string(),
            "--remote-port",
            &remote.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(fwd.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("forwarding"), "{first}");
    let mut client = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
    client.write_all(b"ping").unwrap();
    let (mut served, _) = listener.accept().unwrap();
    let mut got = [0u8; 4];
    served.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    fwd.kill().unwrap();
    fwd.wait().unwrap();

    // An image archive made here lands in each node's podman.
    let store = tempfile::tempdir().unwrap();
    let root = store.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "hi").unwrap();
    let podman = |args: &[&str]| {
        let out = std::process::Command::new("podman")
            .arg("--root")
            .arg(store.path().join("root"))
            .arg("--runroot")
            .arg(store.path().join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let tar = store.path().join("rootfs.tar");
    assert!(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success()
    );
    podman(&[
        "import",
        tar.to_str().unwrap(),
        "localhost/nix-infra-demo:1",
    ]);
    let archive = store.path().join("image.tar");
    podman(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "localhost/nix-infra-demo:1",
    ]);
    let out = ok(cli(dir)
        .args([
            "--output",
            "json",
            "registry",
            "publish-image",
            "--target",
            "f1 f2",
            "--file",
        ])
        .arg(&archive));
    assert_eq!(last_json(&out)["status"], "succeeded");
    let images = ok(cli(dir).args([
        "fleet",
        "cmd",
        "--target",
        "f1 f2",
        "podman images --format '{{.Repository}}:{{.Tag}}'",
    ]));
    for n in ["f1", "f2"] {
        assert!(
            images.contains(&format!("{n:<14}| localhost/nix-infra-demo:1")),
            "{images}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_services_lists_what_the_dart_templates_registered() {
    use age::secrecy::ExposeSecret;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    ok(cli(dir).arg("init"));
    // The cluster's own CA signs etcd's certificate; servers.yaml is the provider.
    let ip = std::net::Ipv4Addr::new(127, 0, 93, 11);
    write(
        dir,
        "servers.yaml",
        &format!("servers:\n  - name: etcd001\n    ipv4: {ip}\n    role: ctrl\n"),
    );
    let key = tasks::secrets::SecretKey::load_identity(&dir.join("keys/age.key")).unwrap();
    let ca = tasks::ca::Ca::load(&dir.join("ca"), key).unwrap();
    let certs = ca.node("etcd001", ip.into()).unwrap();
    let etcd = testkit::Etcd::start_tls(
        ip,
        &testkit::EtcdTls {
            ca_pem: ca.root_pem().into(),
            cert_pem: certs.peer.cert_pem.clone(),
            key_pem: certs.peer.key_pem.expose_secret().into(),
        },
    )
    .unwrap();
    let reg = etcd_at(dir, etcd.endpoint()).await;
    for (k, v) in [
        (
            "/cluster/services/memcached/meta_data",
            r#"{"env":{"HOST":"127.0.0.1","PATH":"/x","PORT":11211,"PROTOCOL":"tcp"},"env_prefix":"MEMCACHED","publish":{"port":11211}}"#,
        ),
        (
            "/cluster/services/memcached/instances/service001",
            r#"{"ipv4":"10.10.45.0","node":"service001","port":11211}"#,
        ),
        (
            "/cluster/services/jobs/meta_data",
            r#"{"env":{"HOST":"127.0.0.1","PATH":"","PORT":null,"PROTOCOL":"http"},"env_prefix":"JOBS","publish":{"port":null}}"#,
        ),
        (
            "/cluster/services/jobs/instances/service002",
            r#"{"ipv4":"10.10.46.0","node":"service002","port":null}"#,
        ),
    ] {
        reg.put_raw(k, v).await.unwrap();
    }
    let services = |json: bool| {
        let mut c = cli(dir);
        c.env("ETCD_ENDPOINTS", etcd.endpoint());
        if json {
            c.args(["--output", "json"]);
        }
        ok(c.args(["cluster", "etcd", "services"]))
    };
    let text = services(false);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["jobs", "-", "service002@10.10.46.0"],
            vec!["memcached", "11211", "service001@10.10.45.0:11211"],
        ],
        "{text}"
    );
    let listed = last_json(&services(true));
    let memcached = &listed["memcached"]["meta_data"];
    assert_eq!(memcached["env"]["PORT"], 11211);
    assert_eq!(memcached["env"]["HOST"], "127.0.0.1");
    assert_eq!(memcached["publish"]["port"], 11211);
    assert!(listed["jobs"]["meta_data"]["env"]["PORT"].is_null());
    assert!(listed["jobs"]["meta_data"]["publish"]["port"].is_null());
    assert!(listed["jobs"]["instances"]["service002"]["port"].is_null());
}
