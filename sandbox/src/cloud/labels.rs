//! Hetzner label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`.

use std::collections::BTreeMap;

/// One term of a selector.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Eq(String, String),
    Ne(String, String),
    Has(String),
    HasNot(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; every term must match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector(Vec<Term>);

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set(term: &str, values: &str) -> Result<Vec<String>, String> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| {
            format!("label selector term `{term}`: expected (a,b,…) after the operator")
        })?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl Selector {
    /// Parses a selector; an empty string selects everything.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut terms = Vec::new();
        for raw in split_terms(s) {
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            let term = if let Some((k, v)) = t.split_once("!=") {
                Term::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = t.split_once("==") {
                Term::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = t.split_once('=') {
                Term::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = t.split_once(" notin ") {
                Term::NotIn(k.trim().into(), set(t, v)?)
            } else if let Some((k, v)) = t.split_once(" in ") {
                Term::In(k.trim().into(), set(t, v)?)
            } else if let Some(k) = t.strip_prefix('!') {
                Term::HasNot(k.trim().into())
            } else if t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
            {
                Term::Has(t.into())
            } else {
                return Err(format!("cannot parse label selector term `{t}`"));
            };
            let key = match &term {
                Term::Eq(k, _) | Term::Ne(k, _) | Term::In(k, _) | Term::NotIn(k, _) => k,
                Term::Has(k) | Term::HasNot(k) => k,
            };
            if key.is_empty() {
                return Err(format!("label selector term `{t}` has no key"));
            }
            terms.push(term);
        }
        Ok(Selector(terms))
    }

    /// Whether `labels` satisfy every term.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|t| match t {
            Term::Eq(k, v) => labels.get(k) == Some(v),
            Term::Ne(k, v) => labels.get(k) != Some(v),
            Term::Has(k) => labels.contains_key(k),
            Term::HasNot(k) => !labels.contains_key(k),
            Term::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Term::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator() {
        let labels: BTreeMap<String, String> = [("role", "worker"), ("cluster", "c1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let yes = [
            "",
            "role=worker",
            "role==worker,cluster=c1",
            "role!=ctrl",
            "cluster",
            "!ingress",
            "role in (ctrl, worker)",
            "role notin (ctrl,ingress)",
        ];
        let no = [
            "role=ctrl",
            "role!=worker",
            "missing",
            "!role",
            "role in (a,b)",
            "role notin (worker)",
        ];
        for s in yes {
            assert!(Selector::parse(s).unwrap().matches(&labels), "{s}");
        }
        for s in no {
            assert!(!Selector::parse(s).unwrap().matches(&labels), "{s}");
        }
        assert!(Selector::parse("role in worker").is_err());
    }
}
