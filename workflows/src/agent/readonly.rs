//! The read-only command grammar: which commands an agent may run on a node
//! without `--allow-changes`, decided by parsing the command, never by a
//! prefix.
//!
//! A command is read-only when it parses ([`super::words`]) into one command
//! or a `|` pipeline, and every command in it is on the list below with
//! arguments its rule accepts. The list is the Dart nix-infra's binary
//! allow-list for `remote-command`, minus what can run another program
//! (`strace`, `ltrace`, `perf`), what only works on a terminal (`htop`,
//! `iftop`, `nethogs`) and what it denies itself (`tcpdump`), plus `grep`,
//! `head` and `wc` for pipelines. Where a listed binary can also change
//! things or never end, its rule refuses those arguments (`find -delete`,
//! `ip addr add`, `iptables -F`, `tail -f`, `systemctl restart`, …).
//!
//! What runs is what was checked: [`ReadOnly::script`] quotes every word,
//! so the node's shell expands nothing.

use super::NotReadOnly;
use super::words::pipeline;
use tasks::ssh::shell_quote;

/// A command that passed the read-only grammar: a pipeline of commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOnly {
    commands: Vec<Vec<String>>,
}

impl ReadOnly {
    /// Parses and checks `text`.
    pub fn parse(text: &str) -> Result<ReadOnly, NotReadOnly> {
        let commands = pipeline(text)?;
        for words in &commands {
            check(words)?;
        }
        Ok(ReadOnly { commands })
    }

    /// One checked command (`words[0]` the binary).
    pub fn command(words: Vec<String>) -> Result<ReadOnly, NotReadOnly> {
        if words.is_empty() {
            return Err(NotReadOnly::new("the command is empty"));
        }
        check(&words)?;
        Ok(ReadOnly {
            commands: vec![words],
        })
    }

