//! Unit tests of the table's rules, one per rule, with explicit time (STYLE.md §2).

use std::time::Duration;

use super::*;
use crate::time::{Instant, UnixMillis, HOUR, MINUTE, SECOND};

const T0: Instant = Instant::ZERO;

/// The wall clock that goes with `now` in these tests: 2023-11-14 plus the monotonic offset.
fn wall(now: Instant) -> UnixMillis {
    UnixMillis(1_700_000_000_000 + i64::try_from(now.as_nanos() / 1_000_000).unwrap())
}

fn table() -> SessionTable {
    SessionTable::new(SessionLimits::default())
}

fn sid(id: &str) -> SessionId {
    SessionId::from(id)
}

/// Creates a session for `user` under `id` at `now`.
fn create(t: &mut SessionTable, user: &str, id: &str, now: Instant) -> SessionId {
    let r = t.resolve(user, None, sid(id), now, wall(now)).unwrap();
    assert_eq!(r.kind, ResolutionKind::Created);
    assert_eq!(r.id, id);
    r.id
}

fn ok(t: &SessionTable) {
    t.check_invariants().unwrap();
}

// ----- resolve ----------------------------------------------------------------------------

#[test]
fn resolve_creates_under_the_fresh_id_never_the_proposed_one() {
    let mut t = table();
    let r = t.resolve("alice", Some("client-made-up"), sid("s1"), T0, wall(T0)).unwrap();
    assert_eq!(r, Resolution { id: sid("s1"), kind: ResolutionKind::Created, rebind: true });
    assert!(t.get("client-made-up").is_none());
    let s = t.get("s1").unwrap();
    assert_eq!((s.user_id(), s.is_active(), s.name()), ("alice", true, ""));
    assert_eq!((s.started_at(), s.started_wall(), s.last_activity()), (T0, wall(T0), T0));
    assert_eq!(t.active_of("alice").unwrap().id(), &sid("s1"));
    ok(&t);
}

#[test]
fn resolve_without_requested_id_creates_and_rebinds() {
    let mut t = table();
    let r = t.resolve("alice", None, sid("s1"), T0, wall(T0)).unwrap();
    assert!(r.rebind);
    assert_eq!(r.kind, ResolutionKind::Created);
}

#[test]
fn resolve_uses_the_requested_active_session_and_restarts_its_idle_clock() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let later = T0 + 10 * MINUTE;
    let r = t.resolve("alice", Some("s1"), sid("s2"), later, wall(later)).unwrap();
    assert_eq!(r, Resolution { id: sid("s1"), kind: ResolutionKind::Existing, rebind: false });
    assert_eq!(t.get("s1").unwrap().last_activity(), later);
    assert!(t.get("s2").is_none());
    ok(&t);
}

#[test]
fn resolve_refuses_another_users_session_whatever_its_state() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let err = t.resolve("bob", Some("s1"), sid("s2"), T0, wall(T0)).unwrap_err();
    assert_eq!(err, SessionError::NotOwner);
    let _ = t.end("s1", T0, wall(T0)).unwrap();
    let much_later = T0 + 10 * MINUTE;
    let err = t.resolve("bob", Some("s1"), sid("s2"), much_later, wall(much_later));
    assert_eq!(err, Err(SessionError::NotOwner));
    assert_eq!(t.len(), 1);
    assert!(t.active_of("bob").is_none());
    ok(&t);
}

#[test]
fn resolve_of_an_unknown_id_reuses_the_active_session() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let r = t.resolve("alice", Some("gone"), sid("s2"), T0 + SECOND, wall(T0)).unwrap();
    assert_eq!(r, Resolution { id: sid("s1"), kind: ResolutionKind::Reused, rebind: true });
    assert_eq!(t.len(), 1);
    let r = t.resolve("alice", None, sid("s3"), T0 + SECOND, wall(T0)).unwrap();
    assert_eq!(r.kind, ResolutionKind::Reused);
    assert!(r.rebind);
    ok(&t);
}

