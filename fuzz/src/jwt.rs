//! `jwt_verify`: `chatbox::http::auth::Verifier::verify` (PROTOCOL.md §2.1) on arbitrary and on
//! well-signed tokens.
//!
//! Input modes (first byte):
//! * `0x00` — structured ([`JwtInput`], decoded with `arbitrary`): claims built from arbitrary
//!   JSON values (`user_id`, `roles`, `name`, `exp`, `nbf` — absolute or relative to now —,
//!   unknown keys), a header (standard via `jsonwebtoken::encode`, or hand-written with any `alg`
//!   and extra fields), signed with HS256/384/512 under the known secret or another key, then
//!   optionally tampered with (one byte replaced);
//! * anything else — the whole input, as UTF-8 lossily, is the token.
//!
//! Checked, for the normal verifier and the one that requires `exp`:
//! * `verify` never panics;
//! * every accepted token is independently valid: three base64url segments, a header whose `alg`
//!   is HS256, HS384 or HS512, an HMAC over `header.payload` under the known secret (checked
//!   with the `hmac` crate, not with `jsonwebtoken`), a payload with a non-empty string
//!   `user_id` and a `roles` array of strings, and a caller equal to those claims (`name`
//!   defaulting to `user_id`);
//! * `exp` and `nbf` are checked when present (§2.1): no accepted token carries a numeric `exp`
//!   in the past or a numeric `nbf` in the future (two seconds of margin for the clock), and the
//!   strict verifier accepts only tokens with a numeric `exp`;
//! * a token signed with a different secret, or tampered with after signing, is never accepted;
//! * for an untampered token under the right secret, a standard HMAC header and claims built
//!   from values, the outcome equals the claim rules of §2.1 computed here.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chatbox::http::auth::{AuthError, Caller, Verifier};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use crate::input::{tag, Encode, Text};

/// The verifiers' secret.
pub const SECRET: &str = "fuzz-k3y-0f-en0ugh-length-q8Zr4LmWx2Vn7Kp1";

static LENIENT: LazyLock<Verifier> = LazyLock::new(|| Verifier::new(SECRET.as_bytes(), false));
static STRICT: LazyLock<Verifier> = LazyLock::new(|| Verifier::new(SECRET.as_bytes(), true));

/// Clock margin for `exp`/`nbf` comparisons, seconds.
const MARGIN: f64 = 2.0;

/// A structured token.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub struct JwtInput {
    /// The HMAC used to sign.
    pub alg: Alg,
    /// The key used to sign.
    pub key: KeyChoice,
    /// The header.
    pub header: HeaderChoice,
    /// The claims, in order (a later duplicate replaces an earlier one).
    pub claims: Vec<(ClaimKey, ClaimVal)>,
    /// Replace the byte at `position % len` by `byte` after signing.
    pub tamper: Option<(u16, u8)>,
}

/// An HMAC algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Alg {
    /// HS256.
    Hs256,
    /// HS384.
    Hs384,
    /// HS512.
    Hs512,
}

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
        }
    }

    fn jsonwebtoken(self) -> Algorithm {
        match self {
            Alg::Hs256 => Algorithm::HS256,
            Alg::Hs384 => Algorithm::HS384,
            Alg::Hs512 => Algorithm::HS512,
        }
    }

    fn from_name(name: &str) -> Option<Alg> {
        [Alg::Hs256, Alg::Hs384, Alg::Hs512].into_iter().find(|a| a.name() == name)
    }
}

/// The signing key.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum KeyChoice {
    /// The verifiers' secret.
    Right,
    /// Any other key.
    Other(Text),
    /// The secret with the byte at `position % len` changed.
    Flipped(u8),
}

impl KeyChoice {
    fn bytes(&self) -> Vec<u8> {
        match self {
            KeyChoice::Right => SECRET.as_bytes().to_vec(),
            KeyChoice::Other(t) => t.0.as_bytes().to_vec(),
            KeyChoice::Flipped(pos) => {
                let mut key = SECRET.as_bytes().to_vec();
                let i = usize::from(*pos) % key.len();
                key[i] ^= 0x20;
                key
            }
        }
    }
}

