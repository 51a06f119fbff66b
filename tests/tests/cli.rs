#![cfg(not(madsim))]
//! The command line through the real binary: `serve --dev` starts with no configuration at all
//! and prints tokens, a WebSocket URL and page URLs that work; `token` mints a JWT the server
//! accepts with the claims asked for; `gen-secret` prints secrets that pass the §2.4 rules; and
//! the edges a newcomer meets (issue 16): counted problems, the `serve --dev` hint, `token` with
//! only the secret, unusable or locked data directories named by their absolute path, plain
//! logs in files (no colour), each start-up warning once, structured shutdown fields.

use std::process::Stdio;
use std::time::Duration;

use chatbox_tests::harness::{
    binary, check_config, http_get, reply_text, Client, Server, ServerOpts,
};
use chatbox_tests::upstream::Upstream;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const STEP: Duration = Duration::from_secs(10);

/// Runs the binary with exactly `env` (plus `PATH`); exit status and stdout.
async fn run(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String, String) {
    let mut command = Command::new(binary());
    command.args(args).env_clear().envs(env.iter().copied());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let out = command.output().await.expect("run the chatbox binary");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `serve --port 0` with exactly `env` (plus `PATH`) in `dir`, expecting it to exit by
/// itself (a start-up error) within 20 s; exit status and stderr.
async fn serve_refused(
    env: &[(&str, &str)],
    dir: &std::path::Path,
) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(binary());
    command
        .args(["serve", "--port", "0"])
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("a refused start exits by itself")
        .expect("run the chatbox binary");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A strong secret and the echo provider without a name.
const MINIMAL: [(&str, &str); 3] = [
    ("JWT_SECRET", "Zq3vN8xLr5Tm2Wk7Yp4Hs9Jd6Fb1Gc0A"),
    ("LLM_PROVIDER_1_ID", "echo"),
    ("LLM_PROVIDER_1_TYPE", "echo"),
];

#[tokio::test]
async fn problems_are_counted_and_an_empty_configuration_hints_at_serve_dev() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (status, err) = serve_refused(&[], dir.path()).await;
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("configuration is invalid (2 problems)"), "{err}");
    assert!(err.contains("chatbox serve --dev"), "hints at --dev: {err}");

    // One problem is one problem; with something configured there is no hint.
    let (_, _, err) = check_config(&[MINIMAL[1], MINIMAL[2]]).await;
    assert!(err.contains("configuration is invalid (1 problem):"), "{err}");
    assert!(!err.contains("serve --dev"), "something is configured: {err}");

    // The echo provider needs no NAME (it defaults to its id).
    let (status, out, err) = check_config(&MINIMAL).await;
    assert!(status.success(), "{out}{err}");
}

#[tokio::test]
async fn token_needs_only_the_secret() {
    let (status, out, err) = run(&["token", "--user", "only-secret"], &[MINIMAL[0]]).await;
    assert!(status.success(), "{status}: {err}");
    assert_eq!(claims(out.trim())["user_id"], "only-secret");
    // Without the secret it still refuses, naming it.
    let (status, _, err) = run(&["token", "--user", "x"], &[]).await;
    assert!(!status.success());
    assert!(err.contains("JWT_SECRET"), "{err}");
}

#[tokio::test]
async fn a_data_dir_that_is_a_file_is_named_by_its_absolute_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("data-file"), b"in the way").expect("write a file");
    let env = [MINIMAL[0], MINIMAL[1], MINIMAL[2], ("DATA_DIR", "data-file")];
    let (status, err) = serve_refused(&env, dir.path()).await;
    assert!(!status.success(), "{err}");
    let absolute = dir.path().canonicalize().expect("canonical").join("data-file");
    assert!(err.contains(&absolute.display().to_string()), "names {}: {err}", absolute.display());
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!err.contains("os error 17"), "{err}");
}

#[tokio::test]
async fn a_data_dir_in_use_by_another_chatbox_is_a_clear_error() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let data = server.data_dir();
    let data = data.to_str().expect("utf-8 path");
    let env = [MINIMAL[0], MINIMAL[1], MINIMAL[2], ("DATA_DIR", data)];
    let mut env = env.to_vec();
    let mongo = chatbox_tests::mongo::shared_uri();
    if let Some(uri) = &mongo {
        env.push(("MONGO_URI", uri));
    }
    let (status, err) = serve_refused(&env, std::path::Path::new("/")).await;
    assert!(!status.success(), "{err}");
    assert!(err.contains("is locked by another process"), "{err}");
    assert!(err.contains(data), "names the data directory {data}: {err}");
    assert!(!err.contains("transient"), "{err}");
}

