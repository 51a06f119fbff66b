//! Session operations behind the HTTP routes (PROTOCOL.md §4, §6.6, §6.8 with §10 items 3, 5, 6,
//! 9, and issue 15): reading a user's sessions, ending and sharing them (and revoking a share),
//! the public shared view, reading any session for the admin console, the admin search and
//! metrics, and admin takeover / leave. No HTTP here: each operation returns a domain
//! result ([`SessionOpError`] on refusal) and `http::rest` / `http::admin` map it to bodies.
//!
//! Every store call goes through the persistence service: calls by id are retried with the
//! engine's schedule (§8.5); listings, the search and the metrics aggregation are not retried,
//! and they are bounded by its `LIST_DEADLINE` (30 s).

use chatbox_core::protocol::http::{MetricsResponse, MetricsTotals, ModelTokens};
use chatbox_core::protocol::query::{AdminSessionQuery, MetricsQuery};
use chatbox_core::protocol::Frame;
use chatbox_core::session::{AdminRef, SessionError, TakeoverOutcome};
use chatbox_core::UnixMillis;
use chrono::{DateTime, Utc};

use super::caller::Caller;
use super::delivery::AdminEvent;
use super::frames::end_assistance;
use super::hub::Engine;
use super::store::{SessionDoc, SessionPatch, StoreError};

/// Sessions `GET {P}/sessions` returns at most (§4.1).
pub use chatbox_core::budgets::USER_SESSIONS_LIMIT;

/// Why a session operation was refused: the session rule core gave (for example
/// [`SessionError::NotFound`] — also for another user's session, never revealed, §4.2 — or
/// [`SessionError::AlreadyAssisted`], §4.8), or the store's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionOpError {
    /// Refused by a session rule.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The store failed (after retries where they apply).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A fresh share token: 32 random hex characters (§4.4).
pub fn new_share_token() -> String {
    super::ids::hex32()
}

/// Session `id` from the store if `user_id` owns it; another user's session is
/// [`SessionError::NotFound`].
pub async fn owned_session(
    engine: &Engine,
    user_id: &str,
    id: &str,
) -> Result<SessionDoc, SessionOpError> {
    match engine.persistence.load(id).await? {
        Some(doc) if doc.user_id == user_id => Ok(doc),
        _ => Err(SessionError::NotFound.into()),
    }
}

/// Up to [`USER_SESSIONS_LIMIT`] of the user's sessions, newest start first (§4.1).
pub async fn user_sessions(engine: &Engine, user_id: &str) -> Result<Vec<SessionDoc>, StoreError> {
    engine.persistence.list_by_user(user_id, USER_SESSIONS_LIMIT).await
}

/// Ends the caller's session (§4.3, §6.6): the in-memory copy on this process first (freeing
/// the user's active slot), then the store (`endTs`, `dur`), then the other instances' copies
/// (issue 16: a [`Signal::SessionEnded`](super::delivery::Signal) over the bus, so an instance
/// where the user is still connected does not revive it). Ending again succeeds and overwrites
/// the end time. Connections bound to the session stay open.
pub async fn end_session(
    engine: &Engine,
    user_id: &str,
    id: &str,
) -> Result<SessionDoc, SessionOpError> {
    owned_session(engine, user_id, id).await?;
    let (now, wall) = (engine.clock.now(), engine.clock.wall());
    let in_memory = engine.sessions.with(|t| t.end(id, now, wall)).is_ok();
    let ended = engine.persistence.end(id, wall).await?;
    let doc = ended.ok_or(SessionError::NotFound)?;
    engine.delivery.session_ended(id);
    engine.forget_session_caches(std::iter::once(id));
    engine.metrics.sessions_ended.inc();
    let owner = engine.sessions.owner_of(id).unwrap_or_default();
    engine.delivery.admin_event(AdminEvent::SessionEnded, id, &owner);
    tracing::info!(session_id = id, user_id, in_memory, "session ended by its owner");
    Ok(doc)
}

/// The caller's session's share token: the existing one, or a new random one stored now
/// (§4.4). Stable: every later call returns the same token.
pub async fn share_session(
    engine: &Engine,
    user_id: &str,
    id: &str,
) -> Result<String, SessionOpError> {
    let doc = owned_session(engine, user_id, id).await?;
    if let Some(token) = doc.share_token {
        return Ok(token);
    }
    let stored = engine.persistence.set_share_token(id, &new_share_token()).await?;
    Ok(stored.ok_or(SessionError::NotFound)?)
}

/// Revokes the caller's session's share token (issue 15): the old link stops resolving and a
/// later share mints a new token. Revoking an unshared session succeeds.
pub async fn revoke_share(engine: &Engine, user_id: &str, id: &str) -> Result<(), SessionOpError> {
    owned_session(engine, user_id, id).await?;
    let cleared = engine.persistence.clear_share_token(id).await?;
    tracing::info!(session_id = id, user_id, "share link revoked");
    Ok(cleared.ok_or(SessionError::NotFound)?)
}