/// Ends every idle session at `now` the way nobody asked for: the sweep.
fn idle_end(t: &mut SessionTable, now: Instant) {
    let report = t.sweep(now, wall(now));
    assert!(!report.idle_ended.is_empty(), "something idled out at {now:?}");
}

#[test]
fn resolve_resumes_an_idle_ended_session_within_the_reconnect_window() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let end = T0 + HOUR;
    idle_end(&mut t, end);
    assert!(t.active_of("alice").is_none());
    assert_eq!(t.get("s1").unwrap().end_cause(), Some(EndCause::Idle));
    let back = end + 15 * MINUTE - Duration::from_nanos(1);
    let r = t.resolve("alice", Some("s1"), sid("s2"), back, wall(back)).unwrap();
    assert_eq!(r, Resolution { id: sid("s1"), kind: ResolutionKind::Resumed, rebind: false });
    let s = t.get("s1").unwrap();
    assert!(s.is_active());
    assert_eq!(s.last_activity(), back);
    assert_eq!(t.active_of("alice").unwrap().id(), &sid("s1"));
    assert!(t.get("s2").is_none());
    ok(&t);
}

#[test]
fn resolve_never_resumes_a_session_ended_on_request() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let end = T0 + MINUTE;
    let _ = t.end("s1", end, wall(end)).unwrap();
    assert_eq!(t.get("s1").unwrap().end_cause(), Some(EndCause::Requested));
    // Right after the end, well within the window: a new session, announced (rebind).
    let next = end + SECOND;
    let r = t.resolve("alice", Some("s1"), sid("s2"), next, wall(next)).unwrap();
    assert_eq!(r, Resolution { id: sid("s2"), kind: ResolutionKind::Created, rebind: true });
    assert!(!t.get("s1").unwrap().is_active());
    assert_eq!(t.active_of("alice").unwrap().id(), &sid("s2"));
    ok(&t);
}

#[test]
fn ending_an_idle_ended_session_makes_the_end_final() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    idle_end(&mut t, T0 + HOUR);
    let at = T0 + HOUR + MINUTE;
    let _ = t.end("s1", at, wall(at)).unwrap();
    assert_eq!(t.get("s1").unwrap().end_cause(), Some(EndCause::Requested));
    let r = t.resolve("alice", Some("s1"), sid("s2"), at, wall(at)).unwrap();
    assert_eq!(r.kind, ResolutionKind::Created);
    ok(&t);
}

#[test]
fn resolve_treats_a_session_ended_a_full_window_ago_as_unknown() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    idle_end(&mut t, T0 + HOUR);
    // Still in memory (no sweep yet), but exactly one window old: not resumable.
    let late = T0 + HOUR + 15 * MINUTE;
    let r = t.resolve("alice", Some("s1"), sid("s2"), late, wall(late)).unwrap();
    assert_eq!(r, Resolution { id: sid("s2"), kind: ResolutionKind::Created, rebind: true });
    assert!(!t.get("s1").unwrap().is_active());
    assert_eq!(t.memory_stats(), MemoryStats { active: 1, inactive: 1, total: 2 });
    ok(&t);
}

#[test]
fn resolve_of_a_recently_ended_session_uses_another_active_one() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let _ = t.end("s1", T0, wall(T0)).unwrap();
    create(&mut t, "alice", "s2", T0 + SECOND);
    let r = t.resolve("alice", Some("s1"), sid("s3"), T0 + MINUTE, wall(T0)).unwrap();
    assert_eq!(r, Resolution { id: sid("s2"), kind: ResolutionKind::Reused, rebind: true });
    assert!(!t.get("s1").unwrap().is_active());
    ok(&t);
}

#[test]
fn resolve_with_the_returned_id_is_idempotent() {
    let mut t = table();
    let first = t.resolve("alice", Some("x"), sid("s1"), T0, wall(T0)).unwrap();
    let again = t.resolve("alice", Some(first.id.as_str()), sid("s9"), T0, wall(T0)).unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.kind, ResolutionKind::Existing);
    assert_eq!(t.len(), 1);
}

