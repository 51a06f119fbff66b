//! The fleet bus's publishing rate: how many frames per second one instance's link to Redis
//! gets out. Not a test (nothing is asserted); run it with
//!
//! ```text
//! cargo run --release -p chatbox-tests --example bus_throughput [FRAMES] [ROUNDS]
//! ```
//!
//! A real Redis (`scripts/redis-server.sh`, as the fleet tests start it), chatbox's own
//! [`FleetBus`] and link (`chatbox::adapters::bus`), one local connection bound to a session so
//! every frame is published. Each round queues `FRAMES` (default 20 000) 200-byte frames, each
//! with its replay-buffer write as a streamed chunk has, in bursts of 1 000 (the publish queue
//! holds 4 096), then waits for the link's flush; it prints frames per second and how many
//! the full queue dropped.

use std::sync::Arc;
use std::time::Duration;

use chatbox::adapters::bus;
use chatbox::engine::delivery::{Bus, FleetBus, Registration, ReplayWrite};
use chatbox::engine::metrics::Metrics;
use chatbox_tests::harness::now;
use chatbox_tests::redis::RedisServer;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let frames: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let redis = RedisServer::start().await;
    let metrics = Arc::new(Metrics::new());
    let (fleet, queues) = FleetBus::new("bench".into(), Arc::clone(&metrics));
    let client = bus::client(&redis.url()).expect("a redis url");
    bus::start(client, Arc::clone(&fleet), queues, redis.url());
    let (tx, _rx) = chatbox::engine::delivery::queue::channel(1 << 20);
    let conn = fleet.register(Registration { user_id: "u", is_admin: false, tx });
    let _ = fleet.bind(conn, "s");
    while !fleet.subscribed("s").await {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let frame: Arc<str> = Arc::from("x".repeat(200));
    for round in 0..rounds {
        let dropped_before = metrics.bus_unpublished.get();
        let started = now();
        let mut seq = 0u64;
        while (seq as usize) < frames {
            for _ in 0..1_000 {
                seq += 1;
                fleet.to_session("s", &frame, None);
                fleet.record(ReplayWrite {
                    reply_id: format!("r{round}"),
                    session: "s".into(),
                    entry: Some((seq, frame.to_string())),
                    ended: false,
                    state_ttl: Duration::from_secs(60),
                    stream_ttl: Duration::from_secs(60),
                });
            }
            fleet.flushed().await;
        }
        let took = now() - started;
        let dropped = metrics.bus_unpublished.get() - dropped_before;
        let rate = frames as f64 / took.as_secs_f64();
        println!(
            "round {round}: {frames} frames (+ replay writes) in {:.3} s: {rate:.0} frames/s, {dropped} dropped",
            took.as_secs_f64()
        );
    }
}
