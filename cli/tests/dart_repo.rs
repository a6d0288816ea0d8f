//! A cluster repo in the Dart nix-infra's layout (`examples/dart-cluster`)
//! comes up on the sandbox with `cluster up`: 1 control node, 2 workers and
//! 1 ingress node. Checked on the nodes: the file names under `/etc/nixos`,
//! every rendered value, the certificates under both names, the secrets and
//! `/run/keys`, the overlay inside the repo's network, and etcd's keys.

mod common;

use common::{Down, cli, dart_repo, etcd, ok, on_node, servers};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tasks::registry::OverlayNetwork;

/// Every file under `/etc/nixos` on a node, relative to it.
async fn files(dir: &Path, node: &str, ip: &str) -> BTreeSet<String> {
    on_node(
        dir,
        node,
        ip,
        "cd /etc/nixos && find . -type f | sed 's|^./||'",
    )
    .await
    .lines()
    .map(str::to_string)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dart_layout_repo_comes_up_with_its_files_values_certs_secrets_and_overlay() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    dart_repo(dir);
    let checked = ok(cli(dir).args(["check"]));
    assert!(
        checked.starts_with("layout: Dart"),
        "check names the layout: {checked}"
    );
    for node in ["ctrl1", "ingress1", "worker1", "worker2"] {
        assert!(
            checked
                .lines()
                .any(|l| l.starts_with(node) && l.ends_with(" ok")),
            "{checked}"
        );
    }
    ok(cli(dir).args(["sandbox", "up"]));
    ok(cli(dir).args(["cluster", "up"]));
    let ip: BTreeMap<String, String> = servers(dir).await.into_iter().collect();
    let names: Vec<&str> = ip.keys().map(String::as_str).collect();
    assert_eq!(names, ["ctrl1", "ingress1", "worker1", "worker2"]);

    check_files(dir, &ip).await;
    check_values(dir, &ip).await;
    check_certs(dir, &ip).await;
    check_secrets(dir, &ip).await;
    check_etcd(dir, &ip).await;
    check_action(dir, &ip).await;
    check_test_dir(dir, &ip).await;
}