/// Whether `key` signs exactly like the secret under `alg`. HMAC pads keys shorter than its block
/// (64 bytes for SHA-256, 128 for SHA-384/512) with zero bytes, so the secret followed by NULs
/// up to the block size is the same key.
fn same_key(key: &[u8], alg: Alg) -> bool {
    let block = if alg == Alg::Hs256 { 64 } else { 128 };
    let mut end = key.len();
    while end > 0 && key[end - 1] == 0 {
        end -= 1;
    }
    &key[..end] == SECRET.as_bytes() && key.len() <= block
}

/// The header.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum HeaderChoice {
    /// `jsonwebtoken::encode` with `Header::new(alg)`.
    Standard,
    /// `{"alg": <text>, "typ": "JWT"}` written by hand, signed with [`JwtInput::alg`].
    AlgText(Text),
    /// `{"typ": "JWT", "alg": <alg>, <key>: <value>}` written by hand.
    Extra(Text, ClaimVal),
    /// The header JSON as given.
    Raw(Text),
}

/// A claim name.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum ClaimKey {
    /// `user_id`.
    UserId,
    /// `roles`.
    Roles,
    /// `name`.
    Name,
    /// `exp`.
    Exp,
    /// `nbf`.
    Nbf,
    /// `iat`.
    Iat,
    /// `sub`.
    Sub,
    /// Any name.
    Other(Text),
}

impl ClaimKey {
    fn name(&self) -> String {
        match self {
            ClaimKey::UserId => "user_id".into(),
            ClaimKey::Roles => "roles".into(),
            ClaimKey::Name => "name".into(),
            ClaimKey::Exp => "exp".into(),
            ClaimKey::Nbf => "nbf".into(),
            ClaimKey::Iat => "iat".into(),
            ClaimKey::Sub => "sub".into(),
            ClaimKey::Other(t) => t.0.clone(),
        }
    }
}

/// A claim value.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum ClaimVal {
    /// A string.
    Str(Text),
    /// A meaningful string (`u1`, `admin`, ...).
    Known(u8),
    /// An integer.
    Int(i64),
    /// Now plus this many seconds (an integer).
    RelSecs(i32),
    /// Now plus this many seconds plus a fraction (a float).
    RelFloat(i32, u16),
    /// Now plus this many seconds, written as a string.
    RelString(i32),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// `null`.
    Null,
    /// An array of strings.
    Strings(Vec<Text>),
    /// An array of values.
    Array(Vec<ClaimVal>),
    /// An object with one entry.
    Object(Text, Box<ClaimVal>),
}

const KNOWN_STRINGS: &[&str] =
    &["u1", "", "e2e-test-user", "E2E Test User", "admin", "chat_admin", "user", " ", "\0"];

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn now_int() -> i64 {
    now_secs() as i64
}

