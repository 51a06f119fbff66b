//! The inbound path of one client frame (PROTOCOL.md §3.5–§3.8 with the §10 fixes): parse and
//! validate, bind the connection to a session (only on success, §10 item 13), then hand the
//! frame to its handler. Errors always answer the connection that sent the frame, echoing its
//! `session_id` (§10 item 10). `user_message` and `model_select` run in the session's ordered
//! worker (§10 item 27) while holding one of the connection's in-flight permits.

use std::sync::Arc;
use std::time::Duration;

use chatbox_core::protocol::{
    check_file_url, is_forbidden_ip, parse_client_frame, ClientFrame, ErrorInfo, FileUrlHost,
    Frame, FrameType, Sender,
};
use chatbox_core::rate::Decision;
use chatbox_core::session::{
    Access, AdminRef, ResolutionKind, SessionError, SessionId, SessionSnapshot,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::caller::Caller;
use super::connections::ConnId;
use super::history;
use super::hub::Engine;
use super::llm::{ChatMessage, ChatRequest, Role, StreamEvent};
use super::metrics::Limiter;
use super::notify::HelpAlert;
use super::outbox::PendingWrite;
use super::reply::{self, new_message_id, ReplyJob};
use super::store::{CreateOutcome, SessionDoc, SessionPatch, StoredMessage};

/// Budget of a voice-message answer (PROTOCOL.md §7.2).
const VOICE_BUDGET: Duration = Duration::from_secs(60);

/// One connection as the engine sees it.
#[derive(Debug, Clone)]
pub struct ConnCtx {
    /// Registry id.
    pub id: ConnId,
    /// Who is connected.
    pub caller: Caller,
    /// Frames of this connection being processed (`WS_MAX_IN_FLIGHT` permits).
    pub in_flight: Arc<Semaphore>,
}

impl Engine {
    /// Handles one text frame from a connection.
    pub async fn on_text(self: &Arc<Self>, conn: &ConnCtx, text: &str) {
        let now = self.frame_now();
        let frame = match parse_client_frame(text, now, &self.inbound_limits) {
            Ok(frame) => frame,
            Err(error) => {
                self.metrics.messages_received.inc();
                tracing::debug!(user_id = %conn.caller.user_id, %error, "refused client frame");
                self.send_conn(conn.id, &Frame::error(error.to_error_info(), None, now));
                return;
            }
        };
        self.metrics.messages_received.inc();
        if let Some(requested) = frame.session() {
            if self.registry.bound(conn.id).is_none() && !self.bind(conn, requested).await {
                return;
            }
        }
        match frame.frame_type {
            FrameType::UserMessage | FrameType::ModelSelect => self.queue_ordered(conn, frame),
            FrameType::HelpRequest => self.on_help_request(conn, &frame).await,
            FrameType::FileUpload | FrameType::VoiceMessage => self.on_file(conn, &frame).await,
            FrameType::AdminLeave if conn.caller.is_admin() => {
                self.on_admin_leave(conn, &frame).await
            }
            other => {
                let info = ErrorInfo::unknown_type(other.as_str());
                self.reply_error(conn, frame.session(), info);
            }
        }
    }

    /// The upgrade succeeded: greet the connection with the model list (§3.9).
    pub fn on_connect(&self, conn: &ConnCtx) {
        let frame = Frame::connection_status(
            &self.model_list,
            None,
            &conn.caller.user_id,
            self.frame_now(),
        );
        self.send_conn(conn.id, &frame);
    }

    /// The connection closed: unbind it and let its session's idle clock start (§3.12).
    pub fn on_disconnect(&self, conn: ConnId) {
        if let Some(session) = self.registry.unregister(conn) {
            let now = self.clock.now();
            self.sessions.with(|t| {
                // The session may already be swept; nothing to detach then.
                let _ = t.detach(&session, now);
            });
        }
    }

    /// Sends an error to the connection that sent a frame (§10 item 10).
    fn reply_error(&self, conn: &ConnCtx, session: Option<&str>, info: ErrorInfo) {
        self.send_conn(conn.id, &Frame::error(info, session, self.frame_now()));
    }

    /// Sends an error to a session's connections and to the sender.
    fn session_error(&self, conn: &ConnCtx, session: &str, info: ErrorInfo) {
        self.send_session(
            session,
            &Frame::error(info, Some(session), self.frame_now()),
            Some(conn.id),
        );
    }

    /// Binds an unbound connection to the first session id it names (§3.7). Returns `false`
    /// when the binding was refused (the frame is dropped, the connection stays unbound).
    async fn bind(self: &Arc<Self>, conn: &ConnCtx, requested: &str) -> bool {
        let caller = &conn.caller;
        let mut access =
            self.sessions.with(|t| t.check_access(&caller.user_id, caller.is_admin(), requested));
        if access == Access::Unknown {
            self.load_on_demand(requested).await;
            access = self
                .sessions
                .with(|t| t.check_access(&caller.user_id, caller.is_admin(), requested));
        }
        match access {
            Access::Denied => {
                tracing::info!(user_id = %caller.user_id, session_id = requested, "binding refused");
                self.reply_error(conn, Some(requested), ErrorInfo::bind_failed());
                false
            }
            Access::Owner | Access::AssistingAdmin | Access::Unknown => {
                self.move_binding(conn, requested);
                true
            }
        }
    }

    /// Binds `conn` to `session` (detaching it from its previous session) and announces it.
    fn move_binding(&self, conn: &ConnCtx, session: &str) {
        let previous = self.registry.bind(conn.id, session);
        let now = self.clock.now();
        self.sessions.with(|t| {
            if let Some(prev) = previous.as_deref().filter(|p| *p != session) {
                let _ = t.detach(prev, now);
            }
            // An id not in memory is bound as-is (§3.7); there is nothing to attach to yet.
            let _ = t.attach(session, now);
        });
        let frame = Frame::connection_status(
            &self.model_list,
            Some(session),
            &conn.caller.user_id,
            self.frame_now(),
        );
        self.send_conn(conn.id, &frame);
    }

    /// Loads a session that is not in memory from the store, so it resumes on any instance
    /// (§10 item 23). Failures leave it unknown.
    pub(crate) async fn load_on_demand(&self, id: &str) {
        if self.sessions.with(|t| t.get(id).is_some()) {
            return;
        }
        let doc = match self.with_store_retry("load", || self.store.load(id)).await {
            Ok(Some(doc)) => doc,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(session_id = id, %error, "loading session failed");
                return;
            }
        };
        let snapshot = snapshot_of(&doc);
        let (now, wall) = (self.clock.now(), self.clock.wall());
        let outcome = self.sessions.with(|t| t.insert_loaded(snapshot, now, wall));
        tracing::debug!(session_id = id, ?outcome, "session loaded on demand");
    }

    /// Queues `user_message` / `model_select` behind the session's earlier frames.
    fn queue_ordered(self: &Arc<Self>, conn: &ConnCtx, frame: ClientFrame) {
        let Ok(permit) = Arc::clone(&conn.in_flight).try_acquire_owned() else {
            self.reply_error(conn, None, ErrorInfo::server_busy());
            return;
        };
        // A frame refused for its shape does not use up the sender's rate budget.
        let Some(requested) = frame.session() else {
            self.reply_error(conn, None, ErrorInfo::missing_field("session_id"));
            return;
        };
        if frame.frame_type == FrameType::UserMessage {
            let now = self.clock.now();
            let decision = self.message_limiter.check(&conn.caller.user_id, now);
            if let Some(probe) = self.probe.get() {
                probe.on_rate_decision(&conn.caller.user_id, now, decision.is_allowed());
            }
            if let Decision::Denied { retry_after } = decision {
                self.metrics.rate_limited(Limiter::Message);
                tracing::info!(user_id = %conn.caller.user_id, ?retry_after, "message rate limit");
                self.reply_error(conn, frame.session(), ErrorInfo::too_many_requests(retry_after));
                return;
            }
        }

        // Keyed by user as well: two users proposing the same not-yet-created id must not wait
        // for each other (a session id is only authoritative once resolved for its owner).
        let key = format!("{}\u{0}{requested}", conn.caller.user_id);
        let engine = Arc::clone(self);
        let conn = conn.clone();
        self.workers.submit(
            self,
            &key,
            Box::pin(async move {
                match frame.frame_type {
                    FrameType::ModelSelect => engine.on_model_select(&conn, &frame).await,
                    _ => engine.on_user_message(&conn, &frame).await,
                }
                drop(permit);
            }),
        );
    }

    /// Resolves the authoritative session for a `user_message`/`model_select` (§6.2 with §10
    /// items 4, 8, 22), persisting a creation or a resumption, and moves the binding if the id
    /// changed. Errors are sent; `None` means stop.
    async fn resolve(self: &Arc<Self>, conn: &ConnCtx, requested: &str) -> Option<String> {
        let user = conn.caller.user_id.as_str();
        self.load_on_demand(requested).await;
        for _ in 0..4 {
            let fresh = SessionId::from(new_session_id());
            let (now, wall) = (self.clock.now(), self.clock.wall());
            let resolution = match self
                .sessions
                .with(|t| t.resolve(user, Some(requested), fresh, now, wall))
            {
                Ok(resolution) => resolution,
                Err(SessionError::IdInUse) => continue,
                Err(SessionError::NotOwner) => {
                    self.reply_error(conn, Some(requested), ErrorInfo::unauthorized_session());
                    return None;
                }
                Err(error) => {
                    tracing::error!(session_id = requested, %error, "session resolution failed");
                    self.reply_error(conn, Some(requested), ErrorInfo::unexpected());
                    return None;
                }
            };
            let id = resolution.id.as_str().to_string();
            match resolution.kind {
                ResolutionKind::Created => {
                    let doc = SessionDoc::new(id.clone(), user.to_string(), wall);
                    match self.with_store_retry("create_session", || self.store.create(&doc)).await
                    {
                        Ok(CreateOutcome::Created) => {}
                        Ok(CreateOutcome::ActiveExists(other)) => {
                            // Another instance created this user's session first: use it.
                            self.sessions.with(|t| t.remove(&id));
                            self.load_on_demand(&other).await;
                            continue;
                        }
                        Err(_) => {
                            self.sessions.with(|t| t.remove(&id));
                            self.reply_error(conn, Some(requested), ErrorInfo::database_error());
                            return None;
                        }
                    }
                    self.metrics.sessions_created.inc();
                    tracing::info!(session_id = %id, user_id = user, "session created");
                }
                ResolutionKind::Resumed => {
                    let patch = SessionPatch { reactivate: true, ..Default::default() };
                    if let Err(error) =
                        self.with_store_retry("reactivate", || self.store.update(&id, &patch)).await
                    {
                        tracing::warn!(session_id = %id, %error, "persisting a resumed session failed");
                    }
                }
                ResolutionKind::Existing | ResolutionKind::Reused => {}
            }
            if self.registry.bound(conn.id).as_deref() != Some(id.as_str()) {
                self.move_binding(conn, &id);
            }
            return Some(id);
        }
        self.reply_error(conn, Some(requested), ErrorInfo::unexpected());
        None
    }

    async fn on_user_message(self: &Arc<Self>, conn: &ConnCtx, frame: &ClientFrame) {
        let requested = frame.session_id.as_str();
        if conn.caller.is_admin() {
            let access =
                self.sessions.with(|t| t.check_access(&conn.caller.user_id, true, requested));
            if access == Access::AssistingAdmin {
                self.on_admin_message(conn, requested, frame).await;
                return;
            }
        }
        let Some(session) = self.resolve(conn, requested).await else { return };
        let user = conn.caller.user_id.clone();
        let msg = StoredMessage {
            id: new_message_id(),
            content: frame.content.clone(),
            ts: self.clock.wall(),
            sender: "user".to_string(),
            file_id: frame.file_id.clone(),
            file_url: frame.file_url.clone(),
            meta: frame.metadata.clone(),
        };
        if self
            .persist(PendingWrite::Append { session_id: session.to_string(), message: msg.clone() })
            .await
            .is_err()
        {
            self.session_error(conn, &session, ErrorInfo::database_error());
            return;
        }
        let now = self.clock.now();
        let (name, assisted) = self.sessions.with(|t| {
            let _ = t.record_message(&session, now);
            let name = t.name_if_empty(&session, &frame.content).ok().flatten();
            let assisted = t.get(&session).and_then(|s| s.assisting_admin().cloned());
            (name, assisted)
        });
        if let Some(name) = name {
            let patch = SessionPatch { name: Some(name), ..Default::default() };
            let _ = self
                .persist(PendingWrite::Update {
                    session_id: session.to_string(),
                    patch: patch.clone(),
                })
                .await;
        }
        // The assisting admin sees what the user writes (§10 item 2).
        let relay =
            Frame::relayed_message(&session, &frame.content, Sender::User, self.frame_now());
        let fanout = self.registry.send_to_session_admins(&session, &user, &Engine::encode(&relay));
        self.metrics.admin_messages_dropped.inc_by(fanout.dropped as u64);
        if assisted.is_some() && self.config.llm.pause_ai_when_assisted {
            return;
        }
        self.answer(conn, &session, &user).await;
    }

    /// Asks the session's model for a reply to the conversation so far.
    async fn answer(self: &Arc<Self>, conn: &ConnCtx, session: &str, user: &str) {
        if !self.shutdown.try_start_reply() {
            self.session_error(conn, session, ErrorInfo::service_unavailable());
            return;
        }
        self.send_session(session, &Frame::loading(session, self.frame_now()), Some(conn.id));
        let model_id =
            self.sessions.with(|t| t.get(session).and_then(|s| s.model_id().map(str::to_string)));
        let Some(model) = self.model(model_id.as_deref()).cloned() else {
            tracing::warn!(session_id = session, model_id = ?model_id, "no provider for the session's model");
            self.session_error(conn, session, ErrorInfo::llm_unavailable());
            self.forward_effects(self.shutdown.reply_finished(self.clock.now()));
            return;
        };
        let llm = &self.config.llm;
        let stored =
            self.conversation_messages(session, llm.history_max_messages).await.unwrap_or_default();
        let mut messages =
            history::conversation(&stored, llm.history_max_messages, llm.history_max_bytes);
        if messages.is_empty() {
            tracing::warn!(session_id = session, "history unavailable; nothing to answer");
            self.session_error(conn, session, ErrorInfo::llm_unavailable());
            self.forward_effects(self.shutdown.reply_finished(self.clock.now()));
            return;
        }
        messages.shrink_to_fit();
        let conversation_id = self
            .conversations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(session)
            .cloned();
        let request = ChatRequest { messages, user_key: user_key(user), conversation_id };
        let job = ReplyJob { session_id: session.to_string(), model, request, sender: conn.id };
        let live = self.replies.enter();
        let end = reply::run(self, job).await;
        drop(live);
        tracing::debug!(session_id = session, ?end, "reply ended");
        self.forward_effects(self.shutdown.reply_finished(self.clock.now()));
    }

    /// A message from the assisting admin: stored as `admin`, relayed with `sender:"admin"`.
    async fn on_admin_message(
        self: &Arc<Self>,
        conn: &ConnCtx,
        session: &str,
        frame: &ClientFrame,
    ) {
        let msg = StoredMessage {
            id: new_message_id(),
            content: frame.content.clone(),
            ts: self.clock.wall(),
            sender: "admin".to_string(),
            file_id: String::new(),
            file_url: String::new(),
            meta: frame.metadata.clone(),
        };
        if self
            .persist(PendingWrite::Append { session_id: session.to_string(), message: msg.clone() })
            .await
            .is_err()
        {
            self.session_error(conn, session, ErrorInfo::database_error());
            return;
        }
        let now = self.clock.now();
        self.sessions.with(|t| {
            let _ = t.record_message(session, now);
        });
        let relay =
            Frame::relayed_message(session, &frame.content, Sender::Admin, self.frame_now());
        self.send_session(session, &relay, Some(conn.id));
    }

    async fn on_model_select(self: &Arc<Self>, conn: &ConnCtx, frame: &ClientFrame) {
        let Some(session) = self.resolve(conn, &frame.session_id).await else { return };
        if !self.models.iter().any(|m| m.info.id == frame.model_id) {
            self.session_error(conn, &session, ErrorInfo::invalid_model(&frame.model_id));
            return;
        }
        self.sessions.with(|t| {
            let _ = t.set_model(&session, frame.model_id.clone());
        });
        let patch = SessionPatch { model_id: Some(frame.model_id.clone()), ..Default::default() };
        if let Err(error) = self
            .persist(PendingWrite::Update { session_id: session.to_string(), patch: patch.clone() })
            .await
        {
            tracing::warn!(session_id = %session, %error, "persisting the model failed");
        }
        let changed = Frame::model_changed(&session, &frame.model_id, self.frame_now());
        self.send_session(&session, &changed, Some(conn.id));
    }

    async fn on_help_request(self: &Arc<Self>, conn: &ConnCtx, frame: &ClientFrame) {
        let Some(session) = frame.session() else {
            self.reply_error(conn, None, ErrorInfo::missing_field("session_id"));
            return;
        };
        self.load_on_demand(session).await;
        let changed = match self.sessions.with(|t| t.request_help(session, &conn.caller.user_id)) {
            Ok(changed) => changed,
            Err(SessionError::NotOwner) => {
                self.reply_error(conn, Some(session), ErrorInfo::unauthorized_session());
                return;
            }
            Err(_) => {
                self.reply_error(conn, Some(session), ErrorInfo::session_not_found());
                return;
            }
        };
        if changed {
            let patch = SessionPatch { help_requested: Some(true), ..Default::default() };
            let _ = self
                .persist(PendingWrite::Update {
                    session_id: session.to_string(),
                    patch: patch.clone(),
                })
                .await;
        }
        tracing::warn!(session_id = session, user_id = %conn.caller.user_id, "help requested");
        self.alert_admins(session, &conn.caller.user_id);
        self.send_session(
            session,
            &Frame::help_requested(session, self.frame_now()),
            Some(conn.id),
        );
    }

    async fn on_file(self: &Arc<Self>, conn: &ConnCtx, frame: &ClientFrame) {
        let Some(session) = frame.session() else {
            self.reply_error(conn, None, ErrorInfo::missing_field("session_id"));
            return;
        };
        if !self.file_url_allowed(&frame.file_url).await {
            self.reply_error(conn, Some(session), ErrorInfo::invalid_file_url());
            return;
        }
        self.load_on_demand(session).await;
        let caller = &conn.caller;
        let sender = match self
            .sessions
            .with(|t| t.check_access(&caller.user_id, caller.is_admin(), session))
        {
            Access::Owner => Sender::User,
            Access::AssistingAdmin => Sender::Admin,
            Access::Unknown => {
                self.reply_error(conn, Some(session), ErrorInfo::session_not_found());
                return;
            }
            Access::Denied => {
                self.reply_error(conn, Some(session), ErrorInfo::unauthorized_session());
                return;
            }
        };
        let msg = StoredMessage {
            id: new_message_id(),
            content: frame.content.clone(),
            ts: self.clock.wall(),
            sender: sender.as_str().to_string(),
            file_id: frame.file_id.clone(),
            file_url: frame.file_url.clone(),
            meta: frame.metadata.clone(),
        };
        if self
            .persist(PendingWrite::Append { session_id: session.to_string(), message: msg.clone() })
            .await
            .is_err()
        {
            self.session_error(conn, session, ErrorInfo::database_error());
            return;
        }
        let now = self.clock.now();
        let model_id = self.sessions.with(|t| {
            let _ = t.record_message(session, now);
            t.get(session).and_then(|s| s.model_id().map(str::to_string))
        });
        self.send_session(
            session,
            &Frame::file_broadcast(frame, session, Sender::User, self.frame_now()),
            Some(conn.id),
        );
        if frame.frame_type == FrameType::VoiceMessage {
            if let Some(model) = model_id.and_then(|m| self.model(Some(&m)).cloned()) {
                let engine = Arc::clone(self);
                let session = session.to_string();
                let url = redact_query(&frame.file_url);
                let user = caller.user_id.clone();
                self.supervisor.spawn("voice-answer", async move {
                    engine.answer_voice(&session, &user, model, url).await;
                });
            }
        }
    }

    /// The background answer to a voice message (§3.8): one non-streamed reply within 60 s.
    async fn answer_voice(
        self: &Arc<Self>,
        session: &str,
        user: &str,
        model: super::hub::Model,
        url: String,
    ) {
        let request = ChatRequest {
            messages: vec![ChatMessage { role: Role::User, content: format!("Audio file: {url}") }],
            user_key: user_key(user),
            conversation_id: None,
        };
        let collect = async {
            let mut stream = model.provider.open_stream(request).await.ok()?;
            let mut text = String::new();
            while let Some(event) = stream.next().await {
                match event.ok()? {
                    StreamEvent::Delta(chunk) => text.push_str(&chunk),
                    StreamEvent::End { .. } => return Some(text),
                }
            }
            None
        };
        let Ok(Some(text)) = tokio::time::timeout(VOICE_BUDGET, collect).await else {
            tracing::warn!(session_id = session, "voice answer failed");
            return;
        };
        if text.is_empty() {
            return;
        }
        let msg = StoredMessage {
            id: new_message_id(),
            content: text.clone(),
            ts: self.clock.wall(),
            sender: "ai".to_string(),
            file_id: String::new(),
            file_url: String::new(),
            meta: Default::default(),
        };
        if self
            .persist(PendingWrite::Append { session_id: session.to_string(), message: msg.clone() })
            .await
            .is_ok()
        {
            self.send_session(session, &Frame::ai_message(session, text, self.frame_now()), None);
        }
    }

    async fn on_admin_leave(self: &Arc<Self>, conn: &ConnCtx, frame: &ClientFrame) {
        let Some(session) = frame.session() else {
            self.reply_error(conn, None, ErrorInfo::missing_field("session_id"));
            return;
        };
        let access = self.sessions.with(|t| t.check_access(&conn.caller.user_id, true, session));
        if access != Access::AssistingAdmin {
            self.reply_error(conn, Some(session), ErrorInfo::unauthorized_session());
            return;
        }
        self.end_assistance(session, &conn.caller.user_id).await;
    }

    /// Clears assistance, persists it and tells the session (`admin_leave`, §10 item 3).
    pub async fn end_assistance(&self, session: &str, admin_id: &str) -> Option<AdminRef> {
        let left = self.sessions.with(|t| t.leave(session, admin_id)).ok()?;
        let patch = SessionPatch {
            assistance: Some((false, String::new(), String::new())),
            ..Default::default()
        };
        let _ = self
            .persist(PendingWrite::Update { session_id: session.to_string(), patch: patch.clone() })
            .await;
        let frame = Frame::admin_leave(session, &left.admin.id, &left.admin.name, self.frame_now());
        self.send_session(session, &frame, None);
        // After the farewell, the admin's sockets stop seeing the session (§10 item 3).
        let owner = self.sessions.with(|t| t.get(session).map(|s| s.user_id().to_string()));
        if let Some(owner) = owner {
            self.registry.unbind_admin(session, admin_id, &owner);
        }
        Some(left.admin)
    }

    /// Alerts admins about a help request in the background, at most `HELP_ALERT_LIMIT` per
    /// session per `HELP_ALERT_WINDOW` (§6.7; excess requests are acknowledged but not alerted).
    fn alert_admins(self: &Arc<Self>, session: &str, user_id: &str) {
        let key = format!("help_request:{session}");
        if !self.help_limiter.check(&key, self.clock.now()).is_allowed() {
            self.metrics.rate_limited(Limiter::HelpAlert);
            tracing::info!(session_id = session, "help alert skipped: alert rate limit");
            return;
        }
        let alert = HelpAlert {
            user_id: user_id.to_string(),
            session_id: session.to_string(),
            at: self.frame_now(),
            admin_panel_url: self.config.alerts.admin_panel_url.clone(),
        };
        let notifier = Arc::clone(&self.notifier);
        self.supervisor.spawn("help-alert", async move {
            if let Err(error) = notifier.help_requested(&alert).await {
                tracing::error!(session_id = %alert.session_id, %error, "help alert failed");
            }
        });
    }

    /// `file_url` rule (§3.8): https, a host, and no private or loopback address — literal or
    /// resolved. A failed lookup is not an error.
    async fn file_url_allowed(&self, url: &str) -> bool {
        match check_file_url(url) {
            Err(_) => false,
            Ok(FileUrlHost::Ip(_)) => true,
            Ok(FileUrlHost::Domain(host)) => {
                super::dns::resolve(&host).await.iter().all(|ip| !is_forbidden_ip(*ip))
            }
        }
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

/// A stable, non-identifying key for a user (Dify's `user`, §10 item 29).
pub fn user_key(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    format!("user-{}", hex::encode(&digest[..16]))
}

/// The URL with any query string replaced by `?[REDACTED]` (§3.8 voice rule).
fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?[REDACTED]"),
        None => url.to_string(),
    }
}
