//! `core_ops`: random operation sequences against `chatbox_core::session::SessionTable` and
//! `chatbox_core::rate::RateLimiter`, each checked against a reference model written here.
//!
//! Input ([`Setup`] then [`Op`]s until the data ends, decoded with `arbitrary`): the table's
//! limits and the limiter's limit, window, key capacity and bucket count are picked from presets
//! that include zero and extreme values; ops use 8 session ids, 6 principals (users `p0`–`p3`,
//! admins `p2`–`p5`, so some users are admins too), 6 limiter keys, and time steps from
//! nanoseconds to hours, with occasional backwards clock readings.
//!
//! Session table — after every op:
//! * `check_invariants()` is `Ok` (one active session per user, exact indexes, `stats_sum`,
//!   bounded windows, `expired_swept`, monotonic clock);
//! * every decision (`Resolution` kind, id and rebind flag, `LoadOutcome`, errors, `EndedSession`
//!   values, `TakeoverOutcome`, `Left`, help flag changes, `check_access`, sweep reports) equals
//!   the model's, which implements the rules of the `SessionTable` docs and PROTOCOL.md §6;
//! * every session's owner, state, end time, attachments, idle clock, assisting admin, help
//!   flag, counters, model and name equal the model's; `active_of` is the model's active session
//!   of each user; `memory_stats` sums match; `next_deadline` is the model's earliest deadline.
//!
//! Rate limiter — per key the model keeps the log of allowed instants (on the limiter's clock;
//! a key's log is dropped when the limiter stops tracking it):
//! * no key ever has more than `limit` allowed events in any closed window of `window`;
//! * a new key is always allowed (when `limit > 0`); `limit == 0` denies with `max(window, 1 ns)`;
//! * a denial's `retry_after` lies between the exact sliding-log wait and that plus one bucket
//!   width, and is honest: a retry 1 ns earlier is denied, a retry at it is allowed;
//! * `cleanup` keeps every key with an event inside the window and drops every key whose last
//!   event is a bucket width past it; `len() <= max_keys`; the stats match the model's counts.

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use chatbox_core::rate::{Decision, RateLimit, RateLimiter};
use chatbox_core::session::{
    session_name, Access, AdminRef, LoadOutcome, ResolutionKind, SessionError, SessionId,
    SessionLimits, SessionSnapshot, SessionTable, TakeoverOutcome,
};
use chatbox_core::time::duration_nanos;
use chatbox_core::{Instant, UnixMillis};

use crate::input::{tag, Encode, Text};

/// Most ops run per input (keeps each run short).
pub const MAX_OPS: usize = 400;

const SIDS: [&str; 8] = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"];
const PRINCIPALS: [&str; 6] = ["p0", "p1", "p2", "p3", "p4", "p5"];
const MODELS: [&str; 3] = ["", "gpt-4o", "echo"];
const DURATIONS: [Duration; 10] = [
    Duration::ZERO,
    Duration::from_nanos(1),
    Duration::from_nanos(7),
    Duration::from_millis(1),
    Duration::from_secs(1),
    Duration::from_secs(60),
    Duration::new(61, 1),
    Duration::from_secs(15 * 60),
    Duration::from_secs(3600),
    Duration::MAX,
];
const CAPACITIES: [usize; 5] = [0, 1, 2, 3, 100];
const LIMITS: [u32; 6] = [0, 1, 2, 3, 5, 100];
/// The driver's clock starts here, so "ago" arithmetic has room.
const START: Instant = Instant::from_secs(100_000);
const WALL_BASE: i64 = 1_700_000_000_000;

/// Limits of the table and the limiter, as preset indexes.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Setup {
    /// `reconnect_window` (index into the duration presets).
    pub reconnect: u8,
    /// `ended_ttl`.
    pub ended_ttl: u8,
    /// `idle_timeout`.
    pub idle: u8,
    /// `response_time_capacity`.
    pub capacity: u8,
    /// Limiter `limit`.
    pub limit: u8,
    /// Limiter `window`.
    pub window: u8,
    /// Limiter `max_keys` (1 + n % 8).
    pub max_keys: u8,
    /// Limiter sub-buckets (clamped by the limiter).
    pub buckets: u16,
}

/// A time step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Step {
    /// Nanoseconds.
    Nanos(u16),
    /// Milliseconds.
    Millis(u16),
    /// Seconds.
    Secs(u16),
    /// Minutes.
    Minutes(u8),
    /// Hours.
    Hours(u8),
}

impl Step {
    fn duration(self) -> Duration {
        match self {
            Step::Nanos(n) => Duration::from_nanos(u64::from(n)),
            Step::Millis(n) => Duration::from_millis(u64::from(n)),
            Step::Secs(n) => Duration::from_secs(u64::from(n)),
            Step::Minutes(n) => Duration::from_secs(60 * u64::from(n)),
            Step::Hours(n) => Duration::from_secs(3600 * u64::from(n)),
        }
    }
}

