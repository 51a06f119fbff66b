//! The Dify provider (PROTOCOL.md §7.5): `POST {endpoint}/chat-messages` in streaming mode.
//!
//! Dify keeps the conversation itself, keyed by `conversation_id` (§10 item 1): the request
//! carries only the current user message as `query`, the session's `conversation_id` from the
//! previous reply if there is one, and `user` = the request's stable per-user key (§10 item 29;
//! the original sent a per-day constant shared by everyone). `model` is unused, as in the
//! original.
//!
//! Events (by the JSON `event` field): `message` and `agent_message` contribute `answer`;
//! `message_end` ends, carrying the `conversation_id` to send next time and the reply's
//! `metadata.usage` (`prompt_tokens`, `completion_tokens`; issue 17); `error` is a permanent
//! failure (the original ended silently, §10 item 21); everything else (`ping`, workflow and
//! node events, `agent_thought`, `message_file`, `message_replace`, `tts_message`…) is skipped.

use super::sse::Event;
use async_trait::async_trait;
use serde::Serialize;

use super::http_client::{ProviderSettings, RequestUrl, Upstream};
use super::request::last_user_text;
use super::sse::{error_text, json_data, post_for_events, tokens, Decoded, SseDecoder};
use crate::engine::llm::{ChatRequest, EventStream, LlmProvider, ProviderError, TokenUsage};

const UPSTREAM: Upstream = Upstream { kind: "dify", display: "Dify" };

/// A Dify chat application.
#[derive(Debug, Clone)]
pub struct DifyProvider {
    settings: ProviderSettings,
    client: reqwest::Client,
    url: RequestUrl,
}

impl DifyProvider {
    /// A provider for `settings`, sending through the server's shared `client`
    /// (see [`super::http_client::build_client`]).
    pub fn new(settings: ProviderSettings, client: reqwest::Client) -> Self {
        let url = RequestUrl::new(&settings.endpoint, "chat-messages");
        Self { settings, client, url }
    }
}

/// The request body.
#[derive(Debug, Serialize)]
struct Body<'a> {
    inputs: serde_json::Map<String, serde_json::Value>,
    query: &'a str,
    response_mode: &'static str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation_id: Option<&'a str>,
}

#[async_trait]
impl LlmProvider for DifyProvider {
    fn kind(&self) -> &'static str {
        UPSTREAM.kind
    }

    async fn open_stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
        let Some(query) = last_user_text(request) else {
            return Err(UPSTREAM.permanent("request has no user message"));
        };
        let body = Body {
            inputs: serde_json::Map::new(),
            query,
            response_mode: "streaming",
            user: &request.user_key,
            conversation_id: request.conversation_id.as_deref().filter(|id| !id.is_empty()),
        };
        let http = self.url.post(&self.client).bearer_auth(self.settings.api_key.expose());
        post_for_events(UPSTREAM, &self.settings, http, &body, Decoder::default()).await
    }
}

/// Reads Dify chat events.
#[derive(Debug, Default)]
struct Decoder {
    /// The last non-empty `conversation_id` seen (every message event carries it), used if
    /// `message_end` lacks one.
    conversation_id: Option<String>,
}

impl Decoder {
    fn remember_conversation(&mut self, json: &serde_json::Value) {
        if let Some(id) = json
            .get("conversation_id")
            .and_then(serde_json::Value::as_str)
            .filter(|id| !id.is_empty())
        {
            if self.conversation_id.as_deref() != Some(id) {
                self.conversation_id = Some(id.to_owned());
            }
        }
    }
}

impl SseDecoder for Decoder {
    fn decode(&mut self, event: &Event) -> Decoded {
        let Some(json) = json_data(event) else {
            return Decoded::Skip;
        };
        match json.get("event").and_then(serde_json::Value::as_str) {
            Some("message" | "agent_message") => {
                self.remember_conversation(&json);
                let answer =
                    json.get("answer").and_then(serde_json::Value::as_str).unwrap_or_default();
                Decoded::Delta(answer.to_owned())
            }
            Some("message_end") => {
                self.remember_conversation(&json);
                let usage = json.get("metadata").and_then(|m| m.get("usage")).and_then(dify_usage);
                Decoded::End { conversation_id: self.conversation_id.take(), usage }
            }
            Some("error") => Decoded::Fail(error_text(&json)),
            _ => Decoded::Skip,
        }
    }
}

/// `metadata.usage` of `message_end`: prompt and completion tokens; a usage with only
/// `total_tokens` counts it all as completion.
fn dify_usage(usage: &serde_json::Value) -> Option<TokenUsage> {
    let (prompt, completion) = (tokens(usage, "prompt_tokens"), tokens(usage, "completion_tokens"));
    match (prompt, completion, tokens(usage, "total_tokens")) {
        (None, None, None) => None,
        (None, None, Some(total)) => Some(TokenUsage { prompt: 0, completion: total }),
        (prompt, completion, _) => {
            Some(TokenUsage { prompt: prompt.unwrap_or(0), completion: completion.unwrap_or(0) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> Event {
        Event { data: data.to_owned(), ..Event::default() }
    }

    #[test]
    fn decodes_events_and_keeps_the_conversation_id() {
        let mut d = Decoder::default();
        assert_eq!(
            d.decode(&ev(r#"{"event":"message","answer":"Hi","conversation_id":"c1"}"#)),
            Decoded::Delta("Hi".into())
        );
        assert_eq!(d.decode(&ev(r#"{"event":"ping"}"#)), Decoded::Skip);
        assert_eq!(
            d.decode(&ev(r#"{"event":"message_end"}"#)),
            Decoded::End { conversation_id: Some("c1".into()), usage: None }
        );
        assert_eq!(
            d.decode(&ev(
                r#"{"event":"error","status":400,"code":"invalid_param","message":"bad"}"#
            )),
            Decoded::Fail("invalid_param: bad".into())
        );
    }

    #[test]
    fn message_end_carries_the_usage() {
        // As captured from a Dify 1.x chat app (ids shortened, price fields as Dify sends them).
        let mut d = Decoder::default();
        let end = r#"{"event":"message_end","conversation_id":"45701982","message_id":"9da23599","created_at":1705407629,"task_id":"3bf8a0bb","id":"9da23599","metadata":{"usage":{"prompt_tokens":1033,"prompt_unit_price":"0.001","prompt_price_unit":"0.001","prompt_price":"0.0010330","completion_tokens":135,"completion_unit_price":"0.002","completion_price_unit":"0.001","completion_price":"0.0002700","total_tokens":1168,"total_price":"0.0013030","currency":"USD","latency":1.381760165997548}}}"#;
        assert_eq!(
            d.decode(&ev(end)),
            Decoded::End {
                conversation_id: Some("45701982".into()),
                usage: Some(TokenUsage { prompt: 1033, completion: 135 })
            }
        );
        assert_eq!(
            dify_usage(&serde_json::json!({"total_tokens": 7})),
            Some(TokenUsage { prompt: 0, completion: 7 })
        );
    }
}
