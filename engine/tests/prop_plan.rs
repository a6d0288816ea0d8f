//! Property tests of plan validation: any step graph, however malformed, is
//! judged without a panic, and the verdict is the one a plain model of the
//! rules gives (duplicates first, then unknown dependencies, then cycles),
//! naming exactly the offending steps.

use engine::{Plan, PlanError, StepSpec};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Up to 12 steps named from a small alphabet (so names collide), each with
/// up to 4 dependencies on names from a slightly larger one (so some are
/// unknown, and cycles are common).
fn graphs() -> impl Strategy<Value = Vec<(String, Vec<String>)>> {
    let name = "[a-h]{1,2}";
    let dep = "[a-j]{1,2}";
    prop::collection::vec((name, prop::collection::vec(dep, 0..4)), 0..12)
}

fn plan(graph: &[(String, Vec<String>)]) -> Plan {
    Plan::new(
        graph
            .iter()
            .map(|(name, deps)| {
                deps.iter()
                    .fold(StepSpec::new(name.clone(), "k"), |s, d| s.after(d.clone()))
            })
            .collect(),
    )
}

/// Whether the dependency graph (all names known, unique) has a cycle, by
/// peeling off steps whose dependencies are all peeled (Kahn).
fn has_cycle(graph: &[(String, Vec<String>)]) -> bool {
    let mut left: BTreeMap<&str, BTreeSet<&str>> = graph
        .iter()
        .map(|(n, d)| (n.as_str(), d.iter().map(String::as_str).collect()))
        .collect();
    loop {
        let ready: Vec<&str> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !left.contains_key(d)))
            .map(|(n, _)| *n)
            .collect();
        if ready.is_empty() {
            return !left.is_empty();
        }
        for n in ready {
            left.remove(n);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn validation_agrees_with_the_model(graph in graphs()) {
        let verdict = plan(&graph).validate();
        let mut seen = BTreeSet::new();
        let dups: BTreeSet<String> = graph
            .iter()
            .filter(|(n, _)| !seen.insert(n.clone()))
            .map(|(n, _)| n.clone())
            .collect();
        let unknown: Vec<(String, String)> = graph
            .iter()
            .flat_map(|(n, deps)| deps.iter().map(move |d| (n.clone(), d.clone())))
            .filter(|(_, d)| !seen.contains(d))
            .collect();
        if graph.is_empty() {
            prop_assert_eq!(verdict, Err(PlanError::Empty));
        } else if !dups.is_empty() {
            prop_assert_eq!(verdict, Err(PlanError::Duplicate(dups.into_iter().collect())));
        } else if !unknown.is_empty() {
            prop_assert_eq!(verdict, Err(PlanError::UnknownDependency(unknown)));
        } else if has_cycle(&graph) {
            // The cycle named is a real one: it closes, and each step on it
            // depends on the next.
            let Err(PlanError::Cycle(cycle)) = verdict else {
                return Err(TestCaseError::fail(format!("no cycle found: {verdict:?}")));
            };
            prop_assert!(cycle.len() >= 2 && cycle.first() == cycle.last(), "{:?}", cycle);
            let deps: BTreeMap<&String, &Vec<String>> = graph.iter().map(|(n, d)| (n, d)).collect();
            for pair in cycle.windows(2) {
                prop_assert!(deps[&pair[0]].contains(&pair[1]), "{} -> {}", pair[0], pair[1]);
            }
            let text = PlanError::Cycle(cycle.clone()).to_string();
            prop_assert!(text.contains(&cycle.join(" -> ")), "{}", text);
        } else {
            prop_assert_eq!(verdict, Ok(()));
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn a_long_chain_is_judged_without_overflowing_the_stack(n in 1usize..20_000) {
        let steps: Vec<StepSpec> = (0..n)
            .map(|i| {
                let s = StepSpec::new(format!("s{i}"), "k");
                if i == 0 { s } else { s.after(format!("s{}", i - 1)) }
            })
            .collect();
        prop_assert_eq!(Plan::new(steps).validate(), Ok(()));
    }
}
