//! [`Secret`]: a credential that cannot be printed by accident.

use std::fmt;

/// A credential (API key, access token, bearer token) read from the environment.
///
/// `Debug` and `Display` print `***`; the value is reachable only through [`Secret::expose`],
/// which call sites use exactly where the vendor protocol needs it. Every secret is registered
/// with [`crate::redact`] on construction, so the logger scrubs its value from any line that
/// would carry it anyway.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value and registers it with the log redactor.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        crate::redact::register_secret(&value);
        Secret(value)
    }

    /// The raw value, for the one place that must send it to a vendor.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
