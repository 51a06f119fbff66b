//! The sessions service: the live session table (core's `SessionTable` behind its thread-safe
//! handle), loading a session that is not in memory from the store on demand (§10 item 23),
//! resolving the authoritative session of a `user_message`/`model_select` (§6.2 with §10 items
//! 4, 8, 22) and moving the asking connection's binding to it, and attaching / detaching
//! connections so a session's idle clock runs only while nobody is connected (§3.12), and
//! keeping this instance's copy of who assists a session in step with the store (issue 14).
//! [`sweeper`] ends idle sessions and drops expired ones.

pub mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use chatbox_core::protocol::{ErrorInfo, ModelInfo};
use chatbox_core::session::{
    Access, AdminRef, ResolutionKind, SessionError, SessionId, SessionLimits, SessionSnapshot,
    SessionTable,
};
use chatbox_core::shared::SessionHandle;

use super::caller::Caller;
use super::clock::Clock;
use super::delivery::{ConnId, Delivery, Rebound};
use super::metrics::Metrics;
use super::persistence::Persistence;
use super::store::{CreateOutcome, SessionDoc, SessionPatch};

use chatbox_core::budgets::SESSION_RESOLVE_ATTEMPTS;

/// The connection a frame came from, as resolution needs it: where to bind and announce.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The connection.
    pub conn: ConnId,
    /// Its user.
    pub user: &'a str,
    /// The models a binding announcement lists (`connection_status`).
    pub models: &'a [ModelInfo],
}

