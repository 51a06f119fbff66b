//! Model-based test of `SessionTable` (proptest-state-machine): random sequences of
//! resolve / load / end / attach / detach / touch / takeover / leave / help / access / remove /
//! sweep, with time moving forward by random amounts (jumps past the TTL, the reconnect window
//! and the idle timeout included), run against a deliberately naive reference — a `Vec` of
//! sessions scanned linearly, with no index at all. After every step the outcomes, every
//! session's observable state, `memory_stats`, `next_deadline` and `check_invariants` are
//! compared.

use std::time::Duration;

use chatbox_core::session::{
    Access, AdminRef, LoadOutcome, MemoryStats, ResolutionKind, SessionError, SessionId,
    SessionLimits, SessionSnapshot, SessionTable, TakeoverOutcome,
};
use chatbox_core::time::{Instant, UnixMillis, HOUR, MINUTE};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const USERS: [&str; 3] = ["u0", "u1", "u2"];
const ADMINS: [&str; 2] = ["a0", "a1"];

fn wall(now: Instant) -> UnixMillis {
    UnixMillis(
        i64::try_from(now.as_nanos() / 1_000_000).expect("test times fit in i64 milliseconds"),
    )
}

// ----- the reference -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct RefSession {
    id: String,
    user: String,
    started: Instant,
    ended: Option<Instant>,
    /// The end was asked for (`end`), so it is final.
    final_end: bool,
    last_activity: Instant,
    attached: u32,
    admin: Option<String>,
    help: bool,
}

/// What the last transition must have returned.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Nothing,
    Resolve(Result<(String, ResolutionKind, bool), SessionError>),
    Load(LoadOutcome),
    Unit(Result<(), SessionError>),
    End(Result<(UnixMillis, i64), SessionError>),
    Takeover(Result<TakeoverOutcome, SessionError>),
    Leave(Result<(String, bool), SessionError>),
    Help(Result<bool, SessionError>),
    Access(Access),
    Removed(bool),
    Sweep { idle_ended: Vec<String>, dropped: Vec<String> },
}

#[derive(Debug, Clone)]
struct RefState {
    limits: SessionLimits,
    now: Instant,
    sessions: Vec<RefSession>,
    minted: u32,
    expected: Expected,
}

#[derive(Debug, Clone)]
enum Transition {
    Advance(Duration),
    Resolve { user: usize, requested: Option<String>, fresh: String },
    LoadActive { id: String, user: usize },
    LoadEnded { id: String, user: usize, ago: Duration },
    End(String),
    Attach(String),
    Detach(String),
    Touch(String),
    Takeover { id: String, admin: usize },
    Leave { id: String, admin: usize },
    Help { id: String, user: usize },
    Access { id: String, caller: String, is_admin: bool },
    Remove(String),
    Sweep,
}

impl RefState {
    fn find(&self, id: &str) -> Option<usize> {
        self.sessions.iter().position(|s| s.id == id)
    }

    fn active_of(&self, user: &str) -> Option<usize> {
        self.sessions.iter().position(|s| s.user == user && s.ended.is_none())
    }

    fn deadline(&self, s: &RefSession) -> Option<Instant> {
        match s.ended {
            Some(at) => Some(at + self.limits.ended_ttl),
            None if s.attached == 0 => Some(s.last_activity + self.limits.idle_timeout),
            None => None,
        }
    }

    fn new_session(&mut self, id: String, user: &str, ended: Option<Instant>, started: Instant) {
        self.sessions.push(RefSession {
            id,
            user: user.to_owned(),
            started,
            ended,
            final_end: false,
            last_activity: self.now,
            attached: 0,
            admin: None,
            help: false,
        });
    }