/// One operation. Ids are indexes (taken modulo the id tables).
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum Op {
    /// Move the clock forward.
    Advance(Step),
    /// The next op reads the clock this many milliseconds early (a stale reading).
    Stale(u16),
    /// `resolve(user, requested, fresh)`.
    Resolve {
        /// User index.
        user: u8,
        /// Requested session index.
        requested: Option<u8>,
        /// Fresh id index.
        fresh: u8,
    },
    /// `insert_loaded` of a stored session.
    Load {
        /// Session index.
        sid: u8,
        /// User index.
        user: u8,
        /// Ended this many ms before now (`None`: active).
        ended_ago_ms: Option<u32>,
        /// Started this many ms before now.
        started_ago_ms: u32,
        /// Assisting admin index.
        admin: Option<u8>,
        /// `helpRequested`.
        help: bool,
        /// `avgRespTime` in ms.
        avg_ms: u16,
    },
    /// `attach`.
    Attach(u8),
    /// `detach`.
    Detach(u8),
    /// `touch`.
    Touch(u8),
    /// `record_message`.
    RecordMessage(u8),
    /// `record_reply`.
    RecordReply {
        /// Session index.
        sid: u8,
        /// Response time, ms.
        ms: u16,
        /// Tokens.
        tokens: u16,
    },
    /// `set_model`.
    SetModel {
        /// Session index.
        sid: u8,
        /// Model index.
        model: u8,
    },
    /// `name_if_empty`.
    Name {
        /// Session index.
        sid: u8,
        /// The first message.
        content: Text,
    },
    /// `end`.
    End(u8),
    /// `takeover`.
    Takeover {
        /// Session index.
        sid: u8,
        /// Admin index.
        admin: u8,
        /// Display name variant.
        name: u8,
    },
    /// `leave`.
    Leave {
        /// Session index.
        sid: u8,
        /// Admin index.
        admin: u8,
    },
    /// `request_help`.
    Help {
        /// Session index.
        sid: u8,
        /// Principal index.
        user: u8,
    },
    /// `remove`.
    Remove(u8),
    /// `sweep` now.
    Sweep,
    /// Move the clock to `next_deadline()` (if later and finite), then `sweep`.
    SweepAtDeadline,
    /// `check_access`.
    Access {
        /// Principal index.
        user: u8,
        /// Whether the caller holds an admin role.
        admin: bool,
        /// Session index.
        sid: u8,
    },
    /// Limiter `check(key)`.
    Check(u8),
    /// `1 + n % 8` limiter checks of `key` at the same instant.
    Burst {
        /// Key.
        key: u8,
        /// Count.
        n: u8,
    },
    /// Limiter `cleanup`.
    Cleanup,
}

fn sid(i: u8) -> &'static str {
    SIDS[usize::from(i) % SIDS.len()]
}
fn user(i: u8) -> &'static str {
    PRINCIPALS[usize::from(i) % 4]
}
fn admin(i: u8) -> &'static str {
    PRINCIPALS[2 + usize::from(i) % 4]
}
fn principal(i: u8) -> &'static str {
    PRINCIPALS[usize::from(i) % PRINCIPALS.len()]
}
fn wall_of(t: Instant) -> UnixMillis {
    UnixMillis(WALL_BASE + (t.as_nanos() / 1_000_000) as i64)
}

// ----- the session model ---------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct MSession {
    user: String,
    ended_at: Option<Instant>,
    /// Ended through `end` (asked for): final, never resumed (issue 16).
    end_requested: bool,
    started_wall: UnixMillis,
    last_activity: Instant,
    attached: u32,
    admin: Option<(String, String)>,
    help: bool,
    messages: u64,
    tokens: u64,
    model: Option<String>,
    name: String,
    samples: usize,
}

impl MSession {
    fn active(&self) -> bool {
        self.ended_at.is_none()
    }
}

struct SessionModel {
    limits: SessionLimits,
    sessions: BTreeMap<String, MSession>,
    clock: Instant,
}

impl SessionModel {
    fn observe(&mut self, now: Instant) -> Instant {
        self.clock = self.clock.max(now);
        self.clock
    }

    fn active_of(&self, user: &str) -> Option<&str> {
        let mut found = self.sessions.iter().filter(|(_, s)| s.active() && s.user == user);
        let first = found.next().map(|(id, _)| id.as_str());
        assert!(found.next().is_none(), "model bug: two active sessions for {user}");
        first
    }

    fn deadline(&self, s: &MSession) -> Option<Instant> {
        match s.ended_at {
            None if s.attached > 0 => None,
            None => Some(s.last_activity + self.limits.idle_timeout),
            Some(at) => Some(at + self.limits.ended_ttl),
        }
    }