/// `deploy-apps --test-dir D` takes the nodes' own files from `D/nodes`
/// (the Dart templates' `__test__/<test>` folders), the rest from the repo.
async fn check_test_dir(dir: &Path, ip: &BTreeMap<String, String>) {
    let test = dir.join("__test__/greet/nodes");
    std::fs::create_dir_all(&test).unwrap();
    std::fs::write(
        test.join("worker1.nix"),
        "# the greet test's worker1\n{ ... }: { apps.hello.enable = true; \
         apps.hello.greetingFile = \"/root/secrets/[%%secrets/hello-greeting%%]\"; \
         networking.extraHosts = \"[%%localhost.ipv4%%] test-[%%localhost.hostname%%]\"; }\n",
    )
    .unwrap();
    ok(cli(dir).args([
        "cluster",
        "deploy-apps",
        "--batch",
        "--target",
        "worker1",
        "--test-dir",
        &format!("{}/__test__/greet", dir.display()),
    ]));
    let node = on_node(dir, "worker1", &ip["worker1"], "cat /etc/nixos/worker1.nix").await;
    assert!(node.starts_with("# the greet test's worker1"), "{node}");
    assert!(
        node.contains(&format!("{} test-worker1", ip["worker1"])),
        "{node}"
    );
    let out = cli(dir)
        .args([
            "cluster",
            "deploy-apps",
            "--target",
            "worker1",
            "--test-dir",
            "__test__/none",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no nodes/ folder"));
}

/// The app's `action.sh` (not executable) runs with bash, its variables
/// filled with the Dart node values.
async fn check_action(dir: &Path, ip: &BTreeMap<String, String>) {
    let reg = etcd(dir, &ip["ctrl1"]).await;
    let w2 = reg.overlay_ip(&ip["worker2"]).await.unwrap().unwrap();
    let out = ok(cli(dir).args([
        "cluster",
        "action",
        "--target",
        "worker1",
        "--app-module",
        "hello",
        "--cmd",
        "greet loudly",
        "--env-vars",
        "GREETING_TARGET=[%%worker2.overlayIp%%]",
    ]));
    let want = format!(
        "hello action on worker1 for {}: loudly",
        w2.replace('.', "-")
    );
    assert!(out.contains(&want), "{want}: {out}");
}

async fn check_files(dir: &Path, ip: &BTreeMap<String, String>) {
    let installed = ["hardware-configuration.nix", "networking.nix"];
    let repo = [
        "configuration.nix",
        "flake.nix",
        "modules/default.nix",
        "modules/options.nix",
        "modules/etcd.nix",
        "modules/flannel.nix",
        "modules/confd.nix",
        "app_modules/default.nix",
        "app_modules/hello/default.nix",
        "app_modules/hello/action.sh",
    ];
    for (node, node_type) in [
        ("ctrl1", "control_node.nix"),
        ("worker1", "cluster_node.nix"),
        ("worker2", "cluster_node.nix"),
        ("ingress1", "cluster_node.nix"),
    ] {
        let mut expected: BTreeSet<String> = installed
            .iter()
            .chain(&repo)
            .map(|f| f.to_string())
            .collect();
        expected.insert(node_type.into());
        expected.insert(format!("{node}.nix"));
        assert_eq!(files(dir, node, &ip[node]).await, expected, "{node}");
    }
    // Copied byte for byte, the mode too.
    for f in ["app_modules/hello/default.nix", "modules/flannel.nix"] {
        let local = std::fs::read_to_string(dir.join(f)).unwrap();
        let remote = on_node(
            dir,
            "worker1",
            &ip["worker1"],
            &format!("cat /etc/nixos/{f}"),
        )
        .await;
        assert_eq!(remote, local, "{f}");
    }
    let mode = on_node(
        dir,
        "worker1",
        &ip["worker1"],
        "stat -c %a /etc/nixos/app_modules/hello/action.sh",
    )
    .await;
    assert_eq!(mode.trim(), "644");
}

async fn check_values(dir: &Path, ip: &BTreeMap<String, String>) {
    let reg = etcd(dir, &ip["ctrl1"]).await;
    let overlay = |node: &str| {
        let reg = &reg;
        let ip = ip[node].clone();
        async move { reg.overlay_ip(&ip).await.unwrap().expect("a lease") }
    };
    let (w1, w2) = (overlay("worker1").await, overlay("worker2").await);
    // SSH_KEY (env.example) names the key, in ssh/ as the Dart tool keeps it.
    assert!(!dir.join("keys/id_ed25519").exists(), "no second key");
    let key = std::fs::read_to_string(dir.join("ssh/nixinfra.pub")).unwrap();
    let members = format!(r#"{{ name = "ctrl1"; ip = "{}"; }}"#, ip["ctrl1"]);
    let cluster = common::cluster_name(dir);
    let cat = |node: &'static str, file: &'static str| {
        let ip = ip[node].clone();
        async move { on_node(dir, node, &ip, &format!("cat /etc/nixos/{file}")).await }
    };
    let conf = cat("worker1", "configuration.nix").await;
    for want in [
        "./worker1.nix".to_string(),
        r#"networking.hostName = "worker1";"#.into(),
        r#"system.stateVersion = "24.11";"#.into(),
        format!(r#"authorizedKeys.keys = [ "{}" ];"#, key.trim()),
    ] {
        assert!(conf.contains(&want), "{want}: {conf}");
    }
    let flake = cat("worker1", "flake.nix").await;
    for want in [
        "nixos-24.11",
        r#"nixosConfigurations."worker1""#,
        r#"system = "x86_64-linux";"#,
    ] {
        assert!(flake.contains(want), "{want}: {flake}");
    }
    let ctrl = cat("ctrl1", "control_node.nix").await;
    assert!(
        ctrl.contains(&format!("members = [ {members} ];")),
        "{ctrl}"
    );
    assert!(
        ctrl.contains(&format!(r#"token = "nix-infra-{cluster}";"#)),
        "{ctrl}"
    );
    // etcd runs with what the module system makes of modules/etcd.nix and
    // the control node type's options (the stand-in records its arguments).
    let args = on_node(
        dir,
        "ctrl1",
        &ip["ctrl1"],
        "cat /var/lib/nixos-standin/etcd.args",
    )
    .await;
    for want in [
        format!("--initial-cluster-token nix-infra-{cluster}"),
        format!("--listen-client-urls https://{}:2379", ip["ctrl1"]),
        format!("--initial-cluster ctrl1=https://{}:2380", ip["ctrl1"]),
        "--cert-file /root/certs/ctrl1-client-tls.cert.pem".into(),
        "--peer-trusted-ca-file /root/certs/ca-chain.cert.pem".into(),
    ] {
        assert!(args.contains(&want), "{want}: {args}");
    }
    let ingress = cat("ingress1", "cluster_node.nix").await;
    assert!(
        ingress.contains("allowedTCPPorts = [ 80 443 ]"),
        "the ingress type: {ingress}"
    );
    assert!(ingress.contains(&members), "{ingress}");
    let worker = cat("worker1", "worker1.nix").await;
    for want in [
        r#"greetingFile = "/root/secrets/hello-greeting";"#.to_string(),
        format!(r#"bindToIp = "{w1}";"#),
        format!(r#"peer = "{w2}";"#),
        r#"trusted-public-keys = [ "cache.example.org-1:c2lnbmluZy1rZXk=" ];"#.into(),
        format!("{} ctrl1", ip["ctrl1"]),
        format!("{} worker1", ip["worker1"]),
    ] {
        assert!(worker.contains(&want), "{want}: {worker}");
    }
    let lb = cat("ingress1", "ingress1.nix").await;
    for want in [
        format!("bind {}:80", ip["ingress1"]),
        format!("server worker1 {w1}:8080"),
        format!("server worker2 {w2}:8080"),
    ] {
        assert!(lb.contains(&want), "{want}: {lb}");
    }
    let netrc = cat("worker2", "worker2.nix").await;
    assert!(
        netrc.contains(r#"netrc-file = "/run/keys/private-cache-netrc";"#),
        "{netrc}"
    );
    for node in ["ctrl1", "worker1", "worker2", "ingress1"] {
        let all = on_node(dir, node, &ip[node], "cat /etc/nixos/*.nix").await;
        assert!(
            !all.contains("[%%"),
            "{node}: every placeholder filled: {all}"
        );
    }
}

async fn check_certs(dir: &Path, ip: &BTreeMap<String, String>) {
    let ours = [
        "ca.pem",
        "client.pem",
        "client-key.pem",
        "peer.pem",
        "peer-key.pem",
    ];
    for node in ["ctrl1", "worker1"] {
        let listed: BTreeSet<String> = on_node(dir, node, &ip[node], "ls /root/certs")
            .await
            .lines()
            .map(str::to_string)
            .collect();
        let mut want: BTreeSet<String> = ours.iter().map(|f| f.to_string()).collect();
        want.insert("ca-chain.cert.pem".into());
        let mut kinds = vec!["client"];
        if node == "ctrl1" {
            kinds.push("peer");
        }
        for kind in kinds {
            want.insert(format!("{node}-{kind}-tls.cert.pem"));
            want.insert(format!("{node}-{kind}-tls.key.pem"));
        }
        assert_eq!(listed, want, "{node}");
        let eku = on_node(
            dir,
            node,
            &ip[node],
            &format!("openssl x509 -noout -ext extendedKeyUsage -in /root/certs/{node}-client-tls.cert.pem"),
        )
        .await;
        assert!(
            eku.contains("TLS Web Client Authentication")
                && eku.contains("TLS Web Server Authentication"),
            "{node}: {eku}"
        );
        let chain = on_node(
            dir,
            node,
            &ip[node],
            "grep -c 'BEGIN CERTIFICATE' /root/certs/ca-chain.cert.pem",
        )
        .await;
        assert_eq!(chain.trim(), "2", "intermediate and root");
    }
}

async fn check_secrets(dir: &Path, ip: &BTreeMap<String, String>) {
    let greeting = on_node(
        dir,
        "worker1",
        &ip["worker1"],
        "systemd-creds decrypt --name=hello-greeting /root/secrets/hello-greeting -",
    )
    .await;
    assert_eq!(
        greeting, "hello from worker1",
        "its placeholder filled at deploy"
    );
    let listed = on_node(dir, "worker2", &ip["worker2"], "ls /root/secrets").await;
    assert_eq!(
        listed.trim(),
        "private-cache-netrc",
        "only what worker2 names"
    );
    let key = on_node(
        dir,
        "worker2",
        &ip["worker2"],
        "stat -c %a /run/keys/private-cache-netrc && cat /run/keys/private-cache-netrc",
    )
    .await;
    assert_eq!(
        key,
        "400\nmachine cache.example.org login me password pw-9d1c"
    );
    let options = on_node(
        dir,
        "worker2",
        &ip["worker2"],
        "cat /var/lib/nixos-standin/options",
    )
    .await;
    assert_eq!(options.trim(), "netrc-file=/run/keys/private-cache-netrc");
    let none = on_node(dir, "worker1", &ip["worker1"], "ls /run/keys | wc -l").await;
    assert_eq!(none.trim(), "0", "worker1 has no pre-build secret");
}

async fn check_etcd(dir: &Path, ip: &BTreeMap<String, String>) {
    let reg = etcd(dir, &ip["ctrl1"]).await;
    let raw = reg.raw("/").await.unwrap();
    let net = OverlayNetwork::new("10.0.0.0/8", 24, Some("10.10.0.0"), Some("10.99.0.0")).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&raw["/coreos.com/network/config"]).unwrap();
    assert_eq!(config, net.config_json(), "the repo's own flannel network");
    let overlay = reg.overlay().await.unwrap();
    assert_eq!(overlay.len(), 3, "{overlay:?}");
    for s in &overlay {
        assert!(
            net.accepts(&s.subnet),
            "{} is one flannel would lease",
            s.subnet
        );
    }
    let mut expected: BTreeSet<String> = ["ingress1", "worker1", "worker2"]
        .iter()
        .map(|n| format!("/cluster/nodes/{n}"))
        .collect();
    expected.insert("/coreos.com/network/config".into());
    for s in &overlay {
        expected.insert(format!(
            "/coreos.com/network/subnets/{}",
            s.subnet.replace('/', "-")
        ));
    }
    assert_eq!(
        raw.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{raw:#?}"
    );
}
