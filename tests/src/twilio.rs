//! A scripted Twilio-compatible SMS API for tests: a real HTTP/1.1 server on `127.0.0.1:0` that
//! accepts `POST /2010-04-01/Accounts/{sid}/Messages.json` with basic auth `sid:token` and a
//! form body. Each request is recorded (path, whether auth matched, form fields) and answered
//! with the next queued status (default 201), optionally with a `Retry-After` header. Wrong auth
//! answers 401 and a wrong path 404, as Twilio does.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsRequest {
    /// The request path.
    pub path: String,
    /// Whether basic auth matched the expected account id and token.
    pub authorized: bool,
    /// The decoded form fields.
    pub form: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct State {
    replies: VecDeque<(u16, Option<String>)>,
    seen: Vec<SmsRequest>,
}

/// The running fake API; dropping it stops the server.
#[derive(Debug)]
pub struct TwilioFake {
    base: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for TwilioFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TwilioFake {
    /// Starts a server expecting account `sid` with `token`.
    pub async fn start(sid: &str, token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"))
        );
        let path = format!("/2010-04-01/Accounts/{sid}/Messages.json");
        let shared = Arc::clone(&state);
        #[allow(clippy::disallowed_methods)] // a test fixture, not a server task
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { return };
                let (state, auth, path) = (Arc::clone(&shared), auth.clone(), path.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let (state, auth, path) = (Arc::clone(&state), auth.clone(), path.clone());
                    async move { Ok::<_, Infallible>(answer(request, &state, &auth, &path).await) }
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

    /// The value for `SMS_API_BASE_URL`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Queues the status (and optional `Retry-After`) of the next answer.
    pub fn push_reply(&self, status: u16, retry_after: Option<&str>) {
        self.lock().replies.push_back((status, retry_after.map(str::to_string)));
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<SmsRequest> {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn answer(
    request: Request<Incoming>,
    state: &Mutex<State>,
    auth: &str,
    path: &str,
) -> Response<Full<Bytes>> {
    let authorized =
        request.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok())
            == Some(auth);
    let request_path = request.uri().path().to_string();
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.seen.push(SmsRequest { path: request_path.clone(), authorized, form });
    let (status, retry_after) = if !authorized {
        (401, None)
    } else if request_path != path {
        (404, None)
    } else {
        state.replies.pop_front().unwrap_or((201, None))
    };
    let mut response =
        Response::builder().status(status).header("content-type", "application/json");
    if let Some(wait) = retry_after {
        response = response.header("retry-after", wait);
    }
    response.body(Full::new(Bytes::from_static(b"{\"sid\":\"SM1\"}"))).expect("a valid response")
}
