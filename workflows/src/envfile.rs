//! Env files (`.env`) as the Dart nix-infra's templates write them and as
//! `dotenvy` (which read them before) accepted them.
//!
//! One `KEY=VALUE` per line; blank lines and lines starting with `#` are
//! skipped; `export KEY=VALUE` is `KEY=VALUE`; a key is a letter or `_`
//! followed by letters, digits, `_` and `.`. The value:
//!
//! - **unquoted**, the rest of the line, trimmed, inner spaces kept
//!   (`CERT_COMPANY=Your Company Inc` is `Your Company Inc`, as in the Dart
//!   tool; `dotenvy` refused it). A `#` after whitespace starts a comment
//!   (`A=b #note` is `b`), one inside a word does not (`A=b#c` is `b#c`);
//!   quotes inside it are plain characters (`A=Bob's` is `Bob's`);
//! - **in single quotes** (the whole value), literal;
//! - **in double quotes** (the whole value), `#` and spaces kept.
//!
//! After a closing quote only a ` #comment` may follow, and a quoted value
//! may span lines. Unquoted and in double quotes, `\\`, `\"`, `\'`, `\$`,
//! `\ ` and `\n` (a newline) are escapes, and a backslash before anything
//! else is kept, as the Dart tool keeps it; `$NAME` and `${NAME}` (`NAME` of
//! letters, digits and `_`) are replaced by the variable from the process
//! environment, else by one defined earlier in the file, else by nothing.
//! A later duplicate key wins. A line with no `=` is refused with its line
//! number; the line itself is never echoed (it may hold a secret).

use std::collections::BTreeMap;

/// Why an env file does not parse: the line an entry starts on and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct EnvFileError {
    /// 1-based.
    pub line: usize,
    /// What is wrong (never the value).
    pub reason: String,
}

/// The variables of an env file's text; `$NAME` references resolve through
/// `lookup` first (the process environment), then earlier entries.
pub fn parse(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, EnvFileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((at, line)) = lines.next() {
        let err = |reason: String| EnvFileError {
            line: at + 1,
            reason,
        };
        let entry = line.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let entry = strip_export(entry);
        let Some((key, value)) = entry.split_once('=') else {
            return Err(err("no `=` (expected KEY=VALUE)".into()));
        };
        let key = key.trim_end();
        if !is_key(key) {
            // The text itself is not shown: the line may be a pasted secret.
            return Err(err(
                "the text before `=` is not a variable name (a letter or `_`, then letters, digits, `_` and `.`)"
                    .into(),
            ));
        }
        let mut value = value.trim_start().to_string();
        while open_quote(&value) {
            let Some((_, next)) = lines.next() else {
                return Err(err(format!("the quoted value of {key} is never closed")));
            };
            value.push('\n');
            value.push_str(next);
        }
        let parsed = parse_value(value.trim_end(), |name| {
            lookup(name).or_else(|| vars.get(name).cloned())
        })
        .map_err(|reason| err(format!("{key}: {reason}")))?;
        vars.insert(key.to_string(), parsed);
    }
    Ok(vars)
}

fn strip_export(entry: &str) -> &str {
    match entry.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => entry,
    }
}

