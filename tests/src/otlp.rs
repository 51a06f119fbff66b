//! A real OTLP/HTTP trace receiver for the trace tests: an HTTP/1.1 server on `127.0.0.1:0`
//! that accepts `POST /v1/traces` with an `application/x-protobuf` body, decodes it as an
//! `ExportTraceServiceRequest` with `opentelemetry-proto` (prost), keeps every span flattened
//! with its resource's attributes, and answers an empty `ExportTraceServiceResponse` (200).
//! Anything else answers 404 (path) or 400 (undecodable body).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An attribute value as the tests compare it.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A float.
    Float(f64),
    /// Anything else (arrays, maps, bytes).
    Other,
}

impl Attr {
    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Attr::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One received span.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex; empty for a root span.
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// OTLP span kind (1 internal, 2 server, 3 client).
    pub kind: i32,
    /// Status code (0 unset, 1 ok, 2 error).
    pub status: i32,
    /// Span attributes.
    pub attrs: BTreeMap<String, Attr>,
    /// Names of the span's events.
    pub events: Vec<String>,
    /// The resource's attributes (`service.name`, …).
    pub resource: BTreeMap<String, Attr>,
}

impl SpanRecord {
    /// Attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&Attr> {
        self.attrs.get(key)
    }

    /// Attribute `key` as a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(Attr::as_str)
    }
}

#[derive(Debug, Default)]
struct State {
    spans: Vec<SpanRecord>,
    requests: usize,
    content_types: Vec<String>,
}

/// The running receiver; dropping it stops the server.
#[derive(Debug)]
pub struct OtlpReceiver {
    base: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtlpReceiver {
    /// Starts the receiver.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        #[allow(clippy::disallowed_methods)] // a test fixture, not a server task
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { return };
                let state = Arc::clone(&shared);
                let service = service_fn(move |request: Request<Incoming>| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(answer(request, &state).await) }
                });
                #[allow(clippy::disallowed_methods)] // a test fixture, not a server task
                tokio::spawn(async move {
                    let _ =
                        http1::Builder::new().serve_connection(TokioIo::new(socket), service).await;
                });
            }
        });
        Self { base, state, task }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` (spans are posted to `{this}/v1/traces`).
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.lock().spans.clone()
    }

    /// Export requests received so far.
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    /// The `Content-Type` of each export request.
    pub fn content_types(&self) -> Vec<String> {
        self.lock().content_types.clone()
    }

    /// Waits (polling every 20 ms, at most `within`) until `done` holds for the spans received;
    /// returns them either way.
    pub async fn wait_for<F>(&self, within: Duration, mut done: F) -> Vec<SpanRecord>
    where
        F: FnMut(&[SpanRecord]) -> bool,
    {
        let deadline = crate::harness::now() + within;
        loop {
            let spans = self.spans();
            if done(&spans) || crate::harness::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn answer(request: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if path != "/v1/traces" {
        return reply(404, Bytes::new());
    }
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return reply(400, Bytes::new());
    };
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.requests += 1;
    state.content_types.push(content_type);
    for resource_spans in export.resource_spans {
        let resource = resource_spans.resource.map(|r| attrs(&r.attributes)).unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                state.spans.push(SpanRecord {
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    status: span.status.map_or(0, |s| s.code),
                    attrs: attrs(&span.attributes),
                    events: span.events.into_iter().map(|e| e.name).collect(),
                    resource: resource.clone(),
                });
            }
        }
    }
    reply(200, Bytes::from(ExportTraceServiceResponse::default().encode_to_vec()))
}

fn reply(status: u16, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(body))
        .expect("a valid response")
}

fn attrs(list: &[KeyValue]) -> BTreeMap<String, Attr> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => Attr::Str(s.clone()),
                Some(AnyValue::IntValue(n)) => Attr::Int(*n),
                Some(AnyValue::BoolValue(b)) => Attr::Bool(*b),
                Some(AnyValue::DoubleValue(x)) => Attr::Float(*x),
                _ => Attr::Other,
            };
            (kv.key.clone(), value)
        })
        .collect()
}
