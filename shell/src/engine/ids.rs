//! Randomness for ids, tokens and jitter. Under madsim it comes from the simulation's seeded
//! generator, so a seed replays the same session ids; otherwise from the OS-seeded thread RNG.

/// `N` random bytes.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    #[cfg(madsim)]
    rand::RngCore::fill_bytes(&mut madsim::rand::thread_rng(), &mut bytes);
    #[cfg(not(madsim))]
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    bytes
}

/// A random `u64`.
pub fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
}

/// 32 random hex characters (session ids, message ids, share tokens).
pub fn hex32() -> String {
    hex_lower(&random_bytes::<16>())
}

/// `bytes` as lowercase hex. Written into one buffer: `hex::encode` collects `char`s one by one,
/// several times the cost, and ids are made a few times per reply (BENCHMARKS.md "1h").
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    // Cannot fail: the buffer is exactly twice the input.
    let _ = hex::encode_to_slice(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lower_is_hex_encode() {
        for len in [0, 1, 16, 33] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(hex_lower(&bytes), hex::encode(&bytes));
        }
        let id = hex32();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
