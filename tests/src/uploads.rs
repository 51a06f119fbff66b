//! Helpers of the upload tests: requests with a body (multipart uploads, S3 bucket creation)
//! answered with raw bytes, and a real S3-compatible server (moto, `scripts/s3-server.sh`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Budget of the S3 server's start (the first run installs moto from PyPI).
const S3_START_BUDGET: Duration = Duration::from_secs(300);

/// An answer with its body as bytes.
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl RawResponse {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One request with a body over a fresh connection; the answer is read whole.
///
/// # Panics
/// When the server cannot be reached or does not answer within 60 s.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> RawResponse {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("connect within 5 s")
        .expect("connect to the server");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP handshake");
    #[allow(clippy::disallowed_methods)] // test infrastructure: ends with the connection
    let driver = tokio::spawn(connection);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("Host", addr.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let req = builder.body(Full::new(Bytes::from(body))).expect("build the request");
    let response = tokio::time::timeout(Duration::from_secs(60), async {
        let response = sender.send_request(req).await.expect("send the request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("read the body").to_bytes();
        RawResponse { status, headers, body }
    })
    .await
    .expect("HTTP answer within 60 s");
    driver.abort();
    response
}

/// The boundary [`multipart`] uses.
pub const BOUNDARY: &str = "chatbox-test-boundary-7d1f";

/// A `multipart/form-data` body with one file field `field` named `file_name`, and its
/// `Content-Type` header value. `part_type` is the part's (client-claimed) type.
pub fn multipart(field: &str, file_name: &str, part_type: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\n\
         Content-Type: {part_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// A running `scripts/s3-server.sh start` (moto; killed on drop).
#[derive(Debug)]
pub struct S3Server {
    _child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl S3Server {
    /// Starts moto on `127.0.0.1` and a free port.
    ///
    /// # Panics
    /// When bash, python3 or moto (from PyPI) are unavailable; the script's stderr is shown.
    pub async fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/s3-server.sh");
        let mut child = Command::new("bash")
            .arg(&script)
            .args(["start", "--host", "127.0.0.1", "--port", "0", "--exit-with"])
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = match tokio::time::timeout(S3_START_BUDGET, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            outcome => {
                let _ = child.start_kill();
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        err.read_to_string(&mut stderr),
                    )
                    .await;
                }
                panic!(
                    "the S3 test server did not start ({outcome:?}); it needs python3 (with venv) \
                     and PyPI access for moto (see `scripts/s3-server.sh install`).\nstderr:\n{stderr}"
                );
            }
        };
        let addr = line
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from s3-server.sh: {line}"));
        S3Server { _child: child, addr }
    }

    /// `http://host:port`, the `UPLOAD_S3_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates `bucket` (moto does not check request signatures).
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn create_bucket(&self, bucket: &str) {
        let answer = send(self.addr, "PUT", &format!("/{bucket}"), &[], Vec::new()).await;
        assert_eq!(
            answer.status,
            200,
            "create bucket: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
    }

    /// Keys of the objects in `bucket` (from the ListObjectsV2 XML).
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let answer =
            send(self.addr, "GET", &format!("/{bucket}?list-type=2"), &[], Vec::new()).await;
        assert_eq!(answer.status, 200, "list: {:?}", String::from_utf8_lossy(&answer.body));
        let text = String::from_utf8_lossy(&answer.body);
        text.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect()
    }
}
