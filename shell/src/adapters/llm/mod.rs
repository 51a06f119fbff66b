//! LLM provider adapters: one file per upstream protocol.

#[cfg(not(madsim))]
pub mod anthropic;
#[cfg(not(madsim))]
pub mod dify;
pub mod echo;
#[cfg(not(madsim))]
pub mod http_client;
#[cfg(not(madsim))]
pub mod openai;
pub mod request;
#[cfg(not(madsim))]
pub mod sse;