    fn resolve(&mut self, user: &str, requested: Option<&str>, fresh: &str) -> Expected {
        let now = self.now;
        let mut resumable = None;
        if let Some(i) = requested.and_then(|r| self.find(r)) {
            if self.sessions[i].user != user {
                return Expected::Resolve(Err(SessionError::NotOwner));
            }
            match self.sessions[i].ended {
                None => {
                    self.sessions[i].last_activity = now;
                    let id = self.sessions[i].id.clone();
                    return Expected::Resolve(Ok((id, ResolutionKind::Existing, false)));
                }
                Some(at)
                    if now - at < self.limits.reconnect_window && !self.sessions[i].final_end =>
                {
                    resumable = Some(i);
                }
                Some(_) => {}
            }
        }
        if let Some(a) = self.active_of(user) {
            self.sessions[a].last_activity = now;
            let id = self.sessions[a].id.clone();
            let rebind = requested != Some(id.as_str());
            return Expected::Resolve(Ok((id, ResolutionKind::Reused, rebind)));
        }
        if let Some(i) = resumable {
            self.sessions[i].ended = None;
            self.sessions[i].last_activity = now;
            let id = self.sessions[i].id.clone();
            return Expected::Resolve(Ok((id, ResolutionKind::Resumed, false)));
        }
        if self.find(fresh).is_some() {
            return Expected::Resolve(Err(SessionError::IdInUse));
        }
        self.new_session(fresh.to_owned(), user, None, now);
        Expected::Resolve(Ok((fresh.to_owned(), ResolutionKind::Created, requested != Some(fresh))))
    }

    fn sweep(&mut self) -> Expected {
        let now = self.now;
        let (mut idle_ended, mut dropped) = (Vec::new(), Vec::new());
        loop {
            // Linear scan for the earliest due (deadline, id).
            let due = self
                .sessions
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    self.deadline(s).filter(|d| *d <= now).map(|d| (d, s.id.clone(), i))
                })
                .min();
            let Some((_, id, i)) = due else { break };
            if self.sessions[i].ended.is_some() {
                self.sessions.remove(i);
                dropped.push(id);
            } else {
                self.sessions[i].ended = Some(now);
                self.sessions[i].final_end = false;
                idle_ended.push(id);
            }
        }
        Expected::Sweep { idle_ended, dropped }
    }
}

struct TableModel;

fn any_id(state: &RefState) -> BoxedStrategy<String> {
    let mut ids: Vec<String> = state.sessions.iter().map(|s| s.id.clone()).collect();
    ids.push("ghost".to_owned());
    prop_oneof![9 => prop::sample::select(ids), 1 => Just("never-seen".to_owned())].boxed()
}

fn advance() -> impl Strategy<Value = Duration> {
    prop_oneof![
        4 => (0u64..120_000).prop_map(Duration::from_millis),
        2 => (5 * 60_000u64..21 * 60_000).prop_map(Duration::from_millis),
        1 => prop::sample::select(vec![5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 20 * MINUTE, 30 * MINUTE, HOUR]),
        1 => (55 * 60_000u64..65 * 60_000).prop_map(Duration::from_millis),
        1 => (2 * 3_600_000u64..72 * 3_600_000).prop_map(Duration::from_millis),
    ]
}

impl ReferenceStateMachine for TableModel {
    type State = RefState;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<RefState> {
        let minutes = |options: Vec<u32>| prop::sample::select(options).prop_map(|m| m * MINUTE);
        (
            minutes(vec![0, 5, 15, 15, 20]),
            minutes(vec![0, 10, 15, 15]),
            minutes(vec![0, 30, 60, 60]),
            prop::sample::select(vec![1usize, 3, 100]),
        )
            .prop_map(|(reconnect_window, ended_ttl, idle_timeout, response_time_capacity)| {
                RefState {
                    limits: SessionLimits {
                        reconnect_window,
                        ended_ttl,
                        idle_timeout,
                        response_time_capacity,
                    },
                    now: Instant::ZERO,
                    sessions: Vec::new(),
                    minted: 0,
                    expected: Expected::Nothing,
                }
            })
            .boxed()
    }

