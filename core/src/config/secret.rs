//! Secret values and the JWT secret's strength rules (PROTOCOL.md §2.4, seed issue #17).
//!
//! [`Secret`] holds a value that must never reach a log: its `Debug` prints only where it came
//! from, and it has no `Display`. [`jwt_secret_problems`] is the strength check, kept as a pure
//! function so `chatbox gen-secret` can check what it generates with the very same rule.

use std::fmt;

/// Where a configuration value came from. Some rules depend on it: the placeholder check of the
/// JWT secret and the encryption key applies to file values only (§2.4, §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// An environment variable.
    Env,
    /// The TOML configuration file.
    File,
    /// A built-in default or a value set by code (e.g. [`super::Config::for_dev`]).
    #[default]
    Builtin,
}

/// A secret string (JWT secret, encryption key, API key, SMTP password ...) plus its [`Origin`].
///
/// `Debug` never shows the value; there is deliberately no `Display`. Read it with
/// [`Secret::expose`] at the one place that needs it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret {
    value: String,
    origin: Origin,
}

impl Secret {
    /// Wraps `value`, remembering where it came from.
    pub fn new(value: impl Into<String>, origin: Origin) -> Self {
        Self { value: value.into(), origin }
    }

    /// The secret itself. Call only where the value is used (signing key, cipher, HTTP header).
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where the value came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// `true` when no value is set.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// Length of the value in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.value.len()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "Secret(<empty>, {:?})", self.origin)
        } else {
            write!(f, "Secret(<redacted>, {:?})", self.origin)
        }
    }
}

/// Minimum JWT secret length in bytes (§2.4).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Substrings (case-insensitive) that make a JWT secret weak (§2.4).
pub const WEAK_PATTERNS: [&str; 11] = [
    "secret",
    "test",
    "test123",
    "password",
    "admin",
    "changeme",
    "default",
    "example",
    "demo",
    "12345",
    "placeholder",
];

/// Substrings (case-insensitive) that mark a value copied from a sample file unchanged (§2.4).
pub const PLACEHOLDER_MARKERS: [&str; 5] =
    ["REPLACE_WITH", "PLACEHOLDER", "CHANGE-ME", "CHANGE_ME", "YOUR-"];

/// How to make a strong secret; every JWT secret error ends with it.
pub const GENERATE_HINT: &str =
    "generate one with `chatbox gen-secret` or `openssl rand -base64 48`";

/// One reason a JWT secret is refused. The texts never contain the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretProblem {
    /// Neither the environment nor the file sets it.
    #[error("is required but not set")]
    Missing,
    /// Set, but to an empty string.
    #[error("must not be empty")]
    Empty,
    /// A file value still containing a sample-file marker.
    #[error("still contains the placeholder marker {marker:?} from a sample configuration")]
    Placeholder {
        /// The marker found (as listed in [`PLACEHOLDER_MARKERS`]).
        marker: &'static str,
    },
    /// Fewer than [`MIN_JWT_SECRET_BYTES`] bytes.
    #[error("is too short ({len} bytes; at least {MIN_JWT_SECRET_BYTES} are required)")]
    TooShort {
        /// Its length in bytes.
        len: usize,
    },
    /// Contains one or more of the [`WEAK_PATTERNS`].
    #[error("is weak: it contains {}", quoted(patterns))]
    Weak {
        /// Every weak pattern found.
        patterns: Vec<&'static str>,
    },
}

fn quoted(patterns: &[&str]) -> String {
    let quoted: Vec<String> = patterns.iter().map(|p| format!("{p:?}")).collect();
    quoted.join(", ")
}

/// The first placeholder marker `value` contains, case-insensitively.
pub fn placeholder_marker(value: &str) -> Option<&'static str> {
    let upper = value.to_ascii_uppercase();
    PLACEHOLDER_MARKERS.into_iter().find(|marker| upper.contains(marker))
}

/// Every reason `secret` is not acceptable as a JWT secret; empty when it is strong (§2.4).
///
/// The placeholder check applies only to values from the file; length and weak patterns apply to
/// all. An empty [`Origin::Builtin`] secret counts as [`SecretProblem::Missing`].
pub fn jwt_secret_problems(secret: &Secret) -> Vec<SecretProblem> {
    let value = secret.expose();
    if value.is_empty() {
        return vec![match secret.origin() {
            Origin::Builtin => SecretProblem::Missing,
            Origin::Env | Origin::File => SecretProblem::Empty,
        }];
    }
    let mut problems = Vec::new();
    if secret.origin() == Origin::File {
        if let Some(marker) = placeholder_marker(value) {
            problems.push(SecretProblem::Placeholder { marker });
        }
    }
    if value.len() < MIN_JWT_SECRET_BYTES {
        problems.push(SecretProblem::TooShort { len: value.len() });
    }
    let lower = value.to_ascii_lowercase();
    let patterns: Vec<&'static str> =
        WEAK_PATTERNS.into_iter().filter(|p| lower.contains(p)).collect();
    if !patterns.is_empty() {
        problems.push(SecretProblem::Weak { patterns });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRONG: &str = "q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne";

    #[test]
    fn strong_secret_from_any_source_passes() {
        for origin in [Origin::Env, Origin::File, Origin::Builtin] {
            assert_eq!(jwt_secret_problems(&Secret::new(STRONG, origin)), vec![]);
        }
    }

    #[test]
    fn length_boundary_is_32_bytes() {
        let s31 = &STRONG[..31];
        let s32 = &STRONG[..32];
        assert_eq!(
            jwt_secret_problems(&Secret::new(s31, Origin::Env)),
            vec![SecretProblem::TooShort { len: 31 }]
        );
        assert_eq!(jwt_secret_problems(&Secret::new(s32, Origin::Env)), vec![]);
        // Bytes, not characters: 11 three-byte characters are 33 bytes.
        assert_eq!(jwt_secret_problems(&Secret::new("€".repeat(11), Origin::Env)), vec![]);
    }

    #[test]
    fn each_weak_pattern_is_refused_in_any_case() {
        for pattern in WEAK_PATTERNS {
            for variant in [pattern.to_string(), pattern.to_ascii_uppercase()] {
                let value = format!("{STRONG}{variant}");
                let problems = jwt_secret_problems(&Secret::new(value, Origin::Env));
                assert!(
                    problems.iter().any(
                        |p| matches!(p, SecretProblem::Weak { patterns } if patterns.contains(&pattern))
                    ),
                    "{pattern}: {problems:?}"
                );
            }
        }
    }

    #[test]
    fn placeholder_is_checked_only_on_file_values() {
        let value = format!("{STRONG}-your-key");
        assert_eq!(jwt_secret_problems(&Secret::new(value.clone(), Origin::Env)), vec![]);
        assert_eq!(
            jwt_secret_problems(&Secret::new(value, Origin::File)),
            vec![SecretProblem::Placeholder { marker: "YOUR-" }]
        );
    }

    #[test]
    fn empty_and_missing_are_distinguished() {
        assert_eq!(jwt_secret_problems(&Secret::default()), vec![SecretProblem::Missing]);
        assert_eq!(jwt_secret_problems(&Secret::new("", Origin::File)), vec![SecretProblem::Empty]);
    }

    #[test]
    fn debug_never_shows_the_value() {
        let shown = format!("{:?}", Secret::new(STRONG, Origin::Env));
        assert!(!shown.contains(STRONG), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn problem_texts_do_not_contain_the_secret() {
        let value = "my-admin-pass";
        for problem in jwt_secret_problems(&Secret::new(value, Origin::File)) {
            assert!(!problem.to_string().contains(value));
        }
    }
}
