//! The day-of-week field as cron users write it (`0`-`7`, Sunday being both
//! `0` and `7`, or `SUN`-`SAT`), in the numbering of the `cron` crate, which
//! counts Sunday as 1 and refuses 0: there, `0 4 * * 0` is an error and
//! `0 9 * * 1` fires on Sundays.

/// Day names in standard cron order: `SUN` is day 0.
const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The `cron` crate's spelling of the standard day-of-week `field`: the days
/// it names (0 = Sunday), listed from 1 = Sunday; `*` and `?` stay.
pub(super) fn standard_to_crate(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.into());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        for day in item_days(item)? {
            days[day % 7] = true;
        }
    }
    let listed: Vec<String> = (0..7)
        .filter(|d| days[*d])
        .map(|d| (d + 1).to_string())
        .collect();
    Ok(listed.join(","))
}

/// The days (0-7) one list item names: `D`, `D-D`, `*`, each with an optional `/STEP`.
fn item_days(item: &str) -> Result<Vec<usize>, String> {
    let bad = |why: &str| format!("day of week `{item}`: {why}");
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let step: usize = s.parse().map_err(|_| bad("the step is not a number"))?;
            if step == 0 {
                return Err(bad("the step must be at least 1"));
            }
            (r, step)
        }
        None => (item, 1),
    };
    let (from, to) = match range {
        "*" => (0, 6),
        r => match r.split_once('-') {
            Some((a, b)) => (day(a).map_err(|e| bad(&e))?, day(b).map_err(|e| bad(&e))?),
            // `D/STEP` runs from D to the end of the week, as in Vixie cron.
            None if step > 1 => (day(r).map_err(|e| bad(&e))?, 6),
            None => {
                let d = day(r).map_err(|e| bad(&e))?;
                (d, d)
            }
        },
    };
    if from > to {
        return Err(bad("the range runs backwards"));
    }
    Ok((from..=to).step_by(step).collect())
}

/// One day: 0-7 or a three-letter name.
fn day(text: &str) -> Result<usize, String> {
    let t = text.trim().to_ascii_lowercase();
    if let Some(d) = NAMES.iter().position(|n| *n == t) {
        return Ok(d);
    }
    match t.parse::<usize>() {
        Ok(d) if d <= 7 => Ok(d),
        _ => Err(format!("`{text}` is not 0-7 or SUN-SAT")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_days_become_the_crates() {
        for (standard, crate_form) in [
            ("0", "1"),
            ("7", "1"),
            ("1", "2"),
            ("1-5", "2,3,4,5,6"),
            ("MON-FRI", "2,3,4,5,6"),
            ("sat,sun", "1,7"),
            ("5-7", "1,6,7"),
            ("*/2", "1,3,5,7"),
            ("1/3", "2,5"),
            ("*", "*"),
        ] {
            assert_eq!(
                standard_to_crate(standard).unwrap(),
                crate_form,
                "{standard}"
            );
        }
        for bad in ["8", "x", "5-2", "*/0", "1-", "MON-XYZ", ""] {
            let e = standard_to_crate(bad).unwrap_err();
            assert!(e.contains("day of week"), "{bad}: {e}");
        }
    }
}
