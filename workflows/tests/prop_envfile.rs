//! Property tests of `.env` parsing: any text is judged without a panic, an
//! error names a line that exists and never echoes a value, and what users
//! write (plain, single-quoted, `export`ed) reads back as written.

use proptest::prelude::*;
use workflows::envfile::parse;

/// A value nobody should see in an error: it carries this marker.
const MARK: &str = "S3cr3t";

fn keys() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_.]{0,10}"
}

/// Lines as a careless edit leaves them: good entries, and broken ones
/// holding a marked secret (no `=`, a bad key, an unclosed or trailing
/// quote, an unclosed `${`).
fn lines() -> impl Strategy<Value = String> {
    let secret = "[a-z0-9]{4,10}".prop_map(|s| format!("{MARK}{s}"));
    prop_oneof![
        (keys(), "[a-z0-9 ]{0,12}").prop_map(|(k, v)| format!("{k}={v}")),
        secret.clone(),
        secret.clone().prop_map(|s| format!("9bad={s}")),
        (keys(), secret.clone()).prop_map(|(k, s)| format!("{k}=\"{s}")),
        (keys(), secret.clone()).prop_map(|(k, s)| format!("{k}='{s}' {s}")),
        (keys(), secret.clone()).prop_map(|(k, s)| format!("{k}=${{{s}")),
        Just(String::new()),
        Just("# a comment".to_string()),
        "\\PC{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_is_judged_and_errors_hide_values(lines in prop::collection::vec(lines(), 0..12)) {
        let text = lines.join("\n");
        if let Err(e) = parse(&text, |_| None) {
            prop_assert!(e.line >= 1 && e.line <= lines.len(), "line {} of {}", e.line, lines.len());
            prop_assert!(!e.to_string().contains(MARK), "{}", e);
        }
    }

    #[test]
    fn plain_and_single_quoted_values_read_back(
        entries in prop::collection::vec((keys(), "[A-Za-z0-9_./:@%+=-]([A-Za-z0-9_./:@%+= -]{0,20}[A-Za-z0-9_./:@%+=-])?", "[^'\n]{0,20}", any::<bool>()), 1..8),
    ) {
        let text: Vec<String> = entries
            .iter()
            .enumerate()
            .flat_map(|(i, (k, plain, quoted, export))| {
                let export = if *export { "export " } else { "" };
                [
                    format!("{export}{k}_{i}p={plain}"),
                    format!("{k}_{i}q='{quoted}' # why"),
                ]
            })
            .collect();
        let vars = parse(&text.join("\n"), |_| None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (i, (k, plain, quoted, _)) in entries.iter().enumerate() {
            prop_assert_eq!(vars.get(&format!("{k}_{i}p")), Some(plain));
            prop_assert_eq!(vars.get(&format!("{k}_{i}q")), Some(quoted));
        }
    }
}