#[test]
fn resolve_refuses_a_fresh_id_already_in_memory() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let err = t.resolve("bob", None, sid("s1"), T0, wall(T0));
    assert_eq!(err, Err(SessionError::IdInUse));
    assert!(t.active_of("bob").is_none());
    assert_eq!(t.len(), 1);
    ok(&t);
}

#[test]
fn one_active_session_per_user_through_end_and_resume() {
    let mut t = table();
    let mut now = T0;
    for round in 0..5 {
        let id = format!("s{round}");
        let r = t.resolve("alice", None, sid(&id), now, wall(now)).unwrap();
        assert_eq!(r.kind, ResolutionKind::Created);
        assert_eq!(t.memory_stats().active, 1);
        let _ = t.end(&id, now, wall(now)).unwrap();
        now += MINUTE;
        ok(&t);
    }
    // Ended on request, the newest is not resumed but replaced; asking for an older one then
    // reuses the new one.
    let r = t.resolve("alice", Some("s4"), sid("n"), now, wall(now)).unwrap();
    assert_eq!((r.id.clone(), r.kind), (sid("n"), ResolutionKind::Created));
    let r = t.resolve("alice", Some("s3"), sid("m"), now, wall(now)).unwrap();
    assert_eq!((r.id, r.kind), (sid("n"), ResolutionKind::Reused));
    assert_eq!(t.memory_stats().active, 1);
    ok(&t);
}

#[test]
fn stale_now_is_taken_as_the_latest_seen() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    t.touch("s1", T0 + 10 * MINUTE).unwrap();
    let _ = t.end("s1", T0 + 5 * MINUTE, wall(T0)).unwrap();
    assert_eq!(t.get("s1").unwrap().ended_at(), Some(T0 + 10 * MINUTE));
    ok(&t);
}

// ----- insert_loaded ----------------------------------------------------------------------

fn snapshot(
    id: &str,
    user: &str,
    started: UnixMillis,
    ended: Option<UnixMillis>,
) -> SessionSnapshot {
    SessionSnapshot {
        id: sid(id),
        user_id: user.to_owned(),
        name: "Loaded".to_owned(),
        model_id: Some("gpt".to_owned()),
        started_wall: started,
        ended_wall: ended,
        ended_on_request: false,
        assisting_admin: None,
        help_requested: true,
        total_tokens: 42,
        message_count: 7,
        avg_response_time: Duration::from_millis(250),
    }
}

#[test]
fn insert_loaded_places_stored_times_on_the_monotonic_clock() {
    let mut t = table();
    let now = T0 + 2 * HOUR;
    let started = UnixMillis(wall(now).0 - 90 * 60 * 1000);
    let out = t.insert_loaded(snapshot("s1", "alice", started, None), now, wall(now));
    assert_eq!(out, LoadOutcome::Inserted);
    let s = t.get("s1").unwrap();
    assert_eq!(s.started_at(), now - 90 * MINUTE);
    assert_eq!(s.last_activity(), now);
    assert_eq!(
        (s.name(), s.model_id(), s.total_tokens(), s.message_count()),
        ("Loaded", Some("gpt"), 42, 7)
    );
    assert!(s.help_requested());
    assert_eq!(s.response_times().iter().collect::<Vec<_>>(), vec![Duration::from_millis(250)]);
    assert_eq!(t.active_of("alice").unwrap().id(), &sid("s1"));
    // The idle clock starts at the load.
    assert_eq!(t.next_deadline(), Some(now + HOUR));
    ok(&t);
}

