//! The read-only rules of the tools that read files, the system and its
//! processes (`tail`, `sort`, `find`, `df`, `dmesg`, `mount`, …): an exact
//! option list each ([`super::opts`]), or a grammar of its own where an
//! operand decides.

use super::NotReadOnly;
use super::opts::{Opts, parse};

pub(super) const TAIL: Opts = Opts {
    flags: "qvz",
    valued: "nc",
    long: &["--quiet", "--silent", "--verbose", "--zero-terminated"],
    long_valued: &["--lines", "--bytes"],
    why: &[
        ("-f", "follows the file and never ends"),
        ("-F", "follows the file and never ends"),
    ],
};
pub(super) const DF: Opts = Opts {
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
pub(super) const LSPCI: Opts = Opts {
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
pub(super) fn tail(args: &[String]) -> Result<(), NotReadOnly> {
    let p = parse("tail", &TAIL, args)?;
    match p.operands.iter().find(|o| o.starts_with('+')) {
        Some(o) => Err(NotReadOnly::new(format!(
            "`tail {o}`: give -n +N (the old `+N` form can follow the file)"
        ))),
        None => Ok(()),
    }
}

pub(super) const SORT: Opts = Opts {
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
pub(super) const DMESG: Opts = Opts {
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
pub(super) const FILE: Opts = Opts {
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
pub(super) const SENSORS: Opts = Opts {
    flags: "Aufj",
    valued: "",
    long: &["--no-adapter", "--fahrenheit"],
    long_valued: &[],
    why: &[("-s", "sets limits")],
};
pub(super) const DMIDECODE: Opts = Opts {
    flags: "qu",
    valued: "stH",
    long: &["--quiet", "--dump", "--no-sysfs"],
    long_valued: &["--string", "--type", "--handle", "--oem-string"],
    why: &[("--dump-bin", "writes a file")],
};

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

pub(super) fn hostnamectl(args: &[String]) -> Result<(), NotReadOnly> {
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

pub(super) fn mount(args: &[String]) -> Result<(), NotReadOnly> {
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

pub(super) fn lsof(args: &[String]) -> Result<(), NotReadOnly> {
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

/// find's tests, actions and options that only read and take no value.
const FIND_FLAGS: &[&str] = &[
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
    "-prune",
    "-quit",
    "-true",
    "-false",
    "-not",
    "-a",
    "-o",
    "-and",
    "-or",
    "-L",
    "-H",
    "-P",
    "-O1",
    "-O2",
    "-O3",
];
/// find's tests that only read and take a value.
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
pub(super) fn find(args: &[String]) -> Result<(), NotReadOnly> {
    let mut words = args.iter();
    while let Some(w) = words.next() {
        if w.starts_with('-') {
            let valued = FIND_VALUED.contains(&w.as_str());
            if !valued && !FIND_FLAGS.contains(&w.as_str()) {
                let why = match w.as_str() {
                    "-delete" => "deletes files",
                    "-exec" | "-execdir" | "-ok" | "-okdir" => "runs a command",
                    "-fprint" | "-fprint0" | "-fprintf" | "-fls" => "writes a file",
                    _ => "is not a test the read-only check allows",
                };
                return Err(NotReadOnly::new(format!("`find {w}` {why}")));
            }
            if valued && words.next().is_none() {
                return Err(NotReadOnly::new(format!("`find {w}` needs a value")));
            }
        }
    }
    Ok(())
}
