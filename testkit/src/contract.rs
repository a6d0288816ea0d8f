//! The contract check: every response of the fake API must match Hetzner's OpenAPI description.

use sandbox::Recorded;
use serde_json::{Map, Value, json};
use std::path::PathBuf;

/// `../shared/hcloud/hcloud.openapi.json`, next to the repository.
pub fn spec_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/hcloud/hcloud.openapi.json")
}

/// Hetzner's API description, ready to validate responses.
pub struct Contract {
    spec: Value,
    components: Value,
}

/// OpenAPI 3.0's `nullable: true` is not JSON Schema: turn it into `anyOf [schema, null]`.
fn convert(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out: Map<String, Value> = m
                .iter()
                .filter(|(k, _)| {
                    k.as_str() != "nullable" && k.as_str() != "example" && k.as_str() != "examples"
                })
                .map(|(k, v)| (k.clone(), convert(v)))
                .collect();
            if m.get("nullable") == Some(&Value::Bool(true)) {
                let inner = Value::Object(std::mem::take(&mut out));
                out.insert("anyOf".into(), json!([inner, {"type": "null"}]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(convert).collect()),
        other => other.clone(),
    }
}

impl Contract {
    /// Loads the description from [`spec_path`].
    pub fn load() -> Result<Contract, String> {
        let path = spec_path();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read the Hetzner API description {}: {e}",
                path.display()
            )
        })?;
        let spec: Value =
            serde_json::from_str(&text).map_err(|e| format!("bad OpenAPI JSON: {e}"))?;
        let components = convert(&spec["components"]);
        Ok(Contract { spec, components })
    }

    /// Checks one recorded response; the error names the endpoint and every violation.
    pub fn check(&self, r: &Recorded) -> Result<(), String> {
        let op = &self.spec["paths"][&r.path][&r.method];
        if op.is_null() {
            return Err(format!(
                "{} {} is not in the API description",
                r.method, r.path
            ));
        }
        let responses = &op["responses"];
        let status = r.status.to_string();
        let class = format!("{}xx", r.status / 100);
        let response = [&status, &class]
            .iter()
            .map(|k| &responses[k.as_str()])
            .find(|v| !v.is_null())
            .ok_or_else(|| format!("{} {} never answers {}", r.method, r.path, r.status))?;
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            return Err(format!(
                "{} {} answers {} without a body",
                r.method, r.path, r.status
            ));
        }
        let mut root = convert(schema);
        if let Value::Object(m) = &mut root {
            m.insert("components".into(), self.components.clone());
        }
        let validator = jsonschema::draft4::new(&root)
            .map_err(|e| format!("cannot compile the schema of {} {}: {e}", r.method, r.path))?;
        let errors: Vec<String> = validator
            .iter_errors(&r.body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} {} -> {} violates the contract:\n  {}",
                r.method,
                r.path,
                r.status,
                errors.join("\n  ")
            ))
        }
    }

    /// Checks many responses; returns every failure.
    pub fn check_all(&self, recorded: &[Recorded]) -> Vec<String> {
        recorded
            .iter()
            .filter_map(|r| self.check(r).err())
            .collect()
    }
}
