//! Property tests of cron and time-zone input: any text is judged without a
//! panic and an error names what was given; any well-formed expression in
//! any IANA zone parses, and its next fire time lies ahead.

use engine::schedule::{Cron, ScheduleError};
use proptest::prelude::*;

/// One cron field: `*`, a value, a range, a list or a step, within `lo..=hi`.
fn field(lo: u32, hi: u32) -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        (lo..=hi).prop_map(|v| v.to_string()),
        (lo..=hi, lo..=hi).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        prop::collection::vec(lo..=hi, 1..4).prop_map(|vs| vs
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")),
        (1..=hi.max(1)).prop_map(|s| format!("*/{s}")),
    ]
}

/// Five fields, minute first, as users write them.
fn expressions() -> impl Strategy<Value = String> {
    (
        field(0, 59),
        field(0, 23),
        field(1, 28),
        field(1, 12),
        field(0, 6),
    )
        .prop_map(|(m, h, d, mo, w)| format!("{m} {h} {d} {mo} {w}"))
}

fn zones() -> impl Strategy<Value = String> {
    prop::sample::select(
        chrono_tz::TZ_VARIANTS
            .iter()
            .map(|z| z.name().to_string())
            .collect::<Vec<_>>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_text_is_judged_and_errors_name_it(expr in "\\PC{0,40}", tz in "\\PC{0,20}") {
        match Cron::parse(&expr, &tz) {
            Ok(cron) => { let _ = cron.next_after(0); }
            Err(e @ ScheduleError::Cron { .. }) => prop_assert!(e.to_string().contains(&expr), "{}", e),
            Err(e @ ScheduleError::TimeZone(_)) => prop_assert!(e.to_string().contains(&tz), "{}", e),
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error: {e}"))),
        }
    }

    #[test]
    fn well_formed_expressions_parse_in_every_zone_and_fire_ahead(
        expr in expressions(),
        tz in zones(),
        now in 0i64..4_000_000_000_000,
    ) {
        let cron = Cron::parse(&expr, &tz).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Days 1-28 exist in every month: with the day of week open there is
        // always a next fire time. (With both restricted, the cron crate
        // wants both, as in "Sunday the 16th of April", which may not come
        // again within its range.)
        let next = cron.next_after(now);
        let dow_open = expr.ends_with(" *");
        prop_assert!(next.is_some() || !dow_open, "{} in {}: no fire time after {}", expr, tz, now);
        let Some(next) = next else { return Ok(()) };
        prop_assert!(next > now, "{} in {}: {} after {}", expr, tz, next, now);
        prop_assert_eq!(cron.latest_between(now, next), Some(next));
    }

    #[test]
    fn a_wrong_field_count_says_how_many(n in 0usize..12) {
        prop_assume!(n != 5 && n != 6);
        let expr = vec!["*"; n].join(" ");
        let err = Cron::parse(&expr, "UTC").unwrap_err().to_string();
        prop_assert!(err.contains(&format!("found {n}")), "{}", err);
    }
}
