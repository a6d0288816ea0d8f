//! Property tests of the `[%%key%%]` renderer: any template is rendered
//! without a panic; it fails exactly when a key has no value, naming every
//! such key and no other, and otherwise gives what a plain model gives.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Template pieces: text (brackets and percent signs included, so that
/// half-placeholders occur), and placeholders of known and unknown keys.
fn pieces() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            "[a-z \n\\[\\]%]{0,8}",
            "[a-e]{1,3}".prop_map(|k| format!("[%%{k}%%]")),
            Just("[%%".to_string()),
            Just("%%]".to_string()),
        ],
        0..16,
    )
}

/// Values for some keys of `[a-e]{1,3}`: one-letter keys only.
fn values() -> BTreeMap<String, String> {
    ["a", "b", "c"]
        .iter()
        .map(|k| (k.to_string(), format!("<{k}>")))
        .collect()
}

/// The model: scan left to right; `[%%` opens, the next `%%]` closes.
fn model(text: &str, vars: &BTreeMap<String, String>) -> (String, BTreeSet<String>) {
    let (mut out, mut missing, mut rest) = (String::new(), BTreeSet::new(), text);
    while let Some(open) = rest.find("[%%") {
        let Some(close) = rest[open + 3..].find("%%]") else {
            break;
        };
        out.push_str(&rest[..open]);
        let key = &rest[open + 3..open + 3 + close];
        match vars.get(key) {
            Some(v) => out.push_str(v),
            None => {
                missing.insert(key.to_string());
            }
        }
        rest = &rest[open + 3 + close + 3..];
    }
    out.push_str(rest);
    (out, missing)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn rendering_agrees_with_the_model(pieces in pieces()) {
        let text = pieces.concat();
        let vars = values();
        let (want, missing) = model(&text, &vars);
        match tasks::render(&text, &vars) {
            Ok(got) => {
                prop_assert!(missing.is_empty(), "rendered despite {:?}", missing);
                prop_assert_eq!(got, want);
            }
            Err(e) => {
                prop_assert_eq!(&e.0, &missing);
                for key in &missing {
                    prop_assert!(e.to_string().contains(key.as_str()), "{}", e);
                }
            }
        }
    }
}
