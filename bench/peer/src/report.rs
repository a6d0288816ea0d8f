//! What was measured, per system, and the markdown table and target verdicts printed from it.

use crate::stats::Adjacent;

/// Everything measured for one system over all repetitions.
#[derive(Default)]
pub struct Tally {
    /// Display name.
    pub name: &'static str,
    /// Sequential µs per step, one per repetition.
    pub us_per_step: Vec<f64>,
    /// That time over the adjacent commit measured just before it, one per repetition.
    pub ratio: Vec<f64>,
    /// Steps per second with 10 chains at once, one per repetition.
    pub steps_per_s: Vec<f64>,
    /// The adjacent commits measured before this system's repetitions.
    pub adjacent: Vec<Adjacent>,
    /// Steps executed inside the counting windows.
    pub steps: i64,
    /// pg_stat_statements calls in the windows.
    pub statements: i64,
    /// `xact_commit` in the windows.
    pub commits: i64,
    /// WAL insert-position bytes in the windows.
    pub wal_bytes: i64,
    /// `wal_sync` in the windows.
    pub wal_syncs: i64,
    /// Checkpoints that fell inside a window.
    pub checkpoints: i64,
}

/// The median (upper one of an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `1234567.8` as `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

impl Tally {
    fn per_step(&self, total: i64) -> f64 {
        total as f64 / self.steps.max(1) as f64
    }

    fn row(&self) -> String {
        format!(
            "| {} | {} | {:.2}× | {} | {:.2} | {:.2} | {} | {:.2} |",
            self.name,
            thousands(median(&self.us_per_step)),
            median(&self.ratio),
            thousands(median(&self.steps_per_s)),
            self.per_step(self.statements),
            self.per_step(self.commits),
            thousands(self.per_step(self.wal_bytes)),
            self.per_step(self.wal_syncs),
        )
    }

    fn details(&self) -> String {
        let list = |xs: &[f64], d: usize| {
            xs.iter()
                .map(|x| format!("{x:.d$}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let adjacent: Vec<f64> = self.adjacent.iter().map(|a| a.us).collect();
        format!(
            "{}: µs per step [{}]; adjacent µs [{}]; ratio [{}]; steps/s at once [{}]; \
             {} steps counted, {} checkpoint(s) inside the windows",
            self.name,
            list(&self.us_per_step, 0),
            list(&adjacent, 0),
            list(&self.ratio, 2),
            list(&self.steps_per_s, 0),
            self.steps,
            self.checkpoints,
        )
    }
}

/// Prints the table, the per-repetition figures and whether the targets are met.
pub fn print(dbos: &Tally, ours: &Tally) {
    let all: Vec<Adjacent> = dbos
        .adjacent
        .iter()
        .chain(&ours.adjacent)
        .copied()
        .collect();
    let pick = |f: fn(&Adjacent) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
    println!();
    println!(
        "| | µs per step | × adjacent commit | steps/s, 10 chains at once | statements per step \
         | commits per step | WAL bytes per step | WAL fsyncs per step |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!("{}", dbos.row());
    println!("{}", ours.row());
    println!(
        "| adjacent commit (one-row INSERT) | {} | 1.00× | – | 1 | 1 | {} | {:.2} |",
        thousands(pick(|a| a.us)),
        thousands(pick(|a| a.wal_bytes)),
        pick(|a| a.wal_syncs),
    );
    println!();
    println!("{}", dbos.details());
    println!("{}", ours.details());
    println!();
    let ratio = median(&ours.ratio);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "Target 1, nix-infra sequential at most 1.5× the adjacent commit: {} ({ratio:.2}×).",
        verdict(ratio <= 1.5)
    );
    let (theirs, mine) = (median(&dbos.steps_per_s), median(&ours.steps_per_s));
    println!(
        "Target 2, nix-infra 10 chains at once at least 2× DBOS's steps/s: {} \
         ({} against 2 × {} = {}; {:.2}×).",
        verdict(mine >= 2.0 * theirs),
        thousands(mine),
        thousands(theirs),
        thousands(2.0 * theirs),
        mine / theirs,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234.4), "1,234");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(-4321.0), "-4,321");
    }

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
    }
}