#[test]
fn insert_loaded_ended_session_can_then_be_resumed() {
    let mut t = table();
    let now = T0 + HOUR;
    let ended = UnixMillis(wall(now).0 - 5 * 60 * 1000);
    let out = t.insert_loaded(snapshot("s1", "alice", UnixMillis(0), Some(ended)), now, wall(now));
    assert_eq!(out, LoadOutcome::Inserted);
    assert_eq!(t.get("s1").unwrap().ended_at(), Some(now - 5 * MINUTE));
    assert_eq!(t.next_deadline(), Some(now + 10 * MINUTE));
    let r = t.resolve("alice", Some("s1"), sid("s2"), now, wall(now)).unwrap();
    assert_eq!(r.kind, ResolutionKind::Resumed);
    ok(&t);
}

#[test]
fn insert_loaded_session_ended_on_request_is_never_resumed() {
    let mut t = table();
    let now = T0 + HOUR;
    let ended = UnixMillis(wall(now).0 - 60 * 1000);
    let stored = SessionSnapshot {
        ended_on_request: true,
        ..snapshot("s1", "alice", UnixMillis(0), Some(ended))
    };
    assert_eq!(t.insert_loaded(stored, now, wall(now)), LoadOutcome::Inserted);
    assert_eq!(t.get("s1").unwrap().end_cause(), Some(EndCause::Requested));
    // A minute after the end, well within the reconnect window: a new session, announced.
    let r = t.resolve("alice", Some("s1"), sid("s2"), now, wall(now)).unwrap();
    assert_eq!(r, Resolution { id: sid("s2"), kind: ResolutionKind::Created, rebind: true });
    assert!(!t.get("s1").unwrap().is_active());
    ok(&t);
}

#[test]
fn insert_loaded_skips_sessions_that_ended_a_ttl_ago() {
    let mut t = table();
    let now = T0 + HOUR;
    let ended = UnixMillis(wall(now).0 - 15 * 60 * 1000);
    let out = t.insert_loaded(snapshot("s1", "alice", UnixMillis(0), Some(ended)), now, wall(now));
    assert_eq!(out, LoadOutcome::Expired);
    assert!(t.is_empty());
}

#[test]
fn insert_loaded_never_makes_two_active_sessions() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let out = t.insert_loaded(snapshot("s2", "alice", wall(T0), None), T0, wall(T0));
    assert_eq!(out, LoadOutcome::ActiveConflict { active: sid("s1") });
    assert!(t.get("s2").is_none());
    // An ended one of the same user is fine.
    let out = t.insert_loaded(snapshot("s3", "alice", wall(T0), Some(wall(T0))), T0, wall(T0));
    assert_eq!(out, LoadOutcome::Inserted);
    ok(&t);
}

#[test]
fn insert_loaded_keeps_the_copy_in_memory() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let out = t.insert_loaded(snapshot("s1", "bob", wall(T0), None), T0, wall(T0));
    assert_eq!(out, LoadOutcome::AlreadyPresent);
    assert_eq!(t.get("s1").unwrap().user_id(), "alice");
}

// ----- check_access -----------------------------------------------------------------------

#[test]
fn access_for_owner_assisting_admin_others_and_unknown() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    assert_eq!(t.check_access("alice", false, "s1"), Access::Owner);
    assert_eq!(t.check_access("root", true, "s1"), Access::Denied);
    assert_eq!(t.takeover("s1", "root", "Root", T0), Ok(TakeoverOutcome::Started));
    assert_eq!(t.check_access("root", true, "s1"), Access::AssistingAdmin);
    // The role matters, not only the id.
    assert_eq!(t.check_access("root", false, "s1"), Access::Denied);
    assert_eq!(t.check_access("other-admin", true, "s1"), Access::Denied);
    assert_eq!(t.check_access("bob", false, "s1"), Access::Denied);
    assert_eq!(t.check_access("alice", false, "nope"), Access::Unknown);
}

// ----- attach / detach / touch ------------------------------------------------------------

#[test]
fn an_attached_session_never_idles_out() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    t.attach("s1", T0).unwrap();
    assert_eq!(t.next_deadline(), None);
    let report = t.sweep(T0 + 100 * HOUR, wall(T0));
    assert!(report.is_empty());
    assert!(t.get("s1").unwrap().is_active());
    ok(&t);
}

