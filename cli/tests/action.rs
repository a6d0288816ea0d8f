//! `action` as the Dart nix-infra runs it, on sandbox nodes: the repo's own
//! `action.sh` (not executable) uploaded, run with bash, its variables
//! exported (placeholders filled per node, values never shown) and removed.

mod common;

use common::{Down, cli, last_json, ok, on_node, servers};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `app_modules/<app>/action.sh`, mode 0644.
fn write_action(dir: &Path, app: &str, text: &str) {
    let folder = dir.join("app_modules").join(app);
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("action.sh");
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
}

const GREET: &str = r#"# no shebang, no x bit: bash runs it (and `${x// /_}` is bash's).
# Every --env-vars value is shown [redacted]; a changed one shows.
case "$1" in
  fail) echo "failing on $(hostname)" >&2; exit 3 ;;
esac
echo "greeting=${GREETING// /_} pw=$PASSWORD args=$# 1=$1 2=[$2]"
echo "where=${BASH_SOURCE[0]}"
# No process on the node has the value on its command line (the test reads
# them with builtins and tr, whose own arguments do not hold it).
leak=no
for f in /proc/[0-9]*/cmdline; do
  c=$(tr '\0' ' ' < "$f" 2>/dev/null)
  [[ $c == *"$PASSWORD"* ]] && leak=yes
done
echo "argv-leak=$leak"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repos_action_runs_with_bash_its_variables_and_arguments_then_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    ok(cli(dir).arg("init"));
    ok(cli(dir).args(["sandbox", "up"]));
    ok(cli(dir).args(["fleet", "provision", "--target", "f1 f2"]));
    let ip: BTreeMap<String, String> = servers(dir).await.into_iter().collect();
    write_action(dir, "greet", GREET);

    let out = ok(cli(dir).args([
        "fleet",
        "action",
        "--target",
        "f1 f2",
        "--app-module",
        "greet",
        "--cmd",
        "hello 'big world'",
        "--env-vars",
        "GREETING=hi [%%nodeName%%] at [%%localIp%%],PASSWORD=pw-7c1e94",
    ]));
    for n in ["f1", "f2"] {
        let line = format!(
            "{n:<14}| greeting=hi_{n}_at_{} pw=[redacted] args=2 1=hello 2=[big world]",
            ip[n]
        );
        assert!(out.contains(&line), "{line}\n{out}");
        for want in ["where=/root/action.sh", "argv-leak=no"] {
            assert!(out.contains(&format!("{n:<14}| {want}")), "{want}\n{out}");
        }
        let left = on_node(dir, n, &ip[n], "ls /root/action.sh 2>&1 || true").await;
        assert!(left.contains("No such file"), "{n} still has it: {left}");
    }
    // The value is nowhere: not in the output, the run's logs or the database,
    // and the run's own secret is gone once it succeeded.
    let runs = ok(cli(dir).args([
        "runs",
        "list",
        "--workflow",
        "node.action",
        "--output",
        "json",
    ]));
    let id = last_json(&runs)[0]["id"].as_str().unwrap().to_string();
    let logs = ok(cli(dir).args(["runs", "logs", &id]));
    let db = std::fs::read(dir.join(".nix-infra/state.db")).unwrap();
    for text in [out.clone(), logs, String::from_utf8_lossy(&db).to_string()] {
        assert!(!text.contains("pw-7c1e94"), "the value leaked: {text}");
    }
    assert!(!ok(cli(dir).args(["secrets", "list"])).contains(&format!("env.{id}")));

    // A failing action fails its node's step with its exit and stderr; the
    // script is removed all the same.
    let failed = cli(dir)
        .args([
            "--output", "json", "fleet", "action", "--target", "f1", "--app", "greet", "fail",
        ])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let summary = last_json(&String::from_utf8_lossy(&failed.stdout));
    assert_eq!(summary["nodes"][0]["error"], "exit 3: failing on f1");
    let left = on_node(dir, "f1", &ip["f1"], "ls /root/action.sh 2>&1 || true").await;
    assert!(left.contains("No such file"), "{left}");

    // Refused before any run exists: an unknown placeholder, a missing script.
    let before = ok(cli(dir).args(["runs", "list", "--output", "json"]));
    for (args, says) in [
        (
            vec![
                "--app",
                "greet",
                "--env-vars",
                "PEER=[%%etcd001.overlayIp%%]",
            ],
            "--env-vars PEER: unknown placeholder [%%etcd001.overlayIp%%] for f1",
        ),
        (
            vec!["--app", "absent"],
            "has no app_modules/absent/action.sh (the app has no action)",
        ),
    ] {
        let out = cli(dir)
            .args(["fleet", "action", "--target", "f1"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(
        ok(cli(dir).args(["runs", "list", "--output", "json"])),
        before
    );
}