/// The live sessions of this process.
#[derive(Debug)]
pub struct Sessions {
    table: SessionHandle,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Sessions {
    /// An empty table with `limits`.
    pub fn new(limits: SessionLimits, clock: Clock, metrics: Arc<Metrics>) -> Self {
        Self { table: SessionHandle::new(limits), clock, metrics }
    }

    /// Runs `f` on the table (one short critical section; calls into core only).
    pub fn with<R>(&self, f: impl FnOnce(&mut SessionTable) -> R) -> R {
        self.table.with(f)
    }

    /// What `caller` may do with session `id` as it is in memory now.
    pub fn access(&self, caller: &Caller, id: &str) -> Access {
        self.with(|t| t.check_access(&caller.user_id, caller.is_admin(), id))
    }

    /// Whether `admin_id` is the admin assisting `id`.
    pub fn is_assisting(&self, admin_id: &str, id: &str) -> bool {
        self.with(|t| t.check_access(admin_id, true, id)) == Access::AssistingAdmin
    }

    /// The model chosen for `id`, if any.
    pub fn model_of(&self, id: &str) -> Option<String> {
        self.with(|t| t.get(id).and_then(|s| s.model_id().map(str::to_string)))
    }

    /// The owner of `id`, if it is in memory.
    pub fn owner_of(&self, id: &str) -> Option<String> {
        self.with(|t| t.get(id).map(|s| s.user_id().to_string()))
    }

    /// The owner of `id` and its message count (user and admin messages), if it is in memory.
    pub fn owner_and_count(&self, id: &str) -> Option<(String, u64)> {
        self.with(|t| t.get(id).map(|s| (s.user_id().to_string(), s.message_count())))
    }

    /// Binds `conn` to `session` in `delivery` and moves its attachment from its previous
    /// session (§3.7). A connection counts once: not again when it was bound there already,
    /// and not at all when it closed before the binding (it would never be detached).
    /// `false` when it had closed.
    pub fn bind(&self, delivery: &Delivery, conn: ConnId, session: &str) -> bool {
        match delivery.bind(conn, session) {
            Rebound::Moved { previous } => self.rebind(previous.as_deref(), session),
            Rebound::Unchanged => {}
            Rebound::Gone => return false,
        }
        true
    }

    /// `count` connections stopped seeing `session` without closing (its assisting admin
    /// left, §10 item 3): they no longer keep it from idling out.
    pub fn detach_unbound(&self, session: &str, count: usize) {
        for _ in 0..count {
            self.detach(session);
        }
    }

    /// [`Sessions::resolve`] for a frame of `asker`: when the session chosen is not where the
    /// connection is bound, the binding moves there and is announced (§3.7, §6.2); a refusal
    /// is answered to the connection, echoing `requested` (§10 item 10), and gives `None`.
    pub async fn resolve_for(
        &self,
        persistence: &Persistence,
        delivery: &Delivery,
        asker: Asker<'_>,
        requested: &str,
    ) -> Option<String> {
        let now = self.clock.wall_datetime();
        let id = match self.resolve(persistence, asker.user, requested).await {
            Ok(id) => id,
            Err(info) => {
                delivery.send_error(asker.conn, Some(requested), info);
                return None;
            }
        };
        if delivery.bound(asker.conn).as_deref() != Some(id.as_str()) {
            // Frames for the new session are held until this instance's subscription to it is
            // confirmed (the fleet's subscribe race, issue 14), then released in order.
            delivery.hold(asker.conn);
            // A connection that closed meanwhile has nobody to announce to or wait for.
            if self.bind(delivery, asker.conn, &id) {
                delivery.announce(asker.conn, asker.user, Some(&id), asker.models, now);
                delivery.subscribed(&id).await;
            }
            delivery.release(asker.conn);
        }
        Some(id)
    }

    /// A connection moved from `previous` to `session`: detach the old, attach the new. An id
    /// not in memory is bound as-is (§3.7); there is nothing to attach to yet.
    fn rebind(&self, previous: Option<&str>, session: &str) {
        let now = self.clock.now();
        self.with(|t| {
            if let Some(prev) = previous.filter(|p| *p != session) {
                let _ = t.detach(prev, now);
            }
            let _ = t.attach(session, now);
        });
    }

    /// A connection of `session` closed: its idle clock may start.
    pub fn detach(&self, session: &str) {
        let now = self.clock.now();
        // The session may already be swept; nothing to detach then.
        self.with(|t| {
            let _ = t.detach(session, now);
        });
    }

    /// Counts a message in `id` (its activity clock).
    pub fn record_message(&self, id: &str) {
        let now = self.clock.now();
        self.with(|t| {
            let _ = t.record_message(id, now);
        });
    }

    /// Loads a session that is not in memory from the store, so it resumes on any instance
    /// (§10 item 23). Failures leave it unknown; `false` then: the store could not say whether
    /// the id is someone's session.
    pub async fn load_on_demand(&self, persistence: &Persistence, id: &str) -> bool {
        if self.with(|t| t.get(id).is_some()) {
            return true;
        }
        let doc = match persistence.load(id).await {
            Ok(Some(doc)) => doc,
            Ok(None) => return true,
            Err(error) => {
                tracing::warn!(session_id = id, %error, "loading session failed");
                return false;
            }
        };
        let snapshot = snapshot_of(&doc);
        let (now, wall) = (self.clock.now(), self.clock.wall());
        let outcome = self.with(|t| t.insert_loaded(snapshot, now, wall));
        tracing::debug!(session_id = id, ?outcome, "session loaded on demand");
        true
    }

    /// Makes this instance's copy of session `id` show `holder` as its assisting admin (issue 14:
    /// the store decides, and another instance may have taken the session over or ended the
    /// assistance). A session not in memory is left alone. Returns whether the copy changed.
    pub fn adopt_assistance(&self, id: &str, holder: Option<&AdminRef>) -> bool {
        let now = self.clock.now();
        self.with(|t| {
            let Some(current) = t.get(id).map(|s| s.assisting_admin().cloned()) else {
                return false;
            };
            if current.as_ref() == holder {
                return false;
            }
            if let Some(current) = &current {
                let _ = t.leave(id, &current.id);
            }
            if let Some(holder) = holder {
                let _ = t.takeover(id, &holder.id, &holder.name, now);
            }
            true
        })
    }

    /// Brings this instance's copy of session `id`'s assistance up to date with the store (one
    /// read, not retried; on failure the copy stays as it is). Used where a takeover or a leave
    /// on another instance matters: pausing the AI for the user's message, and the leave route.
    pub async fn refresh_assistance(&self, persistence: &Persistence, id: &str) {
        match persistence.assisting_admin(id).await {
            Ok(Some(holder)) => {
                if self.adopt_assistance(id, holder.as_ref()) {
                    tracing::debug!(session_id = id, assisting_admin = ?holder.as_ref().map(|h| &h.id), "assistance changed on another instance");
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(session_id = id, %error, "reading the assisting admin failed");
            }
        }
    }

    /// The authoritative session of `user`'s frame naming `requested` (§6.2 with §10 items 4, 8,
    /// 22), persisting a creation or a resumption. `Err` is the error to answer with.
    pub async fn resolve(
        &self,
        persistence: &Persistence,
        user: &str,
        requested: &str,
    ) -> Result<String, ErrorInfo> {
        self.load_on_demand(persistence, requested).await;
        for _ in 0..SESSION_RESOLVE_ATTEMPTS {
            let fresh = SessionId::from(new_session_id());
            let (now, wall) = (self.clock.now(), self.clock.wall());
            let resolution = match self.with(|t| t.resolve(user, Some(requested), fresh, now, wall))
            {
                Ok(resolution) => resolution,
                Err(SessionError::IdInUse) => continue,
                Err(SessionError::NotOwner) => return Err(ErrorInfo::unauthorized_session()),
                Err(error) => {
                    tracing::error!(session_id = requested, %error, "session resolution failed");
                    return Err(ErrorInfo::unexpected());
                }
            };
            let id = resolution.id.as_str().to_string();
            match resolution.kind {
                ResolutionKind::Created => {
                    let doc = SessionDoc::new(id.clone(), user.to_string(), wall);
                    match persistence.create(&doc).await {
                        Ok(CreateOutcome::Created) => {}
                        Ok(CreateOutcome::ActiveExists(other)) => {
                            // Another instance created this user's session first: use it.
                            self.with(|t| t.remove(&id));
                            self.load_on_demand(persistence, &other).await;
                            continue;
                        }
                        Err(_) => {
                            self.with(|t| t.remove(&id));
                            return Err(ErrorInfo::database_error());
                        }
                    }
                    self.metrics.sessions_created.inc();
                    tracing::info!(session_id = %id, user_id = user, "session created");
                }
                ResolutionKind::Resumed => {
                    let patch = SessionPatch { reactivate: true, ..Default::default() };
                    if let Err(error) = persistence.update_now(&id, &patch).await {
                        tracing::warn!(session_id = %id, %error, "persisting a resumed session failed");
                    }
                }
                ResolutionKind::Existing | ResolutionKind::Reused => {}
            }
            return Ok(id);
        }
        Err(ErrorInfo::unexpected())
    }
}

/// A stored document as the session table's snapshot.
pub fn snapshot_of(doc: &SessionDoc) -> SessionSnapshot {
    SessionSnapshot {
        id: SessionId::from(doc.id.as_str()),
        user_id: doc.user_id.clone(),
        name: doc.name.clone(),
        model_id: Some(doc.model_id.clone()).filter(|m| !m.is_empty()),
        started_wall: doc.started,
        ended_wall: doc.ended,
        ended_on_request: doc.ended_on_request,
        // `adminAssisted` stays true after a leave; who assists now is the stored admin id.
        assisting_admin: (!doc.assisting_admin_id.is_empty()).then(|| AdminRef {
            id: doc.assisting_admin_id.clone(),
            name: doc.assisting_admin_name.clone(),
        }),
        help_requested: doc.help_requested,
        total_tokens: doc.total_tokens,
        message_count: doc.messages.len() as u64,
        avg_response_time: Duration::from_millis(doc.avg_response_ms),
    }
}

/// A fresh session id: 32 random hex characters (§6.1).
pub fn new_session_id() -> String {
    super::ids::hex32()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::persistence::{MemoryOutbox, MemoryStore};

    fn persistence(store: Arc<MemoryStore>) -> Persistence {
        Persistence::for_tests(store, Arc::new(MemoryOutbox::new(8)))
    }

    #[tokio::test]
    async fn resolving_creates_once_then_reuses_and_refuses_other_users() {
        let clock = Clock::new();
        let store = Arc::new(MemoryStore::new());
        let persistence = persistence(Arc::clone(&store));
        let sessions = Sessions::new(SessionLimits::default(), clock, Arc::new(Metrics::new()));
        let id = sessions.resolve(&persistence, "u1", "proposed").await.unwrap();
        assert_eq!(store.snapshot().len(), 1, "the creation is persisted");
        assert_eq!(sessions.resolve(&persistence, "u1", &id).await, Ok(id.clone()));
        assert_eq!(
            sessions.resolve(&persistence, "u2", &id).await,
            Err(ErrorInfo::unauthorized_session())
        );
        assert_eq!(sessions.owner_of(&id).as_deref(), Some("u1"));
    }

    #[tokio::test]
    async fn a_stored_session_is_loaded_on_demand() {
        let clock = Clock::new();
        let store = Arc::new(MemoryStore::new());
        let persistence = persistence(Arc::clone(&store));
        persistence.create(&SessionDoc::new("s1".into(), "u1".into(), clock.wall())).await.unwrap();
        let sessions = Sessions::new(SessionLimits::default(), clock, Arc::new(Metrics::new()));
        assert_eq!(sessions.owner_of("s1"), None);
        sessions.load_on_demand(&persistence, "s1").await;
        assert_eq!(sessions.owner_of("s1").as_deref(), Some("u1"));
    }
}