impl ClaimVal {
    fn to_json(&self) -> Value {
        match self {
            ClaimVal::Str(t) => Value::String(t.0.clone()),
            ClaimVal::Known(i) => {
                Value::String(KNOWN_STRINGS[usize::from(*i) % KNOWN_STRINGS.len()].to_string())
            }
            ClaimVal::Int(n) => Value::from(*n),
            ClaimVal::RelSecs(d) => Value::from(now_int().saturating_add(i64::from(*d))),
            ClaimVal::RelFloat(d, frac) => {
                let v = now_int() as f64 + f64::from(*d) + f64::from(*frac) / 65536.0;
                Value::from(v)
            }
            ClaimVal::RelString(d) => {
                Value::String(now_int().saturating_add(i64::from(*d)).to_string())
            }
            ClaimVal::Float(f) => Value::from(*f),
            ClaimVal::Bool(b) => Value::Bool(*b),
            ClaimVal::Null => Value::Null,
            ClaimVal::Strings(items) => {
                Value::Array(items.iter().map(|t| Value::String(t.0.clone())).collect())
            }
            ClaimVal::Array(items) => Value::Array(items.iter().map(ClaimVal::to_json).collect()),
            ClaimVal::Object(k, v) => {
                let mut m = Map::new();
                m.insert(k.0.clone(), v.to_json());
                Value::Object(m)
            }
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hmac(alg: Alg, key: &[u8], message: &[u8]) -> Vec<u8> {
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        match <M as Mac>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(message);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match alg {
        Alg::Hs256 => mac::<Hmac<sha2::Sha256>>(key, message),
        Alg::Hs384 => mac::<Hmac<sha2::Sha384>>(key, message),
        Alg::Hs512 => mac::<Hmac<sha2::Sha512>>(key, message),
    }
}

/// A token: `header.payload.signature`, signed by hand.
fn sign_by_hand(header_json: &str, payload_json: &str, alg: Alg, key: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64(header_json.as_bytes()), b64(payload_json.as_bytes()));
    let sig = hmac(alg, key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&sig))
}

/// One fuzz iteration.
pub fn run(data: &[u8]) {
    match data.split_first() {
        Some((0, rest)) => {
            let mut u = Unstructured::new(rest);
            if let Ok(input) = JwtInput::arbitrary(&mut u) {
                run_structured(&input);
            }
        }
        _ => {
            let token = String::from_utf8_lossy(data);
            let _ = verify_and_check(&token);
        }
    }
}

/// Verifies `token` with both verifiers and checks every acceptance independently.
fn verify_and_check(token: &str) -> (Result<Caller, AuthError>, Result<Caller, AuthError>) {
    let lenient = LENIENT.verify(token);
    let strict = STRICT.verify(token);
    if let Ok(caller) = &lenient {
        check_accepted(token, caller, false);
    }
    if let Ok(caller) = &strict {
        check_accepted(token, caller, true);
        assert_eq!(lenient.as_ref().ok(), Some(caller), "strict accepts what lenient refuses");
    }
    if let Some(expected) = expected_for_token(token) {
        assert_eq!(lenient.is_ok(), expected, "token {token:?} gave {lenient:?}");
    }
    (lenient, strict)
}

/// The §2.1 outcome of a token whose header is exactly `{"alg":"HS…"[,"typ":"JWT"]}` and whose
/// signature is the secret's HMAC (checked here); `None` for any other token (or when a time
/// claim is too close to now).
fn expected_for_token(token: &str) -> Option<bool> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else { return None };
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    let header = header.as_object()?;
    let alg = Alg::from_name(header.get("alg")?.as_str()?)?;
    let typ_ok = header.get("typ").is_none_or(|t| t == "JWT");
    if !typ_ok || header.keys().any(|k| k != "alg" && k != "typ") {
        return None;
    }
    if URL_SAFE_NO_PAD.decode(s).ok()?
        != hmac(alg, SECRET.as_bytes(), format!("{h}.{p}").as_bytes())
    {
        return Some(false);
    }
    let payload = URL_SAFE_NO_PAD.decode(p).ok()?;
    match serde_json::from_slice::<Value>(&payload) {
        Ok(Value::Object(claims)) => {
            // Duplicate keys: serde_json keeps the last, the JWT library refuses some; no call.
            if has_duplicate_keys(&payload) {
                return None;
            }
            expected_outcome(&claims)
        }
        Ok(_) | Err(_) => Some(false),
    }
}

/// Whether a JSON object text may repeat a key (conservative: some key's `"k":` occurs twice).
fn has_duplicate_keys(payload: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(payload) else { return true };
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else { return true };
    map.keys().any(|k| {
        let needle = format!("{}:", Value::String(k.clone()));
        text.matches(&needle).count() > 1
    })
}

