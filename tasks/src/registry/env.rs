//! [`EnvValue`]: a value of an app's `env` in its `meta_data`, typed as the JSON holds it.

use serde::{Deserialize, Serialize};

/// A value of an app's `env`, typed as the JSON holds it. The Dart-era
/// templates write `{"HOST":"127.0.0.1","PORT":11211}` (Nix's
/// `builtins.toJSON` keeps an integer an integer) and `"PORT":null` for an
/// app without a port. A null stays [`EnvValue::Null`], so reading and
/// writing back keeps it; where text is needed ([`EnvValue::text`]) it is
/// absent, not an empty string. Floats, lists and objects are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// `null`.
    Null,
}

impl EnvValue {
    /// The value as an environment variable's text: a string as it is,
    /// an integer in decimal, a boolean as `true`/`false`; `None` for null.
    pub fn text(&self) -> Option<String> {
        match self {
            EnvValue::Str(s) => Some(s.clone()),
            EnvValue::Int(n) => Some(n.to_string()),
            EnvValue::Bool(b) => Some(b.to_string()),
            EnvValue::Null => None,
        }
    }
}

impl From<String> for EnvValue {
    fn from(s: String) -> EnvValue {
        EnvValue::Str(s)
    }
}

impl From<&str> for EnvValue {
    fn from(s: &str) -> EnvValue {
        EnvValue::Str(s.to_string())
    }
}

impl From<i64> for EnvValue {
    fn from(n: i64) -> EnvValue {
        EnvValue::Int(n)
    }
}

impl From<bool> for EnvValue {
    fn from(b: bool) -> EnvValue {
        EnvValue::Bool(b)
    }
}

impl Serialize for EnvValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EnvValue::Str(v) => s.serialize_str(v),
            EnvValue::Int(n) => s.serialize_i64(*n),
            EnvValue::Bool(b) => s.serialize_bool(*b),
            EnvValue::Null => s.serialize_unit(),
        }
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EnvValue, D::Error> {
        d.deserialize_any(EnvValueVisitor)
    }
}

struct EnvValueVisitor;

impl<'de> serde::de::Visitor<'de> for EnvValueVisitor {
    type Value = EnvValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, an integer, a boolean or null")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EnvValue, E> {
        Ok(EnvValue::Str(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<EnvValue, E> {
        Ok(EnvValue::Str(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<EnvValue, E> {
        Ok(EnvValue::Int(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<EnvValue, E> {
        i64::try_from(v)
            .map(EnvValue::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<EnvValue, E> {
        Ok(EnvValue::Bool(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<EnvValue, E> {
        Ok(EnvValue::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<EnvValue, E> {
        Ok(EnvValue::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::EnvValue;
    use std::collections::BTreeMap;

    #[test]
    fn reads_what_nix_writes_and_writes_it_back_unchanged() {
        let json = r#"{"B":true,"H":"127.0.0.1","N":null,"P":11211}"#;
        let env: BTreeMap<String, EnvValue> = serde_json::from_str(json).unwrap();
        assert_eq!(env["P"], EnvValue::Int(11211));
        assert_eq!(env["N"], EnvValue::Null);
        assert_eq!(env["P"].text().as_deref(), Some("11211"));
        assert_eq!(env["B"].text().as_deref(), Some("true"));
        assert_eq!(env["N"].text(), None);
        assert_eq!(serde_json::to_string(&env).unwrap(), json);
    }

    #[test]
    fn a_float_or_a_list_is_refused_saying_what_fits() {
        for bad in ["1.5", "[1]", r#"{"a":1}"#] {
            let e = serde_json::from_str::<EnvValue>(bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("expected a string, an integer, a boolean or null"),
                "{bad}: {e}"
            );
        }
    }
}