    fn transitions(state: &RefState) -> BoxedStrategy<Transition> {
        let fresh = format!("f{}", state.minted);
        let user = 0..USERS.len();
        let admin = 0..ADMINS.len();
        let requested = prop_oneof![
            1 => Just(None),
            4 => any_id(state).prop_map(Some),
        ];
        // A freshly minted id, or now and then a colliding one (the table must refuse it).
        let minted_id = prop_oneof![19 => Just(fresh.clone()), 1 => any_id(state)];
        let caller =
            prop::sample::select(vec!["u0", "u1", "u2", "a0", "a1"]).prop_map(str::to_owned);
        prop_oneof![
            4 => advance().prop_map(Transition::Advance),
            6 => (user.clone(), requested, minted_id)
                .prop_map(|(user, requested, fresh)| Transition::Resolve { user, requested, fresh }),
            1 => (user.clone(), prop_oneof![Just(fresh.clone()), any_id(state)])
                .prop_map(|(user, id)| Transition::LoadActive { id, user }),
            1 => (user.clone(), Just(fresh), (0u64..40 * 60_000).prop_map(Duration::from_millis))
                .prop_map(|(user, id, ago)| Transition::LoadEnded { id, user, ago }),
            3 => any_id(state).prop_map(Transition::End),
            2 => any_id(state).prop_map(Transition::Attach),
            2 => any_id(state).prop_map(Transition::Detach),
            1 => any_id(state).prop_map(Transition::Touch),
            2 => (any_id(state), admin.clone()).prop_map(|(id, admin)| Transition::Takeover { id, admin }),
            1 => (any_id(state), admin).prop_map(|(id, admin)| Transition::Leave { id, admin }),
            1 => (any_id(state), user).prop_map(|(id, user)| Transition::Help { id, user }),
            1 => (any_id(state), caller, any::<bool>())
                .prop_map(|(id, caller, is_admin)| Transition::Access { id, caller, is_admin }),
            1 => any_id(state).prop_map(Transition::Remove),
            3 => Just(Transition::Sweep),
        ]
        .boxed()
    }

