//! Keeps secret values out of logs and error messages.
//!
//! Every message that may carry text from outside (an upstream error, a URL) passes through
//! [`Redactor::redact`] before it is logged or stored in an answer's diagnostics. Secret values
//! are also never put into URLs that are logged: only origins and paths are.
//!
//! Values shorter than [`MIN_SECRET_LEN`] characters are not masked: they are not secrets in
//! any useful sense (`a`, a user name like `max`), and masking every occurrence of them would
//! garble every message.

use std::sync::Arc;

/// Replaces every known secret value in a text with `[redacted]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redactor {
    secrets: Arc<Vec<String>>,
}

const MASK: &str = "[redacted]";

/// Shortest value that is masked.
pub(crate) const MIN_SECRET_LEN: usize = 6;

impl Redactor {
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.chars().count() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor {
            secrets: Arc::new(secrets),
        }
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in self.secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let r = Redactor::new(["abcdef".to_string(), "abcdefgh".to_string(), String::new()]);
        assert_eq!(r.redact("x abcdefgh y abcdef"), "x [redacted] y [redacted]");
        assert_eq!(r.redact("nothing"), "nothing");
    }

    #[test]
    fn very_short_values_are_not_masked() {
        let r = Redactor::new(["a".to_string(), "max".to_string()]);
        assert_eq!(r.redact("plain http to max"), "plain http to max");
    }
}
