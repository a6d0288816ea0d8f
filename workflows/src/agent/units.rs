//! The read-only grammars of `systemctl`, `journalctl` and `etcdctl`: the
//! verb (or option) that decides whether a call reads or changes is found
//! by parsing the words as the binary itself would, skipping the values of
//! the options that take one.

use super::NotReadOnly;
use super::readonly::has;

/// systemctl's options that take a value (the next word, unless `=` joins it).
const SYSTEMCTL_VALUED: &[&str] = &[
    "-t",
    "--type",
    "-n",
    "--lines",
    "-o",
    "--output",
    "-H",
    "--host",
    "-M",
    "--machine",
    "-p",
    "--property",
    "--state",
    "--signal",
    "--kill-who",
    "--job-mode",
    "--timestamp",
];

/// The systemctl verbs that only read.
pub const SYSTEMCTL_READS: &[&str] = &[
    "status",
    "show",
    "cat",
    "help",
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

/// journalctl's options that change the journal, or never end.
const JOURNALCTL_DENY: &[(Option<char>, Option<&str>)] = &[
    (Some('f'), Some("--follow")),
    (None, Some("--flush")),
    (None, Some("--relinquish-var")),
    (None, Some("--smart-relinquish-var")),
    (None, Some("--rotate")),
    (None, Some("--vacuum-size")),
    (None, Some("--vacuum-time")),
    (None, Some("--vacuum-files")),
    (None, Some("--sync")),
    (None, Some("--setup-keys")),
    (None, Some("--update-catalog")),
    (None, Some("--force")),
    (None, Some("--interval")),
];

/// etcdctl's global and command options that take a value.
const ETCDCTL_VALUED: &[&str] = &[
    "-w",
    "--write-out",
    "--endpoints",
    "--dial-timeout",
    "--command-timeout",
    "--keepalive-time",
    "--keepalive-timeout",
    "--cacert",
    "--cert",
    "--key",
    "--user",
    "--password",
    "--limit",
    "--rev",
    "--discovery-srv",
    "--discovery-srv-name",
    "--consistency",
    "--order",
    "--sort-by",
];

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

/// The words that are not options nor an option's value.
fn operands<'a>(args: &'a [String], valued: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if std::mem::take(&mut skip) {
            continue;
        }
        if a.starts_with('-') {
            skip = valued.contains(&a.as_str());
        } else {
            out.push(a.as_str());
        }
    }
    out
}

/// The words after `systemctl`: a read-only verb (none: `list-units`), no
/// `--root`, no other host or machine.
pub fn systemctl_words(args: &[String]) -> Result<(), NotReadOnly> {
    for (opt, why) in [
        ((None, Some("--root")), "works on another root directory"),
        ((Some('H'), Some("--host")), "reaches another host"),
        ((Some('M'), Some("--machine")), "reaches another machine"),
    ] {
        if has(args, opt) {
            return Err(NotReadOnly::new(format!(
                "systemctl {}: {why}",
                opt.1.unwrap_or("")
            )));
        }
    }
    match operands(args, SYSTEMCTL_VALUED).first() {
        None => Ok(()),
        Some(v) if SYSTEMCTL_READS.contains(&v.to_ascii_lowercase().as_str()) => Ok(()),
        Some(v) => Err(NotReadOnly::new(format!(
            "`systemctl {v}` changes the system (read-only verbs: {})",
            SYSTEMCTL_READS.join(", ")
        ))),
    }
}

/// The words after `journalctl`: no option that changes the journal or follows it.
pub fn journalctl_words(args: &[String]) -> Result<(), NotReadOnly> {
    match JOURNALCTL_DENY.iter().find(|o| has(args, **o)) {
        Some((Some('f'), _)) => Err(NotReadOnly::new(
            "`journalctl -f/--follow` never ends; ask for the last lines with -n N",
        )),
        Some((_, Some(long))) => Err(NotReadOnly::new(format!(
            "`journalctl {long}` changes the journal"
        ))),
        _ => Ok(()),
    }
}

/// The words after `etcdctl`: a read-only command ([`ETCDCTL_READS`]).
pub fn etcdctl_words(args: &[String]) -> Result<(), NotReadOnly> {
    if args
        .iter()
        .any(|a| a == "--exec" || a.starts_with("--exec="))
    {
        return Err(NotReadOnly::new("etcdctl --exec runs a command"));
    }
    let words = operands(args, ETCDCTL_VALUED);
    let Some(command) = words.first().map(|c| c.to_ascii_lowercase()) else {
        return Err(NotReadOnly::new(
            "give an etcdctl command (such as `get --prefix /cluster`)",
        ));
    };
    let full = if ETCDCTL_GROUPS.contains(&command.as_str()) {
        match words.get(1) {
            Some(sub) => format!("{command} {}", sub.to_ascii_lowercase()),
            None => {
                return Err(NotReadOnly::new(format!(
                    "`etcdctl {command}` needs a subcommand"
                )));
            }
        }
    } else {
        command
    };
    if ETCDCTL_READS.contains(&full.as_str()) {
        return Ok(());
    }
    let why = match full.as_str() {
        "watch" => "never ends; use get",
        "check perf" | "check datascale" => "writes test keys into etcd",
        _ => "changes etcd or the cluster",
    };
    Err(NotReadOnly::new(format!(
        "`etcdctl {full}` {why} (read-only: {})",
        ETCDCTL_READS.join(", ")
    )))
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
            "IS-ACTIVE x",
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
        ] {
            assert!(journalctl_words(&w(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn etcdctl_reads_only() {
        for ok in [
            "get --prefix /cluster",
            "--write-out json member list",
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
            ("", "give an etcdctl command"),
        ] {
            let e = etcdctl_words(&w(bad)).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }
}
