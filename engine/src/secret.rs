//! [`Secret`]: a value that never shows itself by accident.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The text every redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Wraps a secret value so that `Debug`, `Display` and `Serialize` print [`REDACTED`].
///
/// A `Secret` put into a step output, a log line or an error message by
/// mistake therefore reaches the database as `"[redacted]"`. Read the value
/// on purpose with [`Secret::expose`].
///
/// ```
/// use engine::Secret;
/// let token = Secret::new("hunter2".to_string());
/// assert_eq!(format!("{token} {token:?}"), "[redacted] Secret([redacted])");
/// assert_eq!(serde_json::to_string(&token).unwrap(), "\"[redacted]\"");
/// assert_eq!(token.expose(), "hunter2");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// Borrows the secret value; every call site is a deliberate disclosure.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// Deserializing accepts the plain value, so secrets can be read from input
/// that is never persisted (a `.env` file, stdin).
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}
