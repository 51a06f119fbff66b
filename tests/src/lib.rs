//! chatbox-tests: black-box integration tests of the real binary on loopback (arrive with the chat-path issue).
//!
//! - [`e2e`] — helpers of the end-to-end flow tests: an SMTP sink, a webhook recorder, a
//!   Prometheus exposition parser, requests kept in progress across a shutdown.
//! - [`events`] — a client of the admin event stream (server-sent events, issue 15).
//! - [`harness`] — the real `chatbox` binary on loopback (temp data dir, random secret, env
//!   configuration, SIGTERM, restart) and a WebSocket client with bounded waits.
//! - [`mongo`] — a real MongoDB-compatible server (SecantusDB) for the store tests, and the
//!   switch that runs every harness server against MongoDB (`CHATBOX_TEST_MONGO_URI`).
//! - [`fleet`] — two chatbox instances on one database and one Redis, for the fleet tests.
//! - [`http`] — plain HTTP requests of any method for the REST and admin route tests.
//! - [`otlp`] — a real OTLP/HTTP trace receiver (protobuf bodies decoded with
//!   `opentelemetry-proto`) for the trace tests.
//! - [`resume`] — the `resume` frame, seqs and starting a reply, for the resume tests.
//! - [`twilio`] — a scripted Twilio-compatible SMS API for the SMS alert tests.
//! - [`uploads`] — requests with a body answered as bytes, multipart bodies, and a real
//!   S3-compatible server (moto) for the upload tests.
//! - [`upstream`] — a scripted upstream LLM server (OpenAI, Anthropic and Dify dialects) for
//!   the integration tests and the load generator.

#[cfg(not(madsim))]
pub mod e2e;
#[cfg(not(madsim))]
pub mod events;
#[cfg(not(madsim))]
pub mod fleet;
#[cfg(not(madsim))]
pub mod harness;
#[cfg(not(madsim))]
pub mod http;
#[cfg(not(madsim))]
pub mod mongo;
#[cfg(not(madsim))]
pub mod otlp;
#[cfg(not(madsim))]
pub mod redis;
#[cfg(not(madsim))]
pub mod resume;
#[cfg(not(madsim))]
pub mod script_server;
#[cfg(not(madsim))]
pub mod twilio;
#[cfg(not(madsim))]
pub mod uploads;
#[cfg(not(madsim))]
pub mod upstream;