#[test]
fn detach_starts_the_idle_clock() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    t.attach("s1", T0).unwrap();
    t.attach("s1", T0).unwrap();
    let gone = T0 + 2 * HOUR;
    t.detach("s1", gone).unwrap();
    assert_eq!(t.next_deadline(), None, "one connection still attached");
    t.detach("s1", gone).unwrap();
    assert_eq!(t.get("s1").unwrap().attached(), 0);
    assert_eq!(t.next_deadline(), Some(gone + HOUR));
    assert!(t.sweep(gone + HOUR - SECOND, wall(gone)).is_empty());
    let at = gone + HOUR;
    let report = t.sweep(at, wall(at));
    assert!(report.dropped.is_empty());
    assert_eq!(
        report.idle_ended,
        vec![EndedSession {
            id: sid("s1"),
            started_wall: wall(T0),
            ended_wall: wall(at),
            duration_secs: 3 * 3600,
        }]
    );
    assert_eq!(t.get("s1").unwrap().ended_at(), Some(at));
    assert!(t.active_of("alice").is_none());
    ok(&t);
}

#[test]
fn detach_errors_are_reported_and_harmless() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    assert_eq!(t.detach("s1", T0), Err(SessionError::NotAttached));
    assert_eq!(t.detach("nope", T0), Err(SessionError::NotFound));
    assert_eq!(t.attach("nope", T0), Err(SessionError::NotFound));
    assert_eq!(t.get("s1").unwrap().attached(), 0);
    ok(&t);
}

#[test]
fn touch_and_messages_restart_the_idle_clock() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    t.touch("s1", T0 + 30 * MINUTE).unwrap();
    assert!(t.sweep(T0 + HOUR, wall(T0)).is_empty());
    t.record_message("s1", T0 + 80 * MINUTE).unwrap();
    assert_eq!(t.get("s1").unwrap().message_count(), 1);
    assert_eq!(t.next_deadline(), Some(T0 + 140 * MINUTE));
    let report = t.sweep(T0 + 140 * MINUTE, wall(T0));
    assert_eq!(report.idle_ended.len(), 1);
    assert_eq!(t.touch("nope", T0), Err(SessionError::NotFound));
    ok(&t);
}

// ----- record_reply / set_model / naming --------------------------------------------------

#[test]
fn replies_fill_a_bounded_window_and_add_tokens() {
    let limits = SessionLimits { response_time_capacity: 3, ..SessionLimits::default() };
    let mut t = SessionTable::new(limits);
    create(&mut t, "alice", "s1", T0);
    for ms in 1..=5 {
        t.record_reply("s1", Duration::from_millis(ms), 10).unwrap();
    }
    let s = t.get("s1").unwrap();
    let window: Vec<u128> = s.response_times().iter().map(|d| d.as_millis()).collect();
    assert_eq!(window, vec![3, 4, 5]);
    assert_eq!(s.total_tokens(), 50);
    assert_eq!(t.record_reply("nope", SECOND, 1), Err(SessionError::NotFound));
    ok(&t);
}

#[test]
fn model_is_stored_and_cleared() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    t.set_model("s1", "anthropic-claude").unwrap();
    assert_eq!(t.get("s1").unwrap().model_id(), Some("anthropic-claude"));
    t.set_model("s1", "").unwrap();
    assert_eq!(t.get("s1").unwrap().model_id(), None);
    assert_eq!(t.set_model("nope", "x"), Err(SessionError::NotFound));
}

#[test]
fn the_first_message_names_the_session_once() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let name = t.name_if_empty("s1", "  What is Rust? Tell me.").unwrap();
    assert_eq!(name.as_deref(), Some("What is Rust?"));
    assert_eq!(t.name_if_empty("s1", "Second message").unwrap(), None);
    assert_eq!(t.get("s1").unwrap().name(), "What is Rust?");
    assert_eq!(t.name_if_empty("nope", "x"), Err(SessionError::NotFound));
}