    fn activity(&mut self, id: &str, t: Instant) {
        if let Some(s) = self.sessions.get_mut(id) {
            s.last_activity = t;
        }
    }

    fn capacity(&self) -> usize {
        self.limits.response_time_capacity.max(1)
    }
}

/// Both machines, their models, and the driver's clock.
struct World {
    table: SessionTable,
    model: SessionModel,
    limiter: RateLimiter<u8>,
    rate: RateModel,
    now: Instant,
    stale: Option<Duration>,
}

impl World {
    fn new(setup: &Setup) -> Self {
        let pick = |i: u8| DURATIONS[usize::from(i) % DURATIONS.len()];
        let limits = SessionLimits {
            reconnect_window: pick(setup.reconnect),
            ended_ttl: pick(setup.ended_ttl),
            idle_timeout: pick(setup.idle),
            response_time_capacity: CAPACITIES[usize::from(setup.capacity) % CAPACITIES.len()],
        };
        let limit =
            RateLimit::new(LIMITS[usize::from(setup.limit) % LIMITS.len()], pick(setup.window));
        let max_keys = 1 + usize::from(setup.max_keys % 8);
        let limiter = RateLimiter::with_buckets(limit, max_keys, u32::from(setup.buckets));
        World {
            table: SessionTable::new(limits),
            model: SessionModel { limits, sessions: BTreeMap::new(), clock: Instant::ZERO },
            rate: RateModel::new(&limiter),
            limiter,
            now: START,
            stale: None,
        }
    }

    /// The clock reading for the next op (stale when asked).
    fn reading(&mut self) -> Instant {
        match self.stale.take() {
            Some(d) => self.now - d,
            None => self.now,
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Advance(step) => self.now += step.duration(),
            Op::Stale(ms) => self.stale = Some(Duration::from_millis(u64::from(*ms))),
            Op::Check(key) => {
                let now = self.reading();
                self.rate.check(&mut self.limiter, key % 6, now);
            }
            Op::Burst { key, n } => {
                let now = self.reading();
                for _ in 0..=(n % 8) {
                    self.rate.check(&mut self.limiter, key % 6, now);
                }
            }
            Op::Cleanup => {
                let now = self.reading();
                self.rate.cleanup(&mut self.limiter, now);
            }
            _ => self.apply_session(op),
        }
        self.rate.compare(&self.limiter);
        self.compare_sessions(op);
    }

