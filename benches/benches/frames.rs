//! The protocol hot paths of chatbox-core: [`parse_client_frame`] (parse, sanitize, defaults,
//! validate) on a typical `user_message` (about 100 bytes of content) and on a maximum-size frame
//! (every limited field at its §3.4 limit: content exactly 10 000 bytes, ten metadata values of
//! 1 000 bytes each), and [`Frame::to_json`] of one streamed `ai_response` chunk.
//!
//! Inputs are plain ASCII without escapes; criterion also reports bytes per second
//! (`Throughput::Bytes` of the frame text).

use std::hint::black_box;

use chatbox_core::protocol::inbound::{parse_client_frame, InboundLimits};
use chatbox_core::protocol::Frame;
use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput};

/// The session id every frame carries (32 hex digits, as the shell mints them).
const SESSION: &str = "3f6c9a0e1b2d4c5f8a7e6d5c4b3a2910";

/// The server's wall clock for the parser (the frames' timestamps lie one second before it).
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_001, 0).unwrap_or_default()
}

/// A typical `user_message`: about 100 bytes of content, session id, timestamp, sender.
fn typical_user_message() -> String {
    let content = "Hello! Could you help me plan a three-day trip to Lisbon in May? \
                   I like food, museums and long walks.";
    format!(
        r#"{{"type":"user_message","session_id":"{SESSION}","content":"{content}","timestamp":"2023-11-14T22:13:20.000Z","sender":"user"}}"#
    )
}

/// `n` bytes of ASCII text (words and spaces, no leading or trailing space).
fn text(n: usize) -> String {
    let words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ";
    let mut s: String = words.chars().cycle().take(n).collect();
    s.replace_range(n - 1.., "x");
    s.replace_range(..1, "x");
    s
}

/// The largest valid frame: every length-limited field exactly at its limit.
fn max_size_frame() -> String {
    let l = InboundLimits::DEFAULT;
    let session = "s".repeat(l.session_id);
    let mut url = String::from("https://files.example.com/");
    url.push_str(&"u".repeat(l.file_url - url.len()));
    let metadata: Vec<String> =
        (0..10).map(|i| format!(r#""key{i}":"{}""#, text(l.metadata_value))).collect();
    format!(
        r#"{{"type":"user_message","session_id":"{session}","content":"{}","file_id":"{}","file_url":"{url}","model_id":"{}","timestamp":"2023-11-14T22:13:20.000Z","sender":"user","metadata":{{{}}}}}"#,
        text(l.content),
        "f".repeat(l.file_id),
        "m".repeat(l.model_id),
        metadata.join(","),
    )
}

fn frames(c: &mut Criterion) {
    let limits = InboundLimits::DEFAULT;
    let now = now();
    let typical = typical_user_message();
    let largest = max_size_frame();
    for input in [&typical, &largest] {
        let parsed = parse_client_frame(input, now, &limits);
        assert!(parsed.is_ok(), "bench input refused: {parsed:?}");
    }
    let chunk = Frame::ai_chunk(SESSION, "openai-gpt4", "Lisbon in May is lovely: ", now);

    let mut group = c.benchmark_group("frames");
    group.throughput(Throughput::Bytes(typical.len() as u64));
    group.bench_function("parse_user_message_typical", |b| {
        b.iter(|| parse_client_frame(black_box(&typical), now, &limits));
    });
    group.throughput(Throughput::Bytes(largest.len() as u64));
    group.bench_function("parse_max_size", |b| {
        b.iter(|| parse_client_frame(black_box(&largest), now, &limits));
    });
    let json_len = chunk.to_json().len();
    group.throughput(Throughput::Bytes(json_len as u64));
    group.bench_function("to_json_stream_chunk", |b| {
        b.iter(|| black_box(&chunk).to_json());
    });
    group.finish();
    if chatbox_benches::bench_mode() {
        eprintln!(
            "frames: typical user_message {} B, max-size frame {} B, stream chunk JSON {} B",
            typical.len(),
            largest.len(),
            json_len
        );
    }
}

fn main() {
    chatbox_benches::run(frames);
}