    fn apply(mut state: RefState, transition: &Transition) -> RefState {
        let now = state.now;
        let expected = match transition {
            Transition::Advance(d) => {
                state.now += *d;
                Expected::Nothing
            }
            Transition::Resolve { user, requested, fresh } => {
                state.minted += 1;
                state.resolve(USERS[*user], requested.as_deref(), fresh)
            }
            Transition::LoadActive { id, user } => {
                state.minted += 1;
                let user = USERS[*user];
                Expected::Load(if state.find(id).is_some() {
                    LoadOutcome::AlreadyPresent
                } else if let Some(a) = state.active_of(user) {
                    LoadOutcome::ActiveConflict {
                        active: SessionId::from(state.sessions[a].id.as_str()),
                    }
                } else {
                    state.new_session(id.clone(), user, None, now.saturating_sub(HOUR));
                    LoadOutcome::Inserted
                })
            }
            Transition::LoadEnded { id, user, ago } => {
                state.minted += 1;
                let at = now.saturating_sub(*ago);
                Expected::Load(if state.find(id).is_some() {
                    LoadOutcome::AlreadyPresent
                } else if at + state.limits.ended_ttl <= now {
                    LoadOutcome::Expired
                } else {
                    state.new_session(id.clone(), USERS[*user], Some(at), now.saturating_sub(HOUR));
                    LoadOutcome::Inserted
                })
            }
            Transition::End(id) => Expected::End(match state.find(id) {
                None => Err(SessionError::NotFound),
                Some(i) => {
                    state.sessions[i].ended = Some(now);
                    state.sessions[i].final_end = true;
                    let started = wall(state.sessions[i].started);
                    Ok((wall(now), wall(now).whole_seconds_since(started)))
                }
            }),
            Transition::Attach(id) => Expected::Unit(match state.find(id) {
                None => Err(SessionError::NotFound),
                Some(i) => {
                    state.sessions[i].attached += 1;
                    state.sessions[i].last_activity = now;
                    Ok(())
                }
            }),
            Transition::Detach(id) => Expected::Unit(match state.find(id) {
                None => Err(SessionError::NotFound),
                Some(i) if state.sessions[i].attached == 0 => Err(SessionError::NotAttached),
                Some(i) => {
                    state.sessions[i].attached -= 1;
                    state.sessions[i].last_activity = now;
                    Ok(())
                }
            }),
            Transition::Touch(id) => Expected::Unit(match state.find(id) {
                None => Err(SessionError::NotFound),
                Some(i) => {
                    state.sessions[i].last_activity = now;
                    Ok(())
                }
            }),
            Transition::Takeover { id, admin } => {
                let admin = ADMINS[*admin];
                Expected::Takeover(match state.find(id) {
                    None => Err(SessionError::NotFound),
                    Some(i) => match state.sessions[i].admin.clone() {
                        Some(a) if a == admin => {
                            state.sessions[i].last_activity = now;
                            Ok(TakeoverOutcome::Repeated)
                        }
                        Some(other) => Err(SessionError::AlreadyAssisted {
                            admin_id: other.clone(),
                            admin_name: format!("name of {other}"),
                        }),
                        None => {
                            state.sessions[i].admin = Some(admin.to_owned());
                            state.sessions[i].last_activity = now;
                            Ok(TakeoverOutcome::Started)
                        }
                    },
                })
            }
            Transition::Leave { id, admin } => Expected::Leave(match state.find(id) {
                None => Err(SessionError::NotFound),
                Some(i) => match state.sessions[i].admin.take() {
                    None => Err(SessionError::NotAssisted),
                    Some(a) => {
                        let by_other = a != ADMINS[*admin];
                        Ok((a, by_other))
                    }
                },
            }),
            Transition::Help { id, user } => Expected::Help(match state.find(id) {
                None => Err(SessionError::NotFound),
                Some(i) if state.sessions[i].user != USERS[*user] => Err(SessionError::NotOwner),
                Some(i) => Ok(!std::mem::replace(&mut state.sessions[i].help, true)),
            }),
            Transition::Access { id, caller, is_admin } => Expected::Access(match state.find(id) {
                None => Access::Unknown,
                Some(i) if state.sessions[i].user == *caller => Access::Owner,
                Some(i)
                    if *is_admin && state.sessions[i].admin.as_deref() == Some(caller.as_str()) =>
                {
                    Access::AssistingAdmin
                }
                Some(_) => Access::Denied,
            }),
            Transition::Remove(id) => Expected::Removed(match state.find(id) {
                None => false,
                Some(i) => {
                    state.sessions.remove(i);
                    true
                }
            }),
            Transition::Sweep => state.sweep(),
        };
        state.expected = expected;
        state
    }
}

// ----- the system under test -----------------------------------------------------------------

struct Harness {
    table: SessionTable,
    now: Instant,
}

impl StateMachineTest for TableModel {
    type SystemUnderTest = Harness;
    type Reference = TableModel;

    fn init_test(reference: &RefState) -> Harness {
        Harness { table: SessionTable::new(reference.limits), now: Instant::ZERO }
    }