    fn apply_session(&mut self, op: &Op) {
        let now = self.reading();
        let wall = wall_of(now);
        let table = &mut self.table;
        let model = &mut self.model;
        match op {
            Op::Resolve { user: u, requested, fresh } => {
                let u = user(*u);
                let requested = requested.map(sid);
                let fresh = sid(*fresh);
                let got = table.resolve(u, requested, SessionId::from(fresh), now, wall);
                let want = model_resolve(model, u, requested, fresh, now, wall);
                match (&got, &want) {
                    (Ok(r), Ok((id, kind, rebind))) => {
                        assert_eq!(
                            (r.id.as_str(), r.kind, r.rebind),
                            (id.as_str(), *kind, *rebind),
                            "{op:?}"
                        );
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w, "{op:?}"),
                    _ => panic!("{op:?}: table {got:?}, model {want:?}"),
                }
            }
            Op::Load { sid: s, user: u, ended_ago_ms, started_ago_ms, admin: a, help, avg_ms } => {
                let id = sid(*s);
                let snapshot = SessionSnapshot {
                    id: SessionId::from(id),
                    user_id: user(*u).to_string(),
                    name: String::new(),
                    model_id: None,
                    started_wall: UnixMillis(wall.0 - i64::from(*started_ago_ms)),
                    ended_wall: ended_ago_ms.map(|ago| UnixMillis(wall.0 - i64::from(ago))),
                    ended_on_request: false,
                    assisting_admin: a
                        .map(|a| AdminRef { id: admin(a).into(), name: format!("Admin {a}") }),
                    help_requested: *help,
                    total_tokens: 0,
                    message_count: 0,
                    avg_response_time: Duration::from_millis(u64::from(*avg_ms)),
                };
                let got = table.insert_loaded(snapshot.clone(), now, wall);
                let want = model_load(model, &snapshot, now, wall);
                assert_eq!(got, want, "{op:?}");
            }
            Op::Attach(s) => {
                let t = model.observe(now);
                let want = match model.sessions.get_mut(sid(*s)) {
                    None => Err(SessionError::NotFound),
                    Some(m) => {
                        m.attached = m.attached.saturating_add(1);
                        m.last_activity = t;
                        Ok(())
                    }
                };
                assert_eq!(table.attach(sid(*s), now), want, "{op:?}");
            }
            Op::Detach(s) => {
                let t = model.observe(now);
                let want = match model.sessions.get_mut(sid(*s)) {
                    None => Err(SessionError::NotFound),
                    Some(m) if m.attached == 0 => Err(SessionError::NotAttached),
                    Some(m) => {
                        m.attached -= 1;
                        m.last_activity = t;
                        Ok(())
                    }
                };
                assert_eq!(table.detach(sid(*s), now), want, "{op:?}");
            }
            Op::Touch(s) | Op::RecordMessage(s) => {
                let t = model.observe(now);
                let count = matches!(op, Op::RecordMessage(_));
                let want = match model.sessions.get_mut(sid(*s)) {
                    None => Err(SessionError::NotFound),
                    Some(m) => {
                        m.last_activity = t;
                        m.messages += u64::from(count);
                        Ok(())
                    }
                };
                let got = if count {
                    table.record_message(sid(*s), now)
                } else {
                    table.touch(sid(*s), now)
                };
                assert_eq!(got, want, "{op:?}");
            }
            Op::RecordReply { sid: s, ms, tokens } => {
                let cap = model.capacity();
                let want = match model.sessions.get_mut(sid(*s)) {
                    None => Err(SessionError::NotFound),
                    Some(m) => {
                        m.tokens += u64::from(*tokens);
                        m.samples = (m.samples + 1).min(cap);
                        Ok(())
                    }
                };
                let got = table.record_reply(
                    sid(*s),
                    Duration::from_millis(u64::from(*ms)),
                    u64::from(*tokens),
                );
                assert_eq!(got, want, "{op:?}");
            }
            Op::SetModel { sid: s, model: m } => {
                let name = MODELS[usize::from(*m) % MODELS.len()];
                let want = match model.sessions.get_mut(sid(*s)) {
                    None => Err(SessionError::NotFound),
                    Some(ms) => {
                        ms.model = Some(name.to_string()).filter(|n| !n.is_empty());
                        Ok(())
                    }
                };
                assert_eq!(table.set_model(sid(*s), name), want, "{op:?}");
            }
            Op::Name { sid: s, content } => {
                let name = session_name(content.as_str());
                assert!(
                    !name.is_empty() && name.len() <= 50,
                    "bad session name {name:?} for {content:?}"
                );
                let want = match model.sessions.get_mut(sid(*s)) {
                    None => Err(SessionError::NotFound),
                    Some(m) if !m.name.is_empty() => Ok(None),
                    Some(m) => {
                        m.name = name.clone();
                        Ok(Some(name))
                    }
                };
                assert_eq!(table.name_if_empty(sid(*s), content.as_str()), want, "{op:?}");
            }
            Op::End(s) => {
                let t = model.observe(now);
                let got = table.end(sid(*s), now, wall);
                match model.sessions.get_mut(sid(*s)) {
                    None => assert_eq!(got, Err(SessionError::NotFound), "{op:?}"),
                    Some(m) => {
                        m.ended_at = Some(t);
                        m.end_requested = true;
                        match got {
                            Ok(e) => {
                                assert_eq!(e.id.as_str(), sid(*s));
                                assert_eq!(e.started_wall, m.started_wall, "{op:?}");
                                assert_eq!(e.ended_wall, wall, "{op:?}");
                                assert_eq!(
                                    e.duration_secs,
                                    wall.whole_seconds_since(m.started_wall)
                                );
                                assert!(e.duration_secs >= 0);
                            }
                            Err(e) => panic!("{op:?}: {e}"),
                        }
                    }
                }
            }
            Op::Takeover { sid: s, admin: a, name } => {
                let t = model.observe(now);
                let (admin_id, admin_name) = (admin(*a), format!("Admin {}", name % 3));
                let want = match model.sessions.get_mut(sid(*s)) {
                    None => Err(SessionError::NotFound),
                    Some(m) => match &mut m.admin {
                        Some((id, n)) if id == admin_id => {
                            *n = admin_name.clone();
                            m.last_activity = t;
                            Ok(TakeoverOutcome::Repeated)
                        }
                        Some((id, n)) => Err(SessionError::AlreadyAssisted {
                            admin_id: id.clone(),
                            admin_name: n.clone(),
                        }),
                        None => {
                            m.admin = Some((admin_id.to_string(), admin_name.clone()));
                            m.last_activity = t;
                            Ok(TakeoverOutcome::Started)
                        }
                    },
                };
                assert_eq!(table.takeover(sid(*s), admin_id, &admin_name, now), want, "{op:?}");
            }
            Op::Leave { sid: s, admin: a } => {
                let caller = admin(*a);
                let got = table.leave(sid(*s), caller);
                match model.sessions.get_mut(sid(*s)) {
                    None => assert_eq!(got, Err(SessionError::NotFound), "{op:?}"),
                    Some(m) => match m.admin.take() {
                        None => assert_eq!(got, Err(SessionError::NotAssisted), "{op:?}"),
                        Some((id, name)) => {
                            let left = got.unwrap_or_else(|e| panic!("{op:?}: {e}"));
                            assert_eq!(
                                (left.admin.id.as_str(), left.admin.name.as_str()),
                                (id.as_str(), name.as_str())
                            );
                            assert_eq!(left.by_other_admin, id != caller, "{op:?}");
                        }
                    },
                }
            }
            Op::Help { sid: s, user: u } => {
                let caller = principal(*u);
                let want = match model.sessions.get_mut(sid(*s)) {
                    None => Err(SessionError::NotFound),
                    Some(m) if m.user != caller => Err(SessionError::NotOwner),
                    Some(m) => {
                        let changed = !m.help;
                        m.help = true;
                        Ok(changed)
                    }
                };
                assert_eq!(table.request_help(sid(*s), caller), want, "{op:?}");
            }
            Op::Remove(s) => {
                let got = table.remove(sid(*s)).map(|s| s.id().as_str().to_string());
                let want = model.sessions.remove(sid(*s)).map(|_| sid(*s).to_string());
                assert_eq!(got, want, "{op:?}");
            }
            Op::Sweep | Op::SweepAtDeadline => {
                let mut at = now;
                if matches!(op, Op::SweepAtDeadline) {
                    if let Some(d) = table.next_deadline().filter(|d| *d != Instant::MAX) {
                        if d > self.now {
                            self.now = d;
                        }
                        at = at.max(d);
                    }
                }
                let wall = wall_of(at);
                let report = table.sweep(at, wall);
                let t = model.observe(at);
                let mut idle: Vec<String> = Vec::new();
                for (id, m) in model.sessions.iter_mut() {
                    if m.active()
                        && m.attached == 0
                        && m.last_activity + model.limits.idle_timeout <= t
                    {
                        m.ended_at = Some(t);
                        m.end_requested = false;
                        idle.push(id.clone());
                    }
                }
                let ttl = model.limits.ended_ttl;
                let dropped: Vec<String> = model
                    .sessions
                    .iter()
                    .filter(|(_, m)| m.ended_at.is_some_and(|e| e + ttl <= t))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &dropped {
                    model.sessions.remove(id);
                }
                let mut got_idle: Vec<String> =
                    report.idle_ended.iter().map(|e| e.id.as_str().to_string()).collect();
                got_idle.sort();
                let mut got_dropped: Vec<String> =
                    report.dropped.iter().map(|id| id.as_str().to_string()).collect();
                got_dropped.sort();
                assert_eq!(got_idle, idle, "{op:?}: idle-ended sessions");
                assert_eq!(got_dropped, dropped, "{op:?}: dropped sessions");
                for e in &report.idle_ended {
                    assert_eq!(e.ended_wall, wall);
                    assert!(e.duration_secs >= 0);
                }
            }
            Op::Access { user: u, admin: is_admin, sid: s } => {
                let caller = principal(*u);
                let want = match model.sessions.get(sid(*s)) {
                    None => Access::Unknown,
                    Some(m) if m.user == caller => Access::Owner,
                    Some(m)
                        if *is_admin && m.admin.as_ref().is_some_and(|(id, _)| id == caller) =>
                    {
                        Access::AssistingAdmin
                    }
                    Some(_) => Access::Denied,
                };
                assert_eq!(table.check_access(caller, *is_admin, sid(*s)), want, "{op:?}");
            }
            Op::Advance(_) | Op::Stale(_) | Op::Check(_) | Op::Burst { .. } | Op::Cleanup => {}
        }
    }

