//! The read-only grammars of the network and process tools whose options
//! decide between reading and changing: `ip`, `iptables`, `ping`, `dig`
//! and `top`.

use super::NotReadOnly;
use super::opts::{Opts, parse};

/// ip's global options that only change how it shows things, and the ones that take a value.
const IP_OPTS: &[&str] = &[
    "-4",
    "-6",
    "-0",
    "-s",
    "-stats",
    "-statistics",
    "-d",
    "-details",
    "-j",
    "-json",
    "-p",
    "-pretty",
    "-br",
    "-brief",
    "-o",
    "-oneline",
    "-r",
    "-resolve",
    "-c",
    "-color",
    "-h",
    "-human",
    "-f",
    "-family",
];
/// ip's objects an agent may show.
const IP_OBJECTS: &[&str] = &[
    "address",
    "addr",
    "a",
    "link",
    "l",
    "route",
    "r",
    "ro",
    "rule",
    "ru",
    "neighbour",
    "neighbor",
    "neigh",
    "n",
    "maddress",
    "maddr",
    "m",
    "tunnel",
    "tun",
    "ntable",
    "addrlabel",
];

/// `ip [OPTIONS] OBJECT [show|list|ls|lst|get] …`: never `-batch`,
/// `-netns` or `-force`, never a verb that changes (`add`, `del`, `set`,
/// `flush`, …), never `monitor` or `netns` (`ip netns exec` runs a command).
pub(super) fn ip(args: &[String]) -> Result<(), NotReadOnly> {
    let mut words = args.iter().map(String::as_str);
    let mut object = None;
    while let Some(w) = words.next() {
        if !w.starts_with('-') {
            object = Some(w);
            break;
        }
        if !IP_OPTS.contains(&w) {
            return Err(NotReadOnly::new(format!(
                "`ip {w}` is not an option the read-only check allows (-batch reads commands, -netns changes namespace)"
            )));
        }
        if matches!(w, "-f" | "-family") && words.next().is_none() {
            return Err(NotReadOnly::new(format!("`ip {w}` needs a family")));
        }
    }
    let Some(object) = object else {
        return Err(NotReadOnly::new(
            "`ip` needs an object to show (addr, link, route, …)",
        ));
    };
    if !IP_OBJECTS.contains(&object) {
        return Err(NotReadOnly::new(format!(
            "`ip {object}` is not read-only here (objects: {})",
            IP_OBJECTS.join(", ")
        )));
    }
    match words.next() {
        None | Some("show" | "list" | "ls" | "lst" | "get") => Ok(()),
        Some(verb) => Err(NotReadOnly::new(format!(
            "`ip {object} {verb}` is not read-only (only show, list and get, written in full)"
        ))),
    }
}

