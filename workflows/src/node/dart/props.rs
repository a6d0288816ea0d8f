//! Property tests of the Dart layout's renderer: any text is rendered
//! without a panic, as the Dart tool's pattern reads it (a placeholder on
//! one line; secret prefixes become the secret's name), and every key with
//! no value is found, no other.

use super::*;
use proptest::prelude::*;

fn pieces() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            "[a-z \n\\[\\]%/]{0,8}",
            "[a-e]{1,2}".prop_map(|k| format!("[%%{k}%%]")),
            "[a-c]{1,2}".prop_map(|k| format!("[%%secrets/{k}%%]")),
            "[a-c]{1,2}".prop_map(|k| format!("[%%pre-build-secrets/x/{k}%%]")),
            Just("[%%".to_string()),
            Just("%%]".to_string()),
        ],
        0..16,
    )
}

/// The model: the Dart tool's `\[%%(.*?)%%\]` with `.` not matching a newline.
fn model(text: &str, vars: &BTreeMap<String, String>) -> (String, Found) {
    let (mut out, mut found, mut rest) = (String::new(), Found::default(), text);
    while let Some(open) = rest.find("[%%") {
        let after = &rest[open + 3..];
        let line = &after[..after.find('\n').unwrap_or(after.len())];
        let Some(close) = line.find("%%]") else {
            out.push_str(&rest[..open + 3]);
            rest = after;
            continue;
        };
        out.push_str(&rest[..open]);
        let key = &after[..close];
        let last = |k: &str| k.rsplit('/').next().unwrap_or(k).to_string();
        if let Some(k) = key.strip_prefix("pre-build-secrets/") {
            found.secrets.insert(last(k));
            found.pre_build.insert(last(k));
            out.push_str(&last(k));
        } else if let Some(k) = key.strip_prefix("secrets/") {
            found.secrets.insert(last(k));
            out.push_str(&last(k));
        } else if let Some(v) = vars.get(key) {
            out.push_str(v);
        } else {
            found.missing.insert(key.to_string());
            out.push_str(&rest[open..open + 3 + close + 3]);
        }
        rest = &after[close + 3..];
    }
    out.push_str(rest);
    (out, found)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn rendering_agrees_with_the_dart_pattern(pieces in pieces()) {
        let text = pieces.concat();
        let vars: BTreeMap<String, String> =
            ["a", "b"].iter().map(|k| (k.to_string(), format!("<{k}>"))).collect();
        let (want, want_found) = model(&text, &vars);
        let mut found = Found::default();
        prop_assert_eq!(render(&text, &vars, None, &mut found), want);
        prop_assert_eq!(&found, &want_found);
        // Before a run, a stand-in takes every missing key's place.
        let mut found = Found::default();
        let checked = render(&text, &vars, Some("STAND-IN"), &mut found);
        prop_assert_eq!(found.missing.is_empty(), !checked.contains("STAND-IN"));
    }
}
