//! Cron evaluation for [`Schedule`]s: which fire time is due, and the run id it makes.

use crate::model::{CatchUp, Millis, Schedule};
use chrono::{TimeZone, Utc};
use std::str::FromStr;

mod weekdays;

/// Why a schedule was rejected; nothing was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("invalid cron expression `{expr}`: {reason}")]
    Cron {
        /// The expression.
        expr: String,
        /// What is wrong.
        reason: String,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone `{0}` (use an IANA name such as UTC or Europe/Berlin)")]
    TimeZone(String),
    /// The name has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid schedule name `{0}`: use 1-64 characters from A-Z a-z 0-9 . _ -")]
    Name(String),
}

/// A parsed cron expression in a time zone.
#[derive(Clone, Debug)]
pub struct Cron {
    schedule: cron::Schedule,
    tz: chrono_tz::Tz,
}

impl Cron {
    /// Parses 5 fields (minute first) or 6 (seconds first), read in time zone `tz`.
    ///
    /// The day of week is standard cron's: `0`-`7` (Sunday is `0` and `7`)
    /// or `SUN`-`SAT`, in both forms.
    pub fn parse(expr: &str, tz: &str) -> Result<Cron, ScheduleError> {
        let mut fields: Vec<String> = expr.split_whitespace().map(str::to_string).collect();
        let full = match fields.len() {
            5 | 6 => {
                let dow = fields.len() - 1;
                fields[dow] = weekdays::standard_to_crate(&fields[dow]).map_err(|reason| {
                    ScheduleError::Cron {
                        expr: expr.into(),
                        reason,
                    }
                })?;
                if fields.len() == 5 {
                    fields.insert(0, "0".into());
                }
                fields.join(" ")
            }
            n => {
                return Err(ScheduleError::Cron {
                    expr: expr.into(),
                    reason: format!("expected 5 fields (or 6 with seconds first), found {n}"),
                });
            }
        };
        let schedule = cron::Schedule::from_str(&full).map_err(|e| ScheduleError::Cron {
            expr: expr.into(),
            // The parser draws a caret diagram above its message; keep the message.
            reason: e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string(),
        })?;
        let tz = chrono_tz::Tz::from_str(tz).map_err(|_| ScheduleError::TimeZone(tz.into()))?;
        Ok(Cron { schedule, tz })
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: Millis) -> Option<Millis> {
        let at = self
            .tz
            .from_utc_datetime(&Utc.timestamp_millis_opt(t).single()?.naive_utc());
        self.schedule
            .after(&at)
            .next()
            .map(|f| f.with_timezone(&Utc).timestamp_millis())
    }

    /// The latest fire time in `(after, until]`, if any.
    pub fn latest_between(&self, after: Millis, until: Millis) -> Option<Millis> {
        let mut latest = None;
        let mut t = after;
        // Bounded: a per-second schedule missed for a day is 86 400 steps.
        for _ in 0..1_000_000 {
            match self.next_after(t) {
                Some(f) if f <= until => {
                    latest = Some(f);
                    t = f;
                }
                _ => break,
            }
        }
        latest
    }
}

/// Checks a schedule name.
pub fn validate_name(name: &str) -> Result<(), ScheduleError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ScheduleError::Name(name.into()))
    }
}

/// The run id for `schedule`'s fire time `fire`: the same in every process, so a
/// fire time yields exactly one run however many schedulers see it.
pub fn run_id(schedule: &str, fire: Millis) -> String {
    format!("schedule:{schedule}:{}", fire / 1_000)
}

/// The prefix of every run id of `schedule`.
pub fn run_id_prefix(schedule: &str) -> String {
    format!("schedule:{schedule}:")
}

/// The fire time (ms) encoded in a schedule's run id.
pub fn fire_time_of(run_id: &str) -> Option<Millis> {
    run_id
        .rsplit(':')
        .next()?
        .parse::<i64>()
        .ok()
        .map(|s| s * 1_000)
}

/// What to do about a schedule now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// Start a run for this fire time.
    pub fire: Option<Millis>,
    /// Move `last_fire` here (past skipped fire times too).
    pub advance_to: Millis,
}

/// Decides whether `s` is due at `now`. Fire times older than `grace` are
/// missed: `skip` drops them, `once` fires for the latest of them.
pub fn due(s: &Schedule, cron: &Cron, now: Millis, grace: Millis) -> Option<Due> {
    if s.paused {
        return None;
    }
    let latest = cron.latest_between(s.last_fire, now)?;
    let on_time = now - latest <= grace;
    let fire = match (on_time, s.catch_up) {
        (true, _) | (false, CatchUp::Once) => Some(latest),
        (false, CatchUp::Skip) => None,
    };
    Some(Due {
        fire,
        advance_to: latest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(catch_up: CatchUp, last_fire: Millis) -> Schedule {
        Schedule {
            name: "s".into(),
            cron: "0 * * * *".into(),
            tz: "UTC".into(),
            workflow: "w".into(),
            input: serde_json::Value::Null,
            catch_up,
            resources: vec![],
            paused: false,
            last_fire,
            created_at: 0,
        }
    }

    #[test]
    fn parses_five_and_six_fields_and_rejects_the_rest() {
        let hourly = Cron::parse("0 * * * *", "UTC").unwrap();
        assert_eq!(hourly.next_after(0), Some(3_600_000));
        let every_second = Cron::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(every_second.next_after(500), Some(1_000));
        assert!(matches!(
            Cron::parse("* * *", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Cron::parse("61 * * * *", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Cron::parse("0 * * * *", "Mars/Olympus"),
            Err(ScheduleError::TimeZone(_))
        ));
        // 1970-01-01 was a Thursday: Sunday (0 or 7) is the 4th, Monday the 5th.
        let day = 86_400_000;
        for sunday in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN", "0 0 0 * * 0"] {
            assert_eq!(
                Cron::parse(sunday, "UTC").unwrap().next_after(0),
                Some(3 * day),
                "{sunday}"
            );
        }
        assert_eq!(
            Cron::parse("0 0 * * 1", "UTC").unwrap().next_after(0),
            Some(4 * day)
        );
        // 02:00 in Berlin (UTC+1 in January) is 01:00 UTC.
        let berlin = Cron::parse("0 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(berlin.next_after(0), Some(3_600_000));
    }

    #[test]
    fn catch_up_policies() {
        let cron = Cron::parse("0 * * * *", "UTC").unwrap();
        let hour = 3_600_000;
        // On time: fires.
        let d = due(&sched(CatchUp::Skip, 0), &cron, hour + 1_000, 5_000).unwrap();
        assert_eq!(
            d,
            Due {
                fire: Some(hour),
                advance_to: hour
            }
        );
        // Three hours missed: skip fires nothing but moves on; once fires the latest.
        let now = 3 * hour + 60_000;
        let d = due(&sched(CatchUp::Skip, 0), &cron, now, 5_000).unwrap();
        assert_eq!(
            d,
            Due {
                fire: None,
                advance_to: 3 * hour
            }
        );
        let d = due(&sched(CatchUp::Once, 0), &cron, now, 5_000).unwrap();
        assert_eq!(
            d,
            Due {
                fire: Some(3 * hour),
                advance_to: 3 * hour
            }
        );
        // Nothing new since the last fire.
        assert_eq!(
            due(&sched(CatchUp::Once, 3 * hour), &cron, now, 5_000),
            None
        );
        assert_eq!(run_id("nightly", 3 * hour), "schedule:nightly:10800");
        assert_eq!(fire_time_of("schedule:nightly:10800"), Some(3 * hour));
    }
}
