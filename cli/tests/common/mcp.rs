//! A real MCP client for the tests: the official `mcp` Python SDK
//! (`tests/mcp/client.py`, installed by scripts/setup.sh), and readers of
//! its answers.

use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The client script.
pub const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/client.py");

/// The MCP client, with the same clean environment as [`cli`].
pub fn python() -> Command {
    let mut c = Command::new("python3");
    c.arg(CLIENT)
        .env_remove("DATABASE_URL")
        .env_remove("HCLOUD_TOKEN")
        .env_remove("HCLOUD_ENDPOINT")
        .env_remove("SECRETS_PASS")
        .env_remove("SECRETS_PWD")
        .env("NIX_INFRA_SANDBOX_OWNER", std::process::id().to_string());
    c
}

/// One client session against `server` running `calls`: (answers, stderr).
pub fn session(server: Value, calls: Value) -> (Vec<Value>, String) {
    let mut child = python()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/setup.sh installs it with the mcp SDK)");
    let script = json!({"server": server, "calls": calls});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "the MCP client failed:\n{stderr}");
    let answers = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    (answers, stderr)
}

/// `nix-infra -d DIR --lease-ttl 2 mcp FLAGS…` over stdio.
pub fn stdio(dir: &Path, flags: &[&str]) -> Value {
    let mut args = vec![
        "-d".to_string(),
        dir.display().to_string(),
        "--lease-ttl".into(),
        "2".into(),
        "mcp".into(),
    ];
    args.extend(flags.iter().map(|f| f.to_string()));
    json!({"command": super::BIN, "args": args})
}

pub fn call(tool: &str, args: Value) -> Value {
    json!({"op": "call", "tool": tool, "args": args})
}

pub fn names(tools: &Value) -> Vec<String> {
    let mut n: Vec<String> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

/// A tool call's answer: its structured content, asserting it succeeded.
pub fn done(answer: &Value) -> &Value {
    assert_eq!(answer["is_error"], false, "{answer}");
    &answer["structured"]
}

/// A tool call's refusal text, asserting it was refused.
pub fn refusal(answer: &Value) -> String {
    assert_eq!(answer["is_error"], true, "{answer}");
    answer["text"].as_str().unwrap().to_string()
}

/// Each node's output, by node.
pub fn outputs(answer: &Value) -> Vec<(String, String)> {
    done(answer)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().into(),
                n["output"].as_str().unwrap().into(),
            )
        })
        .collect()
}
