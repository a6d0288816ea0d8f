//! The contract check: every response of the fake API must match Hetzner's OpenAPI description.
//!
//! The description lives in the repository, under `testkit/openapi/`:
//! - `hcloud.openapi.json`: Hetzner's published document, copied unchanged
//!   (its licence beside it). Refresh it by copying a newer one over it.
//! - `additions.json`: the few fields the real API sends, and current clients
//!   require, that the copy does not describe yet. They are applied at load
//!   time by [`apply_additions`], which can only add: new properties and new
//!   `required` names, never a removal or a loosening.
//!
//! Both are found through `CARGO_MANIFEST_DIR`, so a clone of the repository
//! alone has everything the check reads.

use sandbox::Recorded;
use serde_json::{Map, Value, json};
use std::path::PathBuf;

/// `testkit/openapi/`, where the vendored description and our additions live.
pub fn openapi_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi")
}

/// `testkit/openapi/hcloud.openapi.json`: Hetzner's published document, as copied.
pub fn spec_path() -> PathBuf {
    openapi_dir().join("hcloud.openapi.json")
}

/// `testkit/openapi/additions.json`: our add-only overlay on [`spec_path`].
pub fn additions_path() -> PathBuf {
    openapi_dir().join("additions.json")
}

/// Hetzner's API description, ready to validate responses.
pub struct Contract {
    spec: Value,
    components: Value,
}

/// Applies the add-only overlay `additions` to the OpenAPI document `spec`.
///
/// `additions` is `{"$comment"?, "schemas": {NAME: {"why", "properties"?, "required"?}}}`:
/// for each schema `components.schemas.NAME`, every entry of `properties` is
/// added (it must be new: once the published document describes a field, its
/// entry here is refused and must go), and every name in `required` is added
/// to the schema's `required` list (it must be a property of the schema).
/// Where the schema forbids additional properties, an added property must also
/// be required, so nothing the published document rejects becomes accepted.
pub fn apply_additions(spec: &mut Value, additions: &Value) -> Result<(), String> {
    let top = additions
        .as_object()
        .ok_or("additions: not a JSON object")?;
    if let Some(k) = top
        .keys()
        .find(|k| !["$comment", "schemas"].contains(&k.as_str()))
    {
        return Err(format!("additions: unknown key '{k}'"));
    }
    let schemas = top
        .get("schemas")
        .and_then(Value::as_object)
        .ok_or("additions: 'schemas' must be an object")?;
    for (name, patch) in schemas {
        let at = |msg: String| format!("additions: schema '{name}': {msg}");
        let patch = patch
            .as_object()
            .ok_or_else(|| at("not an object".into()))?;
        if let Some(k) = patch
            .keys()
            .find(|k| !["why", "properties", "required"].contains(&k.as_str()))
        {
            return Err(at(format!("unknown key '{k}'")));
        }
        let why = patch.get("why").and_then(Value::as_str).unwrap_or("");
        if why.trim().is_empty() {
            return Err(at(
                "'why' (a non-empty string) says why the field is added".into()
            ));
        }
        let schema = spec
            .pointer_mut(&format!("/components/schemas/{name}"))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| at("not in the published document".into()))?;
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        let props = schema
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or_else(|| at("its 'properties' is not an object".into()))?;
        let added = match patch.get("properties") {
            None => Map::new(),
            Some(p) => p
                .as_object()
                .ok_or_else(|| at("'properties' must be an object".into()))?
                .clone(),
        };
        for (field, def) in &added {
            if props.contains_key(field) {
                return Err(at(format!(
                    "the published document already describes '{field}': remove it from additions.json"
                )));
            }
            props.insert(field.clone(), def.clone());
        }
        let props: Vec<String> = props.keys().cloned().collect();
        let new_required: Vec<String> = match patch.get("required") {
            None => Vec::new(),
            Some(r) => r
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_string)).collect())
                .ok_or_else(|| at("'required' must be a list of names".into()))?,
        };
        if let Some(f) = new_required.iter().find(|f| !props.contains(f)) {
            return Err(at(format!("'{f}' is required but not a property")));
        }
        if closed && let Some(f) = added.keys().find(|f| !new_required.contains(f)) {
            return Err(at(format!(
                "the schema forbids additional properties, so the added '{f}' must be required"
            )));
        }
        let required = schema
            .entry("required")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .ok_or_else(|| at("its 'required' is not a list".into()))?;
        for f in new_required {
            if !required.iter().any(|r| r.as_str() == Some(&f)) {
                required.push(Value::String(f));
            }
        }
    }
    Ok(())
}