    /// The shell text that runs exactly the checked words: each one quoted,
    /// commands joined with `|`.
    pub fn script(&self) -> String {
        let quoted: Vec<String> = self
            .commands
            .iter()
            .map(|w| {
                w.iter()
                    .map(|w| shell_quote(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        quoted.join(" | ")
    }

    /// The binaries, in order.
    pub fn binaries(&self) -> Vec<&str> {
        self.commands.iter().map(|c| c[0].as_str()).collect()
    }
}

/// How a listed binary's arguments are checked.
#[derive(Clone, Copy)]
enum Rule {
    /// Any arguments: the binary only reads.
    Any,
    /// These options change something, or never end.
    Deny(&'static [Opt]),
    /// A grammar of its own.
    Custom(fn(&[String]) -> Result<(), NotReadOnly>),
}

/// An option: its short letter (if any) and its long name (if any).
type Opt = (Option<char>, Option<&'static str>);

const FIND_DENY: &[Opt] = &[
    (None, Some("-delete")),
    (None, Some("-exec")),
    (None, Some("-execdir")),
    (None, Some("-ok")),
    (None, Some("-okdir")),
    (None, Some("-fprint")),
    (None, Some("-fprint0")),
    (None, Some("-fprintf")),
    (None, Some("-fls")),
];
const TAIL_DENY: &[Opt] = &[(Some('f'), Some("--follow")), (Some('F'), None)];
const DMESG_DENY: &[Opt] = &[
    (Some('c'), Some("--read-clear")),
    (Some('C'), Some("--clear")),
    (Some('D'), Some("--console-off")),
    (Some('E'), Some("--console-on")),
    (Some('n'), Some("--console-level")),
    (Some('w'), Some("--follow")),
    (Some('W'), Some("--follow-new")),
];
const SS_DENY: &[Opt] = &[(Some('K'), Some("--kill"))];
const ARP_DENY: &[Opt] = &[
    (Some('d'), Some("--delete")),
    (Some('s'), Some("--set")),
    (Some('f'), Some("--file")),
];
const FUSER_DENY: &[Opt] = &[(Some('k'), Some("--kill"))];
const SORT_DENY: &[Opt] = &[(Some('o'), Some("--output"))];
const SAR_DENY: &[Opt] = &[(Some('o'), None)];
const SENSORS_DENY: &[Opt] = &[(Some('s'), Some("--set"))];
const DMIDECODE_DENY: &[Opt] = &[(None, Some("--dump-bin"))];

/// The binaries a read-only command may run, with their rules.
const BINARIES: &[(&str, Rule)] = &[
    ("nix-prefetch-url", Rule::Any),
    ("uname", Rule::Any),
    ("hostnamectl", Rule::Custom(hostnamectl)),
    ("uptime", Rule::Any),
    ("who", Rule::Any),
    ("w", Rule::Any),
    ("last", Rule::Any),
    ("id", Rule::Any),
    ("whoami", Rule::Any),
    ("ps", Rule::Any),
    ("top", Rule::Custom(top)),
    ("pgrep", Rule::Any),
    ("pstree", Rule::Any),
    ("free", Rule::Any),
    ("vmstat", Rule::Any),
    ("iostat", Rule::Any),
    ("sar", Rule::Deny(SAR_DENY)),
    ("mpstat", Rule::Any),
    ("nproc", Rule::Any),
    ("df", Rule::Any),
    ("du", Rule::Any),
    ("lsblk", Rule::Any),
    ("fdisk", Rule::Custom(fdisk)),
    ("mount", Rule::Custom(mount)),
    ("findmnt", Rule::Any),
    ("lsof", Rule::Any),
    ("fuser", Rule::Deny(FUSER_DENY)),
    ("ip", Rule::Custom(ip)),
    ("ss", Rule::Deny(SS_DENY)),
    ("netstat", Rule::Any),
    ("ping", Rule::Custom(ping)),
    ("traceroute", Rule::Any),
    ("nslookup", Rule::Any),
    ("dig", Rule::Any),
    ("arp", Rule::Deny(ARP_DENY)),
    ("iptables", Rule::Custom(iptables)),
    ("systemctl", Rule::Custom(super::units::systemctl_words)),
    ("journalctl", Rule::Custom(super::units::journalctl_words)),
    ("dmesg", Rule::Deny(DMESG_DENY)),
    ("tail", Rule::Deny(TAIL_DENY)),
    ("ls", Rule::Any),
    ("find", Rule::Deny(FIND_DENY)),
    ("locate", Rule::Any),
    ("which", Rule::Any),
    ("whereis", Rule::Any),
    ("file", Rule::Any),
    ("stat", Rule::Any),
    ("lsattr", Rule::Any),
    ("lscpu", Rule::Any),
    ("lsmem", Rule::Any),
    ("lspci", Rule::Any),
    ("lsusb", Rule::Any),
    ("lshw", Rule::Any),
    ("dmidecode", Rule::Deny(DMIDECODE_DENY)),
    ("sensors", Rule::Deny(SENSORS_DENY)),
    ("env", Rule::Custom(env)),
    ("printenv", Rule::Any),
    ("echo", Rule::Any),
    ("cat", Rule::Any),
    ("grep", Rule::Any),
    ("head", Rule::Any),
    ("wc", Rule::Any),
    ("sort", Rule::Deny(SORT_DENY)),
];

/// Binaries left out on purpose, with why.
const LEFT_OUT: &[(&str, &str)] = &[
    ("strace", "runs or attaches to another program"),
    ("ltrace", "runs or attaches to another program"),
    ("perf", "runs another program"),
    ("htop", "needs a terminal"),
    ("iftop", "needs a terminal"),
    ("nethogs", "needs a terminal"),
    ("iotop", "needs a terminal"),
    ("tcpdump", "captures traffic, which can carry secrets"),
    ("sudo", "runs another program as another user"),
];

fn check(words: &[String]) -> Result<(), NotReadOnly> {
    let binary = words[0].as_str();
    let args = &words[1..];
    if let Some((_, rule)) = BINARIES.iter().find(|(b, _)| *b == binary) {
        return match rule {
            Rule::Any => Ok(()),
            Rule::Deny(opts) => deny(binary, args, opts),
            Rule::Custom(f) => f(args),
        };
    }
    if let Some((_, why)) = LEFT_OUT.iter().find(|(b, _)| *b == binary) {
        return Err(NotReadOnly::new(format!(
            "`{binary}` is not read-only here: it {why}"
        )));
    }
    if binary.contains('/') {
        let base = binary.rsplit('/').next().unwrap_or(binary);
        return Err(NotReadOnly::new(format!(
            "`{binary}`: name the command without its path (`{base}`), so the check knows what runs"
        )));
    }
    if binary.contains('=') {
        return Err(NotReadOnly::new(format!(
            "`{binary}` sets a variable for the command: not read-only-checkable"
        )));
    }
    Err(NotReadOnly::new(format!(
        "`{binary}` is not on the read-only list ({})",
        read_only_binaries().join(", ")
    )))
}

/// The binaries a read-only command may start with, sorted.
pub fn read_only_binaries() -> Vec<&'static str> {
    let mut b: Vec<&str> = BINARIES.iter().map(|(b, _)| *b).collect();
    b.sort_unstable();
    b
}

/// Whether `args` hold option `opt`: `--long`, `--long=…`, or its letter
/// in a group of short options (`-fn` holds `f`). A letter inside an
/// option's attached value counts too, which refuses on the safe side.
pub(super) fn has(args: &[String], (short, long): Opt) -> bool {
    args.iter().any(|a| {
        if let Some(l) = long
            && (a == l || a.strip_prefix(l).is_some_and(|r| r.starts_with('=')))
        {
            return true;
        }
        match short {
            Some(c) => a.starts_with('-') && !a.starts_with("--") && a[1..].contains(c),
            None => false,
        }
    })
}

fn show(opt: Opt) -> String {
    match opt {
        (Some(c), Some(l)) => format!("-{c}/{l}"),
        (Some(c), None) => format!("-{c}"),
        (None, Some(l)) => l.to_string(),
        (None, None) => String::new(),
    }
}

fn deny(binary: &str, args: &[String], opts: &[Opt]) -> Result<(), NotReadOnly> {
    match opts.iter().find(|o| has(args, **o)) {
        Some(o) => Err(NotReadOnly::new(format!(
            "`{binary} {}` changes something or never ends",
            show(*o)
        ))),
        None => Ok(()),
    }
}

/// The arguments that are not options.
pub(super) fn operands(args: &[String]) -> Vec<&str> {
    args.iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect()
}

fn hostnamectl(args: &[String]) -> Result<(), NotReadOnly> {
    match operands(args).first() {
        None | Some(&"status") => Ok(()),
        Some(verb) => Err(NotReadOnly::new(format!(
            "`hostnamectl {verb}` is not read-only (only `hostnamectl [status]`)"
        ))),
    }
}

fn top(args: &[String]) -> Result<(), NotReadOnly> {
    if has(args, (Some('b'), None)) && has(args, (Some('n'), None)) {
        Ok(())
    } else {
        Err(NotReadOnly::new(
            "`top` needs -b and -n N (without them it never ends)",
        ))
    }
}

fn fdisk(args: &[String]) -> Result<(), NotReadOnly> {
    if has(args, (Some('l'), Some("--list"))) {
        Ok(())
    } else {
        Err(NotReadOnly::new("`fdisk` is read-only only with -l"))
    }
}

fn mount(args: &[String]) -> Result<(), NotReadOnly> {
    let typed = args.iter().position(|a| a == "-t").map(|k| k + 1);
    let named = args
        .iter()
        .enumerate()
        .any(|(k, a)| !a.starts_with('-') && Some(k) != typed);
    if named
        || args
            .iter()
            .any(|a| !matches!(a.as_str(), "-l" | "--show-labels" | "-t") && a.starts_with('-'))
    {
        return Err(NotReadOnly::new(
            "`mount` with a device, a directory or options mounts something (only `mount [-l] [-t TYPE]` lists)",
        ));
    }
    Ok(())
}

fn ip(args: &[String]) -> Result<(), NotReadOnly> {
    let rest = operands(args);
    match rest.get(1) {
        None | Some(&("show" | "list" | "ls" | "lst" | "get" | "help")) => Ok(()),
        Some(verb) => Err(NotReadOnly::new(format!(
            "`ip {} {verb}` is not read-only (only show, list and get)",
            rest[0]
        ))),
    }
}

fn ping(args: &[String]) -> Result<(), NotReadOnly> {
    if has(args, (Some('f'), None)) {
        return Err(NotReadOnly::new("`ping -f` floods the network"));
    }
    if has(args, (Some('c'), None)) {
        Ok(())
    } else {
        Err(NotReadOnly::new(
            "`ping` needs -c N (without it it never ends)",
        ))
    }
}

fn iptables(args: &[String]) -> Result<(), NotReadOnly> {
    let listing =
        has(args, (Some('L'), Some("--list"))) || has(args, (Some('S'), Some("--list-rules")));
    let allowed = |a: &str| match a.strip_prefix("--") {
        Some(long) => matches!(
            long,
            "list" | "list-rules" | "numeric" | "verbose" | "exact" | "line-numbers" | "table"
        ),
        None => match a.strip_prefix('-') {
            Some(short) => short.chars().all(|c| "LSnvxt".contains(c)),
            None => true,
        },
    };
    match args.iter().find(|a| !allowed(a)) {
        Some(a) => Err(NotReadOnly::new(format!(
            "`iptables {a}` changes the firewall (only -L/-S with -n, -v, -x, -t, --line-numbers)"
        ))),
        None if listing => Ok(()),
        None => Err(NotReadOnly::new(
            "`iptables` is read-only only with -L or -S",
        )),
    }
}

fn env(args: &[String]) -> Result<(), NotReadOnly> {
    if operands(args).is_empty() && !has(args, (Some('S'), Some("--split-string"))) {
        Ok(())
    } else {
        Err(NotReadOnly::new(
            "`env` with a command runs that command (only `env` alone lists)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass_and_run_exactly_the_checked_words() {
        for ok in [
            "uname -a",
            "ps aux | grep 'etcd' | head -3",
            "df -h",
            "ls -la /etc/nixos",
            "find /etc -name '*.nix'",
            "ip addr show",
            "ip -4 route",
            "iptables -t nat -nvL",
            "systemctl status etcd.service",
            "journalctl -u etcd -n 20 --no-pager",
            "tail -n 50 /var/log/messages",
            "top -b -n 1",
            "ping -c 1 127.0.0.1",
            "mount",
            "env",
            "cat /proc/meminfo",
        ] {
            ReadOnly::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let r = ReadOnly::parse("grep 'a b' /etc/x | wc -l").unwrap();
        assert_eq!(r.script(), "'grep' 'a b' '/etc/x' | 'wc' '-l'");
        assert_eq!(r.binaries(), ["grep", "wc"]);
    }

    #[test]
    fn changes_and_unlisted_binaries_are_refused_with_the_reason() {
        for (bad, why) in [
            ("rm -rf /", "not on the read-only list"),
            ("/bin/ls", "without its path"),
            ("X=1 ls", "sets a variable"),
            ("find / -delete", "-delete"),
            ("find / -exec rm {} ;", "groups commands"),
            ("tail -f /var/log/x", "-f/--follow"),
            (
                "ip addr add 10.0.0.1/24 dev eth0",
                "`ip addr add` is not read-only",
            ),
            ("iptables -F", "changes the firewall"),
            ("iptables -LZ", "changes the firewall"),
            ("systemctl restart etcd", "changes the system"),
            ("journalctl -f", "never ends"),
            ("mount /dev/sda1 /mnt", "mounts something"),
            ("env rm x", "runs that command"),
            ("strace ls", "runs or attaches"),
            ("ps aux | sh", "not on the read-only list"),
            ("ping 10.0.0.1", "-c N"),
            ("hostnamectl set-hostname x", "not read-only"),
            ("dmesg -C", "--clear"),
            ("sort -o /etc/passwd x", "--output"),
        ] {
            let e = ReadOnly::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
