//! The built-in `echo` provider: a demo model that streams the user's last message back in a
//! few chunks. Pure (no IO), so it runs in normal builds, under madsim and in tests; it is what
//! `chatbox serve --dev` uses when no provider is configured, and `models` labels it a demo.

use async_trait::async_trait;
use chatbox_core::budgets::{ECHO_CHUNKS, ECHO_CHUNK_PAUSE};
use futures_util::stream;

use super::request::last_user_text;
use crate::engine::llm::{ChatRequest, EventStream, LlmProvider, ProviderError, StreamEvent};

/// Streams the user's text back.
#[derive(Debug, Clone, Default)]
pub struct EchoProvider;

/// Splits `text` into at most `parts` non-empty pieces on character boundaries.
pub fn split_chunks(text: &str, parts: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(parts.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

#[async_trait]
impl LlmProvider for EchoProvider {
    fn kind(&self) -> &'static str {
        "echo"
    }

    async fn open_stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
        let chunks = split_chunks(last_user_text(request).unwrap_or_default(), ECHO_CHUNKS);
        let events = stream::unfold((chunks.into_iter(), false), |(mut rest, ended)| async move {
            if ended {
                return None;
            }
            match rest.next() {
                Some(chunk) => {
                    tokio::time::sleep(ECHO_CHUNK_PAUSE).await;
                    Some((Ok(StreamEvent::Delta(chunk)), (rest, false)))
                }
                None => Some((
                    Ok(StreamEvent::End { conversation_id: None, usage: None }),
                    (rest, true),
                )),
            }
        });
        Ok(Box::pin(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_char_boundaries() {
        assert_eq!(split_chunks("héllo wörld", 4), vec!["hél", "lo ", "wör", "ld"]);
        assert_eq!(split_chunks("ab", 4), vec!["a", "b"]);
        assert!(split_chunks("", 4).is_empty());
        let joined: String = split_chunks("日本語のテキスト", 3).concat();
        assert_eq!(joined, "日本語のテキスト");
    }
}