/// An accepted token must be valid by the rules of §2.1, checked without `jsonwebtoken`.
fn check_accepted(token: &str, caller: &Caller, strict: bool) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "accepted a token without three segments: {token:?}");
    let header: Value = URL_SAFE_NO_PAD
        .decode(parts[0])
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .unwrap_or_else(|| panic!("accepted a token with an undecodable header: {token:?}"));
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Alg::from_name)
        .unwrap_or_else(|| panic!("accepted a token whose alg is not HMAC: {token:?}"));
    let signature = URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap_or_else(|e| panic!("accepted a non-canonical signature ({e}): {token:?}"));
    let expected = hmac(alg, SECRET.as_bytes(), format!("{}.{}", parts[0], parts[1]).as_bytes());
    assert!(signature == expected, "accepted a token not signed with the secret: {token:?}");
    let claims: Value = URL_SAFE_NO_PAD
        .decode(parts[1])
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .unwrap_or_else(|| panic!("accepted a token with an undecodable payload: {token:?}"));

    // Claim rules (§2.1).
    assert!(!caller.user_id.is_empty(), "verified caller with an empty user_id: {token:?}");
    assert_eq!(claims.get("user_id").and_then(Value::as_str), Some(caller.user_id.as_str()));
    let roles: Option<Vec<&str>> = claims
        .get("roles")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_str).collect());
    assert_eq!(roles, Some(caller.roles.iter().map(String::as_str).collect()), "{token:?}");
    let name = match claims.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        _ => caller.user_id.as_str(),
    };
    assert_eq!(caller.name, name, "{token:?}");

    // exp and nbf: checked when present, no leeway. A present value that is not a number cannot
    // be checked, so it must refuse the token (the original's JWT library rejects it too).
    let now = now_secs();
    match claims.get("exp") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let exp = v.as_f64().unwrap_or_else(|| {
                panic!(
                    "accepted a token whose exp is not a number: payload {claims}, token {token:?}"
                )
            });
            assert!(
                exp >= now - MARGIN,
                "accepted an expired token (exp {exp}, now {now:.0}): payload {claims}, token {token:?}"
            );
        }
    }
    match claims.get("nbf") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let nbf = v.as_f64().unwrap_or_else(|| {
                panic!(
                    "accepted a token whose nbf is not a number: payload {claims}, token {token:?}"
                )
            });
            assert!(
                nbf <= now + MARGIN,
                "accepted a token before its nbf ({nbf}, now {now:.0}): payload {claims}, token {token:?}"
            );
        }
    }
    if strict {
        assert!(
            claims.get("exp").is_some_and(Value::is_number),
            "the exp-requiring verifier accepted a token without a numeric exp: {claims}"
        );
    }
}

/// Builds, signs, maybe tampers with and verifies a structured token.
pub fn run_structured(input: &JwtInput) {
    let mut claims = Map::new();
    for (k, v) in &input.claims {
        claims.insert(k.name(), v.to_json());
    }
    let payload = Value::Object(claims.clone());
    let key = input.key.bytes();
    let (token, standard_header) = match &input.header {
        HeaderChoice::Standard => {
            let header = Header::new(input.alg.jsonwebtoken());
            match jsonwebtoken::encode(&header, &payload, &EncodingKey::from_secret(&key)) {
                Ok(t) => (t, true),
                Err(_) => return,
            }
        }
        HeaderChoice::AlgText(alg) => {
            let header = serde_json::json!({"alg": alg.0, "typ": "JWT"}).to_string();
            let standard = alg.0 == input.alg.name();
            (sign_by_hand(&header, &payload.to_string(), input.alg, &key), standard)
        }
        HeaderChoice::Extra(name, value) => {
            let mut header = Map::new();
            header.insert("typ".into(), Value::from("JWT"));
            header.insert("alg".into(), Value::from(input.alg.name()));
            header.insert(name.0.clone(), value.to_json());
            let header = Value::Object(header).to_string();
            (sign_by_hand(&header, &payload.to_string(), input.alg, &key), false)
        }
        HeaderChoice::Raw(text) => {
            (sign_by_hand(&text.0, &payload.to_string(), input.alg, &key), false)
        }
    };
    let mut token = token;
    let mut tampered = false;
    if let Some((pos, byte)) = input.tamper {
        let mut bytes = token.clone().into_bytes();
        if !bytes.is_empty() {
            let i = usize::from(pos) % bytes.len();
            if bytes[i] != byte {
                bytes[i] = byte;
                tampered = true;
            }
        }
        token = String::from_utf8_lossy(&bytes).into_owned();
    }
    let (lenient, strict) = verify_and_check(&token);
    if tampered || !same_key(&key, input.alg) {
        assert!(lenient.is_err(), "accepted a tampered or foreign-key token: {token:?}");
        assert!(strict.is_err(), "accepted a tampered or foreign-key token: {token:?}");
        return;
    }
    if standard_header {
        // The generic model (`expected_for_token`) covers these tokens; make sure it applied.
        if let Some(expected) = expected_outcome(&claims) {
            assert_eq!(lenient.is_ok(), expected, "claims {payload} gave {lenient:?}");
        }
    }
}

