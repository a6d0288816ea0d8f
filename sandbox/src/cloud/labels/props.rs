//! Property tests of the label-selector parser: any text is judged without a
//! panic, an error quotes what it could not read, and well-formed selectors
//! select exactly what a plain model of each operator selects.

use super::*;
use proptest::prelude::*;

/// A term as users write it, with what it means.
#[derive(Clone, Debug)]
enum Model {
    Eq(String, String),
    Ne(String, String),
    Has(String),
    HasNot(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl Model {
    fn text(&self) -> String {
        match self {
            Model::Eq(k, v) => format!("{k}={v}"),
            Model::Ne(k, v) => format!("{k} != {v}"),
            Model::Has(k) => k.clone(),
            Model::HasNot(k) => format!("!{k}"),
            Model::In(k, vs) => format!("{k} in ({})", vs.join(", ")),
            Model::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
        }
    }

    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Model::Eq(k, v) => labels.get(k) == Some(v),
            Model::Ne(k, v) => labels.get(k) != Some(v),
            Model::Has(k) => labels.contains_key(k),
            Model::HasNot(k) => !labels.contains_key(k),
            Model::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Model::NotIn(k, vs) => !labels.get(k).is_some_and(|v| vs.contains(v)),
        }
    }
}

fn terms() -> impl Strategy<Value = Model> {
    let key = "[a-c](\\.[a-c])?";
    let value = "[x-z]{1,2}";
    let values = prop::collection::vec(value, 1..3);
    prop_oneof![
        (key, value).prop_map(|(k, v)| Model::Eq(k, v)),
        (key, value).prop_map(|(k, v)| Model::Ne(k, v)),
        key.prop_map(Model::Has),
        key.prop_map(Model::HasNot),
        (key, values.clone()).prop_map(|(k, vs)| Model::In(k, vs)),
        (key, values).prop_map(|(k, vs)| Model::NotIn(k, vs)),
    ]
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-c](\\.[a-c])?", "[x-z]{1,2}", 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_text_is_judged_and_errors_quote_it(text in "\\PC{0,40}") {
        if let Err(e) = Selector::parse(&text) {
            let quoted = split_terms(&text)
                .into_iter()
                .map(str::trim)
                .any(|term| !term.is_empty() && e.contains(&format!("`{term}`")));
            prop_assert!(quoted, "{} for {:?}", e, text);
        }
    }

    #[test]
    fn selectors_select_what_their_terms_mean(
        terms in prop::collection::vec(terms(), 0..4),
        labels in labels(),
    ) {
        let text = terms.iter().map(Model::text).collect::<Vec<_>>().join(",");
        let selector = Selector::parse(&text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(selector.matches(&labels), terms.iter().all(|t| t.holds(&labels)), "{}", text);
    }

    #[test]
    fn a_term_without_a_key_is_refused(op in prop::sample::select(vec!["=x", "==x", "!=x", "!", " = x"])) {
        let e = Selector::parse(&format!("a=x,{op}")).unwrap_err();
        prop_assert!(e.contains("no key"), "{}", e);
    }
}
