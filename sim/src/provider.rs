//! Simulated LLM providers, at the `LlmProvider` trait (not over simulated HTTP): every
//! behaviour the engine must survive — a normal stream, a trickle that outlives the whole-reply
//! deadline, a stall before the first chunk, a stall mid-stream, a failure to open, a failure
//! mid-stream, and a call that never returns — drawn per request from the seed. Simulating at the
//! trait keeps each seed fast; the HTTP adapters are covered against a real scripted upstream in
//! `tests/tests/providers.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chatbox::adapters::llm::echo::split_chunks;
use chatbox::adapters::llm::request::last_user_text;
use chatbox::engine::llm::{ChatRequest, EventStream, LlmProvider, ProviderError, StreamEvent};
use chatbox_core::stream::StreamDeadlines;
use futures_util::stream;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What one request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Streams the echo of the user's text in a few chunks, then ends.
    Stream,
    /// Sends chunks just inside the idle deadline until the whole-reply deadline passes.
    Trickle,
    /// Accepts the request, then never sends a chunk.
    StallBeforeFirst,
    /// Sends two chunks, then nothing.
    StallMid,
    /// Refuses to open (transient: the engine retries).
    FailOpen,
    /// Sends one chunk, then fails.
    FailMid,
    /// `open_stream` never returns.
    Hang,
}

/// Counts of behaviours served, for the run report.
#[derive(Debug, Default)]
pub struct ProviderStats {
    /// Requests served.
    pub requests: AtomicU64,
}

/// A provider whose behaviour per request comes from a seeded generator.
#[derive(Debug)]
pub struct SimProvider {
    rng: Mutex<ChaCha8Rng>,
    limits: StreamDeadlines,
    /// How many requests it served.
    pub stats: ProviderStats,
}

impl SimProvider {
    /// A provider drawing from `seed`, pacing its misbehaviour around `limits`.
    pub fn new(seed: u64, limits: StreamDeadlines) -> Self {
        Self {
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            limits,
            stats: ProviderStats::default(),
        }
    }

    fn draw(&self) -> (Behaviour, u64) {
        let mut rng = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let roll = rng.next_u64() % 100;
        let behaviour = match roll {
            0..=69 => Behaviour::Stream,
            70..=74 => Behaviour::Trickle,
            75..=79 => Behaviour::StallBeforeFirst,
            80..=84 => Behaviour::StallMid,
            85..=91 => Behaviour::FailOpen,
            92..=96 => Behaviour::FailMid,
            _ => Behaviour::Hang,
        };
        (behaviour, rng.next_u64())
    }
}

fn forever<T>() -> impl std::future::Future<Output = T> {
    std::future::pending()
}

#[async_trait]
impl LlmProvider for SimProvider {
    fn kind(&self) -> &'static str {
        "sim"
    }

    async fn open_stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let (behaviour, noise) = self.draw();
        let text = last_user_text(request).unwrap_or_default().to_owned();
        let chunks = split_chunks(&text, chatbox_core::budgets::ECHO_CHUNKS);
        let gap = Duration::from_millis(20 + noise % 400);
        let idle = self.limits.idle;
        match behaviour {
            Behaviour::Hang => forever().await,
            Behaviour::FailOpen => Err(ProviderError::Transient {
                provider: "sim",
                detail: "injected: connection refused".into(),
            }),
            Behaviour::Stream => Ok(paced(chunks, gap, Tail::End)),
            Behaviour::Trickle => {
                let many: Vec<String> = std::iter::repeat_n(text.clone(), 1000).collect();
                Ok(paced(many, idle.mul_f64(0.8), Tail::End))
            }
            Behaviour::StallBeforeFirst => Ok(paced(Vec::new(), gap, Tail::Stall)),
            Behaviour::StallMid => {
                Ok(paced(chunks.into_iter().take(2).collect(), gap, Tail::Stall))
            }
            Behaviour::FailMid => Ok(paced(chunks.into_iter().take(1).collect(), gap, Tail::Fail)),
        }
    }
}

/// How a paced stream ends after its chunks.
#[derive(Debug, Clone, Copy)]
enum Tail {
    End,
    Stall,
    Fail,
}

fn paced(chunks: Vec<String>, gap: Duration, tail: Tail) -> EventStream {
    let state = (chunks.into_iter(), false);
    Box::pin(stream::unfold(state, move |(mut rest, ended)| async move {
        if ended {
            return None;
        }
        tokio::time::sleep(gap).await;
        if let Some(chunk) = rest.next() {
            return Some((Ok(StreamEvent::Delta(chunk)), (rest, false)));
        }
        match tail {
            Tail::End => {
                Some((Ok(StreamEvent::End { conversation_id: None, usage: None }), (rest, true)))
            }
            Tail::Fail => Some((
                Err(ProviderError::Permanent {
                    provider: "sim",
                    detail: "injected mid-stream failure".into(),
                }),
                (rest, true),
            )),
            Tail::Stall => forever().await,
        }
    }))
}