    fn apply(mut h: Harness, reference: &RefState, transition: Transition) -> Harness {
        let (now, w) = (h.now, wall(h.now));
        let t = &mut h.table;
        let snapshot = |id: &str, user: usize, ended: Option<UnixMillis>| SessionSnapshot {
            id: SessionId::from(id),
            user_id: USERS[user].to_owned(),
            name: String::new(),
            model_id: None,
            started_wall: wall(now.saturating_sub(HOUR)),
            ended_wall: ended,
            ended_on_request: false,
            assisting_admin: None,
            help_requested: false,
            total_tokens: 0,
            message_count: 0,
            avg_response_time: Duration::ZERO,
        };
        let got = match transition {
            Transition::Advance(d) => {
                h.now += d;
                Expected::Nothing
            }
            Transition::Resolve { user, requested, fresh } => Expected::Resolve(
                t.resolve(USERS[user], requested.as_deref(), SessionId::from(fresh), now, w)
                    .map(|r| (r.id.to_string(), r.kind, r.rebind)),
            ),
            Transition::LoadActive { id, user } => {
                Expected::Load(t.insert_loaded(snapshot(&id, user, None), now, w))
            }
            Transition::LoadEnded { id, user, ago } => {
                let millis = i64::try_from(ago.as_millis()).expect("ago is under an hour");
                let ended = UnixMillis(w.0 - millis);
                Expected::Load(t.insert_loaded(snapshot(&id, user, Some(ended)), now, w))
            }
            Transition::End(id) => Expected::End(t.end(&id, now, w).map(|e| {
                assert_eq!(e.id, id.as_str());
                (e.ended_wall, e.duration_secs)
            })),
            Transition::Attach(id) => Expected::Unit(t.attach(&id, now)),
            Transition::Detach(id) => Expected::Unit(t.detach(&id, now)),
            Transition::Touch(id) => Expected::Unit(t.touch(&id, now)),
            Transition::Takeover { id, admin } => {
                let admin = ADMINS[admin];
                Expected::Takeover(t.takeover(&id, admin, &format!("name of {admin}"), now))
            }
            Transition::Leave { id, admin } => {
                Expected::Leave(t.leave(&id, ADMINS[admin]).map(|l| (l.admin.id, l.by_other_admin)))
            }
            Transition::Help { id, user } => Expected::Help(t.request_help(&id, USERS[user])),
            Transition::Access { id, caller, is_admin } => {
                Expected::Access(t.check_access(&caller, is_admin, &id))
            }
            Transition::Remove(id) => Expected::Removed(t.remove(&id).is_some()),
            Transition::Sweep => {
                let report = t.sweep(now, w);
                for e in &report.idle_ended {
                    assert_eq!(e.ended_wall, w);
                }
                Expected::Sweep {
                    idle_ended: report.idle_ended.iter().map(|e| e.id.to_string()).collect(),
                    dropped: report.dropped.iter().map(ToString::to_string).collect(),
                }
            }
        };
        assert_eq!(got, reference.expected, "outcome differs from the reference");
        h
    }

    fn check_invariants(h: &Harness, reference: &RefState) {
        let t = &h.table;
        if let Err(violation) = t.check_invariants() {
            panic!("{violation}");
        }
        let active = reference.sessions.iter().filter(|s| s.ended.is_none()).count();
        let expected_stats = MemoryStats {
            active,
            inactive: reference.sessions.len() - active,
            total: reference.sessions.len(),
        };
        assert_eq!(t.memory_stats(), expected_stats);
        assert_eq!(t.len(), reference.sessions.len());
        for r in &reference.sessions {
            let s = t.get(&r.id).unwrap_or_else(|| panic!("{} missing from the table", r.id));
            assert_eq!(s.user_id(), r.user);
            assert_eq!(s.ended_at(), r.ended, "{}", r.id);
            let final_end = s.end_cause().is_some_and(|cause| !cause.resumable());
            assert_eq!(final_end, r.ended.is_some() && r.final_end, "{}", r.id);
            assert_eq!(s.last_activity(), r.last_activity, "{}", r.id);
            assert_eq!(s.attached(), r.attached, "{}", r.id);
            assert_eq!(s.assisting_admin().map(|a: &AdminRef| a.id.as_str()), r.admin.as_deref());
            assert_eq!(s.help_requested(), r.help);
            assert_eq!(s.deadline(), reference.deadline(r), "{}", r.id);
        }
        for user in USERS {
            let want = reference.active_of(user).map(|i| reference.sessions[i].id.as_str());
            assert_eq!(t.active_of(user).map(|s| s.id().as_str()), want);
        }
        let next = reference.sessions.iter().filter_map(|s| reference.deadline(s)).min();
        assert_eq!(t.next_deadline(), next);
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The table behaves like the naive reference on any sequence of 1..80 steps.
    #[test]
    fn table_matches_naive_reference(sequential 1..80 => TableModel);
}
