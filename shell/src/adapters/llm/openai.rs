//! The OpenAI-compatible provider (PROTOCOL.md §7.3): `POST {endpoint}/chat/completions` with
//! the whole conversation (§10 item 1) and `"stream": true`, read as server-sent events.
//!
//! The request asks for `stream_options: {"include_usage": true}` (issue 17): the upstream then
//! sends one last chunk before `[DONE]` with empty `choices` and a `usage` object
//! (`prompt_tokens`, `completion_tokens`), which the end of the reply carries.
//!
//! Events: `data: [DONE]` ends the reply; otherwise `choices[0].delta.content` is a chunk. An
//! `error` object (or an SSE event named `error`) is a permanent failure. A body that ends
//! cleanly after a choice carried a `finish_reason` counts as complete even without `[DONE]`
//! (some OpenAI-compatible servers omit it, and nothing of the reply is missing); a body that
//! ends before that is a truncated stream.
//!
//! A content chunk is read straight into borrowed structs ([`Chunk`]); only an event that is
//! anything else (an error, the usage chunk, an unexpected shape) is read as a JSON tree, with the
//! same rules. Building the tree cost ~11 000 instructions a chunk (BENCHMARKS.md "1d").

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use super::sse::Event;
use async_trait::async_trait;
use base64::Engine as _;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::http_client::{ProviderSettings, RequestUrl, Upstream};
use super::sse::{error_text, json_data, post_for_events, tokens, Decoded, SseDecoder};
use crate::engine::llm::{
    ChatMessage, ChatRequest, EventStream, LlmProvider, ProviderError, StreamEvent, TokenUsage,
};

const UPSTREAM: Upstream = Upstream { kind: "openai", display: "OpenAI" };

/// An OpenAI-compatible chat-completions upstream.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    settings: ProviderSettings,
    client: reqwest::Client,
    url: RequestUrl,
}

impl OpenAiProvider {
    /// A provider for `settings`, sending through the server's shared `client`
    /// (see [`super::http_client::build_client`]).
    pub fn new(settings: ProviderSettings, client: reqwest::Client) -> Self {
        let url = RequestUrl::new(&settings.endpoint, "chat/completions");
        Self { settings, client, url }
    }
}

/// The request body (no other parameters, as the original, but the usage request).
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    stream_options: StreamOptions,
}

/// `stream_options`: ask for the final usage chunk.
#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// One conversation line on the wire.
#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: WireContent<'a>,
}

/// A line's content: plain text, or (with images, for a vision model) content parts — the text
/// then each image as an `image_url` with a `data:` URL.
#[derive(Serialize)]
#[serde(untagged)]
enum WireContent<'a> {
    Text(&'a str),
    Parts(Vec<serde_json::Value>),
}

impl<'a> WireContent<'a> {
    fn of(message: &'a ChatMessage) -> Self {
        if message.images.is_empty() {
            return WireContent::Text(&message.content);
        }
        let mut parts = Vec::with_capacity(message.images.len() + 1);
        if !message.content.is_empty() {
            parts.push(serde_json::json!({"type": "text", "text": message.content}));
        }
        for image in &message.images {
            let data = base64::engine::general_purpose::STANDARD.encode(&image.data);
            let url = format!("data:{};base64,{data}", image.media_type);
            parts.push(serde_json::json!({"type": "image_url", "image_url": {"url": url}}));
        }
        WireContent::Parts(parts)
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    fn kind(&self) -> &'static str {
        UPSTREAM.kind
    }

    async fn open_stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
        let body = Body {
            model: &self.settings.model,
            messages: request
                .messages
                .iter()
                .map(|m| WireMessage { role: m.role.as_str(), content: WireContent::of(m) })
                .collect(),
            stream: true,
            stream_options: StreamOptions { include_usage: true },
        };
        let http = self.url.post(&self.client).bearer_auth(self.settings.api_key.expose());
        post_for_events(UPSTREAM, &self.settings, http, &body, Decoder::default()).await
    }
}

/// Reads chat-completion chunks.
#[derive(Debug, Default)]
struct Decoder {
    /// A choice carried a `finish_reason`: the reply is complete even if `[DONE]` never comes.
    finished_reason_seen: bool,
    /// The usage chunk's numbers, once it came.
    usage: Option<TokenUsage>,
}