pub(super) const SS: Opts = Opts {
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
pub(super) const ARP: Opts = Opts {
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
pub(super) const FUSER: Opts = Opts {
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
const IPTABLES: Opts = Opts {
    flags: "LSnvx",
    valued: "t",
    long: &[
        "--list",
        "--list-rules",
        "--numeric",
        "--verbose",
        "--exact",
        "--line-numbers",
    ],
    long_valued: &["--table"],
    why: &[],
};

/// `iptables -L|-S [CHAIN]` with -n, -v, -x, -t TABLE, --line-numbers.
pub(super) fn iptables(args: &[String]) -> Result<(), NotReadOnly> {
    let p = parse("iptables", &IPTABLES, args).map_err(|e| {
        NotReadOnly::new(format!(
            "{e}: iptables changes the firewall with anything but -L/-S (with -n, -v, -x, -t, --line-numbers)"
        ))
    })?;
    if p.has(&["-L", "--list", "-S", "--list-rules"]) && p.operands.len() <= 1 {
        Ok(())
    } else {
        Err(NotReadOnly::new(
            "`iptables` is read-only only with -L or -S and at most a chain",
        ))
    }
}

const PING: Opts = Opts {
    flags: "46nqvDO",
    valued: "ciWwst",
    long: &[],
    long_valued: &[],
    why: &[
        ("-f", "floods the network"),
        ("-p", "sends a chosen pattern"),
        ("-l", "sends a burst"),
        ("-b", "pings a broadcast address"),
    ],
};

/// `ping -c N HOST` (N ≤ 100, at most 5 per second).
pub(super) fn ping(args: &[String]) -> Result<(), NotReadOnly> {
    let p = parse("ping", &PING, args)?;
    let count: Option<u32> = p.value(&["-c"]).and_then(|c| c.parse().ok());
    if !count.is_some_and(|c| (1..=100).contains(&c)) {
        return Err(NotReadOnly::new(
            "`ping` needs -c N with N from 1 to 100 (without it it never ends)",
        ));
    }
    if let Some(i) = p.value(&["-i"])
        && !i.parse::<f64>().is_ok_and(|i| i >= 0.2)
    {
        return Err(NotReadOnly::new("`ping -i` below 0.2 s floods the network"));
    }
    if p.operands.len() == 1 {
        Ok(())
    } else {
        Err(NotReadOnly::new("`ping` takes one host"))
    }
}

const DIG: Opts = Opts {
    flags: "46hmruvi",
    valued: "bcpqtx",
    long: &[],
    long_valued: &[],
    why: &[
        ("-f", "reads queries from a file and sends them to a server"),
        ("-k", "reads key material"),
        ("-y", "takes key material"),
    ],
};

/// `dig …` (its `+` options and names are operands), without a batch
/// file (`-f`) or key material (`-k`, `-y`).
pub(super) fn dig(args: &[String]) -> Result<(), NotReadOnly> {
    parse("dig", &DIG, args).map(drop)
}

/// `nslookup NAME [SERVER]`, not reading queries from stdin (`-`).
pub(super) fn nslookup(args: &[String]) -> Result<(), NotReadOnly> {
    if args.iter().any(|a| a == "-") {
        Err(NotReadOnly::new(
            "`nslookup -` reads its queries from stdin and sends them on",
        ))
    } else {
        Ok(())
    }
}

const TOP: Opts = Opts {
    flags: "bcHiSs1E",
    valued: "ndpuUow",
    long: &[],
    long_valued: &[],
    why: &[],
};

/// `top -b -n N` (N ≤ 10).
pub(super) fn top(args: &[String]) -> Result<(), NotReadOnly> {
    let p = parse("top", &TOP, args)?;
    let n: Option<u32> = p.value(&["-n"]).and_then(|n| n.parse().ok());
    if p.has(&["-b"]) && n.is_some_and(|n| (1..=10).contains(&n)) && p.operands.is_empty() {
        Ok(())
    } else {
        Err(NotReadOnly::new(
            "`top` needs -b and -n N with N from 1 to 10 (without them it never ends)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn each_grammar_takes_its_reads_and_refuses_the_rest() {
        for ok in [
            "-4 addr show",
            "-f inet addr show",
            "route get 1.1.1.1",
            "-br link",
            "a",
        ] {
            ip(&w(ok)).unwrap_or_else(|e| panic!("ip {ok}: {e}"));
        }
        for bad in [
            "-b -",
            "-batch x",
            "netns exec x id",
            "monitor",
            "a s",
            "addr add 1.2.3.4/24 dev x",
            "-n ns1 addr",
        ] {
            assert!(ip(&w(bad)).is_err(), "ip {bad}");
        }
        iptables(&w("-t nat -nvL")).unwrap();
        iptables(&w("--table=nat --list-rules INPUT")).unwrap();
        for bad in ["-F", "-LZ", "-L -A INPUT", "--li", "-n"] {
            assert!(iptables(&w(bad)).is_err(), "iptables {bad}");
        }
        ping(&w("-c 3 127.0.0.1")).unwrap();
        for bad in [
            "127.0.0.1",
            "-pc0 1.1.1.1",
            "-c 100000000 -i 0 x",
            "-c 0 x",
            "-f -c 1 x",
        ] {
            assert!(ping(&w(bad)).is_err(), "ping {bad}");
        }
        top(&w("-b -n 1")).unwrap();
        for bad in ["-b", "-b -unobody", "-b -n 0"] {
            assert!(top(&w(bad)).is_err(), "top {bad}");
        }
        assert!(dig(&w("-f /root/certs/key.pem @1.2.3.4")).is_err());
        assert!(dig(&w("-4f /etc/hosts @1.2.3.4")).is_err());
        assert!(nslookup(&w("- 1.2.3.4")).is_err());
        dig(&w("+short example.org A")).unwrap();
    }
}
