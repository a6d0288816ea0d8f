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

const TAIL: Opts = Opts {
    flags: "qvz",
    valued: "nc",
    long: &["--quiet", "--silent", "--verbose", "--zero-terminated"],
    long_valued: &["--lines", "--bytes"],
    why: &[
        ("-f", "follows the file and never ends"),
        ("-F", "follows the file and never ends"),
    ],
};
const DF: Opts = Opts {
    flags: "ahHiklPT",
    valued: "Btx",
    long: &[
        "--all",
        "--human-readable",
        "--si",
        "--inodes",
        "--local",
        "--portability",
        "--print-type",
        "--total",
        "--no-sync",
        "--output",
    ],
    long_valued: &["--block-size", "--type", "--exclude-type", "--output"],
    why: &[("--sync", "flushes every file system first")],
};
const LSPCI: Opts = Opts {
    flags: "mtvknxDPb",
    valued: "sd",
    long: &[],
    long_valued: &[],
    why: &[
        ("-O", "can write a cache file"),
        ("-q", "asks DNS"),
        ("-Q", "asks DNS"),
    ],
};

/// `tail` with [`TAIL`]'s options, and no `+N…` operand (the old syntax
/// that takes `f` for follow).
fn tail(args: &[String]) -> Result<(), NotReadOnly> {
    let p = parse("tail", &TAIL, args)?;
    match p.operands.iter().find(|o| o.starts_with('+')) {
        Some(o) => Err(NotReadOnly::new(format!(
            "`tail {o}`: give -n +N (the old `+N` form can follow the file)"
        ))),
        None => Ok(()),
    }
}

const SORT: Opts = Opts {
    flags: "bdfghiMnRrsuVcCz",
    valued: "kt",
    long: &[
        "--ignore-leading-blanks",
        "--dictionary-order",
        "--ignore-case",
        "--general-numeric-sort",
        "--human-numeric-sort",
        "--ignore-nonprinting",
        "--month-sort",
        "--numeric-sort",
        "--random-sort",
        "--reverse",
        "--version-sort",
        "--stable",
        "--unique",
        "--check",
        "--zero-terminated",
    ],
    long_valued: &["--key", "--field-separator"],
    why: &[("-o", "writes a file"), ("--output", "writes a file")],
};
const DMESG: Opts = Opts {
    flags: "HTtxkuLdrSPe",
    valued: "lf",
    long: &[
        "--human",
        "--ctime",
        "--notime",
        "--decode",
        "--kernel",
        "--userspace",
        "--color",
        "--show-delta",
        "--raw",
        "--syslog",
        "--nopager",
        "--reltime",
    ],
    long_valued: &["--level", "--facility", "--time-format"],
    why: &[
        ("-C", "clears the kernel's ring buffer"),
        ("-c", "clears the kernel's ring buffer"),
    ],
};
const SS: Opts = Opts {
    flags: "alntuxwpemois46rHO0",
    valued: "fA",
    long: &[
        "--all",
        "--listening",
        "--numeric",
        "--tcp",
        "--udp",
        "--unix",
        "--raw",
        "--processes",
        "--extended",
        "--memory",
        "--options",
        "--info",
        "--summary",
        "--resolve",
        "--no-header",
        "--oneline",
        "--ipv4",
        "--ipv6",
    ],
    long_valued: &["--family", "--query"],
    why: &[("-K", "kills sockets"), ("-D", "writes a file")],
};
const FILE: Opts = Opts {
    flags: "bcdEhiklLNnprsSvz0",
    valued: "efFmP",
    long: &[
        "--brief",
        "--mime",
        "--mime-type",
        "--mime-encoding",
        "--keep-going",
        "--dereference",
        "--no-dereference",
        "--no-pad",
        "--no-buffer",
        "--raw",
        "--special-files",
        "--uncompress",
        "--print0",
        "--extension",
    ],
    long_valued: &[
        "--exclude",
        "--separator",
        "--magic-file",
        "--parameter",
        "--files-from",
    ],
    why: &[("-C", "compiles a magic file, which it writes")],
};
const ARP: Opts = Opts {
    flags: "anve",
    valued: "iH",
    long: &["--all", "--numeric", "--verbose"],
    long_valued: &["--device", "--hw-type"],
    why: &[
        ("-d", "deletes an entry"),
        ("-s", "sets an entry"),
        ("-f", "loads entries"),
    ],
};
const FUSER: Opts = Opts {
    flags: "amuvw46",
    valued: "n",
    long: &[
        "--all",
        "--mount",
        "--user",
        "--verbose",
        "--writeonly",
        "--ipv4",
        "--ipv6",
    ],
    long_valued: &["--namespace"],
    why: &[("-k", "kills processes")],
};
const SENSORS: Opts = Opts {
    flags: "Aufj",
    valued: "",
    long: &["--no-adapter", "--fahrenheit"],
    long_valued: &[],
    why: &[("-s", "sets limits")],
};
const DMIDECODE: Opts = Opts {
    flags: "qu",
    valued: "stH",
    long: &["--quiet", "--dump", "--no-sysfs"],
    long_valued: &["--string", "--type", "--handle", "--oem-string"],
    why: &[("--dump-bin", "writes a file")],
};

