//! `nix-instantiate --parse` over many texts: each in its own file, a few
//! at a time, the parser's message reduced to its error and position.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Every `.nix` file under `root`, sorted.
pub(super) fn nix_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "nix") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// What `nix-instantiate` says its parser could not take in each text
/// (`None`: it parses). `Err` when `nix-instantiate` is not installed (or
/// cannot be run): the warning to give.
pub(super) fn parse_all(texts: &[String]) -> Result<Vec<Option<String>>, String> {
    if texts.is_empty() {
        return Ok(Vec::new());
    }
    let dir = tempfile::tempdir().map_err(|e| format!("cannot parse the .nix files: {e}"))?;
    let mut paths = Vec::new();
    for (k, t) in texts.iter().enumerate() {
        let p = dir.path().join(format!("{k}.nix"));
        std::fs::write(&p, t).map_err(|e| format!("cannot parse the .nix files: {e}"))?;
        paths.push(p);
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let chunk = paths.len().div_ceil(threads);
    let results: Vec<Result<Vec<Option<String>>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|p| parse_one(p)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the parser panicked".into()))
            })
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

fn parse_one(path: &Path) -> Result<Option<String>, String> {
    let out = Command::new("nix-instantiate")
        .arg("--parse")
        .arg(path)
        .env("NIX_CONFIG", "build-users-group =")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "nix-instantiate is not installed: the .nix files were not parsed \
                 (install Nix, e.g. Debian's nix-bin, to check them before a run)"
                    .to_string()
            } else {
                format!("cannot run nix-instantiate: {e}: the .nix files were not parsed")
            }
        })?;
    if out.status.success() {
        return Ok(None);
    }
    Ok(Some(message(&String::from_utf8_lossy(&out.stderr))))
}

/// The parser's error and its line and column, without the temp file's path:
/// `syntax error, unexpected ';' (line 1, column 24)`.
pub(super) fn message(stderr: &str) -> String {
    let mut error: Option<String> = None;
    let mut at: Option<String> = None;
    for line in stderr.lines().map(str::trim) {
        match &error {
            None => {
                if let Some(e) = line.strip_prefix("error:") {
                    // Older Nix puts the position on the same line: `…, at FILE:L:C`.
                    let (e, pos) = match e.rsplit_once(", at ") {
                        Some((e, pos)) => (e, position(pos)),
                        None => (e, None),
                    };
                    error = Some(e.trim().to_string());
                    at = pos;
                }
            }
            Some(_) if at.is_none() => {
                if let Some(pos) = line.strip_prefix("at ") {
                    at = position(pos);
                }
            }
            Some(_) => break,
        }
    }
    let error = error.unwrap_or_else(|| {
        let text = stderr.trim();
        if text.is_empty() {
            "nix-instantiate --parse failed".into()
        } else {
            text.lines().last().unwrap_or(text).to_string()
        }
    });
    match at {
        Some(at) => format!("{error} ({at})"),
        None => error,
    }
}

/// `FILE:LINE:COL[:]` as `line LINE, column COL`.
fn position(at: &str) -> Option<String> {
    let mut parts = at.trim().trim_end_matches(':').rsplitn(3, ':');
    let col: u32 = parts.next()?.parse().ok()?;
    let line: u32 = parts.next()?.parse().ok()?;
    Some(format!("line {line}, column {col}"))
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn the_message_keeps_the_error_and_its_position_only() {
        let nix28 = "error: syntax error, unexpected ';'\n\n       at /tmp/.tmpA/3.nix:1:24:\n\n            1| { ... }: { imports = [ ; }\n             |                        ^\n";
        assert_eq!(
            message(nix28),
            "syntax error, unexpected ';' (line 1, column 24)"
        );
        let older = "error: syntax error, unexpected ';', at /tmp/x/0.nix:2:5\n";
        assert_eq!(
            message(older),
            "syntax error, unexpected ';' (line 2, column 5)"
        );
        let warned = "warning: the group 'nixbld' does not exist\nerror: undefined variable 'x'\n";
        assert_eq!(message(warned), "undefined variable 'x'");
    }
}
