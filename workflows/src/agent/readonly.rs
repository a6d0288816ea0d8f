//! The read-only command grammar: which commands an agent may run on a node
//! without `--allow-changes`, decided by parsing the command, never by a
//! prefix.
//!
//! A command is read-only when it parses ([`super::words`]) into one command
//! or a `|` pipeline, and every command in it is on the list below with
//! arguments its rule accepts. The list is the Dart nix-infra's binary
//! allow-list for `remote-command`, minus what can run another program or
//! evaluate code (`env`, `strace`, `ltrace`, `perf`, `nix-prefetch-url`),
//! what writes files or devices it is pointed at (`fdisk`, `lshw`, `sar`),
//! what only works on a terminal (`htop`, `iftop`, `nethogs`, `iotop`) and
//! what it denies itself (`tcpdump`), plus `grep`, `head`, `wc` and `sort`
//! for pipelines. A binary that can also change things is given an exact
//! allow-list of options ([`super::opts`]): anything else, an abbreviation
//! included, is refused.
//!
//! What runs is what was checked: [`ReadOnly::script`] quotes every word,
//! so the node's shell expands nothing. The grammar is the first fence; the
//! second is where it runs ([`super::remote::unprivileged`]): as `nobody`,
//! without new privileges, under a time limit.

use super::NotReadOnly;
use super::opts::{Opts, parse};
use super::words::pipeline;
use super::{files, net, units};
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
        for w in &words {
            super::words::no_controls(w)?;
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
    /// Any arguments: the binary has no option that writes, runs or changes anything.
    Any,
    /// Only these options; any operands.
    Opts(Opts),
    /// A grammar of its own.
    Custom(fn(&[String]) -> Result<(), NotReadOnly>),
}

/// The binaries a read-only command may run, with their rules.
const BINARIES: &[(&str, Rule)] = &[
    ("uname", Rule::Any),
    ("hostnamectl", Rule::Custom(files::hostnamectl)),
    ("uptime", Rule::Any),
    ("who", Rule::Any),
    ("w", Rule::Any),
    ("last", Rule::Any),
    ("id", Rule::Any),
    ("whoami", Rule::Any),
    ("ps", Rule::Any),
    ("top", Rule::Custom(net::top)),
    ("pgrep", Rule::Any),
    ("pstree", Rule::Any),
    ("free", Rule::Any),
    ("vmstat", Rule::Any),
    ("iostat", Rule::Any),
    ("mpstat", Rule::Any),
    ("nproc", Rule::Any),
    ("df", Rule::Opts(files::DF)),
    ("du", Rule::Any),
    ("lsblk", Rule::Any),
    ("mount", Rule::Custom(files::mount)),
    ("findmnt", Rule::Any),
    ("lsof", Rule::Custom(files::lsof)),
    ("fuser", Rule::Opts(net::FUSER)),
    ("ip", Rule::Custom(net::ip)),
    ("ss", Rule::Opts(net::SS)),
    ("netstat", Rule::Any),
    ("ping", Rule::Custom(net::ping)),
    ("traceroute", Rule::Any),
    ("nslookup", Rule::Custom(net::nslookup)),
    ("dig", Rule::Custom(net::dig)),
    ("arp", Rule::Opts(net::ARP)),
    ("iptables", Rule::Custom(net::iptables)),
    ("systemctl", Rule::Custom(units::systemctl_words)),
    ("journalctl", Rule::Custom(units::journalctl_words)),
    ("dmesg", Rule::Opts(files::DMESG)),
    ("tail", Rule::Custom(files::tail)),
    ("ls", Rule::Any),
    ("find", Rule::Custom(files::find)),
    ("locate", Rule::Any),
    ("which", Rule::Any),
    ("whereis", Rule::Any),
    ("file", Rule::Opts(files::FILE)),
    ("stat", Rule::Any),
    ("lsattr", Rule::Any),
    ("lscpu", Rule::Any),
    ("lsmem", Rule::Any),
    ("lspci", Rule::Opts(files::LSPCI)),
    ("lsusb", Rule::Any),
    ("dmidecode", Rule::Opts(files::DMIDECODE)),
    ("sensors", Rule::Opts(files::SENSORS)),
    ("printenv", Rule::Any),
    ("echo", Rule::Any),
    ("cat", Rule::Any),
    ("grep", Rule::Any),
    ("head", Rule::Any),
    ("wc", Rule::Any),
    ("sort", Rule::Opts(files::SORT)),
];

/// Binaries of the Dart tool's list left out on purpose, with why.
const LEFT_OUT: &[(&str, &str)] = &[
    (
        "env",
        "runs a command (-S, or any operand); `printenv` lists the environment",
    ),
    ("strace", "runs or attaches to another program"),
    ("ltrace", "runs or attaches to another program"),
    ("perf", "runs another program"),
    (
        "nix-prefetch-url",
        "evaluates Nix code and writes to the store; the dev profile's nix-prefetch-url tool hashes a URL here",
    ),
    ("fdisk", "writes partition tables; `lsblk` lists them"),
    (
        "lshw",
        "writes a database file (-dump); `lscpu`, `lsblk` and `lspci` read the hardware",
    ),
    (
        "sar",
        "writes data files (-o); `vmstat`, `iostat` and `mpstat` read the counters",
    ),
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
            Rule::Opts(o) => parse(binary, o, args).map(drop),
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
            "printenv",
            "cat /proc/meminfo",
            "ss -tlnp",
            "sort -rn -k 2",
            "find /etc -maxdepth 2 -name '*.nix' -type f",
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
            ("find / -delete", "deletes files"),
            ("find / -exec rm {} ;", "groups commands"),
            ("find / -fprintf /etc/x y", "writes a file"),
            ("tail -f /var/log/x", "never ends"),
            ("tail --fol /var/log/x", "not an option"),
            ("tail +1f /var/log/x", "old `+N` form"),
            ("df --sync", "flushes"),
            ("lspci -O net.cache=/tmp/x -q", "cache file"),
            (
                "ip addr add 10.0.0.1/24 dev eth0",
                "`ip addr add` is not read-only",
            ),
            ("iptables -F", "changes the firewall"),
            ("iptables -LZ", "changes the firewall"),
            ("systemctl restart etcd", "changes the system"),
            ("journalctl -f", "never ends"),
            ("mount /dev/sda1 /mnt", "mounts it"),
            ("env rm x", "runs a command"),
            ("env '--s=touch /tmp/x'", "runs a command"),
            ("sort -S 1K --compress-program=sh", "not an option"),
            ("sort --outp /root/.ssh/authorized_keys", "not an option"),
            ("ss -D /etc/passwd", "writes a file"),
            ("ss --ki dst 10.0.0.1", "not an option"),
            ("dmesg --cl", "not an option"),
            ("fdisk -l", "writes partition tables"),
            ("nix-prefetch-url --option x y", "evaluates Nix code"),
            ("file -C -m /etc/magic", "compiles"),
            ("lsof -Db", "device cache"),
            ("echo 'netns exec x id' | ip -b -", "-batch"),
            ("strace ls", "runs or attaches"),
            ("ps aux | sh", "not on the read-only list"),
            ("ping 10.0.0.1", "-c N"),
            ("hostnamectl set-hostname x", "not read-only"),
            ("dmesg -C", "clears"),
            ("sort -o /etc/passwd x", "writes a file"),
        ] {
            let e = ReadOnly::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