    fn compare_sessions(&self, op: &Op) {
        let (table, model) = (&self.table, &self.model);
        if let Err(v) = table.check_invariants() {
            panic!("after {op:?}: {v}");
        }
        assert_eq!(table.len(), model.sessions.len(), "after {op:?}: session count");
        let stats = table.memory_stats();
        let active = model.sessions.values().filter(|s| s.active()).count();
        assert_eq!((stats.active, stats.total), (active, model.sessions.len()), "after {op:?}");
        assert_eq!(stats.active + stats.inactive, stats.total, "after {op:?}: stats_sum");
        for id in SIDS {
            let got = table.get(id);
            let want = model.sessions.get(id);
            match (got, want) {
                (None, None) => {}
                (Some(s), Some(m)) => {
                    assert_eq!(s.user_id(), m.user, "after {op:?}: owner of {id}");
                    assert_eq!(s.ended_at(), m.ended_at, "after {op:?}: end of {id}");
                    assert_eq!(s.is_active(), m.active(), "after {op:?}: state of {id}");
                    assert_eq!(s.attached(), m.attached, "after {op:?}: attached to {id}");
                    assert_eq!(
                        s.last_activity(),
                        m.last_activity,
                        "after {op:?}: activity of {id}"
                    );
                    let admin = s.assisting_admin().map(|a| (a.id.clone(), a.name.clone()));
                    assert_eq!(admin, m.admin, "after {op:?}: admin of {id}");
                    assert_eq!(s.help_requested(), m.help, "after {op:?}: help on {id}");
                    assert_eq!(s.message_count(), m.messages, "after {op:?}: messages of {id}");
                    assert_eq!(s.total_tokens(), m.tokens, "after {op:?}: tokens of {id}");
                    assert_eq!(s.model_id(), m.model.as_deref(), "after {op:?}: model of {id}");
                    assert_eq!(s.name(), m.name, "after {op:?}: name of {id}");
                    assert_eq!(
                        s.response_times().len(),
                        m.samples,
                        "after {op:?}: samples of {id}"
                    );
                    assert_eq!(s.deadline(), model.deadline(m), "after {op:?}: deadline of {id}");
                }
                _ => panic!("after {op:?}: {id} is {got:?} in the table but {want:?} in the model"),
            }
        }
        for p in PRINCIPALS {
            let got = table.active_of(p).map(|s| s.id().as_str());
            assert_eq!(got, model.active_of(p), "after {op:?}: active session of {p}");
        }
        let want = model.sessions.values().filter_map(|s| model.deadline(s)).min();
        assert_eq!(table.next_deadline(), want, "after {op:?}: next deadline");
    }
}

