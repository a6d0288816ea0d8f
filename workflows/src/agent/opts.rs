//! A binary's options, parsed the way `getopt_long` reads them, against an
//! exact allow-list: every short letter and every long name must be on the
//! list, written in full (GNU tools take any unambiguous prefix of a long
//! option, so `--fol` would be `--follow`: a prefix is refused, never
//! guessed at). A value is attached (`-n5`, `--lines=5`) or the next word,
//! which may not start with `-` (`-n --vacuum-time=1s` would leave the tool
//! reading an option the check took for a value).

use super::NotReadOnly;

/// The options a binary may be given.
#[derive(Clone, Copy)]
pub(super) struct Opts {
    /// Short letters that take no value.
    pub flags: &'static str,
    /// Short letters that take a value.
    pub valued: &'static str,
    /// Long options that take no value (with their `--`).
    pub long: &'static [&'static str],
    /// Long options that take a value (a name may be in both lists when its value is optional).
    pub long_valued: &'static [&'static str],
    /// Why some options are refused, for a clearer answer (name, why).
    pub why: &'static [(&'static str, &'static str)],
}

/// What a command's words are once its options are read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Parsed<'a> {
    /// The words that are not options nor values, in order.
    pub operands: Vec<&'a str>,
    /// Each option given (`-n`, `--lines`) with its value, in order.
    pub options: Vec<(String, Option<&'a str>)>,
}

impl Parsed<'_> {
    /// Whether any of `names` was given.
    pub fn has(&self, names: &[&str]) -> bool {
        self.options
            .iter()
            .any(|(n, _)| names.contains(&n.as_str()))
    }

    /// The value of the last of `names` given.
    pub fn value(&self, names: &[&str]) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| names.contains(&n.as_str()))
            .and_then(|(_, v)| *v)
    }
}

fn unknown(binary: &str, o: &Opts, name: &str) -> NotReadOnly {
    let why = o.why.iter().find(|(n, _)| *n == name).map(|(_, w)| *w);
    NotReadOnly::new(match why {
        Some(w) => format!("`{binary} {name}` {w}"),
        None => format!(
            "`{binary} {name}` is not an option the read-only check allows (long options are checked as written in full)"
        ),
    })
}

/// Reads `args` (the words after the binary) against `o`.
pub(super) fn parse<'a>(
    binary: &str,
    o: &Opts,
    args: &'a [String],
) -> Result<Parsed<'a>, NotReadOnly> {
    let mut out = Parsed::default();
    let mut words = args.iter().map(String::as_str);
    let next_value = |words: &mut dyn Iterator<Item = &'a str>, name: &str| match words.next() {
        Some(v) if !v.starts_with('-') => Ok(v),
        Some(v) => Err(NotReadOnly::new(format!(
            "`{binary} {name} {v}`: give a value that starts with `-` attached ({name}={v} or {name}{v})"
        ))),
        None => Err(NotReadOnly::new(format!("`{binary} {name}` needs a value"))),
    };
    while let Some(w) = words.next() {
        if w == "--" {
            out.operands.extend(words.by_ref());
            break;
        }
        if let Some(long) = w.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v)),
                None => (w.to_string(), None),
            };
            let value = match attached {
                None if o.long.contains(&name.as_str()) => None,
                None if o.long_valued.contains(&name.as_str()) => {
                    Some(next_value(&mut words, &name)?)
                }
                Some(v) if o.long_valued.contains(&name.as_str()) => Some(v),
                _ => return Err(unknown(binary, o, &name)),
            };
            out.options.push((name, value));
        } else if let Some(group) = w.strip_prefix('-').filter(|g| !g.is_empty()) {
            for (k, c) in group.char_indices() {
                let name = format!("-{c}");
                if o.flags.contains(c) {
                    out.options.push((name, None));
                } else if o.valued.contains(c) {
                    let rest = &group[k + c.len_utf8()..];
                    let value = if rest.is_empty() {
                        next_value(&mut words, &name)?
                    } else {
                        rest
                    };
                    out.options.push((name, Some(value)));
                    break;
                } else {
                    return Err(unknown(binary, o, &name));
                }
            }
        } else {
            out.operands.push(w);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAIL: Opts = Opts {
        flags: "qv",
        valued: "n",
        long: &["--quiet"],
        long_valued: &["--lines"],
        why: &[("-f", "never ends")],
    };

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_are_read_as_getopt_reads_them() {
        let a = w("-qn5 --lines=7 -n 9 --quiet x -- -y");
        let p = parse("tail", &TAIL, &a).unwrap();
        assert_eq!(p.operands, ["x", "-y"]);
        assert_eq!(p.value(&["-n", "--lines"]), Some("9"));
        assert!(p.has(&["-q"]) && p.has(&["--quiet"]));
    }

    #[test]
    fn unknown_options_abbreviations_and_dash_values_are_refused() {
        for (args, why) in [
            ("-f x", "never ends"),
            ("--fol x", "not an option"),
            ("--quiet=1", "not an option"),
            ("-n --vacuum-time=1s", "attached"),
            ("-n", "needs a value"),
            ("-qz", "`tail -z`"),
        ] {
            let e = parse("tail", &TAIL, &w(args)).unwrap_err().to_string();
            assert!(e.contains(why), "{args}: {e}");
        }
    }
}
