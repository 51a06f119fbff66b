#![cfg(not(madsim))]
//! One assisting admin at a time across the fleet (issue 14, Behaviour 1), with two real
//! chatbox processes on one MongoDB-compatible database (SecantusDB) and one real Redis: two
//! admins taking the same session over on two instances at the same moment → exactly one wins
//! and the other gets the single-instance conflict answer; and the user's instance follows a
//! takeover or a leave made on the other one (`PAUSE_AI_WHEN_ASSISTED` pauses the AI for the
//! user's next message, and the AI answers again after the leave).

use std::time::Duration;

use chatbox_tests::e2e::chat;
use chatbox_tests::fleet::Fleet;
use chatbox_tests::harness::{is_done, Client};
use chatbox_tests::http::{get, json, post};

const STEP: Duration = Duration::from_secs(20);

async fn fleet() -> Fleet {
    Fleet::start(&[("ADMIN_RATE_LIMIT", "1000")]).await
}

#[tokio::test]
async fn two_admins_racing_on_two_instances_one_wins_the_other_gets_the_conflict() {
    let fleet = fleet().await;
    let mut user = fleet.a.connect(&fleet.a.token("race-user", &["user"], None)).await;
    let (session, _) = chat(&mut user, "race-1", "help me").await;
    let ann = fleet.a.token("admin-ann", &["admin"], Some("Ann"));
    let bob = fleet.b.token("admin-bob", &["admin"], Some("Bob"));
    let route = format!("/admin/takeover/{session}");
    for round in 0..5 {
        let (on_a, on_b) =
            tokio::join!(post(&fleet.a, &route, Some(&ann)), post(&fleet.b, &route, Some(&bob)));
        let statuses = [on_a.status, on_b.status];
        assert!(
            statuses == [200, 400] || statuses == [400, 200],
            "round {round}: exactly one takeover wins: {on_a:?} {on_b:?}"
        );
        let (loser, winner, winner_token, winner_server) = if on_a.status == 200 {
            (on_b, ("Ann", "admin-ann"), &ann, &fleet.a)
        } else {
            (on_a, ("Bob", "admin-bob"), &bob, &fleet.b)
        };
        // The single-instance conflict answer, naming the winner.
        let body = json(&loser);
        assert_eq!(
            body["error"],
            format!("session already assisted by another admin: {} ({})", winner.0, winner.1),
            "{body}"
        );
        // The loser still loses afterwards, on either instance.
        let loser_token = if winner.1 == "admin-ann" { &bob } else { &ann };
        for server in [&fleet.a, &fleet.b] {
            assert_eq!(post(server, &route, Some(loser_token)).await.status, 400, "round {round}");
        }
        // The stored session names the winner.
        let stored = json(&get(&fleet.b, &format!("/admin/sessions/{session}"), Some(&ann)).await);
        assert_eq!(stored["assisting_admin_name"], winner.0, "{stored}");
        let left =
            post(winner_server, &format!("/admin/leave/{session}"), Some(winner_token)).await;
        assert_eq!(left.status, 200, "round {round}: {left:?}");
    }
}

/// Sends `text` on `user` and returns whether the AI answered it (a reply ends with `done`;
/// a paused message gets no reply and no model call).
async fn answered(fleet: &Fleet, user: &mut Client, session: &str, text: &str) -> bool {
    let calls = fleet.upstream.request_count();
    user.send_user_message(session, text).await;
    match user.try_recv_frame(Duration::from_secs(3)).await {
        None => {
            assert_eq!(fleet.upstream.request_count(), calls, "no model call while paused");
            false
        }
        Some(first) => {
            if !is_done(&first) {
                let rest = user.recv_until(|f| is_done(f) || f["type"] == "error", STEP).await;
                assert!(rest.last().is_some_and(is_done), "{first} {rest:#?}");
            }
            true
        }
    }
}

#[tokio::test]
async fn the_users_instance_follows_a_takeover_and_a_leave_made_on_the_other() {
    let fleet = fleet().await;
    let mut user = fleet.a.connect(&fleet.a.token("follow-user", &["user"], None)).await;
    let (session, _) = chat(&mut user, "follow-1", "hello").await;
    let jane = fleet.b.token("admin-jane", &["admin"], Some("Jane"));

    // Takeover on B: the user's instance A pauses the AI for the user's next message.
    assert_eq!(
        post(&fleet.b, &format!("/admin/takeover/{session}"), Some(&jane)).await.status,
        200
    );
    user.recv_until(|f| f["type"] == "admin_join", STEP).await;
    assert!(!answered(&fleet, &mut user, &session, "are you there?").await, "paused on A");

    // Leave on B: A answers again.
    assert_eq!(post(&fleet.b, &format!("/admin/leave/{session}"), Some(&jane)).await.status, 200);
    user.recv_until(|f| f["type"] == "admin_leave", STEP).await;
    assert!(answered(&fleet, &mut user, &session, "back to the AI").await, "resumed on A");

    // Takeover on A, leave on B (which never saw the takeover in its own memory).
    assert_eq!(
        post(&fleet.a, &format!("/admin/takeover/{session}"), Some(&jane)).await.status,
        200
    );
    user.recv_until(|f| f["type"] == "admin_join", STEP).await;
    assert!(!answered(&fleet, &mut user, &session, "paused again?").await);
    let left = post(&fleet.b, &format!("/admin/leave/{session}"), Some(&jane)).await;
    assert_eq!(left.status, 200, "a leave on any instance: {left:?}");
    user.recv_until(|f| f["type"] == "admin_leave", STEP).await;
    assert!(answered(&fleet, &mut user, &session, "and the AI again").await);
}