type ResolveResult = Result<(String, ResolutionKind, bool), SessionError>;

/// The resolution rule (PROTOCOL.md §6.2; `SessionTable::resolve` docs).
fn model_resolve(
    model: &mut SessionModel,
    u: &str,
    requested: Option<&str>,
    fresh: &str,
    now: Instant,
    wall: UnixMillis,
) -> ResolveResult {
    let t = model.observe(now);
    let mut resumable = None;
    if let Some(r) = requested {
        if let Some(s) = model.sessions.get(r) {
            if s.user != u {
                return Err(SessionError::NotOwner);
            }
            match s.ended_at {
                None => {
                    model.activity(r, t);
                    return Ok((r.to_string(), ResolutionKind::Existing, false));
                }
                Some(at) => {
                    if !s.end_requested
                        && t.saturating_duration_since(at) < model.limits.reconnect_window
                    {
                        resumable = Some(r.to_string());
                    }
                }
            }
        }
    }
    if let Some(active) = model.active_of(u).map(str::to_string) {
        model.activity(&active, t);
        let rebind = requested != Some(active.as_str());
        return Ok((active, ResolutionKind::Reused, rebind));
    }
    if let Some(id) = resumable {
        if let Some(s) = model.sessions.get_mut(&id) {
            s.ended_at = None;
            s.last_activity = t;
        }
        return Ok((id, ResolutionKind::Resumed, false));
    }
    if model.sessions.contains_key(fresh) {
        return Err(SessionError::IdInUse);
    }
    model.sessions.insert(
        fresh.to_string(),
        MSession {
            user: u.to_string(),
            ended_at: None,
            end_requested: false,
            started_wall: wall,
            last_activity: t,
            attached: 0,
            admin: None,
            help: false,
            messages: 0,
            tokens: 0,
            model: None,
            name: String::new(),
            samples: 0,
        },
    );
    Ok((fresh.to_string(), ResolutionKind::Created, requested != Some(fresh)))
}

/// `insert_loaded` (its docs).
fn model_load(
    model: &mut SessionModel,
    snap: &SessionSnapshot,
    now: Instant,
    wall: UnixMillis,
) -> LoadOutcome {
    let t = model.observe(now);
    if model.sessions.contains_key(snap.id.as_str()) {
        return LoadOutcome::AlreadyPresent;
    }
    let ago = |stored: UnixMillis| {
        let ms = wall.0.saturating_sub(stored.0).max(0);
        t - Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    };
    let ended_at = match snap.ended_wall {
        Some(e) => {
            let at = ago(e);
            if at + model.limits.ended_ttl <= t {
                return LoadOutcome::Expired;
            }
            Some(at)
        }
        None => {
            if let Some(active) = model.active_of(&snap.user_id) {
                return LoadOutcome::ActiveConflict { active: SessionId::from(active) };
            }
            None
        }
    };
    model.sessions.insert(
        snap.id.as_str().to_string(),
        MSession {
            user: snap.user_id.clone(),
            ended_at,
            end_requested: false,
            started_wall: snap.started_wall,
            last_activity: t,
            attached: 0,
            admin: snap.assisting_admin.as_ref().map(|a| (a.id.clone(), a.name.clone())),
            help: snap.help_requested,
            messages: snap.message_count,
            tokens: snap.total_tokens,
            model: snap.model_id.clone(),
            name: snap.name.clone(),
            samples: usize::from(!snap.avg_response_time.is_zero()),
        },
    );
    LoadOutcome::Inserted
}