fn is_key(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Whether `value` opens a quote it does not close (so the entry continues
/// on the next line).
fn open_quote(value: &str) -> bool {
    match value.chars().next() {
        Some('\'') => !value[1..].contains('\''),
        Some('"') => closing_double(&value[1..]).is_none(),
        _ => false,
    }
}

/// The byte offset of the first unescaped `"` in `body`.
fn closing_double(body: &str) -> Option<usize> {
    let mut escaped = false;
    for (at, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(at),
            _ => {}
        }
    }
    None
}

/// The text of a value (after `=`, trimmed): quotes around it removed,
/// escapes and `$NAME` references resolved, a trailing ` #comment` dropped.
/// Quotes inside an unquoted value are plain characters (`A=Bob's` is `Bob's`).
fn parse_value(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let (value, rest) = match input.chars().next() {
        Some('\'') => {
            let end = input[1..].find('\'').ok_or("a quote is never closed")?;
            (input[1..=end].to_string(), &input[end + 2..])
        }
        Some('"') => {
            let end = closing_double(&input[1..]).ok_or("a quote is never closed")?;
            (expand(&input[1..=end], false, &lookup)?, &input[end + 2..])
        }
        // `A= #note`: no value, a comment.
        Some('#') => return Ok(String::new()),
        _ => return expand(input, true, &lookup),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(value)
    } else {
        Err("text after the closing quote (quote the whole value, or none of it)".into())
    }
}

/// `text` with its escapes and `$NAME` references resolved; with `comments`,
/// a `#` after whitespace ends it and trailing whitespace is dropped.
fn expand(
    text: &str,
    comments: bool,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut spaces = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if comments && (c == ' ' || c == '\t') {
            spaces.push(c);
            continue;
        }
        if comments && c == '#' && !spaces.is_empty() {
            return Ok(out);
        }
        out.push_str(&spaces);
        spaces.clear();
        match c {
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some(e @ ('\\' | '\'' | '"' | '$' | ' ')) => out.push(e),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '$' => substitute(&mut chars, &mut out, lookup)?,
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Appends the value `$NAME` or `${NAME}` (the `$` already read) refers to.
fn substitute(
    chars: &mut std::iter::Peekable<std::str::Chars>,
    out: &mut String,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let word = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    let mut name = String::new();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            match chars.next() {
                Some('}') => break,
                Some(c) => name.push(c),
                None => return Err("`${` is never closed with `}`".into()),
            }
        }
    } else {
        while let Some(c) = chars.next_if(word) {
            name.push(c);
        }
        if name.is_empty() {
            out.push('$');
            return Ok(());
        }
    }
    out.push_str(&lookup(&name).unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(text: &str) -> BTreeMap<String, String> {
        parse(text, |k| (k == "FROM_ENV").then(|| "outside".to_string())).unwrap()
    }

    fn one(line: &str) -> String {
        env(line).into_values().next().unwrap()
    }

    #[test]
    fn unquoted_values_keep_their_inner_spaces_as_the_dart_templates_write_them() {
        let vars = env(
            "# Certificate Authority\nCERT_COMPANY=Your Company Inc\nCERT_EMAIL=you@example.com\n\
             SECRETS_PWD=my_secrets_password\nHCLOUD_TOKEN=\n",
        );
        assert_eq!(vars["CERT_COMPANY"], "Your Company Inc");
        assert_eq!(vars["CERT_EMAIL"], "you@example.com");
        assert_eq!(vars["SECRETS_PWD"], "my_secrets_password");
        assert_eq!(vars["HCLOUD_TOKEN"], "");
        assert_eq!(one("A =  spaced   out  \t"), "spaced   out");
    }

    #[test]
    fn comments_quotes_export_and_references_read_as_dotenvy_read_them() {
        assert_eq!(one("A=b #a comment"), "b");
        assert_eq!(one("A=b c\t# a comment"), "b c");
        assert_eq!(one("A=b#c"), "b#c");
        assert_eq!(one("A= # only a comment"), "");
        assert_eq!(
            one("A='lit $FROM_ENV \\n # x' # c"),
            "lit $FROM_ENV \\n # x"
        );
        assert_eq!(
            one(r#"A="say \"hi\"\n$FROM_ENV" # c"#),
            "say \"hi\"\noutside"
        );
        assert_eq!(one(r##"A="# not a comment""##), "# not a comment");
        assert_eq!(one("export A=1"), "1");
        assert_eq!(env("export=1")["export"], "1");
        assert_eq!(one(r"A=C:\dir\$5"), r"C:\dir$5");
        assert_eq!(one("CERT_COMPANY=Bob's \"Best\" Co"), "Bob's \"Best\" Co");
        let vars = env("HOST=db\nURL=http://${HOST}:$PORT_X/$FROM_ENV\nHOST=later\n");
        assert_eq!(vars["URL"], "http://db:/outside");
        assert_eq!(vars["HOST"], "later");
        let vars = env("KEY=\"line one\nline two\"\nNEXT='a\nb'\n");
        assert_eq!(vars["KEY"], "line one\nline two");
        assert_eq!(vars["NEXT"], "a\nb");
        assert_eq!(env("\u{feff}A=1\r\nB=2\r\n")["B"], "2");
    }

    #[test]
    fn a_line_without_an_equals_sign_is_refused_by_its_number_not_its_text() {
        let e = parse("GOOD=1\n\nthis is secret\n", |_| None).unwrap_err();
        assert_eq!(e.to_string(), "line 3: no `=` (expected KEY=VALUE)");
        let e = parse("A=1\nMY KEY=2\n", |_| None).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("is not a variable name"), "{e}");
        assert!(
            !e.reason.contains("MY KEY"),
            "the line's text is not echoed: {e}"
        );
        let e = parse("A=1\nB=\"open\nC=3\n", |_| None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: the quoted value of B is never closed"
        );
        let e = parse("A='x' y\n", |_| None).unwrap_err();
        assert!(e.reason.contains("text after the closing quote"), "{e}");
        let e = parse("A=${B\n", |_| None).unwrap_err();
        assert_eq!(e.to_string(), "line 1: A: `${` is never closed with `}`");
    }
}
