//! `nix-infra workflows`: the workflows this build can run.

use crate::Failure;
use crate::args::{Global, Output};

/// Lists every workflow with its version and description.
pub fn run(global: &Global) -> Result<(), Failure> {
    let registry = workflows::registry();
    if global.output == Output::Json {
        let list: Vec<_> = registry
            .iter()
            .map(|w| {
                serde_json::json!({
                    "name": w.name(),
                    "version": w.version(),
                    "about": w.description()
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        for w in registry.iter() {
            println!("{:<16} v{}  {}", w.name(), w.version(), w.description());
        }
    }
    Ok(())
}
