//! Reaching nodes directly: upload, ssh, port-forward, and images into their podman.

mod common;

use common::{Down, cli, last_json, ok};
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