// ----- the limiter model -----------------------------------------------------------------------

/// Per-key logs of allowed instants (on the limiter's clock) and the decision counts.
struct RateModel {
    limit: u32,
    window: u64,
    width: u64,
    max_keys: usize,
    clock: u64,
    logs: BTreeMap<u8, Vec<u64>>,
    allowed: u64,
    denied: u64,
}

/// Beyond this the bound checks are skipped (saturated arithmetic means "never").
const FAR: u128 = 1 << 62;

impl RateModel {
    fn new(l: &RateLimiter<u8>) -> Self {
        RateModel {
            limit: l.limit().limit,
            window: duration_nanos(l.limit().window),
            width: duration_nanos(l.bucket_width()),
            max_keys: l.max_keys(),
            clock: 0,
            logs: BTreeMap::new(),
            allowed: 0,
            denied: 0,
        }
    }

    fn check(&mut self, l: &mut RateLimiter<u8>, key: u8, now: Instant) {
        let t = self.clock.max(now.as_nanos());
        self.clock = t;
        let tracked = l.contains(&key);
        let decision = l.check(&key, now);
        if self.limit == 0 {
            let hint = l.limit().window.max(Duration::from_nanos(1));
            assert_eq!(decision, Decision::Denied { retry_after: hint }, "limit 0");
            assert!(!l.contains(&key), "limit 0 tracks a key");
            self.denied += 1;
            return;
        }
        let log = self.logs.entry(key).or_default();
        if !tracked {
            log.clear();
        }
        let n = self.limit as usize;
        match decision {
            Decision::Allowed => {
                self.allowed += 1;
                log.push(t);
                let from = t.saturating_sub(self.window);
                let in_window = log.iter().filter(|&&e| e >= from).count();
                assert!(
                    in_window <= n,
                    "key {key}: {in_window} events allowed in the window [{from}, {t}] ns, limit {n}"
                );
            }
            Decision::Denied { retry_after } => {
                self.denied += 1;
                assert!(tracked, "a new key was refused");
                assert!(!retry_after.is_zero(), "retry_after is zero");
                if u128::from(self.window) >= FAR {
                    return;
                }
                let from = t.saturating_sub(self.window);
                let counted: Vec<u64> = log.iter().copied().filter(|&e| e >= from).collect();
                let exact = if counted.len() < n {
                    u128::from(t)
                } else {
                    u128::from(counted[counted.len() - n]) + u128::from(self.window) + 1
                };
                let release = u128::from(now.as_nanos()) + retry_after.as_nanos();
                if release >= FAR {
                    return;
                }
                assert!(
                    exact <= release && release < exact + u128::from(self.width),
                    "key {key} at {t} ns: retry_after {retry_after:?} releases at {release}, exact \
                     sliding log at {exact}, bucket width {} ns; log {log:?}",
                    self.width
                );
                // Honest: one nanosecond early is denied, on time is allowed.
                let release = release as u64;
                let mut early = l.clone();
                assert!(
                    !early.check(&key, Instant::from_nanos(release - 1)).is_allowed(),
                    "key {key}: a retry 1 ns before retry_after was allowed"
                );
                let mut on_time = l.clone();
                assert!(
                    on_time.check(&key, Instant::from_nanos(release)).is_allowed(),
                    "key {key}: a retry at retry_after was denied"
                );
            }
        }
    }

    fn cleanup(&mut self, l: &mut RateLimiter<u8>, now: Instant) {
        let t = self.clock.max(now.as_nanos());
        self.clock = t;
        let before: Vec<(u8, Option<u64>)> = self
            .logs
            .iter()
            .filter(|(k, _)| l.contains(k))
            .map(|(k, log)| (*k, log.last().copied()))
            .collect();
        let removed = l.cleanup(now);
        let mut gone = 0;
        for (key, last) in before {
            let kept = l.contains(&key);
            gone += usize::from(!kept);
            let Some(last) = last else { continue };
            if last >= t.saturating_sub(self.window) {
                assert!(
                    kept,
                    "cleanup dropped key {key} whose last event {last} is in the window at {t}"
                );
            }
            if u128::from(last) + u128::from(self.window) + u128::from(self.width) <= u128::from(t)
            {
                assert!(!kept, "cleanup kept key {key} idle since {last} at {t}");
            }
        }
        assert_eq!(removed, gone, "cleanup's count");
    }

    fn compare(&mut self, l: &RateLimiter<u8>) {
        self.logs.retain(|k, _| l.contains(k));
        assert!(l.len() <= self.max_keys, "{} keys tracked, max {}", l.len(), self.max_keys);
        let stats = l.stats();
        assert_eq!(stats.keys, l.len());
        assert_eq!((stats.allowed, stats.denied), (self.allowed, self.denied), "limiter stats");
    }
}

