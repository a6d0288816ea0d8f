//! The read-only grammars of `systemctl`, `journalctl` and `etcdctl`: their
//! options against exact allow-lists ([`super::opts`]), and the verb that
//! decides whether a call reads or changes, compared exactly (all three are
//! case-sensitive).

use super::NotReadOnly;
use super::opts::{Opts, parse};

const SYSTEMCTL: Opts = Opts {
    flags: "alqr",
    valued: "tpPno",
    long: &[
        "--all",
        "--full",
        "--quiet",
        "--recursive",
        "--no-pager",
        "--no-legend",
        "--plain",
        "--failed",
        "--value",
        "--reverse",
        "--after",
        "--before",
        "--show-types",
        "--system",
    ],
    long_valued: &[
        "--type",
        "--property",
        "--state",
        "--lines",
        "--output",
        "--timestamp",
    ],
    why: &[
        ("--root", "works on another root directory"),
        ("-H", "reaches another host"),
        ("--host", "reaches another host"),
        ("-M", "reaches another machine"),
        ("--machine", "reaches another machine"),
    ],
};

/// The systemctl verbs that only read.
pub const SYSTEMCTL_READS: &[&str] = &[
    "status",
    "show",
    "cat",
    "list-units",
    "list-sockets",
    "list-timers",
    "list-jobs",
    "list-unit-files",
    "list-dependencies",
    "list-machines",
    "is-active",
    "is-enabled",
    "is-failed",
    "is-system-running",
    "get-default",
    "show-environment",
];

const JOURNAL_FOLLOWS: &str =
    "follows the journal and never ends; ask for the last lines with -n N";
const JOURNAL_CHANGES: &str = "changes the journal";

const JOURNALCTL: Opts = Opts {
    flags: "abeklmNqrx",
    valued: "unpSUgtFo",
    long: &[
        "--all",
        "--reverse",
        "--no-pager",
        "--no-full",
        "--full",
        "--catalog",
        "--quiet",
        "--merge",
        "--utc",
        "--no-hostname",
        "--dmesg",
        "--list-boots",
        "--disk-usage",
        "--fields",
        "--pager-end",
        "--boot",
        "--system",
    ],
    long_valued: &[
        "--unit",
        "--user-unit",
        "--lines",
        "--priority",
        "--since",
        "--until",
        "--grep",
        "--identifier",
        "--field",
        "--output",
        "--output-fields",
        "--boot",
        "--facility",
    ],
    why: &[
        ("-f", JOURNAL_FOLLOWS),
        ("--follow", JOURNAL_FOLLOWS),
        ("--flush", JOURNAL_CHANGES),
        ("--rotate", JOURNAL_CHANGES),
        ("--sync", JOURNAL_CHANGES),
        ("--vacuum-size", JOURNAL_CHANGES),
        ("--vacuum-time", JOURNAL_CHANGES),
        ("--vacuum-files", JOURNAL_CHANGES),
        ("--relinquish-var", JOURNAL_CHANGES),
        ("--smart-relinquish-var", JOURNAL_CHANGES),
        ("--setup-keys", JOURNAL_CHANGES),
        ("--update-catalog", JOURNAL_CHANGES),
        ("--cursor-file", "writes a file"),
    ],
};

/// Options every read-only etcdctl command takes.
const ETCDCTL_OUTPUT: Opts = Opts {
    flags: "",
    valued: "w",
    long: &["--hex"],
    long_valued: &["--write-out"],
    why: &[
        ("--exec", "runs a command"),
        ("--endpoints", "reaches another etcd"),
    ],
};

/// `get`'s options.
const ETCDCTL_GET: Opts = Opts {
    flags: "",
    valued: "w",
    long: &[
        "--hex",
        "--prefix",
        "--keys-only",
        "--print-value-only",
        "--from-key",
        "--count-only",
    ],
    long_valued: &[
        "--write-out",
        "--limit",
        "--rev",
        "--sort-by",
        "--order",
        "--consistency",
    ],
    why: &[
        ("--exec", "runs a command"),
        ("--endpoints", "reaches another etcd"),
    ],
};

/// The etcdctl commands that only read (`member list`: command and subcommand).
pub const ETCDCTL_READS: &[&str] = &[
    "get",
    "member list",
    "endpoint health",
    "endpoint status",
    "endpoint hashkv",
    "alarm list",
    "user get",
    "user list",
    "role get",
    "role list",
    "version",
];

/// etcdctl's commands that take a subcommand.
const ETCDCTL_GROUPS: &[&str] = &[
    "member", "endpoint", "alarm", "user", "role", "lease", "snapshot", "auth", "check",
];

/// The words after `systemctl`: a read-only verb (none: `list-units`) and
/// only the options of [`SYSTEMCTL`].
pub fn systemctl_words(args: &[String]) -> Result<(), NotReadOnly> {
    let p = parse("systemctl", &SYSTEMCTL, args)?;
    match p.operands.first() {
        None => Ok(()),
        Some(v) if SYSTEMCTL_READS.contains(v) => Ok(()),
        Some(v) => Err(NotReadOnly::new(format!(
            "`systemctl {v}` changes the system (read-only verbs: {})",
            SYSTEMCTL_READS.join(", ")
        ))),
    }
}

