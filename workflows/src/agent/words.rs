//! A command line as the node's shell would read it, as far as a read-only
//! check needs: words (quotes and backslashes resolved) and the operators
//! between them. Anything the shell would expand or redirect is refused
//! here, with the reason, rather than guessed at.

use super::NotReadOnly;

/// What separates two commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `|`: the next command reads this one's output.
    Pipe,
    /// `;`, `&&`, `||`, `&` or a newline: another command.
    List,
}

/// One token of a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// A word, quotes removed.
    Word(String),
    /// An operator between commands.
    Op(Operator),
}

fn refuse(reason: impl Into<String>) -> NotReadOnly {
    NotReadOnly::new(reason)
}

/// Splits `text` into words and operators: `'…'` is literal, `"…"` keeps its
/// spaces (`\"`, `\\` escaped), a backslash outside quotes takes the next
/// character. Refused: `$`, `` ` `` (outside single quotes), `>`, `<`, `(`,
/// `)`, `{`, `}` and unquoted glob characters (`*`, `?`, `[`), since what
/// they expand to is not what was checked.
pub fn tokens(text: &str) -> Result<Vec<Token>, NotReadOnly> {
    no_controls(text)?;
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                out.extend(word.take().map(Token::Word));
                out.push(Token::Op(Operator::List));
            }
            c if c.is_whitespace() => out.extend(word.take().map(Token::Word)),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(refuse("a single quote is never closed")),
                    }
                }
            }
            '"' => double_quoted(&mut chars, word.get_or_insert_with(String::new))?,
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(c) => word.get_or_insert_with(String::new).push(c),
            },
            '|' | ';' | '&' => {
                out.extend(word.take().map(Token::Word));
                let doubled = chars.next_if_eq(&c).is_some();
                let op = if c == '|' && !doubled {
                    Operator::Pipe
                } else {
                    Operator::List
                };
                out.push(Token::Op(op));
            }
            '$' | '`' => return Err(expansion()),
            '>' | '<' => return Err(refuse(format!("`{c}` redirects a file"))),
            '(' | ')' | '{' | '}' => {
                return Err(refuse(format!(
                    "`{c}` groups commands in a subshell or block"
                )));
            }
            '*' | '?' | '[' => {
                return Err(refuse(format!(
                    "`{c}` would expand to file names the check cannot see; quote it to mean it literally"
                )));
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word.map(Token::Word));
    Ok(out)
}

/// Refuses a control character other than a tab or a newline: a NUL is
/// dropped by the shell, so `-ex\0ec` would run as `-exec`.
pub fn no_controls(text: &str) -> Result<(), NotReadOnly> {
    match text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n'))
    {
        Some(c) => Err(refuse(format!(
            "the command holds the control character {c:?}, which the shell would not run as written"
        ))),
        None => Ok(()),
    }
}

fn expansion() -> NotReadOnly {
    refuse(
        "`$` and backticks expand to text the check cannot see; put literal text in single quotes",
    )
}

fn double_quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    w: &mut String,
) -> Result<(), NotReadOnly> {
    loop {
        match chars.next() {
            Some('"') => return Ok(()),
            Some('$' | '`') => return Err(expansion()),
            Some('\\') => match chars.next() {
                Some(e @ ('"' | '\\' | '$' | '`')) => w.push(e),
                Some('\n') => {}
                Some(e) => {
                    w.push('\\');
                    w.push(e);
                }
                None => return Err(refuse("a double quote is never closed")),
            },
            Some(c) => w.push(c),
            None => return Err(refuse("a double quote is never closed")),
        }
    }
}

/// The commands of `text` as a pipeline: each command's words. A list of
/// commands (`;`, `&&`, `||`, `&`, a newline) is refused: one command, or
/// one pipeline, per call.
pub fn pipeline(text: &str) -> Result<Vec<Vec<String>>, NotReadOnly> {
    let mut commands = vec![Vec::new()];
    for t in tokens(text)? {
        match t {
            Token::Word(w) => commands.last_mut().expect("one").push(w),
            Token::Op(Operator::Pipe) => commands.push(Vec::new()),
            Token::Op(Operator::List) => {
                return Err(refuse(
                    "`;`, `&&`, `||`, `&` and newlines run several commands: give one command (or a pipeline with `|`) per call",
                ));
            }
        }
    }
    if commands.iter().any(Vec::is_empty) {
        return Err(refuse(if commands.len() == 1 {
            "the command is empty"
        } else {
            "a `|` has no command on one side"
        }));
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<Vec<String>> {
        pipeline(s).unwrap()
    }

    #[test]
    fn quotes_and_escapes_make_words_as_the_shell_does() {
        assert_eq!(
            words(r#"ls -l '/a b' "c\"d" e\ f"#),
            vec![vec!["ls", "-l", "/a b", "c\"d", "e f"]]
        );
        assert_eq!(words("ps aux | grep 'nix *'").len(), 2);
        assert_eq!(words("echo '$HOME'"), vec![vec!["echo", "$HOME"]]);
    }

    #[test]
    fn what_the_shell_would_expand_or_chain_is_refused_with_its_reason() {
        for (cmd, why) in [
            ("ls; rm -rf /", "several commands"),
            ("ls && rm x", "several commands"),
            ("ls & rm x", "several commands"),
            ("ls\nrm x", "several commands"),
            ("echo $(rm x)", "`$`"),
            ("echo \"$HOME\"", "`$`"),
            ("echo `rm x`", "backticks"),
            ("echo x > /etc/f", "redirects"),
            ("cat < /etc/f", "redirects"),
            ("ls *", "expand to file names"),
            ("ls 'a", "never closed"),
            ("find / '-ex\u{0}ec' id ';'", "control character"),
            ("cat \u{1b}[2J", "control character"),
            ("ls |", "no command"),
            ("", "empty"),
        ] {
            let e = pipeline(cmd).unwrap_err();
            assert!(e.to_string().contains(why), "{cmd:?}: {e}");
        }
    }
}
