//! Helpers of the upload tests: requests with a body (multipart uploads, S3 bucket creation)
//! answered with raw bytes, and a real S3-compatible server (moto, `scripts/s3-server.sh`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::process::{Child, Command};

/// Budget of the S3 server's start (the first run installs moto from PyPI).
const S3_START_BUDGET: Duration = Duration::from_secs(300);

pub use crate::harness::RawResponse;
use crate::script_server::{listening, Stderr};

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
    let body = Full::new(Bytes::from(body));
    let pending = crate::harness::send_request(addr, method, path_and_query, headers, body).await;
    pending.within(Duration::from_secs(60)).await
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
        let needs = "; it needs python3 (with venv) and PyPI access for moto (see \
                     `scripts/s3-server.sh install`)";
        let stderr = Stderr::Piped(Duration::from_secs(5));
        let addr = listening(&mut child, S3_START_BUDGET, "S3 test server", needs, stderr).await;
        let addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("unexpected first line from s3-server.sh: {addr}"));
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
