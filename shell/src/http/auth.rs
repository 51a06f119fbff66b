//! JWT authentication (PROTOCOL.md §2): HS256/384/512 with the raw bytes of the configured
//! secret, `exp` and `nbf` checked when present with no leeway (a switch makes `exp` required,
//! §10 item 18), and the claim rules for `user_id`, `roles` and `name`. Where the token may be
//! carried (header or `?token=`) is decided by the callers in `http::ws` and `http::rest`.
//!
//! `jsonwebtoken` checks the header and the signature; the claims are checked here, on the
//! payload as JSON. Its own claim validation is not used: it skips `exp`/`nbf` values that are
//! not unsigned integers (a signed token with `"exp": -1` or `"exp": "1000"` never expired) and
//! refuses tokens whose ignored `sub` is an array or an object — both found by the `jwt_verify`
//! fuzz target (fuzz/README.md, Findings).

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::Value;

use crate::engine::clock::Clock;

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
    require_exp: bool,
    clock: Clock,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("key", &"<redacted>").finish()
    }
}

impl Verifier {
    /// A verifier for `secret`; `require_exp` refuses tokens without `exp`.
    pub fn new(secret: &[u8], require_exp: bool) -> Self {
        Self { key: DecodingKey::from_secret(secret), require_exp, clock: Clock::new() }
    }

    /// Checks a token against the runtime's wall clock and extracts the caller.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_at(token, self.clock.wall().0.div_euclid(1000))
    }

    /// Checks a token at `now` (Unix seconds): three base64url segments, an HMAC `alg`, the
    /// signature, then the claims — `exp`/`nbf` absent or `null` are not checked (unless `exp`
    /// is required), a number is compared with `now` (`exp < now` expired, `nbf > now` not yet
    /// valid), anything else refuses the token — and finally the caller rules.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Caller, AuthError> {
        let refuse = |why: &str| AuthError::Token(why.to_string());
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refuse("InvalidToken"));
        };
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Token(e.kind_label()))?;
        if !matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(refuse("InvalidAlgorithm"));
        }
        let signed = &token[..token.len() - signature.len() - 1];
        let valid =
            jsonwebtoken::crypto::verify(signature, signed.as_bytes(), &self.key, header.alg)
                .map_err(|e| AuthError::Token(e.kind_label()))?;
        if !valid {
            return Err(refuse("InvalidSignature"));
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| refuse("Base64"))?;
        let claims: Value = serde_json::from_slice(&bytes).map_err(|_| refuse("Json"))?;
        if !claims.is_object() {
            return Err(refuse("Json"));
        }
        let now = now as f64;
        match claims.get("exp") {
            None | Some(Value::Null) if self.require_exp => return Err(refuse("MissingExp")),
            None | Some(Value::Null) => {}
            Some(exp) => match exp.as_f64() {
                Some(exp) if exp >= now => {}
                Some(_) => return Err(refuse("ExpiredSignature")),
                None => return Err(refuse("InvalidExp")),
            },
        }
        match claims.get("nbf") {
            None | Some(Value::Null) => {}
            Some(nbf) => match nbf.as_f64() {
                Some(nbf) if nbf <= now => {}
                Some(_) => return Err(refuse("ImmatureSignature")),
                None => return Err(refuse("InvalidNbf")),
            },
        }
        caller_from_claims(&claims)
    }
}

/// Applies the claim rules of PROTOCOL.md §2.1 to a verified payload.
pub fn caller_from_claims(claims: &Value) -> Result<Caller, AuthError> {
    let user_id = match claims.get("user_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(AuthError::UserId),
    };
    let roles = match claims.get("roles") {
        Some(Value::Array(items)) => {
            // Sized to the claim: collected through `Result`, the vector would start at 4
            // slots, and it lives as long as the caller's connection.
            let mut roles = Vec::with_capacity(items.len());
            for item in items {
                roles.push(item.as_str().map(str::to_string).ok_or(AuthError::Roles)?);
            }
            roles
        }
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
    fn exp_and_nbf_of_any_json_type_are_checked() {
        let v = Verifier::new(SECRET, false);
        let now = 1_800_000_000_i64;
        let at = |claims: Value| v.verify_at(&token(claims, Algorithm::HS256), now);
        let base = |key: &str, value: Value| {
            let mut c = serde_json::json!({"user_id": "u1", "roles": ["user"]});
            c[key] = value;
            c
        };
        // The fuzzer's findings (fuzz/regressions/jwt_verify/): all refused now.
        for bad in [
            base("exp", serde_json::json!(-1)),
            base("exp", serde_json::json!(-8128634060555066066_i64)),
            base("exp", serde_json::json!("1000")),
            base("exp", serde_json::json!(false)),
            base("exp", serde_json::json!(-0.5)),
            base("nbf", serde_json::json!("99999999999")),
            base("nbf", serde_json::json!(1e300)),
        ] {
            assert!(at(bad.clone()).is_err(), "{bad}");
        }
        // `sub` is ignored whatever its type (§2.1).
        assert!(at(base("sub", serde_json::json!(["a"]))).is_ok());
        assert!(at(base("sub", serde_json::json!({"id": 7}))).is_ok());
        // Boundaries: valid through the second of `exp`, from the second of `nbf`.
        assert!(at(base("exp", serde_json::json!(now))).is_ok());
        assert!(at(base("exp", serde_json::json!(now - 1))).is_err());
        assert!(at(base("nbf", serde_json::json!(now))).is_ok());
        assert!(at(base("nbf", serde_json::json!(now + 1))).is_err());
        assert!(at(base("exp", Value::Null)).is_ok(), "null is absent");
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