// ----- driving ----------------------------------------------------------------------------------

/// The whole input: the setup and the ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsInput {
    /// Limits.
    pub setup: Setup,
    /// Operations, in order.
    pub ops: Vec<Op>,
}

impl OpsInput {
    /// Decodes `data`: the setup, then ops until the data ends (at most [`MAX_OPS`]).
    pub fn decode(data: &[u8]) -> Option<OpsInput> {
        let mut u = Unstructured::new(data);
        let setup = Setup::arbitrary(&mut u).ok()?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            match Op::arbitrary(&mut u) {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        Some(OpsInput { setup, ops })
    }
}

/// One fuzz iteration.
pub fn run(data: &[u8]) {
    if let Some(input) = OpsInput::decode(data) {
        run_input(&input);
    }
}

/// Runs every op against both machines and their models.
pub fn run_input(input: &OpsInput) {
    let mut world = World::new(&input.setup);
    for op in &input.ops {
        world.apply(op);
    }
}

// ----- seed encoding ---------------------------------------------------------------------------

impl Encode for OpsInput {
    fn encode(&self, out: &mut Vec<u8>) {
        self.setup.encode(out);
        for op in &self.ops {
            op.encode(out);
        }
    }
}

impl Encode for Setup {
    fn encode(&self, out: &mut Vec<u8>) {
        for b in [
            self.reconnect,
            self.ended_ttl,
            self.idle,
            self.capacity,
            self.limit,
            self.window,
            self.max_keys,
        ] {
            b.encode(out);
        }
        self.buckets.encode(out);
    }
}

impl Encode for Step {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Step::Nanos(n) => {
                tag(out, 0, 5);
                n.encode(out);
            }
            Step::Millis(n) => {
                tag(out, 1, 5);
                n.encode(out);
            }
            Step::Secs(n) => {
                tag(out, 2, 5);
                n.encode(out);
            }
            Step::Minutes(n) => {
                tag(out, 3, 5);
                n.encode(out);
            }
            Step::Hours(n) => {
                tag(out, 4, 5);
                n.encode(out);
            }
        }
    }
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 22;
        match self {
            Op::Advance(s) => {
                tag(out, 0, N);
                s.encode(out);
            }
            Op::Stale(ms) => {
                tag(out, 1, N);
                ms.encode(out);
            }
            Op::Resolve { user, requested, fresh } => {
                tag(out, 2, N);
                user.encode(out);
                requested.encode(out);
                fresh.encode(out);
            }
            Op::Load { sid, user, ended_ago_ms, started_ago_ms, admin, help, avg_ms } => {
                tag(out, 3, N);
                sid.encode(out);
                user.encode(out);
                ended_ago_ms.encode(out);
                started_ago_ms.encode(out);
                admin.encode(out);
                help.encode(out);
                avg_ms.encode(out);
            }
            Op::Attach(s) => {
                tag(out, 4, N);
                s.encode(out);
            }
            Op::Detach(s) => {
                tag(out, 5, N);
                s.encode(out);
            }
            Op::Touch(s) => {
                tag(out, 6, N);
                s.encode(out);
            }
            Op::RecordMessage(s) => {
                tag(out, 7, N);
                s.encode(out);
            }
            Op::RecordReply { sid, ms, tokens } => {
                tag(out, 8, N);
                sid.encode(out);
                ms.encode(out);
                tokens.encode(out);
            }
            Op::SetModel { sid, model } => {
                tag(out, 9, N);
                sid.encode(out);
                model.encode(out);
            }
            Op::Name { sid, content } => {
                tag(out, 10, N);
                sid.encode(out);
                content.encode(out);
            }
            Op::End(s) => {
                tag(out, 11, N);
                s.encode(out);
            }
            Op::Takeover { sid, admin, name } => {
                tag(out, 12, N);
                sid.encode(out);
                admin.encode(out);
                name.encode(out);
            }
            Op::Leave { sid, admin } => {
                tag(out, 13, N);
                sid.encode(out);
                admin.encode(out);
            }
            Op::Help { sid, user } => {
                tag(out, 14, N);
                sid.encode(out);
                user.encode(out);
            }
            Op::Remove(s) => {
                tag(out, 15, N);
                s.encode(out);
            }
            Op::Sweep => tag(out, 16, N),
            Op::SweepAtDeadline => tag(out, 17, N),
            Op::Access { user, admin, sid } => {
                tag(out, 18, N);
                user.encode(out);
                admin.encode(out);
                sid.encode(out);
            }
            Op::Check(k) => {
                tag(out, 19, N);
                k.encode(out);
            }
            Op::Burst { key, n } => {
                tag(out, 20, N);
                key.encode(out);
                n.encode(out);
            }
            Op::Cleanup => tag(out, 21, N),
        }
    }
}
