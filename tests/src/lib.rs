//! chatbox-tests: black-box integration tests of the real binary on loopback (arrive with the chat-path issue).
//!
//! - [`upstream`] — a scripted upstream LLM server (OpenAI, Anthropic and Dify dialects) for
//!   the integration tests and the load generator.

#[cfg(not(madsim))]
pub mod upstream;
