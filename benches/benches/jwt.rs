//! The server's JWT check: `chatbox::http::auth::Verifier::verify` of a typical HS256 token
//! (`user_id`, `name`, one role, `exp`), minted once with the server's own `mint`. Every
//! WebSocket upgrade and authenticated REST call pays this once.

use std::hint::black_box;

use chatbox::http::auth::{mint, Verifier};
use criterion::Criterion;

/// A 32-byte secret, as the configuration requires for HS256.
const SECRET: &[u8] = b"bench-secret-0123456789abcdefghij";

/// 2100-01-01T00:00:00Z: far enough that the token never expires during a run.
const EXPIRES_AT: i64 = 4_102_444_800;

fn jwt(c: &mut Criterion) {
    let roles = vec!["user".to_string()];
    let token = mint(SECRET, "user-0001234", Some("Alice Example"), &roles, Some(EXPIRES_AT));
    let token = match token {
        Ok(token) => token,
        Err(e) => panic!("cannot mint the bench token: {e}"),
    };
    let verifier = Verifier::new(SECRET, false);
    let caller = verifier.verify(&token);
    assert!(caller.is_ok(), "bench token refused: {caller:?}");

    let mut group = c.benchmark_group("jwt");
    group.bench_function("verify_hs256", |b| {
        b.iter(|| verifier.verify(black_box(&token)));
    });
    group.finish();
    if chatbox_benches::bench_mode() {
        eprintln!("jwt: token of {} bytes", token.len());
    }
}

fn main() {
    chatbox_benches::run(jwt);
}
