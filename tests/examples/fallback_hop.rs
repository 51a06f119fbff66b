//! The figure of issue 17: time one fallback hop adds to the first chunk, the failed attempt
//! excluded. Not a test (nothing is asserted); run it with
//!
//! ```text
//! cargo build -p chatbox --bin chatbox && cargo run -p chatbox-tests --example fallback_hop [N]
//! ```
//!
//! Measurements over real loopback sockets, `N` messages each (default 300), the real
//! `chatbox` binary (`target/debug/chatbox`, like the tests) and scripted OpenAI-compatible
//! upstreams that answer at once:
//! 1. **direct** — the model's provider answers: time from sending `user_message` to the first
//!    `ai_response` chunk (messages alternate with run 2's, so both see the same machine load);
//! 2. **fallback** — the model's provider refuses with HTTP 400 (a permanent failure: no retry
//!    and no schedule delay, so only the hop itself is left) and its fallback answers; same
//!    measure;
//! 3. **gap** — in run 2, from the refusing upstream receiving a message's request to the
//!    fallback upstream receiving its request (both upstreams run in this process, one clock);
//! 4. **failed attempt** — the 400 round trip made with chatbox's own provider adapter and
//!    connection pool.
//!
//! Added by one hop = gap − failed attempt (percentile by percentile): chatbox's own time
//! between the refusal and the fallback's request. Rows 1 and 2 are end to end (store
//! writes, history read) and on a shared machine differ by more noise than the hop.

use std::time::Duration;

use chatbox::adapters::llm::http_client::{build_client, ProviderSettings};
use chatbox::adapters::llm::openai::OpenAiProvider;
use chatbox::engine::llm::{ChatMessage, ChatRequest, LlmProvider, Role};
use chatbox_core::budgets::PROVIDER_CONNECT_TIMEOUT;
use chatbox_core::config::{Origin, Secret};
use chatbox_tests::harness::{is_done, now, Server, ServerOpts};
use chatbox_tests::upstream::{RecordedRequest, Script, Upstream};
use tokio::time::Instant;

const STEP: Duration = Duration::from_secs(10);

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index.min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A connection of one user to a server and the session it talks in.
struct Talker {
    client: chatbox_tests::harness::Client,
    session: String,
}

impl Talker {
    async fn new(server: &Server) -> Self {
        let token = server.token("bench-user", &["user"], None);
        Self { client: server.connect(&token).await, session: "bench-session".into() }
    }

    /// Sends one message; when it was sent and when its first chunk arrived.
    async fn one(&mut self) -> (Instant, Instant) {
        let started = now();
        self.client.send_user_message(&self.session, "Hello").await;
        let mut first = None;
        loop {
            let frame = self.client.recv_frame(STEP).await;
            if frame["type"] == "ai_response" && first.is_none() && !is_done(&frame) {
                first = Some(now());
            }
            if is_done(&frame) || frame["type"] == "error" {
                assert!(frame["type"] != "error", "unexpected error: {frame}");
                self.session = frame["session_id"].as_str().unwrap_or(&self.session).to_string();
                break;
            }
        }
        (started, first.expect("a first chunk"))
    }
}

fn spans(
    times: &[(Instant, Instant)],
    f: impl Fn(&(Instant, Instant)) -> Duration,
) -> Vec<Duration> {
    times.iter().map(f).collect()
}

/// Send → the upstream's receipt of the same message's request (warm-up skipped).
fn before(times: &[(Instant, Instant)], requests: &[RecordedRequest]) -> Vec<Duration> {
    times.iter().zip(requests.iter().skip(10)).map(|((sent, _), r)| r.received_at - *sent).collect()
}

