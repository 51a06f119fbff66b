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
    hex::encode(random_bytes::<16>())
}