#[tokio::test]
async fn logs_to_a_file_have_no_colour_and_each_warning_once() {
    let upstream = Upstream::start().await;
    // NO_COLOR unset: stderr is a file, which alone must turn colour off.
    let opts = ServerOpts::with_upstream(&upstream).without("NO_COLOR");
    let mut server = Server::start(opts).await;
    server.sigterm();
    let (status, _) = server.wait_exit(STEP).await;
    assert!(status.success());
    let log = server.log_text();
    assert!(!log.contains('\u{1b}'), "no ANSI escape codes in a file:\n{log}");
    assert_eq!(log.matches("WS_ALLOWED_ORIGINS").count(), 1, "warned once:\n{log}");
}

#[tokio::test]
async fn json_logs_carry_structured_shutdown_fields() {
    let upstream = Upstream::start().await;
    let mut server =
        Server::start(ServerOpts::with_upstream(&upstream).env("LOG_FORMAT", "json")).await;
    server.sigterm();
    let (status, _) = server.wait_exit(STEP).await;
    assert!(status.success());
    let log = server.log_text();
    let finished = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["fields"]["message"] == "shutdown finished")
        .unwrap_or_else(|| panic!("a JSON `shutdown finished` line:\n{log}"));
    assert_eq!(finished["fields"]["cut_replies"], 0, "{finished}");
    assert_eq!(finished["fields"]["forced_connections"], 0, "{finished}");
    assert!(!log.contains("ShutdownReport"), "no Rust Debug text:\n{log}");
}

/// The claims of a JWT, decoded without checking the signature (the server checks that).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let mut data = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    data.insecure_disable_signature_validation();
    data.validate_exp = false;
    data.required_spec_claims.clear();
    let key = jsonwebtoken::DecodingKey::from_secret(b"unused");
    let header = jsonwebtoken::decode_header(token).expect("a JWT header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256, "payload {payload}");
    jsonwebtoken::decode::<Value>(token, &key, &data).expect("decodable claims").claims
}

#[tokio::test]
async fn gen_secret_prints_fresh_secrets_that_pass_the_secret_rules() {
    let (status, first, _) = run(&["gen-secret"], &[]).await;
    assert!(status.success(), "{status}");
    let (_, second, _) = run(&["gen-secret"], &[]).await;
    let (first, second) = (first.trim(), second.trim());
    assert!(first.len() >= 32, "at least 32 bytes: {first:?}");
    assert_ne!(first, second, "each call makes a new secret");

    let env = [
        ("JWT_SECRET", first),
        ("LLM_PROVIDER_1_ID", "echo"),
        ("LLM_PROVIDER_1_TYPE", "echo"),
        ("LLM_PROVIDER_1_NAME", "Echo"),
    ];
    let (status, out, err) = check_config(&env).await;
    assert!(status.success(), "a generated secret is a valid JWT_SECRET: {out}{err}");
}

