//! How long one connection-lease heartbeat takes for many connections: the renewals one after
//! another (each waiting for Redis's answer) against at most `CONNECTION_LEASE_RENEWALS_IN_FLIGHT` at
//! once on the same multiplexed connection. A heartbeat must finish well within
//! `CONNECTION_LEASE_TTL` (15 s), or leases expire while their connections are open. Not a test
//! (nothing is asserted); run it with
//!
//! ```text
//! cargo run --release -p chatbox-tests --example lease_heartbeat [LEASES] [ROUNDS]
//! ```
//!
//! A real Redis (`scripts/redis-server.sh`, as the fleet tests start it) and chatbox's own
//! `RedisLimits` (the lease script); `LEASES` (default 20 000) leases of 10 000 users.

use std::time::Duration;

use chatbox::adapters::limits::RedisLimits;
use chatbox::engine::fleet_limits::ConnectionLeases;
use chatbox_core::budgets::{CONNECTION_LEASE_RENEWALS_IN_FLIGHT, CONNECTION_LEASE_TTL};
use chatbox_tests::harness::now;
use chatbox_tests::redis::RedisServer;
use futures_util::StreamExt;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let leases: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let redis = RedisServer::start().await;
    let limits = RedisLimits::open(&redis.url()).expect("a redis url");
    let held: Vec<(String, String)> =
        (0..leases).map(|i| (format!("user-{}", i % 10_000), format!("lease-{i}"))).collect();
    let renew = |(user, id): &(String, String)| {
        let limits = &limits;
        let (user, id) = (user.clone(), id.clone());
        async move { limits.lease(&user, &id, 100, CONNECTION_LEASE_TTL).await.is_ok() }
    };
    for round in 0..rounds {
        let started = now();
        for lease in &held {
            renew(lease).await;
        }
        let one_by_one = now() - started;
        let started = now();
        futures_util::stream::iter(&held)
            .for_each_concurrent(CONNECTION_LEASE_RENEWALS_IN_FLIGHT, |lease| async move {
                renew(lease).await;
            })
            .await;
        let concurrent = now() - started;
        println!(
            "round {round}: {leases} renewals one by one {:.3} s, {} at once {:.3} s",
            one_by_one.as_secs_f64(),
            CONNECTION_LEASE_RENEWALS_IN_FLIGHT,
            concurrent.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
