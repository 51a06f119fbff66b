//! The figure of issue 17: time one fallback hop adds to the first chunk, the failed attempt
//! excluded. Not a test (nothing is asserted); run it with
//!
//! ```text
//! cargo build -p chatbox --bin chatbox && cargo run -p chatbox-tests --example fallback_hop [N]
//! ```
//!
//! Three measurements over real loopback sockets, `N` messages each (default 300), the real
//! `chatbox` binary (`target/debug/chatbox`, like the tests) and scripted OpenAI-compatible
//! upstreams that answer at once:
//! 1. **direct** — the model's provider answers: time from sending `user_message` to the first
//!    `ai_response` chunk;
//! 2. **fallback** — the model's provider refuses with HTTP 400 (a permanent failure: no retry
//!    and no schedule delay, so only the hop itself is left) and its fallback answers;
//! 3. **failed attempt** — the same 400 round trip made with chatbox's own provider adapter and
//!    connection pool.
//!
//! Added by one hop = fallback − direct − failed attempt (medians and p90s).

use std::time::Duration;

use chatbox::adapters::llm::http_client::{build_client, ProviderSettings};
use chatbox::adapters::llm::openai::OpenAiProvider;
use chatbox::engine::llm::{ChatMessage, ChatRequest, LlmProvider, Role};
use chatbox_core::budgets::PROVIDER_CONNECT_TIMEOUT;
use chatbox_core::config::{Origin, Secret};
use chatbox_tests::harness::{is_done, now, Server, ServerOpts};
use chatbox_tests::upstream::{Script, Upstream};

const STEP: Duration = Duration::from_secs(10);

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index.min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// First-chunk latencies of `n` messages on one connection to `server`.
async fn first_chunks(server: &Server, n: usize) -> Vec<Duration> {
    let token = server.token("bench-user", &["user"], None);
    let mut client = server.connect(&token).await;
    let mut session = "bench-session".to_string();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let started = now();
        client.send_user_message(&session, "Hello").await;
        let mut first = None;
        loop {
            let frame = client.recv_frame(STEP).await;
            if frame["type"] == "ai_response" && first.is_none() && !is_done(&frame) {
                first = Some(now() - started);
            }
            if is_done(&frame) || frame["type"] == "error" {
                assert!(frame["type"] != "error", "unexpected error: {frame}");
                session = frame["session_id"].as_str().unwrap_or(&session).to_string();
                break;
            }
        }
        // The first ten warm the connection pools up.
        if i >= 10 {
            samples.push(first.expect("a first chunk"));
        }
    }
    samples
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let backup = Upstream::start().await;
    backup.set_default(Script::reply(["Hi"]));
    backup.set_recording(false);
    let refusing = Upstream::start().await;
    refusing.set_default(Script::status(400, r#"{"error":{"message":"no"}}"#));
    refusing.set_recording(false);
    let opts =
        || ServerOpts::new().env("RATE_LIMIT", "1000000").env("LLM_HISTORY_MAX_MESSAGES", "2");

    let direct = Server::start(opts().provider("backup", "Backup", "openai", &backup.url())).await;
    let mut direct_samples = first_chunks(&direct, n).await;
    drop(direct);

    let fallback = Server::start(
        opts()
            .provider("primary", "Primary", "openai", &refusing.url())
            .provider("backup", "Backup", "openai", &backup.url())
            .env("LLM_PROVIDER_1_FALLBACK", "backup"),
    )
    .await;
    let mut fallback_samples = first_chunks(&fallback, n).await;
    drop(fallback);

    let client = build_client(PROVIDER_CONNECT_TIMEOUT).expect("client");
    let settings = ProviderSettings::new(
        "primary",
        refusing.url(),
        Secret::new("sk-bench-0123456789", Origin::Env),
        "m",
    );
    let provider = OpenAiProvider::new(settings, client);
    let request = ChatRequest {
        messages: vec![ChatMessage { role: Role::User, content: "Hello".into() }],
        user_key: "user-bench".into(),
        conversation_id: None,
    };
    let mut failed_samples = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let started = now();
        let refused = provider.open_stream(request.clone()).await;
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
        ("direct first chunk", &mut direct_samples),
        ("first chunk through one fallback hop", &mut fallback_samples),
        ("failed attempt (HTTP 400 round trip)", &mut failed_samples),
    ] {
        let (p50, p90) = (percentile(samples, 0.5), percentile(samples, 0.9));
        println!("| {name} | {:.3} | {:.3} |", ms(p50), ms(p90));
        rows.push((p50, p90));
    }
    let added = |i: usize| {
        let pick = |r: (Duration, Duration)| if i == 0 { r.0 } else { r.1 };
        ms(pick(rows[1])) - ms(pick(rows[0])) - ms(pick(rows[2]))
    };
    println!(
        "| **added by the hop** (fallback − direct − failed attempt) | {:.3} | {:.3} |",
        added(0),
        added(1)
    );
}