#[tokio::test]
async fn token_mints_a_jwt_the_server_accepts() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let env = [
        ("JWT_SECRET", server.secret()),
        ("LLM_PROVIDER_1_ID", "echo"),
        ("LLM_PROVIDER_1_TYPE", "echo"),
        ("LLM_PROVIDER_1_NAME", "Echo"),
    ];
    let args = ["token", "--user", "cli-admin", "--name", "Cli Admin", "--role", "admin"];
    let (status, out, err) =
        run(&[&args[..], &["--role", "user", "--ttl", "1h"]].concat(), &env).await;
    assert!(status.success(), "{status}: {err}");
    let token = out.trim();
    let c = claims(token);
    assert_eq!(c["user_id"], "cli-admin");
    assert_eq!(c["name"], "Cli Admin");
    assert_eq!(c["roles"], json!(["admin", "user"]));
    let exp = c["exp"].as_i64().expect("--ttl sets exp");
    let now = chatbox_tests::harness::unix_now();
    assert!((now + 3500..=now + 3700).contains(&exp), "exp one hour ahead: {exp} vs {now}");

    let client = server.connect(token).await;
    assert_eq!(client.greeting["user_id"], "cli-admin");
    let admin = server
        .http_get("/chatbox/admin/metrics", &[("Authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(admin.status, 200, "the minted admin role opens the admin routes: {admin:?}");

    // Without --ttl there is no exp (the original's tokens may have none, §2.1).
    let (_, out, _) = run(&["token", "--user", "forever"], &env).await;
    let c = claims(out.trim());
    assert!(c.get("exp").is_none(), "{c}");
    assert_eq!(c["roles"], json!([]));

    // A configuration that is not valid mints nothing and says why.
    let (status, out, err) = run(&["token", "--user", "x"], &[("JWT_SECRET", "short")]).await;
    assert!(!status.success(), "an invalid configuration refuses to mint: {out}");
    assert!(err.contains("JWT_SECRET"), "names the problem: {err}");
}

/// `chatbox serve --dev` on `data`: the running child and every stdout line up to `listening on`.
async fn start_dev(data: &str) -> (tokio::process::Child, Vec<String>) {
    start_dev_in(data, std::path::Path::new("/")).await
}

/// [`start_dev`] with `dir` as the working directory.
async fn start_dev_in(data: &str, dir: &std::path::Path) -> (tokio::process::Child, Vec<String>) {
    let mut command = Command::new(binary());
    command
        .current_dir(dir)
        .args(["serve", "--dev", "--port", "0", "--data-dir", data])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let mut child = command.spawn().expect("spawn chatbox serve --dev");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut printed = Vec::new();
    let listening = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            printed.push(line.clone());
            if line.starts_with("listening on ") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(listening, Ok(true), "serve --dev starts: {printed:?}");
    (child, printed)
}

/// SIGTERM, then the exit status.
async fn stop(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    tokio::time::timeout(STEP, child.wait()).await.expect("exits in time").expect("exit status")
}

#[tokio::test]
async fn serve_dev_needs_no_configuration_and_prints_working_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let (mut child, printed) = start_dev(data).await;
    let value = |label: &str| {
        printed
            .iter()
            .find_map(|l| l.strip_prefix(label).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("`{label}` printed: {printed:?}"))
    };
    let user = value("user token (24 h):");
    let admin = value("admin token (24 h):");
    let url = value("WebSocket URL:");
    assert!(url.starts_with("ws://127.0.0.1:") && url.contains("/chatbox/ws?token="), "{url}");
    assert!(claims(&admin)["roles"].as_array().is_some_and(|r| r.contains(&json!("admin"))));
    assert_eq!(claims(&user)["user_id"], "dev-user");

    // The printed URL is ready to use: connect and chat with the echo model.
    let mut client = Client::connect(&url, &[]).await.expect("the printed URL connects");
    assert_eq!(client.greeting["user_id"], "dev-user");
    client.send_user_message("dev-session", "hello dev").await;
    let frames = client.recv_reply(STEP).await;
    assert_eq!(reply_text(&frames), "hello dev", "{frames:?}");
    drop(client);

    // The printed page URLs open the pages, in development mode (the token paste form).
    let chat = value("Chat page:");
    let console = value("Admin console:");
    assert_eq!(chat, url.replacen("ws://", "http://", 1).replacen("/ws?", "/chat?", 1));
    assert!(console.contains("/chatbox/console?token=") && console.ends_with(&admin), "{console}");
    for page in [&chat, &console] {
        let (addr, path_and_query) = page
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or_else(|| panic!("an http URL: {page}"));
        let addr = addr.parse().expect("host:port");
        let response = http_get(addr, &format!("/{path_and_query}"), &[]).await;
        assert_eq!(response.status, 200, "{page}: {response:?}");
        assert_eq!(response.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(response.body.contains("data-dev=\"true\""), "dev marker: {}", response.body);
    }
    assert!(stop(&mut child).await.success(), "SIGTERM is a clean exit");

    // The development secret is kept in the data directory: after a restart the tokens printed
    // by the first run still connect, and `token --dev` signs with the same secret.
    let (mut child, printed) = start_dev(data).await;
    let addr = printed
        .iter()
        .find_map(|l| l.strip_prefix("listening on "))
        .expect("listening line")
        .trim()
        .to_string();
    let old_user_url = format!("ws://{addr}/chatbox/ws?token={user}");
    let client = Client::connect(&old_user_url, &[]).await.expect("old token still valid");
    assert_eq!(client.greeting["user_id"], "dev-user");
    let (status, out, _) =
        run(&["token", "--dev", "--data-dir", data, "--user", "minted"], &[]).await;
    assert!(status.success());
    let minted_url = format!("ws://{addr}/chatbox/ws?token={}", out.trim());
    let client = Client::connect(&minted_url, &[]).await.expect("token --dev is accepted");
    assert_eq!(client.greeting["user_id"], "minted");
    drop(client);
    assert!(stop(&mut child).await.success());
}

#[tokio::test]
async fn serve_dev_prints_a_relative_data_dir_as_absolute() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, printed) = start_dev_in("relative-data", dir.path()).await;
    let absolute = dir.path().canonicalize().expect("canonical").join("relative-data");
    let banner = printed
        .iter()
        .find(|l| l.contains("development mode"))
        .unwrap_or_else(|| panic!("a banner: {printed:?}"));
    assert!(banner.contains(&absolute.display().to_string()), "{banner}");
    assert!(stop(&mut child).await.success());
}
