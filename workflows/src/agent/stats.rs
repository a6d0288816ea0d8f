//! System statistics of a node, by category, as the Dart nix-infra's
//! `system-stats` offers them: fixed reads of `/proc` and the usual tools,
//! each category a short block headed `=== name ===`. Nothing here takes
//! an argument from the caller, so nothing here needs checking.

use std::fmt;
use std::str::FromStr;

/// A category of system statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stats {
    /// Every category below, in this order.
    All,
    /// Load, uptime, CPU use, memory, swap and pressure.
    Health,
    /// Reads and writes per block device.
    DiskIo,
    /// Memory in detail.
    Memory,
    /// Traffic per interface and connection counts.
    Network,
    /// Use of each mounted file system, and inodes.
    DiskUsage,
    /// Process counts and the top processes by CPU and memory.
    Processes,
}

/// The categories' names, as `operation` takes them.
pub const STATS_NAMES: [&str; 7] = [
    "all",
    "health",
    "disk-io",
    "memory",
    "network",
    "disk-usage",
    "processes",
];

impl FromStr for Stats {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "all" => Stats::All,
            "" | "health" => Stats::Health,
            "disk-io" => Stats::DiskIo,
            "memory" => Stats::Memory,
            "network" => Stats::Network,
            "disk-usage" => Stats::DiskUsage,
            "processes" => Stats::Processes,
            other => {
                return Err(format!(
                    "unknown operation {other:?}: give one of {}",
                    STATS_NAMES.join(", ")
                ));
            }
        })
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = [
            Stats::All,
            Stats::Health,
            Stats::DiskIo,
            Stats::Memory,
            Stats::Network,
            Stats::DiskUsage,
            Stats::Processes,
        ]
        .iter()
        .position(|s| s == self)
        .unwrap_or(0);
        f.write_str(STATS_NAMES[k])
    }
}

const HEALTH: &str = r#"echo '=== health ==='
read l1 l5 l15 _ < /proc/loadavg; echo "load: $l1 $l5 $l15"
awk '{d=int($1); printf "uptime: %dd %dh %dm\n", d/86400, d%86400/3600, d%3600/60}' /proc/uptime
cpu() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat; }
set -- $(cpu); t1=$1 i1=$2; sleep 0.5; set -- $(cpu)
awk -v t="$(( $1 - t1 ))" -v i="$(( $2 - i1 ))" 'BEGIN{ if (t>0) printf "cpu: %.0f%% busy\n", 100*(t-i)/t }'
awk '/^MemTotal/{t=$2} /^MemAvailable/{a=$2} /^SwapTotal/{st=$2} /^SwapFree/{sf=$2}
  END{ printf "mem: %.1fG total, %.0f%% used, %.1fG available\n", t/1048576, 100*(t-a)/t, a/1048576;
       if (st>0) printf "swap: %.0f%% of %.1fG used\n", 100*(st-sf)/st, st/1048576; else print "swap: none" }' /proc/meminfo
for p in cpu memory io; do [ -r /proc/pressure/$p ] && awk -v p=$p '/^some/{split($2,a,"="); printf "pressure %s: %s%%\n", p, a[2]}' /proc/pressure/$p; done
"#;

const DISK_IO: &str = r#"echo '=== disk-io ==='
awk '$3 !~ /^(loop|ram)/ && ($4+$8)>0 {printf "%s: reads=%d (%.1fMB) writes=%d (%.1fMB) busy=%dms\n", $3, $4, $6*512/1048576, $8, $10*512/1048576, $13}' /proc/diskstats
"#;

const MEMORY: &str = r#"echo '=== memory ==='
awk '/^(MemTotal|MemFree|MemAvailable|Buffers|Cached|SwapTotal|SwapFree|Dirty|Writeback|AnonPages|Mapped|Shmem):/{printf "%s %.1fM\n", $1, $2/1024}' /proc/meminfo
awk '/^(pgpgin|pgpgout|pswpin|pswpout) /{print $1": "$2}' /proc/vmstat
[ -r /proc/pressure/memory ] && sed 's/^/pressure: /' /proc/pressure/memory
true
"#;

const NETWORK: &str = r#"echo '=== network ==='
awk -F'[: ]+' 'NR>2 && $2!="lo" {printf "%s: rx=%.1fMB tx=%.1fMB rx_pkt=%s tx_pkt=%s rx_err=%s tx_err=%s\n", $2, $3/1048576, $11/1048576, $4, $12, $5, $13}' /proc/net/dev
awk 'NR>1 {n[$4]++} END{printf "tcp: %d established, %d listening, %d time-wait\n", n["01"], n["0A"], n["06"]}' /proc/net/tcp /proc/net/tcp6 2>/dev/null
"#;

const DISK_USAGE: &str = r#"echo '=== disk-usage ==='
df -P -B1 -x tmpfs -x devtmpfs -x squashfs -x overlay 2>/dev/null | awk 'NR>1 && $1 !~ /^\/dev\/loop/ {
  p=$5+0; tag=""; if (p>=90) tag=" [CRITICAL]"; else if (p>=80) tag=" [WARNING]";
  printf "%s: %d%% of %.1fG (%.1fG free)%s\n", $6, p, $2/1073741824, $4/1073741824, tag }'
df -P -i -x tmpfs -x devtmpfs -x squashfs -x overlay 2>/dev/null | awk 'NR>1 && $5+0>=80 {printf "inodes %s: %s used [WARNING]\n", $6, $5}'
true
"#;

const PROCESSES: &str = r#"echo '=== processes ==='
ps -eo stat= | awk '{n++} /^R/{r++} /^Z/{z++} END{printf "summary: %d total, %d running, %d zombie\n", n, r, z}'
echo 'by cpu:'; ps -eo pid=,pcpu=,comm= --sort=-pcpu | head -5 | awk '{printf "  %s %s %s%%\n", $1, $3, $2}'
echo 'by memory:'; ps -eo pid=,rss=,comm= --sort=-rss | head -5 | awk '{printf "  %s %s %.1fMB\n", $1, $3, $2/1024}'
"#;

impl Stats {
    /// The shell script that prints this category.
    pub fn script(self) -> String {
        let one = |s: Stats| match s {
            Stats::Health => HEALTH,
            Stats::DiskIo => DISK_IO,
            Stats::Memory => MEMORY,
            Stats::Network => NETWORK,
            Stats::DiskUsage => DISK_USAGE,
            Stats::Processes => PROCESSES,
            Stats::All => "",
        };
        match self {
            Stats::All => [
                Stats::Health,
                Stats::DiskIo,
                Stats::Memory,
                Stats::Network,
                Stats::DiskUsage,
                Stats::Processes,
            ]
            .map(one)
            .join(""),
            s => one(s).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_and_unknown_ones_are_named() {
        for n in STATS_NAMES {
            assert_eq!(n.parse::<Stats>().unwrap().to_string(), n);
        }
        let e = "cpu".parse::<Stats>().unwrap_err();
        assert!(e.contains("\"cpu\"") && e.contains("disk-usage"), "{e}");
    }

    #[test]
    fn each_script_runs_here_and_prints_its_heading() {
        for n in STATS_NAMES {
            let s: Stats = n.parse().unwrap();
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(s.script())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{n}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.stderr.is_empty(),
                "{n}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let headings = text.lines().filter(|l| l.starts_with("=== ")).count();
            assert_eq!(
                headings,
                if s == Stats::All { 6 } else { 1 },
                "{n}:\n{text}"
            );
            assert!(
                text.lines().count() > headings,
                "{n} printed only headings:\n{text}"
            );
        }
    }
}
