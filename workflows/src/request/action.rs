//! Checks of `cluster action` (and `fleet action`): `--cmd` as words, and
//! the placeholders of `--env-vars` values known before the run exists.

use super::refused;
use crate::cluster::ClusterError;
use crate::node::{NodesInput, may_name, placeholders, var_names};

/// The words of `--cmd` (the Dart tool hands it to the node's shell): split
/// on whitespace, with `'…'` literal, `"…"` keeping its spaces (`\"`, `\\`,
/// `` \` `` and `\$` escaped inside), and a backslash outside quotes taking
/// the next character as it is. Nothing is expanded (`$HOME` stays `$HOME`).
pub(super) fn words(text: &str) -> Result<Vec<String>, ClusterError> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    let unclosed = || refused("--cmd: a quote is never closed");
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => out.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next().ok_or_else(unclosed)? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next().ok_or_else(unclosed)? {
                        '"' => break,
                        '\\' => match chars.next().ok_or_else(unclosed)? {
                            e @ ('"' | '\\' | '$' | '`') => w.push(e),
                            e => {
                                w.push('\\');
                                w.push(e);
                            }
                        },
                        c => w.push(c),
                    }
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(String::new);
                w.extend(chars.next());
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    Ok(out)
}

/// Refuses a `[%%key%%]` in the values of `text` (`KEY=VALUE` lines) that a
/// target node has no variable for, naming the variable, the placeholder
/// and the node.
pub(super) fn known_placeholders(i: &NodesInput, text: &str) -> Result<(), ClusterError> {
    for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
        let keys = placeholders(v);
        if keys.is_empty() {
            continue;
        }
        for n in &i.nodes {
            let names = var_names(i, n);
            let unknown: Vec<String> = keys
                .iter()
                .filter(|key| !may_name(i, &names, key))
                .map(|key| format!("[%%{key}%%]"))
                .collect();
            if !unknown.is_empty() {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                return Err(refused(format!(
                    "--env-vars {k}: unknown placeholder {} for {} (its placeholders: {})",
                    unknown.join(", "),
                    n.name,
                    names.join(", ")
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn cmd_splits_like_a_shell_without_expanding() {
        let w = |t: &str| words(t).unwrap();
        assert_eq!(
            w("create-db --database=hello"),
            ["create-db", "--database=hello"]
        );
        assert_eq!(
            w(r#"say 'a b' "c \"d\" $HOME" e\ f ''"#),
            ["say", "a b", "c \"d\" $HOME", "e f", ""]
        );
        assert!(w("   ").is_empty());
        let e = words("say 'open").unwrap_err().to_string();
        assert_eq!(e, "--cmd: a quote is never closed");
    }
}