/// The common event: a content chunk with no `error` and no `usage` (both absent or `null`).
/// Read by hand rather than derived: a derived struct also accepts a JSON array, which the tree
/// reading would not look into.
#[derive(Default)]
struct Chunk<'a> {
    error: Option<IgnoredAny>,
    usage: Option<IgnoredAny>,
    choices: Option<Vec<Choice<'a>>>,
}

/// One choice of a [`Chunk`].
#[derive(Default)]
struct Choice<'a> {
    delta: Option<Delta<'a>>,
    finish_reason: Option<IgnoredAny>,
}

/// A choice's `delta`.
#[derive(Default)]
struct Delta<'a> {
    content: Option<Text<'a>>,
}

/// A JSON string, borrowed from the event when it has no escapes.
struct Text<'a>(Cow<'a, str>);

/// Implements `Deserialize` for a struct read from a JSON object only: the named keys into
/// their fields (a repeated key: the last wins, as in the tree), any other key skipped.
macro_rules! from_object {
    ($ty:ident { $($key:literal => $field:ident),* $(,)? }) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $ty<'a> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Fields<'a>(PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for Fields<'a> {
                    type Value = $ty<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<$ty<'a>, M::Error> {
                        let mut read = $ty::default();
                        while let Some(key) = map.next_key::<Text<'de>>()? {
                            match key.0.as_ref() {
                                $($key => read.$field = map.next_value()?,)*
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(read)
                    }
                }
                deserializer.deserialize_map(Fields(PhantomData))
            }
        }
    };
}

from_object!(Chunk { "error" => error, "usage" => usage, "choices" => choices });
from_object!(Choice { "delta" => delta, "finish_reason" => finish_reason });
from_object!(Delta { "content" => content });

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Chars;
        impl<'de> Visitor<'de> for Chars {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(text))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(text.to_owned()))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(text))
            }
        }
        deserializer.deserialize_str(Chars).map(Text)
    }
}

impl Decoder {
    /// `event` read as a plain content [`Chunk`]; `None` when it is anything else, for
    /// [`SseDecoder::decode`]'s general reading.
    fn content_chunk(&mut self, event: &Event) -> Option<Decoded> {
        if event.name() == "error" {
            return None;
        }
        let chunk: Chunk<'_> = serde_json::from_str(&event.data).ok()?;
        if chunk.error.is_some() || chunk.usage.is_some() {
            return None;
        }
        let Some(choice) = chunk.choices.and_then(|c| c.into_iter().next()) else {
            return Some(Decoded::Skip);
        };
        if choice.finish_reason.is_some() {
            self.finished_reason_seen = true;
        }
        let text = choice.delta.and_then(|d| d.content).map(|t| t.0).unwrap_or_default();
        Some(Decoded::Delta(text.into_owned()))
    }
}

impl SseDecoder for Decoder {
    fn decode(&mut self, event: &Event) -> Decoded {
        if event.data.trim() == "[DONE]" {
            return Decoded::End { conversation_id: None, usage: self.usage };
        }
        if let Some(decoded) = self.content_chunk(event) {
            return decoded;
        }
        self.decode_general(event)
    }

    fn end_of_body(&mut self) -> Option<StreamEvent> {
        self.finished_reason_seen
            .then_some(StreamEvent::End { conversation_id: None, usage: self.usage })
    }
}