/// The upstream's receipt → the client's first chunk.
fn after(times: &[(Instant, Instant)], requests: &[RecordedRequest]) -> Vec<Duration> {
    times
        .iter()
        .zip(requests.iter().skip(10))
        .map(|((_, first), r)| *first - r.received_at)
        .collect()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let backup = Upstream::start().await;
    backup.set_default(Script::reply(["Hi"]));
    let refusing = Upstream::start().await;
    refusing.set_default(Script::status(400, r#"{"error":{"message":"no"}}"#));
    let opts =
        || ServerOpts::new().env("RATE_LIMIT", "1000000").env("LLM_HISTORY_MAX_MESSAGES", "2");

    // The direct model and the fallback talk to separate upstreams with the same script, so
    // each upstream's requests pair with one run's messages.
    let direct_upstream = Upstream::start().await;
    direct_upstream.set_default(Script::reply(["Hi"]));
    let direct =
        Server::start(opts().provider("backup", "Backup", "openai", &direct_upstream.url())).await;
    let fallback = Server::start(
        opts()
            .provider("primary", "Primary", "openai", &refusing.url())
            .provider("backup", "Backup", "openai", &backup.url())
            .env("LLM_PROVIDER_1_FALLBACK", "backup"),
    )
    .await;
    // Messages alternate between the two servers, so both see the same machine load.
    let (mut to_direct, mut to_fallback) =
        (Talker::new(&direct).await, Talker::new(&fallback).await);
    let (mut direct_times, mut fallback_times) = (Vec::new(), Vec::new());
    for i in 0..n + 10 {
        let (d, f) = (to_direct.one().await, to_fallback.one().await);
        // The first ten warm the connection pools up.
        if i >= 10 {
            direct_times.push(d);
            fallback_times.push(f);
        }
    }
    drop((to_direct, to_fallback, direct, fallback));
    let direct_requests = direct_upstream.take_requests();
    let (refused, answered) = (refusing.take_requests(), backup.take_requests());
    let mut gaps: Vec<Duration> = refused
        .iter()
        .zip(&answered)
        .skip(10)
        .map(|(r, a)| a.received_at.saturating_duration_since(r.received_at))
        .collect();
    let mut direct_samples = spans(&direct_times, |(sent, first)| *first - *sent);
    let mut fallback_samples = spans(&fallback_times, |(sent, first)| *first - *sent);
    let mut direct_before = before(&direct_times, &direct_requests);
    let mut fallback_before = before(&fallback_times, &refused);
    let mut direct_after = after(&direct_times, &direct_requests);
    let mut fallback_after = after(&fallback_times, &answered);

    let client = build_client(PROVIDER_CONNECT_TIMEOUT).expect("client");
    let settings = ProviderSettings::new(
        "primary",
        refusing.url(),
        Secret::new("sk-bench-0123456789", Origin::Env),
        "m",
    );
    let provider = OpenAiProvider::new(settings, client);
    let request = ChatRequest {
        messages: vec![ChatMessage {
            role: Role::User,
            content: "Hello".into(),
            images: Vec::new(),
        }],
        user_key: "user-bench".into(),
        conversation_id: None,
    };
    let mut failed_samples = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let started = now();
        let refused = provider.open_stream(&request).await;
        assert!(refused.is_err(), "the refusing upstream refuses");
        if i >= 10 {
            failed_samples.push(now() - started);
        }
    }

    println!("fallback hop, {n} messages each (debug build of chatbox, loopback):");
    println!("| measurement | p50 (ms) | p90 (ms) |");
    println!("|---|---|---|");
    let mut rows = Vec::new();
    for (name, samples) in [
        ("direct first chunk (end to end)", &mut direct_samples),
        ("first chunk through one fallback hop (end to end)", &mut fallback_samples),
        ("direct: send → upstream request", &mut direct_before),
        ("fallback: send → refused request", &mut fallback_before),
        ("gap: refused request → fallback request", &mut gaps),
        ("direct: upstream request → client's first chunk", &mut direct_after),
        ("fallback: fallback request → client's first chunk", &mut fallback_after),
        ("failed attempt (HTTP 400 round trip)", &mut failed_samples),
    ] {
        let (p50, p90) = (percentile(samples, 0.5), percentile(samples, 0.9));
        println!("| {name} | {:.3} | {:.3} |", ms(p50), ms(p90));
        rows.push((p50, p90));
    }
    let added = |i: usize| {
        let pick = |r: (Duration, Duration)| if i == 0 { r.0 } else { r.1 };
        ms(pick(rows[4])) - ms(pick(rows[7]))
    };
    println!("| **added by the hop** (gap − failed attempt) | {:.3} | {:.3} |", added(0), added(1));
}