// ----- end --------------------------------------------------------------------------------

#[test]
fn end_frees_the_slot_and_reports_what_to_store() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let at = T0 + 90 * SECOND + Duration::from_millis(900);
    let ended = t.end("s1", at, wall(at)).unwrap();
    assert_eq!(
        ended,
        EndedSession {
            id: sid("s1"),
            started_wall: wall(T0),
            ended_wall: wall(at),
            duration_secs: 90
        }
    );
    let s = t.get("s1").unwrap();
    assert_eq!(s.state(), SessionState::Ended { at, wall: wall(at), cause: EndCause::Requested });
    assert!(t.active_of("alice").is_none());
    assert_eq!(t.memory_stats(), MemoryStats { active: 0, inactive: 1, total: 1 });
    ok(&t);
}

#[test]
fn ending_again_succeeds_and_overwrites_the_end_time() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let _ = t.end("s1", T0 + MINUTE, wall(T0 + MINUTE)).unwrap();
    let again = t.end("s1", T0 + 10 * MINUTE, wall(T0 + 10 * MINUTE)).unwrap();
    assert_eq!(again.ended_wall, wall(T0 + 10 * MINUTE));
    assert_eq!(again.duration_secs, 600);
    // The memory TTL restarts from the new end.
    assert_eq!(t.next_deadline(), Some(T0 + 25 * MINUTE));
    assert_eq!(t.end("nope", T0, wall(T0)), Err(SessionError::NotFound));
    ok(&t);
}

// ----- takeover / leave / help ------------------------------------------------------------

#[test]
fn takeover_by_the_same_admin_repeats_and_another_is_refused() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    assert_eq!(t.takeover("s1", "a1", "Ann", T0), Ok(TakeoverOutcome::Started));
    assert_eq!(t.takeover("s1", "a1", "Ann B.", T0), Ok(TakeoverOutcome::Repeated));
    let admin = t.get("s1").unwrap().assisting_admin().unwrap().clone();
    assert_eq!(admin, AdminRef { id: "a1".into(), name: "Ann B.".into() });
    let err = t.takeover("s1", "a2", "Bo", T0).unwrap_err();
    assert_eq!(
        err,
        SessionError::AlreadyAssisted { admin_id: "a1".into(), admin_name: "Ann B.".into() }
    );
    assert_eq!(err.to_string(), "session already assisted by another admin: Ann B. (a1)");
    assert_eq!(t.takeover("nope", "a1", "Ann", T0), Err(SessionError::NotFound));
    ok(&t);
}

#[test]
fn takeover_counts_as_activity() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let _ = t.takeover("s1", "a1", "Ann", T0 + 50 * MINUTE).unwrap();
    assert_eq!(t.next_deadline(), Some(T0 + 110 * MINUTE));
}

#[test]
fn leave_clears_assistance_for_the_assisting_or_any_admin() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    assert_eq!(t.leave("s1", "a1"), Err(SessionError::NotAssisted));
    let _ = t.takeover("s1", "a1", "Ann", T0).unwrap();
    let left = t.leave("s1", "a1").unwrap();
    assert_eq!(
        left,
        Left { admin: AdminRef { id: "a1".into(), name: "Ann".into() }, by_other_admin: false }
    );
    assert!(t.get("s1").unwrap().assisting_admin().is_none());
    // A second admin is no longer locked out; and may clear a departed admin's takeover.
    let _ = t.takeover("s1", "a2", "Bo", T0).unwrap();
    let left = t.leave("s1", "a3").unwrap();
    assert!(left.by_other_admin);
    assert_eq!(left.admin.id, "a2");
    assert_eq!(t.leave("nope", "a1"), Err(SessionError::NotFound));
    ok(&t);
}