/// Whether §2.1 accepts these claims on a well-signed token (`exp`/`nbf` that are present but
/// not numbers cannot be checked, so they refuse the token); `None` when a time claim is too
/// close to now to call.
fn expected_outcome(claims: &Map<String, Value>) -> Option<bool> {
    let user_ok = matches!(claims.get("user_id"), Some(Value::String(s)) if !s.is_empty());
    let roles_ok =
        matches!(claims.get("roles"), Some(Value::Array(a)) if a.iter().all(Value::is_string));
    let now = now_secs();
    let mut time_ok = true;
    for (claim, expired) in [("exp", true), ("nbf", false)] {
        match claims.get(claim) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let Some(t) = v.as_f64() else {
                    time_ok = false;
                    continue;
                };
                if (t - now).abs() <= MARGIN + 1.0 {
                    return None;
                }
                let ok = if expired { t >= now } else { t <= now };
                time_ok &= ok;
            }
        }
    }
    Some(user_ok && roles_ok && time_ok)
}

// ----- seed encoding ---------------------------------------------------------------------------

impl Encode for JwtInput {
    fn encode(&self, out: &mut Vec<u8>) {
        self.alg.encode(out);
        self.key.encode(out);
        self.header.encode(out);
        self.claims.encode(out);
        self.tamper.encode(out);
    }
}

impl Encode for Alg {
    fn encode(&self, out: &mut Vec<u8>) {
        let i = match self {
            Alg::Hs256 => 0,
            Alg::Hs384 => 1,
            Alg::Hs512 => 2,
        };
        tag(out, i, 3);
    }
}

impl Encode for KeyChoice {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            KeyChoice::Right => tag(out, 0, 3),
            KeyChoice::Other(t) => {
                tag(out, 1, 3);
                t.encode(out);
            }
            KeyChoice::Flipped(p) => {
                tag(out, 2, 3);
                p.encode(out);
            }
        }
    }
}

impl Encode for HeaderChoice {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            HeaderChoice::Standard => tag(out, 0, 4),
            HeaderChoice::AlgText(t) => {
                tag(out, 1, 4);
                t.encode(out);
            }
            HeaderChoice::Extra(t, v) => {
                tag(out, 2, 4);
                t.encode(out);
                v.encode(out);
            }
            HeaderChoice::Raw(t) => {
                tag(out, 3, 4);
                t.encode(out);
            }
        }
    }
}

impl Encode for ClaimKey {
    fn encode(&self, out: &mut Vec<u8>) {
        let i = match self {
            ClaimKey::UserId => 0,
            ClaimKey::Roles => 1,
            ClaimKey::Name => 2,
            ClaimKey::Exp => 3,
            ClaimKey::Nbf => 4,
            ClaimKey::Iat => 5,
            ClaimKey::Sub => 6,
            ClaimKey::Other(t) => {
                tag(out, 7, 8);
                t.encode(out);
                return;
            }
        };
        tag(out, i, 8);
    }
}

impl Encode for ClaimVal {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 12;
        match self {
            ClaimVal::Str(t) => {
                tag(out, 0, N);
                t.encode(out);
            }
            ClaimVal::Known(i) => {
                tag(out, 1, N);
                i.encode(out);
            }
            ClaimVal::Int(n) => {
                tag(out, 2, N);
                n.encode(out);
            }
            ClaimVal::RelSecs(d) => {
                tag(out, 3, N);
                d.encode(out);
            }
            ClaimVal::RelFloat(d, f) => {
                tag(out, 4, N);
                d.encode(out);
                f.encode(out);
            }
            ClaimVal::RelString(d) => {
                tag(out, 5, N);
                d.encode(out);
            }
            ClaimVal::Float(f) => {
                tag(out, 6, N);
                out.extend_from_slice(&f.to_le_bytes());
            }
            ClaimVal::Bool(b) => {
                tag(out, 7, N);
                b.encode(out);
            }
            ClaimVal::Null => tag(out, 8, N),
            ClaimVal::Strings(items) => {
                tag(out, 9, N);
                items.encode(out);
            }
            ClaimVal::Array(items) => {
                tag(out, 10, N);
                items.encode(out);
            }
            ClaimVal::Object(k, v) => {
                tag(out, 11, N);
                k.encode(out);
                v.encode(out);
            }
        }
    }
}

impl<T: Encode> Encode for Box<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }
}

/// Index of `s` in the known claim strings (for writing seeds).
pub fn known(s: &str) -> u8 {
    KNOWN_STRINGS.iter().position(|v| *v == s).map_or(0, |i| i as u8)
}