impl Decoder {
    /// Any event but `[DONE]`, read as a JSON tree.
    fn decode_general(&mut self, event: &Event) -> Decoded {
        let Some(json) = json_data(event) else {
            if event.name() == "error" {
                return Decoded::Fail(super::http_client::truncate(
                    event.data.clone(),
                    chatbox_core::budgets::PROVIDER_ERROR_BODY_BYTES,
                ));
            }
            return Decoded::Skip;
        };
        if let Some(error) = json.get("error").filter(|e| !e.is_null()) {
            return Decoded::Fail(error_text(error));
        }
        if event.name() == "error" {
            return Decoded::Fail(error_text(&json));
        }
        if let Some(usage) = json.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(TokenUsage {
                prompt: tokens(usage, "prompt_tokens").unwrap_or(0),
                completion: tokens(usage, "completion_tokens").unwrap_or(0),
            });
        }
        let Some(choice) = json.get("choices").and_then(|c| c.get(0)) else {
            return Decoded::Skip;
        };
        if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
            self.finished_reason_seen = true;
        }
        let text = choice
            .get("delta")
            .and_then(|d| d.get("content"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        Decoded::Delta(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> Event {
        Event { event: Some(name.to_owned()), data: data.to_owned() }
    }

    #[test]
    fn decodes_chunks_done_and_errors() {
        let mut d = Decoder::default();
        let chunk = r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
        assert_eq!(d.decode(&event("message", chunk)), Decoded::Delta("Hi".into()));
        assert_eq!(d.decode(&event("message", "{not json")), Decoded::Skip);
        assert_eq!(
            d.decode(&event("message", "[DONE]")),
            Decoded::End { conversation_id: None, usage: None }
        );
        let err = r#"{"error":{"message":"quota","type":"insufficient_quota"}}"#;
        assert_eq!(
            d.decode(&event("message", err)),
            Decoded::Fail("insufficient_quota: quota".into())
        );
        assert!(d.end_of_body().is_none());
        let last = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert_eq!(d.decode(&event("message", last)), Decoded::Delta(String::new()));
        assert!(d.end_of_body().is_some());
    }

    #[test]
    fn the_final_usage_chunk_is_carried_by_the_end() {
        // As captured from api.openai.com with stream_options.include_usage (ids shortened).
        let mut d = Decoder::default();
        let last = r#"{"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1733400000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#;
        assert_eq!(d.decode(&event("message", last)), Decoded::Delta(String::new()));
        let usage = r#"{"id":"chatcmpl-B9","object":"chat.completion.chunk","created":1733400000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;
        assert_eq!(d.decode(&event("message", usage)), Decoded::Skip);
        let reported = Some(TokenUsage { prompt: 19, completion: 10 });
        assert_eq!(
            d.decode(&event("message", "[DONE]")),
            Decoded::End { conversation_id: None, usage: reported }
        );
        assert_eq!(
            d.end_of_body(),
            Some(StreamEvent::End { conversation_id: None, usage: reported }),
            "a body without [DONE] keeps the usage too"
        );
    }

    #[test]
    fn the_chunk_shortcut_reads_every_event_as_the_tree_does() {
        let cases = [
            r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"a \"quoted\" \u00e9 line\n"}}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
            r#"{"choices":[{"delta":{"content":null}}]}"#,
            r#"{"choices":[{"delta":{"content":7}}]}"#,
            r#"{"choices":[{"delta":{"content":"x"}}, 3]}"#,
            r#"{"choices":{"0":{"delta":{"content":"x"}}}}"#,
            r#"{"choices":[]}"#,
            r#"{}"#,
            r#"[1,2]"#,
            r#"{"choices":[{"delta":{"content":"x"}}],"error":null}"#,
            r#"{"choices":[{"delta":{"content":"x"}}],"error":{"message":"m"}}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
            r#"{"choices":[{"delta":{"content":"x"},"finish_reason":"length"}],"usage":{"prompt_tokens":1}}"#,
            r#"{"choices":[{"delta":{"content":"a"}}],"choices":[{"delta":{"content":"b"}}]}"#,
            r#"[null,null,[{"delta":{"content":"x"}}]]"#,
            r#"{"choices":[[{"content":"x"},null]]}"#,
            r#"{"choices":[{"delta":["x"]}]}"#,
            r#"{"choices":[{"delta":"x"}]}"#,
            r#"{"choices":null}"#,
            r#"{"choices":[{"delta":{"content":"x"}}],"usage":5}"#,
            r#"{"choi\u0063es":[{"delta":{"content":"escaped key"}}]}"#,
            "{not json",
        ];
        // The shortcut is taken for the plain chunks (so the comparison is not vacuous).
        let plain = event("message", cases[0]);
        assert_eq!(Decoder::default().content_chunk(&plain), Some(Decoded::Delta("Hi".into())));
        for data in cases {
            for name in ["message", "error"] {
                let event = event(name, data);
                let (mut fast, mut tree) = (Decoder::default(), Decoder::default());
                let by_tree = tree.decode_general(&event);
                assert_eq!(fast.decode(&event), by_tree, "{name}: {data}");
                assert_eq!(fast.finished_reason_seen, tree.finished_reason_seen, "{name}: {data}");
                assert_eq!(fast.usage, tree.usage, "{name}: {data}");
            }
        }
    }

    #[test]
    fn the_request_asks_for_usage() {
        let body = Body {
            model: "m",
            messages: vec![],
            stream: true,
            stream_options: StreamOptions { include_usage: true },
        };
        let json = serde_json::to_value(&body).expect("serialises");
        assert_eq!(json["stream_options"], serde_json::json!({"include_usage": true}));
    }
}
