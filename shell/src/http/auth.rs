//! JWT authentication (PROTOCOL.md §2): HS256/384/512 with the raw bytes of the configured
//! secret, `exp` and `nbf` checked when present with no leeway (a switch makes `exp` required,
//! §10 item 18), and the claim rules for `user_id`, `roles` and `name`. Where the token may be
//! carried (header or `?token=`) is decided by the callers in `http::ws` and `http::rest`.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

pub use crate::engine::caller::{Caller, ADMIN_ROLES};

/// Why a token was refused (logged; the wire never distinguishes, PROTOCOL.md §2.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Signature, algorithm, encoding, expiry or not-before failure.
    #[error("token rejected: {0}")]
    Token(String),
    /// `user_id` missing, empty or not a string.
    #[error("token has no valid user_id claim")]
    UserId,
    /// `roles` missing, null, not an array, or with a non-string element.
    #[error("token has no valid roles claim")]
    Roles,
}

/// Verifies tokens with the configured secret.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("key", &"<redacted>").finish()
    }
}

impl Verifier {
    /// A verifier for `secret`; `require_exp` refuses tokens without `exp`.
    pub fn new(secret: &[u8], require_exp: bool) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.required_spec_claims =
            if require_exp { HashSet::from(["exp".to_string()]) } else { HashSet::new() };
        Self { key: DecodingKey::from_secret(secret), validation }
    }

    /// Checks a token and extracts the caller.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data = jsonwebtoken::decode::<Value>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Token(e.kind_label()))?;
        caller_from_claims(&data.claims)
    }
}

/// Applies the claim rules of PROTOCOL.md §2.1 to a verified payload.
pub fn caller_from_claims(claims: &Value) -> Result<Caller, AuthError> {
    let user_id = match claims.get("user_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(AuthError::UserId),
    };
    let roles = match claims.get("roles") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or(AuthError::Roles))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(AuthError::Roles),
    };
    let name = match claims.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => user_id.clone(),
    };
    Ok(Caller { user_id, name, roles })
}

/// Mints an HS256 token (the `chatbox token` command, `--dev` mode and tests).
/// `expires_at` is a Unix timestamp in seconds.
pub fn mint(
    secret: &[u8],
    user_id: &str,
    name: Option<&str>,
    roles: &[String],
    expires_at: Option<i64>,
) -> Result<String, AuthError> {
    let mut claims = serde_json::json!({ "user_id": user_id, "roles": roles });
    if let Some(name) = name {
        claims["name"] = Value::String(name.to_string());
    }
    if let Some(exp) = expires_at {
        claims["exp"] = Value::from(exp);
    }
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
        .map_err(|e| AuthError::Token(e.kind_label()))
}

trait KindLabel {
    fn kind_label(&self) -> String;
}

impl KindLabel for jsonwebtoken::errors::Error {
    /// The error kind without any token material.
    fn kind_label(&self) -> String {
        format!("{:?}", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"k3y-for-unit-tests-0123456789-abcdef";

    fn token(claims: Value, alg: Algorithm) -> String {
        jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(SECRET))
            .expect("encoding a test token")
    }

    #[test]
    fn accepts_every_hmac_algorithm() {
        let v = Verifier::new(SECRET, false);
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let t = token(serde_json::json!({"user_id":"u1","roles":["user"]}), alg);
            let c = v.verify(&t).expect("valid token");
            assert_eq!(c.user_id, "u1");
            assert_eq!(c.name, "u1", "name defaults to user_id");
            assert!(!c.is_admin());
        }
    }

    #[test]
    fn claim_rules() {
        let v = Verifier::new(SECRET, false);
        let check = |claims: Value| v.verify(&token(claims, Algorithm::HS256));
        assert_eq!(check(serde_json::json!({"roles":[]})), Err(AuthError::UserId));
        assert_eq!(check(serde_json::json!({"user_id":"","roles":[]})), Err(AuthError::UserId));
        assert_eq!(check(serde_json::json!({"user_id":5,"roles":[]})), Err(AuthError::UserId));
        assert_eq!(check(serde_json::json!({"user_id":"u"})), Err(AuthError::Roles));
        assert_eq!(check(serde_json::json!({"user_id":"u","roles":null})), Err(AuthError::Roles));
        assert_eq!(check(serde_json::json!({"user_id":"u","roles":[1]})), Err(AuthError::Roles));
        let c = check(serde_json::json!({"user_id":"u","roles":["chat_admin"],"name":7}))
            .expect("valid");
        assert!(c.is_admin());
        assert_eq!(c.name, "u");
        let c = check(serde_json::json!({"user_id":"u","roles":[],"name":"Ann"})).expect("valid");
        assert_eq!(c.name, "Ann");
    }

    #[test]
    fn expiry_and_not_before() {
        let v = Verifier::new(SECRET, false);
        let past = serde_json::json!({"user_id":"u","roles":[],"exp": 1_000});
        assert!(matches!(v.verify(&token(past, Algorithm::HS256)), Err(AuthError::Token(_))));
        let future_nbf = serde_json::json!({"user_id":"u","roles":[],"nbf": 99_999_999_999i64});
        assert!(matches!(v.verify(&token(future_nbf, Algorithm::HS256)), Err(AuthError::Token(_))));
        let no_exp = serde_json::json!({"user_id":"u","roles":[]});
        assert!(v.verify(&token(no_exp.clone(), Algorithm::HS256)).is_ok());
        let strict = Verifier::new(SECRET, true);
        assert!(matches!(
            strict.verify(&token(no_exp, Algorithm::HS256)),
            Err(AuthError::Token(_))
        ));
    }

    #[test]
    fn wrong_secret_and_garbage_are_refused() {
        let other = Verifier::new(b"another-secret-of-enough-length-xyz", false);
        let t = token(serde_json::json!({"user_id":"u","roles":[]}), Algorithm::HS256);
        assert!(other.verify(&t).is_err());
        assert!(other.verify("not.a.jwt").is_err());
        assert!(other.verify("").is_err());
        // alg "none" is never accepted.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ1c2VyX2lkIjoidSIsInJvbGVzIjpbXX0.";
        assert!(other.verify(none).is_err());
    }

    #[test]
    fn minted_tokens_verify() {
        let t = mint(SECRET, "u9", Some("Nine"), &["admin".to_string()], None).expect("mint");
        let c = Verifier::new(SECRET, false).verify(&t).expect("valid");
        assert_eq!((c.user_id.as_str(), c.name.as_str(), c.is_admin()), ("u9", "Nine", true));
    }
}