/// The binaries a read-only command may run, with their rules.
const BINARIES: &[(&str, Rule)] = &[
    ("uname", Rule::Any),
    ("hostnamectl", Rule::Custom(hostnamectl)),
    ("uptime", Rule::Any),
    ("who", Rule::Any),
    ("w", Rule::Any),
    ("last", Rule::Any),
    ("id", Rule::Any),
    ("whoami", Rule::Any),
    ("ps", Rule::Any),
    ("top", Rule::Custom(super::net::top)),
    ("pgrep", Rule::Any),
    ("pstree", Rule::Any),
    ("free", Rule::Any),
    ("vmstat", Rule::Any),
    ("iostat", Rule::Any),
    ("mpstat", Rule::Any),
    ("nproc", Rule::Any),
    ("df", Rule::Opts(DF)),
    ("du", Rule::Any),
    ("lsblk", Rule::Any),
    ("mount", Rule::Custom(mount)),
    ("findmnt", Rule::Any),
    ("lsof", Rule::Custom(lsof)),
    ("fuser", Rule::Opts(FUSER)),
    ("ip", Rule::Custom(super::net::ip)),
    ("ss", Rule::Opts(SS)),
    ("netstat", Rule::Any),
    ("ping", Rule::Custom(super::net::ping)),
    ("traceroute", Rule::Any),
    ("nslookup", Rule::Custom(super::net::nslookup)),
    ("dig", Rule::Custom(super::net::dig)),
    ("arp", Rule::Opts(ARP)),
    ("iptables", Rule::Custom(super::net::iptables)),
    ("systemctl", Rule::Custom(super::units::systemctl_words)),
    ("journalctl", Rule::Custom(super::units::journalctl_words)),
    ("dmesg", Rule::Opts(DMESG)),
    ("tail", Rule::Custom(tail)),
    ("ls", Rule::Any),
    ("find", Rule::Custom(find)),
    ("locate", Rule::Any),
    ("which", Rule::Any),
    ("whereis", Rule::Any),
    ("file", Rule::Opts(FILE)),
    ("stat", Rule::Any),
    ("lsattr", Rule::Any),
    ("lscpu", Rule::Any),
    ("lsmem", Rule::Any),
    ("lspci", Rule::Opts(LSPCI)),
    ("lsusb", Rule::Any),
    ("dmidecode", Rule::Opts(DMIDECODE)),
    ("sensors", Rule::Opts(SENSORS)),
    ("printenv", Rule::Any),
    ("echo", Rule::Any),
    ("cat", Rule::Any),
    ("grep", Rule::Any),
    ("head", Rule::Any),
    ("wc", Rule::Any),
    ("sort", Rule::Opts(SORT)),
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

const HOSTNAMECTL: Opts = Opts {
    flags: "",
    valued: "",
    long: &["--static", "--transient", "--pretty", "--no-ask-password"],
    long_valued: &["--json"],
    why: &[
        ("-H", "reaches another host"),
        ("--host", "reaches another host"),
    ],
};

fn hostnamectl(args: &[String]) -> Result<(), NotReadOnly> {
    match parse("hostnamectl", &HOSTNAMECTL, args)?
        .operands
        .as_slice()
    {
        [] | ["status"] => Ok(()),
        [verb, ..] => Err(NotReadOnly::new(format!(
            "`hostnamectl {verb}` is not read-only (only `hostnamectl [status]`)"
        ))),
    }
}

const MOUNT: Opts = Opts {
    flags: "l",
    valued: "t",
    long: &["--show-labels"],
    long_valued: &["--types"],
    why: &[],
};

fn mount(args: &[String]) -> Result<(), NotReadOnly> {
    let p = parse("mount", &MOUNT, args).map_err(|_| {
        NotReadOnly::new(
            "`mount` with options mounts something (only `mount [-l] [-t TYPE]` lists)",
        )
    })?;
    if p.operands.is_empty() {
        Ok(())
    } else {
        Err(NotReadOnly::new(
            "`mount` with a device or a directory mounts it (only `mount [-l] [-t TYPE]` lists)",
        ))
    }
}

fn lsof(args: &[String]) -> Result<(), NotReadOnly> {
    match args
        .iter()
        .find(|a| a.starts_with("-D") || a.starts_with("+D") && a.len() > 2)
    {
        Some(a) => Err(NotReadOnly::new(format!(
            "`lsof {a}` writes or reads its device cache file"
        ))),
        None => Ok(()),
    }
}

/// find's tests and options that only read, and the ones of them that take a value.
const FIND_READS: &[&str] = &[
    "-name",
    "-iname",
    "-path",
    "-ipath",
    "-wholename",
    "-iwholename",
    "-regex",
    "-iregex",
    "-type",
    "-xtype",
    "-maxdepth",
    "-mindepth",
    "-mtime",
    "-mmin",
    "-atime",
    "-amin",
    "-ctime",
    "-cmin",
    "-newer",
    "-size",
    "-user",
    "-group",
    "-uid",
    "-gid",
    "-perm",
    "-links",
    "-inum",
    "-samefile",
    "-empty",
    "-readable",
    "-writable",
    "-executable",
    "-nouser",
    "-nogroup",
    "-xdev",
    "-mount",
    "-depth",
    "-follow",
    "-noleaf",
    "-daystart",
    "-print",
    "-print0",
    "-ls",
    "-printf",
    "-prune",
    "-quit",
    "-true",
    "-false",
    "-not",
    "-a",
    "-o",
    "-and",
    "-or",
    "-regextype",
    "-L",
    "-H",
    "-P",
    "-O1",
    "-O2",
    "-O3",
];
const FIND_VALUED: &[&str] = &[
    "-name",
    "-iname",
    "-path",
    "-ipath",
    "-wholename",
    "-iwholename",
    "-regex",
    "-iregex",
    "-type",
    "-xtype",
    "-maxdepth",
    "-mindepth",
    "-mtime",
    "-mmin",
    "-atime",
    "-amin",
    "-ctime",
    "-cmin",
    "-newer",
    "-size",
    "-user",
    "-group",
    "-uid",
    "-gid",
    "-perm",
    "-links",
    "-inum",
    "-samefile",
    "-printf",
    "-regextype",
];

/// `find PATH… EXPRESSION`: only tests and actions that read (no
/// `-delete`, `-exec`, `-ok`, `-fprint…`, `-fls`).
fn find(args: &[String]) -> Result<(), NotReadOnly> {
    let mut words = args.iter();
    while let Some(w) = words.next() {
        if w.starts_with('-') {
            if !FIND_READS.contains(&w.as_str()) {
                let why = match w.as_str() {
                    "-delete" => "deletes files",
                    "-exec" | "-execdir" | "-ok" | "-okdir" => "runs a command",
                    "-fprint" | "-fprint0" | "-fprintf" | "-fls" => "writes a file",
                    _ => "is not a test the read-only check allows",
                };
                return Err(NotReadOnly::new(format!("`find {w}` {why}")));
            }
            if FIND_VALUED.contains(&w.as_str()) && words.next().is_none() {
                return Err(NotReadOnly::new(format!("`find {w}` needs a value")));
            }
        }
    }
    Ok(())
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