#[test]
fn help_requests_need_the_owner() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    assert_eq!(t.request_help("nope", "alice"), Err(SessionError::NotFound));
    assert_eq!(t.request_help("s1", "bob"), Err(SessionError::NotOwner));
    assert!(!t.get("s1").unwrap().help_requested());
    assert_eq!(t.request_help("s1", "alice"), Ok(true));
    assert_eq!(t.request_help("s1", "alice"), Ok(false));
    assert!(t.get("s1").unwrap().help_requested());
}

// ----- sweep ------------------------------------------------------------------------------

#[test]
fn ended_sessions_are_dropped_exactly_at_the_ttl() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    t.attach("s1", T0).unwrap();
    let _ = t.end("s1", T0, wall(T0)).unwrap();
    assert_eq!(t.next_deadline(), Some(T0 + 15 * MINUTE));
    assert!(t.sweep(T0 + 15 * MINUTE - Duration::from_nanos(1), wall(T0)).is_empty());
    assert_eq!(t.len(), 1);
    let report = t.sweep(T0 + 15 * MINUTE, wall(T0));
    // Dropped although a connection is still attached: memory is bounded regardless.
    assert_eq!(report.dropped, vec![sid("s1")]);
    assert!(t.is_empty());
    assert_eq!(t.next_deadline(), None);
    assert_eq!(t.detach("s1", T0 + 16 * MINUTE), Err(SessionError::NotFound));
    ok(&t);
}

#[test]
fn idle_ended_sessions_can_be_resumed_then_are_dropped() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let _ = t.sweep(T0 + HOUR, wall(T0 + HOUR));
    assert!(!t.get("s1").unwrap().is_active());
    assert_eq!(t.next_deadline(), Some(T0 + HOUR + 15 * MINUTE));
    // The owner comes back within the window: resumed.
    let back = T0 + HOUR + 5 * MINUTE;
    let r = t.resolve("alice", Some("s1"), sid("s2"), back, wall(back)).unwrap();
    assert_eq!(r.kind, ResolutionKind::Resumed);
    // Left alone again: idle-ended, then dropped.
    let idle_end = back + HOUR;
    let report = t.sweep(idle_end, wall(idle_end));
    assert_eq!(report.idle_ended.len(), 1);
    let report = t.sweep(idle_end + 15 * MINUTE, wall(idle_end));
    assert_eq!(report.dropped, vec![sid("s1")]);
    assert!(t.is_empty());
    ok(&t);
}

#[test]
fn a_late_sweep_handles_everything_due_in_deadline_order() {
    let mut t = table();
    for (i, user) in ["u0", "u1", "u2", "u3"].iter().enumerate() {
        let now = T0 + u32::try_from(i).unwrap() * MINUTE;
        let id = format!("s{i}");
        create(&mut t, user, &id, now);
        if i % 2 == 0 {
            let _ = t.end(&id, now, wall(now)).unwrap();
        }
    }
    // A clock jump of a day: the ended ones are dropped, the idle ones ended (and kept).
    let report = t.sweep(T0 + 24 * HOUR, wall(T0));
    assert_eq!(report.dropped, vec![sid("s0"), sid("s2")]);
    let ended: Vec<_> = report.idle_ended.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ended, vec![sid("s1"), sid("s3")]);
    assert_eq!(t.memory_stats(), MemoryStats { active: 0, inactive: 2, total: 2 });
    assert_eq!(t.next_deadline(), Some(T0 + 24 * HOUR + 15 * MINUTE));
    ok(&t);
}

#[test]
fn zero_ttl_drops_idle_ended_sessions_in_the_same_sweep() {
    let limits = SessionLimits { ended_ttl: Duration::ZERO, ..SessionLimits::default() };
    let mut t = SessionTable::new(limits);
    create(&mut t, "alice", "s1", T0);
    let report = t.sweep(T0 + HOUR, wall(T0));
    assert_eq!(report.idle_ended.len(), 1);
    assert_eq!(report.dropped, vec![sid("s1")]);
    assert!(t.is_empty());
    ok(&t);
}