/// Any user's session `id` from the store, for the admin console (issue 15).
pub async fn admin_session(engine: &Engine, id: &str) -> Result<SessionDoc, SessionOpError> {
    Ok(engine.persistence.load(id).await?.ok_or(SessionError::NotFound)?)
}

/// The session shared under `token` (§4.5), `None` when unknown.
pub async fn shared_session(
    engine: &Engine,
    token: &str,
) -> Result<Option<SessionDoc>, StoreError> {
    engine.persistence.find_by_share_token(token).await
}

/// The admin search (§4.6).
pub async fn search_sessions(
    engine: &Engine,
    query: &AdminSessionQuery,
) -> Result<Vec<SessionDoc>, StoreError> {
    engine.persistence.search(query).await
}

/// The admin metrics of the window (§4.7 with §10 item 6); see [`aggregate`] for the
/// definitions.
pub async fn session_metrics(
    engine: &Engine,
    query: &MetricsQuery,
) -> Result<MetricsResponse, StoreError> {
    let (from, to) = (ceil_millis(query.start_utc()), floor_millis(query.end_utc()));
    let now = engine.clock.wall();
    let stats = if from <= to {
        engine.persistence.window_stats(from, to, now).await?
    } else {
        aggregate(&[], from, to, now)
    };
    let mut response = MetricsResponse::new(
        stats.totals,
        query.time_range(),
        stats.avg_concurrent,
        stats.max_concurrent,
    );
    response.tokens_by_model = engine
        .replies
        .tokens_by_model()
        .into_iter()
        .map(|(model, usage)| {
            let tokens = ModelTokens {
                prompt_tokens: usage.prompt,
                completion_tokens: usage.completion,
                total_tokens: usage.total(),
            };
            (model, tokens)
        })
        .collect();
    Ok(response)
}

/// Admin `admin` takes session `id` over (§4.8, §6.8 with §10 item 9). The session must be
/// in this process's memory; it is loaded from the store first if it is not. The store decides
/// who assists, atomically (issue 14: one assisting admin at a time across the fleet,
/// [`SessionStore::claim_assistance`](super::store::SessionStore::claim_assistance)): the
/// loser gets [`SessionError::AlreadyAssisted`] naming the winner, and this instance's copy
/// follows the store either way. When the store cannot decide (unavailable, or the session not
/// stored yet) this instance's copy decides, as on a single instance, and the takeover is
/// persisted best-effort. Marks the session assisted (`adminAssisted` then stays true after the
/// leave, issue 15) and sends `admin_join` to the session's connections on every instance. The
/// same admin again succeeds again (and announces again).
pub async fn takeover(
    engine: &Engine,
    admin: &Caller,
    id: &str,
) -> Result<TakeoverOutcome, SessionOpError> {
    engine.sessions.load_on_demand(&engine.persistence, id).await;
    let me = AdminRef { id: admin.user_id.clone(), name: admin.name.clone() };
    let Some(before) = engine.sessions.with(|t| t.get(id).map(|s| s.assisting_admin().cloned()))
    else {
        return Err(SessionError::NotFound.into());
    };
    let outcome = match engine.persistence.claim_assistance(id, &me).await {
        Ok(Some(holder)) if holder.id != me.id => {
            engine.sessions.adopt_assistance(id, Some(&holder));
            tracing::info!(session_id = id, admin_id = %me.id, assisting_admin = %holder.id, "takeover refused: already assisted");
            return Err(SessionError::AlreadyAssisted {
                admin_id: holder.id,
                admin_name: holder.name,
            }
            .into());
        }
        Ok(Some(_)) => {
            engine.sessions.adopt_assistance(id, Some(&me));
            if before.is_some_and(|b| b.id == me.id) {
                TakeoverOutcome::Repeated
            } else {
                TakeoverOutcome::Started
            }
        }
        stored => {
            if let Err(error) = &stored {
                tracing::warn!(session_id = id, %error, "the store could not decide the takeover; deciding on this instance");
            }
            let now = engine.clock.now();
            let outcome = engine.sessions.with(|t| t.takeover(id, &me.id, &me.name, now)).map_err(
                |error| match error {
                    SessionError::AlreadyAssisted { .. } => error,
                    _ => SessionError::NotFound,
                },
            )?;
            let patch = SessionPatch {
                assistance: Some((true, me.id.clone(), me.name.clone())),
                ..Default::default()
            };
            if let Err(error) = engine.persistence.patch(id, patch).await {
                tracing::warn!(session_id = id, %error, "persisting the takeover failed");
            }
            outcome
        }
    };
    let frame = Frame::admin_join(id, &admin.user_id, &admin.name, engine.frame_now());
    engine.delivery.send_session(id, &frame, None);
    engine.metrics.admin_takeovers.inc();
    let owner = engine.sessions.owner_of(id).unwrap_or_default();
    let event = AdminEvent::AdminJoined { admin: (&admin.user_id, &admin.name) };
    engine.delivery.admin_event(event, id, &owner);
    tracing::info!(session_id = id, admin_id = %admin.user_id, ?outcome, "admin takeover");
    Ok(outcome)
}

