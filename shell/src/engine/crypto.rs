//! Encryption of stored message content (PROTOCOL.md §8.4): AES-256-GCM, stored as standard
//! Base64 (with padding) of `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`, no associated data —
//! the original's format, so existing documents keep decrypting.
//!
//! Pure: no IO, no clock, no randomness of its own. The caller passes the nonce (from the
//! engine's RNG, seeded under madsim), so this runs unchanged in the simulator. Reading never
//! fails: anything that does not open with the key — legacy plaintext, a different key,
//! garbage — is returned as stored.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Key length in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Nonce length in bytes (the GCM standard nonce).
pub const NONCE_LEN: usize = 12;
/// Authentication tag length in bytes.
pub const TAG_LEN: usize = 16;

/// The key was neither empty nor [`KEY_LEN`] bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("encryption key must be {KEY_LEN} bytes or empty, got {len} bytes")]
pub struct KeyLengthError {
    /// The length that was given.
    pub len: usize,
}

/// Encrypts and decrypts message content with one key.
///
/// `Debug` does not show the key.
#[derive(Clone)]
pub struct ContentCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for ContentCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentCipher(<key redacted>)")
    }
}

impl ContentCipher {
    /// The cipher for `key` (the raw bytes of `ENCRYPTION_KEY`), or `None` when encryption is
    /// off (empty key) or the key is not [`KEY_LEN`] bytes. Configuration validation refuses
    /// other lengths at start-up; use [`ContentCipher::try_new`] to tell the two apart.
    pub fn new(key: &[u8]) -> Option<Self> {
        Self::try_new(key).ok().flatten()
    }

    /// `Ok(None)` for an empty key (encryption off), `Ok(Some(_))` for a [`KEY_LEN`]-byte key,
    /// an error otherwise.
    pub fn try_new(key: &[u8]) -> Result<Option<Self>, KeyLengthError> {
        match key.len() {
            0 => Ok(None),
            KEY_LEN => Aes256Gcm::new_from_slice(key)
                .map(|cipher| Some(Self { cipher }))
                .map_err(|_| KeyLengthError { len: key.len() }),
            len => Err(KeyLengthError { len }),
        }
    }

    /// `plaintext` sealed with `nonce`, in the stored format. `nonce` must never repeat under
    /// one key: draw it from a cryptographic (or, in the simulator, seeded) RNG per message, or
    /// use [`ContentCipher::encrypt_with`].
    ///
    /// # Panics
    ///
    /// Only if `plaintext` exceeds AES-GCM's limit of 2^36 − 32 bytes (64 GiB), which no
    /// message can reach (inbound frames are bounded by the WebSocket's maximum message size).
    pub fn encrypt(&self, plaintext: &str, nonce: [u8; NONCE_LEN]) -> String {
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("AES-GCM only fails beyond 64 GiB of plaintext");
        let mut stored = Vec::with_capacity(NONCE_LEN + sealed.len());
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&sealed);
        STANDARD.encode(stored)
    }

    /// `plaintext` sealed with `nonce` and associated data `aad`, as raw bytes
    /// `nonce ‖ ciphertext ‖ tag` (the records of stored files, `engine::encrypting_files`).
    ///
    /// # Panics
    ///
    /// Only beyond AES-GCM's 64 GiB limit; records are far smaller.
    pub fn seal_bytes(&self, plaintext: &[u8], aad: &[u8], nonce: [u8; NONCE_LEN]) -> Vec<u8> {
        use aes_gcm::aead::Payload;
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .expect("AES-GCM only fails beyond 64 GiB of plaintext");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of a [`ContentCipher::seal_bytes`] record, or `None` when it does not open
    /// with this key and `aad` (tampered, truncated, reordered, another key).
    pub fn open_bytes(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        use aes_gcm::aead::Payload;
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad }).ok()
    }

    /// [`ContentCipher::encrypt`] with a fresh nonce drawn from `rng`.
    pub fn encrypt_with(&self, plaintext: &str, rng: &mut impl rand::RngCore) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        self.encrypt(plaintext, nonce)
    }

    /// The plaintext of `stored`, or `stored` itself when it does not open with this key (legacy
    /// plaintext, another key, not Base64, too short, tampered, not UTF-8).
    pub fn decrypt(&self, stored: &str) -> String {
        self.try_decrypt(stored).unwrap_or_else(|| stored.to_string())
    }

    /// The plaintext of `stored`, or `None` when it does not open with this key.
    pub fn try_decrypt(&self, stored: &str) -> Option<String> {
        let bytes = STANDARD.decode(stored).ok()?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), sealed).ok()?;
        String::from_utf8(plain).ok()
    }
}

/// The outbox port's sealing of whole entries, with this key.
impl crate::engine::persistence::EntrySeal for ContentCipher {
    fn seal(&self, plain: &str, mut rng: &mut dyn rand::RngCore) -> String {
        self.encrypt_with(plain, &mut rng)
    }

    fn open(&self, sealed: &str) -> Option<String> {
        self.try_decrypt(sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn crypto_key_lengths() {
        assert!(ContentCipher::new(b"").is_none());
        assert_eq!(ContentCipher::try_new(b"").map(|c| c.is_none()), Ok(true));
        assert!(ContentCipher::new(KEY).is_some());
        for len in [1, 16, 31, 33, 64] {
            let key = vec![b'k'; len];
            assert!(ContentCipher::new(&key).is_none(), "{len}");
            assert_eq!(ContentCipher::try_new(&key).err(), Some(KeyLengthError { len }));
        }
    }

    #[test]
    fn crypto_stored_layout_is_nonce_ciphertext_tag() {
        let cipher = ContentCipher::new(KEY).expect("key");
        let nonce = [7u8; NONCE_LEN];
        let stored = cipher.encrypt("hello", nonce);
        let bytes = STANDARD.decode(&stored).expect("base64");
        assert_eq!(bytes.len(), NONCE_LEN + "hello".len() + TAG_LEN);
        assert_eq!(&bytes[..NONCE_LEN], &nonce);
        assert_eq!(cipher.decrypt(&stored), "hello");
    }

    #[test]
    fn crypto_debug_hides_the_key() {
        let cipher = ContentCipher::new(KEY).expect("key");
        assert_eq!(format!("{cipher:?}"), "ContentCipher(<key redacted>)");
    }

    #[test]
    fn crypto_encrypt_with_draws_fresh_nonces() {
        use rand::SeedableRng;
        let cipher = ContentCipher::new(KEY).expect("key");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = cipher.encrypt_with("same", &mut rng);
        let b = cipher.encrypt_with("same", &mut rng);
        assert_ne!(a, b);
        assert_eq!((cipher.decrypt(&a), cipher.decrypt(&b)), ("same".into(), "same".into()));
    }
}
