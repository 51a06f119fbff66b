//! The allowed-origin policy of the WebSocket handshake (PROTOCOL.md §3.1, seed fix #13).
//!
//! Pure matching: an empty list allows every origin (the server logs a start-up warning, see
//! [`OriginPolicy::allows_any`]); otherwise the request's `Origin` must equal one entry exactly —
//! scheme, host and port, case-sensitive — and a request without `Origin` is refused. The server
//! shares one policy between connections through [`crate::shared::OriginList`], which can replace
//! it while handshakes read it.

use std::collections::HashSet;

/// A set of allowed origins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    allowed: HashSet<String>,
}

/// The answer for one handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum OriginDecision {
    /// Proceed with the upgrade.
    Allowed,
    /// Answer `403 Forbidden`.
    Refused,
}

impl OriginPolicy {
    /// A policy from configured entries; entries are trimmed and empty ones dropped.
    pub fn new<I, S>(entries: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let allowed = entries
            .into_iter()
            .map(|e| e.as_ref().trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        Self { allowed }
    }

    /// Whether every origin is allowed (the list is empty) — worth a warning at start-up.
    pub fn allows_any(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Number of configured entries.
    pub fn len(&self) -> usize {
        self.allowed.len()
    }

    /// Whether no entry is configured (same as [`allows_any`](Self::allows_any)).
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Decides a handshake carrying `origin` (the `Origin` header, if present).
    pub fn check(&self, origin: Option<&str>) -> OriginDecision {
        if self.allowed.is_empty() {
            return OriginDecision::Allowed;
        }
        match origin {
            Some(o) if self.allowed.contains(o) => OriginDecision::Allowed,
            _ => OriginDecision::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_allows_everything() {
        let p = OriginPolicy::new(Vec::<String>::new());
        assert!(p.allows_any());
        assert_eq!(p.check(None), OriginDecision::Allowed);
        assert_eq!(p.check(Some("https://evil.example")), OriginDecision::Allowed);
    }

    #[test]
    fn exact_match_only() {
        let p = OriginPolicy::new([" https://app.example.com ", "", "http://localhost:3000"]);
        assert_eq!(p.len(), 2);
        assert_eq!(p.check(Some("https://app.example.com")), OriginDecision::Allowed);
        assert_eq!(p.check(Some("http://localhost:3000")), OriginDecision::Allowed);
        assert_eq!(p.check(Some("https://APP.example.com")), OriginDecision::Refused);
        assert_eq!(p.check(Some("https://app.example.com:443")), OriginDecision::Refused);
        assert_eq!(p.check(Some("http://app.example.com")), OriginDecision::Refused);
        assert_eq!(p.check(None), OriginDecision::Refused);
    }
}