/// Admin `admin` ends the assistance of session `id` (§10 item 3) through
/// [`end_assistance`]: cleared in memory, persisted, `admin_leave` sent. Any admin may clear
/// it (so a departed admin cannot lock a session); the returned admin is the one who was
/// assisting. The session is loaded on demand like for a takeover.
pub async fn admin_leave(
    engine: &Engine,
    admin: &Caller,
    id: &str,
) -> Result<AdminRef, SessionOpError> {
    engine.sessions.load_on_demand(&engine.persistence, id).await;
    if engine.config.storage.has_redis() {
        // The takeover may have happened on another instance of the fleet (issue 14).
        engine.sessions.refresh_assistance(&engine.persistence, id).await;
    }
    let assisted = engine.sessions.with(|t| t.get(id).map(|s| s.assisting_admin().is_some()));
    match assisted {
        None => return Err(SessionError::NotFound.into()),
        Some(false) => return Err(SessionError::NotAssisted.into()),
        Some(true) => {}
    }
    // Cleared by someone else between the check and now: report it as not assisted.
    let left = end_assistance(engine, id, &admin.user_id).await.ok_or(SessionError::NotAssisted)?;
    tracing::info!(session_id = id, admin_id = %admin.user_id, assisting_admin = %left.id, "admin left");
    Ok(left)
}

/// The first whole millisecond at or after `t` (inclusive lower bound at stored precision).
fn ceil_millis(t: DateTime<Utc>) -> UnixMillis {
    let floor = t.timestamp_millis();
    let exact = t.timestamp_subsec_nanos().is_multiple_of(1_000_000);
    UnixMillis(if exact { floor } else { floor.saturating_add(1) })
}

/// The last whole millisecond at or before `t` (inclusive upper bound at stored precision).
fn floor_millis(t: DateTime<Utc>) -> UnixMillis {
    UnixMillis(t.timestamp_millis())
}

/// The admin metrics of one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    /// The original's capitalised totals.
    pub totals: MetricsTotals,
    /// Time-weighted average number of sessions open during the window.
    pub avg_concurrent: f64,
    /// Peak number of sessions open at once during the window.
    pub max_concurrent: i64,
}