#[test]
fn sweeping_twice_at_the_same_time_does_nothing_more() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let _ = t.end("s1", T0, wall(T0)).unwrap();
    assert_eq!(t.sweep(T0 + HOUR, wall(T0)).dropped.len(), 1);
    assert!(t.sweep(T0 + HOUR, wall(T0)).is_empty());
}

#[test]
fn a_large_sweep_goes_in_batches_of_sweep_batch() {
    let mut t = table();
    let n = 2 * SWEEP_BATCH + 3;
    for i in 0..n {
        create(&mut t, &format!("u{i}"), &format!("s{i:05}"), T0);
    }
    let at = T0 + HOUR;
    let sizes: Vec<(usize, bool)> = (0..4)
        .map(|_| {
            let batch = t.sweep_batch(at, wall(at));
            ok(&t);
            (batch.idle_ended.len(), batch.pending)
        })
        .collect();
    assert_eq!(sizes, vec![(SWEEP_BATCH, true), (SWEEP_BATCH, true), (3, false), (0, false)]);
    assert_eq!(t.memory_stats(), MemoryStats { active: 0, inactive: n, total: n });
    // `max` 0 still makes progress (one step).
    let later = at + 15 * MINUTE;
    let batch = t.sweep_at_most(later, wall(later), 0);
    assert_eq!((batch.dropped.len(), batch.pending), (1, true));
    assert_eq!(t.sweep(later, wall(later)).dropped.len(), n - 1);
    assert!(t.is_empty());
}

// ----- remove / stats / invariants --------------------------------------------------------

#[test]
fn remove_rolls_back_a_creation_whose_insert_failed() {
    let mut t = table();
    let r = t.resolve("alice", None, sid("s1"), T0, wall(T0)).unwrap();
    assert_eq!(r.kind, ResolutionKind::Created);
    assert_eq!(t.remove("s1").map(|s| s.id().clone()), Some(sid("s1")));
    assert!(t.remove("s1").is_none());
    assert!(t.active_of("alice").is_none());
    assert_eq!(t.next_deadline(), None);
    // The client retries with the id it was given: unknown now, so a new session is created.
    let r = t.resolve("alice", Some("s1"), sid("s2"), T0, wall(T0)).unwrap();
    assert_eq!((r.id, r.kind), (sid("s2"), ResolutionKind::Created));
    ok(&t);
}

#[test]
fn memory_stats_count_active_and_ended_sessions() {
    let mut t = table();
    assert_eq!(t.memory_stats(), MemoryStats::default());
    create(&mut t, "a", "s1", T0);
    create(&mut t, "b", "s2", T0);
    create(&mut t, "c", "s3", T0);
    let _ = t.end("s2", T0, wall(T0)).unwrap();
    assert_eq!(t.memory_stats(), MemoryStats { active: 2, inactive: 1, total: 3 });
    assert_eq!(t.iter().count(), 3);
    ok(&t);
}

#[test]
fn check_invariants_reports_a_corrupted_index_by_name() {
    let mut t = table();
    create(&mut t, "alice", "s1", T0);
    let mut broken = t.clone();
    broken.active_by_user.clear();
    assert_eq!(broken.check_invariants().unwrap_err().rule, "user_index_exact");
    let mut broken = t.clone();
    if let Some(s) = broken.sessions.get_mut("s1") {
        s.deadline = Some(T0);
    }
    assert_eq!(broken.check_invariants().unwrap_err().rule, "deadline_index_exact");
    let mut broken = t.clone();
    broken.swept_through = Some(T0 + 2 * HOUR);
    broken.clock = T0 + 2 * HOUR;
    assert_eq!(broken.check_invariants().unwrap_err().rule, "expired_swept");
    let mut broken = t;
    let second = broken.sessions.get("s1").unwrap().clone();
    let mut second = second;
    second.id = sid("s2");
    second.deadline = None;
    broken.sessions.insert(sid("s2"), second);
    assert_eq!(broken.check_invariants().unwrap_err().rule, "one_active_per_user");
}
