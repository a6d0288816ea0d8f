//! The shapes every tool answers with: a JSON object (as structured content
//! and as its text), or an error result whose text says what was refused
//! and why. A refusal is a tool result with `isError`, not a protocol
//! error, so the agent reads the reason.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Value, json};
use workflows::cluster::ClusterError;

/// A successful result: `value` (an object).
pub(crate) fn ok(value: Value) -> CallToolResult {
    CallToolResult::structured(value)
}

/// A failed result that still carries data (a run that failed, a node
/// that did not answer): `value`, marked as an error.
pub(crate) fn failed(value: Value) -> CallToolResult {
    CallToolResult::structured_error(value)
}

/// Refused before anything ran: `refused: <why>`.
pub(crate) fn refused(why: impl std::fmt::Display) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("refused: {why}"))])
}

/// Something the tool needed could not be reached or read.
pub(crate) fn unavailable(why: impl std::fmt::Display) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("unavailable: {why}"))])
}

/// A cluster error as the agent should read it.
pub(crate) fn cluster_error(e: ClusterError) -> CallToolResult {
    match e {
        ClusterError::Refused(m) => refused(m),
        ClusterError::Adoptable { message, .. } => refused(message),
        ClusterError::Unavailable(m) => unavailable(m),
    }
}

/// `{"<key>": value}`: structured content must be an object.
pub(crate) fn wrap(key: &str, value: impl serde::Serialize) -> Value {
    json!({ key: value })
}
