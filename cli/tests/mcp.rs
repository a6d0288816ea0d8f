//! `nix-infra mcp` with a real MCP client: the official `mcp` Python SDK
//! (`tests/mcp/client.py`, installed by scripts/setup.sh) spawns the server
//! over stdio (or reaches it over HTTP) and calls its tools on sandbox
//! nodes; this file reads the answers and checks them against the nodes,
//! the registry and the state database.

mod common;

use common::mcp::{call, done, names, outputs, python, refusal, session, stdio};
use common::{Down, cli, cluster_repo, ok, on_node, servers};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

fn run_ids(dir: &Path) -> Vec<String> {
    let out = ok(cli(dir).args(["runs", "list", "--output", "json"]));
    let runs: Value = serde_json::from_str(&out).unwrap();
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

const READ_TOOLS: [&str; 12] = [
    "check",
    "configuration-files",
    "etcd",
    "journalctl",
    "list-available-nodes",
    "plan",
    "remote-command",
    "run_logs",
    "run_show",
    "runs_list",
    "system-stats",
    "systemctl",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reads_the_cluster_and_its_changes_are_runs() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    cluster_repo(dir, "hello from mcp");
    ok(cli(dir).args(["cluster", "up", "--workers", "1", "--ingress", "0"]));
    let ips: std::collections::BTreeMap<String, String> = servers(dir).await.into_iter().collect();
    let before = run_ids(dir);

    read_only_session(dir, &ips, &before).await;
    assert_eq!(run_ids(dir), before, "reads made runs");
    changes_session(dir, &ips, &before).await;
}

async fn read_only_session(
    dir: &Path,
    ips: &std::collections::BTreeMap<String, String>,
    runs: &[String],
) {
    let up = &runs[0];
    let calls = json!([
        {"op": "tools"},
        {"op": "resources"},
        {"op": "read", "uri": "nix-infra://repo/nodes/worker1.nix"},
        call("list-available-nodes", json!({})),
        call("remote-command", json!({"target": "ctrl1,worker1", "command": "uname -n"})),
        call("remote-command", json!({"target": "worker1", "command": "uname -n | wc -c"})),
        call("systemctl", json!({"target": "worker1", "command": "status", "units": "etcd.service,confd.service"})),
        call("journalctl", json!({"target": "worker1", "options": "-u hello.service -n 5"})),
        call("system-stats", json!({"target": "worker1", "operation": "health"})),
        call("etcd", json!({"query": "nodes"})),
        call("etcd", json!({"target": "ctrl1", "query": "get --prefix /cluster/nodes --keys-only"})),
        call("configuration-files", json!({"operation": "read-file", "path": "nodes/worker1.nix"})),
        call("configuration-files", json!({"operation": "search-text", "pattern": "hello", "file-pattern": "*.nix"})),
        call("check", json!({})),
        call("plan", json!({"request": {"request": "update-node", "target": "worker1"}})),
        call("runs_list", json!({})),
        call("run_show", json!({"id": up})),
        call("run_logs", json!({"id": up, "tail": 3})),
        // Refused, each with its reason.
        call("remote-command", json!({"target": "worker1", "command": "systemctl restart hello.service"})),
        call("remote-command", json!({"target": "worker1", "command": "find / -delete"})),
        call("remote-command", json!({"target": "worker1", "command": "cat /etc/hostname; rm -rf /"})),
        call("journalctl", json!({"target": "worker1", "options": "-f"})),
        call("etcd", json!({"query": "put /cluster/x y"})),
        call("configuration-files", json!({"operation": "read-file", "path": ".env"})),
        call("remote-command", json!({"target": "nope1", "command": "uname"})),
        call("update-node", json!({"target": "worker1"})),
        // Reads run as nobody: the node's keys stay unreadable.
        call("remote-command", json!({"target": "worker1", "command": "id -u"})),
        call("remote-command", json!({"target": "ctrl1", "command": "cat /root/certs/client-key.pem"})),
        call("remote-command", json!({"target": "worker1", "command": "sort --outp /root/x"})),
    ]);
    let (a, _) = session(stdio(dir, &[]), calls);
    let mut expected: Vec<String> = READ_TOOLS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(
        names(&a[0]),
        expected,
        "the read-only cluster profile offers exactly the reads"
    );
    let worker_nix = std::fs::read_to_string(dir.join("nodes/worker1.nix")).unwrap();
    let uris: Vec<&str> = a[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert!(
        uris.contains(&"nix-infra://repo/nodes/worker1.nix"),
        "{uris:?}"
    );
    assert!(
        uris.iter()
            .all(|u| !u.contains(".env") && !u.contains("keys/") && !u.contains("secrets/")),
        "{uris:?}"
    );
    assert_eq!(a[2][0]["text"], worker_nix);

    let listed: Vec<(String, String)> = done(&a[3])["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().into(),
                n["ipv4"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        ips.iter()
            .map(|(n, i)| (n.clone(), i.clone()))
            .collect::<Vec<_>>()
    );

    // Each node answers for itself (its own UTS namespace), in the order asked.
    assert_eq!(
        outputs(&a[4]),
        [
            ("ctrl1".into(), "ctrl1\n".into()),
            ("worker1".into(), "worker1\n".into())
        ]
    );
    assert_eq!(outputs(&a[5]), [("worker1".into(), "8\n".into())]);
    assert_eq!(done(&a[5])["nodes"][0]["exit"], 0);

    // What ran on the node is exactly the checked words (the stand-ins record their arguments).
    let ip = &ips["worker1"];
    let log = on_node(
        dir,
        "worker1",
        ip,
        "cat /var/lib/nixos-standin/systemctl.log",
    )
    .await;
    assert_eq!(
        log.lines().last(),
        Some("status etcd.service confd.service --no-pager"),
        "{log}"
    );
    let jlog = on_node(
        dir,
        "worker1",
        ip,
        "cat /var/lib/nixos-standin/journalctl.log",
    )
    .await;
    assert_eq!(
        jlog.lines().last(),
        Some("-u hello.service -n 5 --no-pager"),
        "{jlog}"
    );
    let journal = &outputs(&a[7])[0].1;
    assert!(
        journal
            .lines()
            .all(|l| l.contains("hello.service") || l == "-- No entries --"),
        "{journal}"
    );
    let stats = &outputs(&a[8])[0].1;
    assert!(stats.starts_with("=== health ===\nload: "), "{stats}");
    assert!(
        stats.contains("\nmem: ") && stats.contains("\ncpu: "),
        "{stats}"
    );

    let registered: Vec<&str> = done(&a[9])["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(registered.contains(&"worker1"), "{registered:?}");
    let keys = &outputs(&a[10])[0];
    assert_eq!(keys.0, "ctrl1");
    assert!(
        keys.1.lines().any(|l| l == "/cluster/nodes/worker1"),
        "{}",
        keys.1
    );

    let numbered = done(&a[11])["content"].as_str().unwrap();
    assert_eq!(
        numbered.lines().next(),
        Some(format!("L1: {}", worker_nix.lines().next().unwrap()).as_str())
    );
    let hits = done(&a[12])["matches"].as_array().unwrap();
    assert!(
        !hits.is_empty()
            && hits
                .iter()
                .all(|h| h["file"].as_str().unwrap().ends_with(".nix")),
        "{hits:?}"
    );
    assert_eq!(done(&a[13])["ok"], true);
    let steps: Vec<&str> = done(&a[14])["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(steps.iter().any(|s| s.ends_with("/worker1")), "{steps:?}");
    let listed_runs: Vec<&str> = done(&a[15])["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed_runs,
        runs.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let shown = done(&a[16]);
    assert_eq!(
        (shown["id"].as_str(), shown["status"].as_str()),
        (Some(up.as_str()), Some("succeeded"))
    );
    assert!(
        shown["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["result"] == "ok"),
        "{shown}"
    );
    assert_eq!(done(&a[17])["lines"].as_array().unwrap().len(), 3);

    for (k, why) in [
        (18, "`systemctl restart` changes the system"),
        (19, "`find -delete` deletes files"),
        (20, "several commands"),
        (21, "never ends"),
        (22, "`etcdctl put` changes etcd"),
        (23, "hidden files"),
        (24, "no node named nope1"),
    ] {
        let text = refusal(&a[k]);
        assert!(
            text.starts_with("refused: ") && text.contains(why),
            "{k}: {text}"
        );
    }
    assert!(refusal(&a[18]).contains("--allow-changes"));
    // Without --allow-changes the tool does not exist at all.
    assert_eq!(a[25]["protocol_error"], "tool not found");
    assert_eq!(outputs(&a[26]), [("worker1".into(), "65534\n".into())]);
    let key = &done(&a[27])["nodes"][0];
    assert_ne!(key["exit"], 0, "{key}");
    assert!(
        key["output"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{key}"
    );
    assert!(refusal(&a[28]).contains("not an option the read-only check allows"));
}

/// `app_modules/mcp/action.sh`: prints its variable (redacted) and a value to store.
fn write_action(dir: &Path) {
    let folder = dir.join("app_modules/mcp");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("action.sh"),
        "case \"$1\" in\n  show) echo \"pw=$PASSWORD on $(hostname)\" ;;\n  mint) echo minted-7c1e9a ;;\nesac\n",
    )
    .unwrap();
}

async fn changes_session(
    dir: &Path,
    ips: &std::collections::BTreeMap<String, String>,
    before: &[String],
) {
    write_action(dir);
    let secret = "pw-4b1d-9e77";
    let calls = json!([
        {"op": "tools"},
        call("remote-command", json!({"target": "worker1", "command": "touch /root/mcp-was-here && echo made"})),
        call("remote-command", json!({"target": "worker1", "command": "uname -n"})),
        call("file-upload", json!({"target": "worker1", "local_path": "nodes/worker1.nix", "remote_path": "/root/up"})),
        call("file-upload", json!({"target": "worker1", "local_path": ".env"})),
        call("file-upload", json!({"target": "worker1", "local_path": "keys/age.key"})),
        call("action", json!({"target": "worker1", "app": "mcp", "args": ["show"], "env_vars": format!("PASSWORD={secret}")})),
        call("action", json!({"target": "worker1", "app": "mcp", "args": ["mint"], "save_as_secret": "mcp-minted"})),
        call("update-node", json!({"target": "worker1"})),
        call("run_resume", json!({"id": before[0]})),
        call("run_cancel", json!({"id": before[0]})),
    ]);
    let (a, stderr) = session(stdio(dir, &["--allow-changes"]), calls);
    let tools = names(&a[0]);
    for t in [
        "action",
        "deploy-apps",
        "file-upload",
        "run_cancel",
        "run_resume",
        "update-node",
    ] {
        assert!(tools.contains(&t.to_string()), "{t} missing: {tools:?}");
    }
    // A change is a run: its id, each node's result and output.
    let touched = done(&a[1]);
    let id = touched["run_id"].as_str().unwrap().to_string();
    assert_eq!(
        (touched["workflow"].as_str(), touched["status"].as_str()),
        (Some("node.cmd"), Some("succeeded"))
    );
    assert_eq!(touched["nodes"][0]["node"], "worker1");
    assert_eq!(touched["nodes"][0]["result"], "ok");
    assert_eq!(touched["output"][0]["lines"], json!(["made"]));
    let ip = &ips["worker1"];
    assert_eq!(
        on_node(dir, "worker1", ip, "ls /root/mcp-was-here").await,
        "/root/mcp-was-here\n"
    );
    // A read stays a read, with changes allowed too.
    assert!(done(&a[2]).get("run_id").is_none());

    let uploaded = done(&a[3]);
    assert_eq!(uploaded["workflow"], "node.upload");
    let worker_nix = std::fs::read_to_string(dir.join("nodes/worker1.nix")).unwrap();
    assert_eq!(
        on_node(dir, "worker1", ip, "cat /root/up/worker1.nix").await,
        worker_nix
    );
    assert!(refusal(&a[4]).contains(".env is hidden and never uploaded"));
    assert!(refusal(&a[5]).contains("keys holds keys or secrets"));

    let shown = done(&a[6]);
    assert_eq!(
        shown["output"][0]["lines"],
        json!(["pw=[redacted] on worker1"])
    );
    let minted = done(&a[7]);
    assert_eq!(
        minted["output"][0]["lines"],
        json!(["stored the output as secret mcp-minted (version 1)"]),
        "a saved output is never shown"
    );
    assert_eq!(
        ok(cli(dir).args(["secrets", "get", "--name", "mcp-minted"])).trim(),
        "minted-7c1e9a"
    );

    let updated = done(&a[8]);
    assert_eq!(
        (updated["workflow"].as_str(), updated["status"].as_str()),
        (Some("node.update"), Some("succeeded"))
    );
    assert!(refusal(&a[9]).contains("already succeeded"));
    assert_eq!(done(&a[10])["cancel"], "already finished");

    // Every change is in `runs list`, and the secret is nowhere: not in the
    // answers, the server's stderr or the state database.
    let after = run_ids(dir);
    for r in [
        &id,
        a[3]["structured"]["run_id"].as_str().unwrap(),
        a[6]["structured"]["run_id"].as_str().unwrap(),
        updated["run_id"].as_str().unwrap(),
    ] {
        assert!(
            after.iter().any(|x| x == r),
            "{r} not in runs list: {after:?}"
        );
    }
    assert_eq!(after.len(), before.len() + 5);
    let mut db = std::fs::read(dir.join(".nix-infra/state.db")).unwrap();
    db.extend(std::fs::read(dir.join(".nix-infra/state.db-wal")).unwrap_or_default());
    for (what, text) in [
        ("answers", serde_json::to_string(&a).unwrap()),
        ("stderr", stderr),
        ("database", String::from_utf8_lossy(&db).into_owned()),
    ] {
        assert!(!text.contains(secret), "the secret is in the {what}");
        assert!(
            !text.contains("minted-7c1e9a"),
            "the minted secret is in the {what}"
        );
    }
}

/// A change waits for its node's lock: a `fleet cmd` a worker executes holds
/// f1 until the test lets it go, and the agent's change runs only after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_waits_for_the_run_that_holds_its_node() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let _down = Down(dir.to_path_buf());
    let ip = common::one_fleet_node(dir, "f1").await;
    let url = format!("sqlite://{}/.nix-infra/state.db", dir.display());
    let _worker = common::Worker::start(dir, &url);
    let hold = "touch /root/holder-started; while [ ! -f /root/go ]; do sleep 0.05; done";
    ok(cli(dir).args(["fleet", "cmd", "--detach", "--target", "f1", hold]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while on_node(dir, "f1", &ip, "ls /root")
        .await
        .lines()
        .all(|l| l != "holder-started")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never started the holding run"
        );
        tokio::task::yield_now().await;
    }

    let calls = json!([
        {"op": "tools"},
        call("remote-command", json!({"target": "f1", "command": "touch /root/second"})),
    ]);
    let mut child = python()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = json!({"server": stdio(dir, &["--profile", "fleet", "--allow-changes", "-v"]), "calls": calls});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.to_string().as_bytes())
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let waiting = stderr
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("waiting for a resource lock"));
    assert!(
        waiting.is_some_and(|l| l.contains("held by run")),
        "the change never waited for the lock"
    );
    assert!(
        !on_node(dir, "f1", &ip, "ls /root").await.contains("second"),
        "it ran while f1 was held"
    );
    on_node(dir, "f1", &ip, "touch /root/go").await;
    let rest = std::thread::spawn(move || stderr.map_while(Result::ok).collect::<Vec<_>>());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", rest.join());
    let a: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let tools = names(&a[0]);
    assert!(
        !tools.contains(&"etcd".to_string()),
        "the fleet profile has no etcd: {tools:?}"
    );
    assert!(
        tools.contains(&"remote-command".to_string()) && tools.contains(&"update-node".to_string())
    );
    let run = done(&a[1]);
    assert_eq!(
        (run["workflow"].as_str(), run["status"].as_str()),
        (Some("node.cmd"), Some("succeeded"))
    );
    assert!(on_node(dir, "f1", &ip, "ls /root").await.contains("second"));

    // A read that outlasts --read-timeout is stopped on the node, all of it.
    let calls = json!([call(
        "remote-command",
        json!({"target": "f1", "command": "vmstat 1"})
    )]);
    let (a, _) = session(
        stdio(dir, &["--profile", "fleet", "--read-timeout", "1"]),
        calls,
    );
    assert_eq!(a[0]["is_error"], true, "{}", a[0]);
    let node = &a[0]["structured"]["nodes"][0];
    assert_eq!(node["exit"], 124, "{node}");
    assert!(
        node["error"]
            .as_str()
            .unwrap()
            .contains("stopped after 1 s"),
        "{node}"
    );
    assert!(node["output"].as_str().unwrap().contains("procs"), "{node}");
    assert_eq!(
        on_node(dir, "f1", &ip, "pgrep -x vmstat || echo none").await,
        "none\n"
    );
}
