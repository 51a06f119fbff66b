//! Message content encryption (PROTOCOL.md §8.4) against its stored format: round trips, a
//! fixture sealed independently with the `aes-gcm` crate's own API in the original's layout
//! (Base64 of nonce ‖ ciphertext ‖ tag, no associated data), one sealed by OpenSSL, and the rule
//! that anything that does not open — legacy plaintext, another key, garbage — is returned
//! unchanged.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chatbox::engine::crypto::{ContentCipher, KeyLengthError, NONCE_LEN, TAG_LEN};

/// `ENCRYPTION_KEY` is the raw bytes of a 32-character string.
const KEY: &str = "k3y-for-tests-0123456789abcdefgh";
const OTHER_KEY: &str = "another-key-0123456789abcdefghij";

fn cipher(key: &str) -> ContentCipher {
    ContentCipher::new(key.as_bytes()).expect("a 32-byte key")
}

/// Seals `plaintext` the way the original stored it, using only the aes-gcm crate.
fn original_format(key: &str, nonce: [u8; 12], plaintext: &str) -> String {
    let aead = Aes256Gcm::new_from_slice(key.as_bytes()).expect("32-byte key");
    let sealed = aead
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: b"" })
        .expect("seal");
    let mut stored = nonce.to_vec();
    stored.extend_from_slice(&sealed);
    STANDARD.encode(stored)
}

#[test]
fn crypto_round_trip() {
    let c = cipher(KEY);
    for (i, text) in
        ["", "hello", "héllo wörld — 你好 🎉", &"long ".repeat(10_000)].iter().enumerate()
    {
        let nonce = [u8::try_from(i).expect("small"); NONCE_LEN];
        let stored = c.encrypt(text, nonce);
        assert_ne!(&stored, text);
        assert_eq!(c.decrypt(&stored), *text);
        assert_eq!(c.try_decrypt(&stored).as_deref(), Some(*text));
    }
}

#[test]
fn crypto_stored_format_is_standard_padded_base64_of_nonce_ciphertext_tag() {
    let stored = cipher(KEY).encrypt("abcd", [9; NONCE_LEN]);
    // 12 + 4 + 16 = 32 bytes -> 44 Base64 characters with one `=` of padding.
    assert_eq!(stored.len(), 44);
    assert!(stored.ends_with('='), "{stored}");
    let bytes = STANDARD.decode(&stored).expect("standard Base64");
    assert_eq!(bytes.len(), NONCE_LEN + 4 + TAG_LEN);
    assert_eq!(bytes[..NONCE_LEN], [9; NONCE_LEN]);
    assert_eq!(stored, original_format(KEY, [9; NONCE_LEN], "abcd"));
}

#[test]
fn crypto_fixture_sealed_by_the_aes_gcm_crate_decrypts() {
    let nonce = [0x5a, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b];
    let text = "Hi, I need help with my order #1234 — ünïcödé ok?";
    let fixture = original_format(KEY, nonce, text);
    assert_eq!(cipher(KEY).decrypt(&fixture), text);
}

/// Sealed by a different implementation (Python `cryptography`'s AESGCM, i.e. OpenSSL) with
/// [`KEY`], nonce `00112233445566778899aabb` and no associated data.
const OPENSSL_FIXTURE: &str = "ABEiM0RVZneImaq7KP6oMuDpimtUXJjDC3f/4g25SwTqmHln/KF1SkRHQgjUNjeRoRaHm83eLs/eq0ivTgfJ15ASwX2FjquZrnqXB1EdbZgLTA==";

#[test]
fn crypto_fixture_sealed_by_openssl_decrypts() {
    let expected = "Sealed by OpenSSL via Python: need help, order #42 \u{2713}";
    assert_eq!(cipher(KEY).decrypt(OPENSSL_FIXTURE), expected);
    let nonce = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb];
    assert_eq!(cipher(KEY).encrypt(expected, nonce), OPENSSL_FIXTURE);
}

#[test]
fn crypto_failures_return_the_input_unchanged() {
    let c = cipher(KEY);
    let sealed_elsewhere = original_format(OTHER_KEY, [1; 12], "secret");
    let mut tampered = STANDARD.decode(c.encrypt("secret", [2; 12])).expect("base64");
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered = STANDARD.encode(tampered);
    let not_utf8 = {
        let aead = Aes256Gcm::new_from_slice(KEY.as_bytes()).expect("key");
        let mut stored = vec![3u8; 12];
        stored.extend(aead.encrypt(Nonce::from_slice(&[3; 12]), &[0xff, 0xfe][..]).expect("seal"));
        STANDARD.encode(stored)
    };
    for stored in [
        "plain legacy text".to_string(),
        String::new(),
        "aGVsbG8=".to_string(),                      // valid Base64, too short
        STANDARD.encode([0u8; NONCE_LEN + TAG_LEN]), // long enough, does not authenticate
        "!!!not base64!!!".to_string(),
        sealed_elsewhere,
        tampered,
        not_utf8,
        STANDARD.encode("x".repeat(40)).trim_end_matches('=').to_string(), // unpadded
    ] {
        assert_eq!(c.decrypt(&stored), stored);
        assert_eq!(c.try_decrypt(&stored), None, "{stored}");
    }
}

#[test]
fn crypto_key_must_be_empty_or_32_bytes() {
    assert!(ContentCipher::new(b"").is_none());
    assert!(matches!(ContentCipher::try_new(b""), Ok(None)));
    assert!(ContentCipher::new(KEY.as_bytes()).is_some());
    for key in ["short", &KEY[..31], &format!("{KEY}x")] {
        assert!(ContentCipher::new(key.as_bytes()).is_none(), "{key}");
        assert_eq!(
            ContentCipher::try_new(key.as_bytes()).err(),
            Some(KeyLengthError { len: key.len() })
        );
    }
}