/// The words after `journalctl`: only the options of [`JOURNALCTL`]
/// (nothing that follows or changes the journal); the other words are matches.
pub fn journalctl_words(args: &[String]) -> Result<(), NotReadOnly> {
    parse("journalctl", &JOURNALCTL, args).map(drop)
}

/// Whether journalctl's words ask for a number of lines.
pub fn journalctl_has_lines(args: &[String]) -> bool {
    parse("journalctl", &JOURNALCTL, args)
        .is_ok_and(|p| p.has(&["-n", "--lines", "-e", "--pager-end"]))
}

/// The words after `etcdctl`: a read-only command ([`ETCDCTL_READS`])
/// first, then only that command's options and at most its operands.
/// The command comes first because etcdctl's parser takes an option it does
/// not know at the top as taking a value (`--prefix get del` deletes), and
/// `--` is refused because what follows it (`watch … -- CMD`) is run.
pub fn etcdctl_words(args: &[String]) -> Result<(), NotReadOnly> {
    let Some(command) = args.first().filter(|c| !c.starts_with('-')) else {
        return Err(NotReadOnly::new(
            "give the etcdctl command first, then its options (such as `get --prefix /cluster`)",
        ));
    };
    let (full, rest) = if ETCDCTL_GROUPS.contains(&command.as_str()) {
        match args.get(1).filter(|s| !s.starts_with('-')) {
            Some(sub) => (format!("{command} {sub}"), &args[2..]),
            None => {
                return Err(NotReadOnly::new(format!(
                    "`etcdctl {command}` needs a subcommand"
                )));
            }
        }
    } else {
        (command.clone(), &args[1..])
    };
    if !ETCDCTL_READS.contains(&full.as_str()) {
        let why = match full.as_str() {
            "watch" => "never ends, and runs what follows `--`; use get",
            "check perf" | "check datascale" => "writes test keys into etcd",
            _ => "changes etcd or the cluster",
        };
        return Err(NotReadOnly::new(format!(
            "`etcdctl {full}` {why} (read-only: {})",
            ETCDCTL_READS.join(", ")
        )));
    }
    if rest.iter().any(|a| a == "--") {
        return Err(NotReadOnly::new(
            "etcdctl: `--` is not taken (etcdctl runs what follows it)",
        ));
    }
    let (opts, most) = match full.as_str() {
        "get" => (&ETCDCTL_GET, 2),
        "user get" | "role get" => (&ETCDCTL_OUTPUT, 1),
        _ => (&ETCDCTL_OUTPUT, 0),
    };
    let p = parse("etcdctl", opts, rest)?;
    if p.operands.len() > most {
        return Err(NotReadOnly::new(format!(
            "`etcdctl {full}` takes at most {most} key or name, not {}",
            p.operands.join(" ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn systemctl_reads_pass_and_changes_are_refused_by_their_verb() {
        for ok in [
            "status etcd",
            "-o json show x",
            "",
            "--type service list-units",
            "--no-pager is-active x",
        ] {
            systemctl_words(&w(ok)).unwrap();
        }
        // The value of -t is not the verb.
        assert!(systemctl_words(&w("-t restart status")).is_ok());
        for bad in [
            "restart etcd",
            "--no-pager stop x",
            "daemon-reload",
            "--root /x status",
            "-H h status",
            "-P status restart etcd",
            "--message status stop etcd",
            "--prop status daemon-reload",
            "--ho=root@other status",
            "IS-ACTIVE x",
        ] {
            assert!(systemctl_words(&w(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn journalctl_refuses_follow_and_journal_changes() {
        journalctl_words(&w("-u etcd.service -n 50 --no-pager")).unwrap();
        for bad in [
            "-f",
            "-u x --follow",
            "--vacuum-time=1d",
            "--rotate",
            "-xef",
            "--fol",
            "--vacuum-t=1s",
            "--cursor-file=/etc/passwd",
            "-n --rotate",
        ] {
            assert!(journalctl_words(&w(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn etcdctl_reads_only() {
        for ok in [
            "get --prefix /cluster",
            "member list --write-out json",
            "endpoint health",
            "version",
        ] {
            etcdctl_words(&w(ok)).unwrap();
        }
        for (bad, why) in [
            ("put /a b", "changes"),
            ("del /a", "changes"),
            ("watch /a", "never ends"),
            ("member remove 1", "changes"),
            ("check perf", "writes"),
            ("member", "needs a subcommand"),
            ("get /a --exec=x", "runs a command"),
            ("--new-user-password get user add mallory", "command first"),
            (
                "--dest-prefix get make-mirror http://x:2379",
                "command first",
            ),
            ("GET /a", "changes"),
            ("--prefix get check perf", "command first"),
            ("--from-key get del", "command first"),
            ("get --prefix x -- sh -c id", "`--`"),
            ("get /a /b /c", "at most 2"),
            ("member list x", "at most 0"),
            ("", "command first"),
        ] {
            let e = etcdctl_words(&w(bad)).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }
}
