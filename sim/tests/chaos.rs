//! The chaos simulation: one simulated hour per seed of users chatting with the real server while
//! the seed injects provider misbehaviour, store faults and outages, network clogs, malformed and
//! oversized frames, floods, vanishing clients, reconnects inside and outside the window, and a
//! shutdown at a random moment. Every invariant of SIMULATION.md is checked; a violation fails
//! the seed, and `MADSIM_TEST_SEED=<seed>` replays it exactly.
#![cfg(madsim)]

use chatbox_sim::replay;
use chatbox_sim::world::{self, Scenario};

#[madsim::test]
async fn one_simulated_hour_holds_every_invariant() {
    let seed: u64 = madsim::rand::random();
    let report = world::run(seed, Scenario::default()).await;
    println!(
        "acknowledged={} replies={:?} rate_decisions={} store_faults={} simulated_secs={}",
        report.acknowledged,
        report.replies,
        report.rate_decisions,
        report.store_faults,
        report.simulated_secs
    );
    // A world in which nothing happened proves nothing.
    assert!(report.acknowledged > 0, "no message was acknowledged: {report:?}");
    assert!(report.rate_decisions > 0, "no rate decision was made: {report:?}");
    assert!(
        report.violations.is_empty(),
        "invariant violations (replay with the MADSIM_TEST_SEED printed below):\n{}",
        report.violations.join("\n")
    );
}

/// The replay proof: a test-only switch that loses every 7th acknowledged append makes a fixed
/// seed fail, and running the same seed again fails with exactly the same violations.
///
/// Each run is a process of its own, as a replay is (SIMULATION.md, "Why one process per
/// seed"): the test runs itself with `CHATBOX_SIM_REPLAY_CHILD` set, and the child prints its
/// report.
#[test]
fn a_broken_invariant_fails_a_known_seed_and_replays_identically() {
    const SEED: u64 = 20261125;
    let scenario = Scenario {
        users: 4,
        duration: std::time::Duration::from_secs(1200),
        shutdown: false,
        lose_acknowledged_every: Some(7),
    };
    let test = "a_broken_invariant_fails_a_known_seed_and_replays_identically";
    let Some([first, second]) =
        replay::reports_of_two_runs(test, SEED, || world::run(SEED, scenario))
    else {
        return;
    };
    assert!(first.contains("acknowledged message"), "the broken store must be caught: {first}");
    assert_eq!(first, second, "the same seed replays the same world");
}
