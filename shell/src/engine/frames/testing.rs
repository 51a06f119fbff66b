//! A harness for the frame handlers' unit tests: a whole engine over test doubles (the in-memory
//! store and outbox, the `echo` provider, a fixed DNS table — `files.example.com` public,
//! `intranet.example.com` private —, the log notifier) and connections
//! that are plain channels — no sockets. Frames arrive as parsed JSON.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chatbox_core::config::Config;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::ConnCtx;
use crate::adapters::llm::echo::EchoProvider;
use crate::engine::caller::Caller;
use crate::engine::clock::Clock;
use crate::engine::delivery::queue::{self, OutboundRx};
use crate::engine::delivery::{Outbound, Registration};
use crate::engine::dns::StaticResolver;
use crate::engine::hub::{BusWiring, Engine, Ports};
use crate::engine::notify::LogNotifier;
use crate::engine::persistence::{MemoryOutbox, MemoryStore};
use crate::engine::store::StoredMessage;

/// Longest wait for an expected frame before the test fails (a hang guard, not an assertion).
const PATIENCE: Duration = Duration::from_secs(20);

/// One test connection: its context and its outbound queue.
pub(crate) struct Client {
    pub ctx: ConnCtx,
    rx: OutboundRx,
}

/// An engine over test doubles.
pub(crate) struct Harness {
    pub engine: Arc<Engine>,
    pub store: Arc<MemoryStore>,
}

impl Harness {
    /// The dev configuration with one `echo` model.
    pub async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    /// The dev configuration changed by `edit`.
    pub async fn with_config(edit: impl FnOnce(&mut Config)) -> Self {
        Self::with_providers(edit, vec![Arc::new(EchoProvider)]).await
    }

    /// The dev configuration changed by `edit`, its one model served by `providers[0]`.
    pub async fn with_providers(
        edit: impl FnOnce(&mut Config),
        providers: Vec<Arc<dyn crate::engine::llm::LlmProvider>>,
    ) -> Self {
        Self::with_store(edit, providers, Arc::new(MemoryStore::new()), 64).await
    }

    /// As [`Harness::with_providers`] over `store`, with an outbox of `outbox` writes (0: a
    /// write the store refuses fails at once instead of waiting in the outbox).
    pub async fn with_store(
        edit: impl FnOnce(&mut Config),
        providers: Vec<Arc<dyn crate::engine::llm::LlmProvider>>,
        store: Arc<MemoryStore>,
        outbox: usize,
    ) -> Self {
        let mut config = Config::for_dev("q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne".into(), "/tmp/unused");
        edit(&mut config);
        let ports = Ports {
            store: Arc::clone(&store) as _,
            outbox: Arc::new(MemoryOutbox::new(outbox)),
            providers,
            notifier: Arc::new(LogNotifier),
            resolver: Arc::new(
                StaticResolver::default()
                    .with("files.example.com", [IpAddr::from([93, 184, 216, 34])])
                    .with("intranet.example.com", [IpAddr::from([10, 0, 0, 7])]),
            ),
        };
        let (engine, _channels) =
            Engine::new(Arc::new(config), ports, Clock::new(), BusWiring::local());
        Self { engine, store }
    }

    /// A connection of `user_id` (an admin when `admin`), greeted like a real one.
    pub fn connect(&self, user_id: &str, admin: bool) -> Client {
        let (tx, rx) = queue::channel(256);
        let id = self.engine.delivery.register(Registration { user_id, is_admin: admin, tx });
        let roles = if admin { vec!["admin".to_string()] } else { Vec::new() };
        let caller = Caller { user_id: user_id.into(), name: user_id.into(), roles };
        let ctx = ConnCtx { id, caller, in_flight: Arc::new(Semaphore::new(8)) };
        super::on_connect(&self.engine, &ctx);
        Client { ctx, rx }
    }

    /// `client` closes.
    pub fn disconnect(&self, client: Client) {
        super::on_disconnect(&self.engine, client.ctx.id);
    }

    /// How many connections the session table counts on `session` (0 when not in memory).
    pub fn attached(&self, session: &str) -> u32 {
        self.engine.sessions.with(|t| t.get(session).map_or(0, |s| s.attached()))
    }

    /// `client` sends `text`.
    pub async fn send(&self, client: &Client, text: &str) {
        super::on_text(&self.engine, &client.ctx, text).await;
    }

    /// Frames `client` receives up to and including the first that satisfies `done`.
    pub async fn until(&self, client: &mut Client, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let next = tokio::time::timeout(PATIENCE, client.rx.recv()).await;
            let Ok(Some(Outbound::Frame(text))) = next else {
                panic!("expected frame never came; got {seen:#?}");
            };
            let frame: Value = serde_json::from_str(&text).expect("frames are JSON");
            let last = done(&frame);
            seen.push(frame);
            if last {
                return seen;
            }
        }
    }

    /// `client` opens a session with `content` and waits for the reply's `done`; its id.
    pub async fn start_session(&self, client: &mut Client, content: &str) -> String {
        let text =
            format!(r#"{{"type":"user_message","session_id":"proposed","content":"{content}"}}"#);
        self.send(client, &text).await;
        let frames = self.until(client, is_done).await;
        frames.last().and_then(|f| f["session_id"].as_str()).expect("session id").to_string()
    }

    /// A harness with user `u1` connected and its session started by "hi" (the session's id).
    pub async fn with_session() -> (Self, Client, String) {
        let h = Self::new().await;
        let mut user = h.connect("u1", false);
        let session = h.start_session(&mut user, "hi").await;
        (h, user, session)
    }

    /// Admin `admin_id` takes `session` over.
    pub async fn assist(&self, session: &str, admin_id: &str) {
        let admin =
            Caller { user_id: admin_id.into(), name: admin_id.into(), roles: vec!["admin".into()] };
        let outcome = crate::engine::admin::takeover(&self.engine, &admin, session).await;
        assert!(outcome.is_ok(), "takeover refused: {outcome:?}");
    }

    /// The stored messages of `session`.
    pub fn messages(&self, session: &str) -> Vec<StoredMessage> {
        let docs = self.store.snapshot();
        docs.into_iter().find(|d| d.id == session).map(|d| d.messages).unwrap_or_default()
    }
}

/// The reply's `done` frame.
pub(crate) fn is_done(frame: &Value) -> bool {
    frame["type"] == "ai_response" && frame["metadata"]["done"] == "true"
}

/// A frame of `kind`.
pub(crate) fn is_type(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |frame| frame["type"] == kind
}

/// An error frame with `code`.
pub(crate) fn is_error(code: &'static str) -> impl Fn(&Value) -> bool {
    move |frame| frame["type"] == "error" && frame["error"]["code"] == code
}