/// Aggregates the sessions that started in the window `from..=to` (§4.7, §10 item 6).
///
/// Totals, as the original's aggregation: `TotalSessions` = count, `ActiveSessions` = those
/// without an end time, `TotalTokens` = sum, `AvgResponseTime` = mean of the per-session averages
/// (ms, truncated; 0 when none), `MaxResponseTime` = max of the per-session maxima,
/// `AdminAssistedCount` = those with `adminAssisted`.
///
/// Concurrency, over the **same sessions** (those started in the window — sessions that started
/// earlier and were still open are not counted, so the figures describe the window's own
/// traffic): each session is open on the half-open interval `[start, end)`, where `end` is its
/// end time, or `now` while it is active, clipped to the window. `avg_concurrent` is the
/// time-weighted average number of open sessions, Σ open time ÷ window length (0 for an empty
/// window); `max_concurrent` is the peak number open at one instant (a session ending at the
/// very millisecond another starts does not overlap it).
pub fn aggregate(
    docs: &[SessionDoc],
    from: UnixMillis,
    to: UnixMillis,
    now: UnixMillis,
) -> WindowStats {
    let count = i64::try_from(docs.len()).unwrap_or(i64::MAX);
    let sum_avg: u128 = docs.iter().map(|d| u128::from(d.avg_response_ms)).sum();
    let avg_response_time = if docs.is_empty() {
        0
    } else {
        i64::try_from(sum_avg / docs.len() as u128).unwrap_or(i64::MAX)
    };
    let saturate = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let totals = MetricsTotals {
        total_sessions: count,
        active_sessions: docs.iter().filter(|d| d.ended.is_none()).count() as i64,
        total_tokens: docs
            .iter()
            .fold(0_i64, |sum, d| sum.saturating_add(saturate(d.total_tokens))),
        avg_response_time,
        max_response_time: docs.iter().map(|d| saturate(d.max_response_ms)).max().unwrap_or(0),
        admin_assisted_count: docs.iter().filter(|d| d.admin_assisted).count() as i64,
    };

    let mut events: Vec<(i64, i64)> = Vec::with_capacity(docs.len() * 2);
    let mut open_ms: i128 = 0;
    for doc in docs {
        let start = doc.started.0.max(from.0);
        let end = doc.ended.unwrap_or(now).0.min(to.0);
        if end > start {
            events.push((start, 1));
            events.push((end, -1));
            open_ms += i128::from(end) - i128::from(start);
        }
    }
    // Ends sort before starts at the same instant: intervals are half-open.
    events.sort_unstable();
    let (mut open, mut peak) = (0_i64, 0_i64);
    for (_, delta) in events {
        open += delta;
        peak = peak.max(open);
    }
    let window_ms = i128::from(to.0) - i128::from(from.0);
    let avg_concurrent = if window_ms > 0 { open_ms as f64 / window_ms as f64 } else { 0.0 };
    WindowStats { totals, avg_concurrent, max_concurrent: peak }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::frames::testing::Harness;
    use chrono::TimeZone;

    #[tokio::test]
    async fn a_session_ended_on_request_drops_its_cached_messages_at_once() {
        let (h, _client, session) = Harness::with_session().await;
        assert_eq!(h.engine.persistence.cached_sessions(), 1, "its messages are cached");
        let owner = h.engine.sessions.owner_of(&session).expect("owned");
        end_session(&h.engine, &owner, &session).await.expect("ended");
        assert_eq!(h.engine.persistence.cached_sessions(), 0, "final: nothing kept for a resume");
        let held = h.engine.sessions.with(|t| t.memory_stats().inactive);
        assert_eq!(held, 1, "the session itself is still held until SESSION_TTL");
    }

    fn doc(id: &str, started: i64, ended: Option<i64>) -> SessionDoc {
        let mut d = SessionDoc::new(id.into(), "u".into(), UnixMillis(started));
        d.ended = ended.map(UnixMillis);
        d
    }

    #[test]
    fn totals_follow_the_original_aggregation() {
        let mut a = doc("a", 0, Some(10));
        a.total_tokens = 7;
        a.avg_response_ms = 100;
        a.max_response_ms = 300;
        a.admin_assisted = true;
        let mut b = doc("b", 5, None);
        b.total_tokens = 5;
        b.avg_response_ms = 51;
        b.max_response_ms = 90;
        let stats = aggregate(&[a, b], UnixMillis(0), UnixMillis(100), UnixMillis(100));
        assert_eq!(
            stats.totals,
            MetricsTotals {
                total_sessions: 2,
                active_sessions: 1,
                total_tokens: 12,
                avg_response_time: 75,
                max_response_time: 300,
                admin_assisted_count: 1,
            }
        );
        let empty = aggregate(&[], UnixMillis(0), UnixMillis(100), UnixMillis(100));
        assert_eq!(empty.totals, MetricsTotals::default());
        assert_eq!((empty.avg_concurrent, empty.max_concurrent), (0.0, 0));
    }

    #[test]
    fn concurrency_is_time_weighted_and_peaks_on_overlap() {
        // Window 0..100. a: 0..50, b: 25..75, c: 75..(active, now = 90), d: 50..50 (empty).
        let docs = [
            doc("a", 0, Some(50)),
            doc("b", 25, Some(75)),
            doc("c", 75, None),
            doc("d", 50, Some(50)),
        ];
        let stats = aggregate(&docs, UnixMillis(0), UnixMillis(100), UnixMillis(90));
        assert_eq!(stats.max_concurrent, 2);
        assert!((stats.avg_concurrent - (50.0 + 50.0 + 15.0) / 100.0).abs() < 1e-9, "{stats:?}");
        // Touching intervals do not overlap.
        let chain = [doc("a", 0, Some(10)), doc("b", 10, Some(20))];
        assert_eq!(
            aggregate(&chain, UnixMillis(0), UnixMillis(20), UnixMillis(20)).max_concurrent,
            1
        );
        // An active session is clipped to the window end.
        let long = [doc("a", 0, None)];
        let stats = aggregate(&long, UnixMillis(0), UnixMillis(10), UnixMillis(1_000));
        assert_eq!((stats.avg_concurrent, stats.max_concurrent), (1.0, 1));
    }

    #[test]
    fn millisecond_bounds_are_inclusive() {
        let t = Utc.timestamp_millis_opt(1_500).single().unwrap_or_default();
        assert_eq!((ceil_millis(t), floor_millis(t)), (UnixMillis(1_500), UnixMillis(1_500)));
        let t = t + chrono::Duration::microseconds(1);
        assert_eq!((ceil_millis(t), floor_millis(t)), (UnixMillis(1_501), UnixMillis(1_500)));
    }

    #[test]
    fn share_tokens_are_32_hex_characters() {
        let token = new_share_token();
        assert_eq!(token.len(), 32);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(token, new_share_token());
    }
}