fn read_json(path: &std::path::Path, what: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("bad JSON in {}: {e}", path.display()))
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
    /// Loads the vendored description ([`spec_path`]) with our additions ([`additions_path`]).
    pub fn load() -> Result<Contract, String> {
        let spec = read_json(&spec_path(), "the Hetzner API description")?;
        let additions = read_json(&additions_path(), "the additions to the API description")?;
        Contract::from_documents(spec, &additions)
    }

    /// A contract from an OpenAPI document and an overlay for [`apply_additions`].
    pub fn from_documents(mut spec: Value, additions: &Value) -> Result<Contract, String> {
        apply_additions(&mut spec, additions)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A small OpenAPI document with one list endpoint over one schema.
    fn doc(location: Value) -> Value {
        json!({
            "paths": { "/things": { "get": { "responses": { "200": { "content": {
                "application/json": { "schema": { "$ref": "#/components/schemas/list" } }
            } } } } } },
            "components": { "schemas": {
                "list": {
                    "type": "object", "required": ["things"],
                    "properties": { "things": {
                        "type": "array", "items": { "$ref": "#/components/schemas/loc" }
                    } }
                },
                "loc": location,
            } },
        })
    }

    fn open_loc() -> Value {
        json!({
            "type": "object", "required": ["id", "name"],
            "properties": { "id": { "type": "integer" }, "name": { "type": "string" } },
        })
    }

    fn overlay(patch: Value) -> Value {
        json!({ "schemas": { "loc": patch } })
    }

    fn flags() -> Value {
        json!({
            "why": "the real API sends them",
            "properties": { "available": { "type": "boolean" }, "recommended": { "type": "boolean" } },
            "required": ["available", "recommended"],
        })
    }

    fn reply(things: Value) -> Recorded {
        Recorded {
            method: "get".into(),
            path: "/things".into(),
            status: 200,
            body: json!({ "things": things }),
        }
    }

    #[test]
    fn additions_add_properties_and_required_names_and_keep_the_published_ones() {
        let mut spec = doc(open_loc());
        apply_additions(&mut spec, &overlay(flags())).unwrap();
        let loc = &spec["components"]["schemas"]["loc"];
        assert_eq!(
            loc["required"],
            json!(["id", "name", "available", "recommended"])
        );
        assert_eq!(loc["properties"]["id"], json!({ "type": "integer" }));
        assert_eq!(loc["properties"]["available"], json!({ "type": "boolean" }));

        let c = Contract::from_documents(doc(open_loc()), &overlay(flags())).unwrap();
        let full = json!({ "id": 1, "name": "fsn1", "available": true, "recommended": true });
        c.check(&reply(json!([full]))).unwrap();
        let mut missing = full.clone();
        missing.as_object_mut().unwrap().remove("recommended");
        let err = c.check(&reply(json!([full, missing]))).unwrap_err();
        assert!(err.contains("recommended"), "{err}");
        let mut typed = full.clone();
        typed["available"] = "yes".into();
        assert!(c.check(&reply(json!([typed]))).is_err());
        let mut no_name = full;
        no_name.as_object_mut().unwrap().remove("name");
        assert!(c.check(&reply(json!([no_name]))).is_err());
    }

    #[test]
    fn a_field_the_published_document_already_describes_is_refused() {
        let mut spec = doc(open_loc());
        let mut patch = flags();
        patch["properties"]["name"] = json!({});
        let err = apply_additions(&mut spec, &overlay(patch)).unwrap_err();
        assert!(err.contains("already describes 'name'"), "{err}");
    }

    #[test]
    fn malformed_or_loosening_additions_are_refused() {
        let cases = [
            (
                json!({ "schemas": {}, "remove": [] }),
                "unknown key 'remove'",
            ),
            (
                json!({ "schemas": { "nope": flags() } }),
                "not in the published",
            ),
            (overlay(json!({ "properties": {} })), "'why'"),
            (
                overlay(json!({ "why": "x", "additionalProperties": true })),
                "unknown key 'additionalProperties'",
            ),
            (
                overlay(json!({ "why": "x", "required": ["ghost"] })),
                "'ghost' is required but not a property",
            ),
        ];
        for (additions, expected) in cases {
            let err = apply_additions(&mut doc(open_loc()), &additions).unwrap_err();
            assert!(err.contains(expected), "{additions}: {err}");
        }
        // Where the published schema is closed, an optional addition would let
        // through a body it rejects.
        let mut closed = open_loc();
        closed["additionalProperties"] = false.into();
        let mut patch = flags();
        patch["required"] = json!(["available"]);
        let err = apply_additions(&mut doc(closed.clone()), &overlay(patch)).unwrap_err();
        assert!(err.contains("'recommended' must be required"), "{err}");
        apply_additions(&mut doc(closed), &overlay(flags())).unwrap();
    }

    #[test]
    fn the_shipped_additions_require_the_location_flags_of_server_types() {
        let spec = read_json(&spec_path(), "spec").unwrap();
        let published = &spec["components"]["schemas"]["server_type_location"];
        let before: Vec<Value> = published["required"].as_array().unwrap().clone();
        let mut patched = spec.clone();
        let additions = read_json(&additions_path(), "additions").unwrap();
        apply_additions(&mut patched, &additions).unwrap();
        let loc = &patched["components"]["schemas"]["server_type_location"];
        let required = loc["required"].as_array().unwrap();
        for f in before
            .iter()
            .chain(&[json!("available"), json!("recommended")])
        {
            assert!(required.contains(f), "{f} not required: {required:?}");
        }
        for f in ["available", "recommended"] {
            assert_eq!(loc["properties"][f]["type"], "boolean");
        }
        // Nothing else in the document changed.
        let mut rest = patched;
        rest["components"]["schemas"]["server_type_location"] = published.clone();
        assert!(
            rest == spec,
            "the additions touched more than server_type_location"
        );
        Contract::load().unwrap();
    }
}
