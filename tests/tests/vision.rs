#![cfg(not(madsim))]
//! Images to vision-capable models (issue 17 item 5) through the real binary: a user uploads a
//! PNG (`POST {P}/upload`), sends it as a `file_upload` frame, then asks about it; a model
//! configured with `LLM_PROVIDER_<n>_VISION=true` receives it as an image part carrying exactly
//! the uploaded bytes — OpenAI-compatible as an `image_url` with a `data:image/png;base64,` URL,
//! Anthropic as an `image` block with a base64 source — checked on the scripted upstreams'
//! recorded request bodies. A model without `vision`, and another user's file, send text only;
//! `vision` on a provider type that cannot take images stops the start-up.

use std::time::Duration;

use base64::Engine as _;
use chatbox_tests::harness::{check_config, is_done, Server, ServerOpts, PREFIX};
use chatbox_tests::uploads::{multipart, send};
use chatbox_tests::upstream::{Script, Upstream};
use serde_json::{json, Value};

const STEP: Duration = Duration::from_secs(20);

/// A 1×1 PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\x0f\0\0\x01\x01\0\x05\x18\xd8N\0\0\0\0IEND\xaeB`\x82";

/// Uploads the PNG as `token`'s user; the upload's answer.
async fn upload(server: &Server, token: &str) -> Value {
    let (content_type, body) = multipart("file", "photo.png", "image/png", PNG);
    let auth = format!("Bearer {token}");
    let headers = [("Content-Type", content_type.as_str()), ("Authorization", auth.as_str())];
    let answer = send(server.addr(), "POST", &format!("{PREFIX}/upload"), &headers, body).await;
    assert_eq!(answer.status, 200, "{:?}", String::from_utf8_lossy(&answer.body));
    answer.json()
}

/// As `user`: a first message, the session's model switched to `model` (unless `None`), then
/// `file` (an upload's answer) sent as a `file_upload` frame and a question about it.
async fn ask_about_file(server: &Server, user: &str, model: Option<&str>, file: &Value) {
    let token = server.token(user, &["user"], None);
    let mut client = server.connect(&token).await;
    client.send_user_message(&format!("new-{user}"), "Hello").await;
    let frames = client.recv_reply(STEP).await;
    assert!(is_done(frames.last().expect("an outcome")), "{frames:#?}");
    let session =
        frames.last().and_then(|f| f["session_id"].as_str()).expect("session").to_string();
    if let Some(model) = model {
        client
            .send_json(&json!({"type": "model_select", "session_id": session, "model_id": model}))
            .await;
        let want = format!("Model changed to {model}");
        client.recv_until(|f| f["content"] == want.as_str(), STEP).await;
    }
    client
        .send_json(
            &json!({"type": "file_upload", "session_id": session, "file_id": file["file_id"],
            "file_url": file["file_url"], "metadata": {"filename": "photo.png"}}),
        )
        .await;
    client.send_user_message(&session, "What is in this picture?").await;
    let frames = client.recv_reply(STEP).await;
    assert!(is_done(frames.last().expect("an outcome")), "{frames:#?}");
    client.close().await;
}

/// The last request body `upstream` received.
fn last_body(upstream: &Upstream) -> Value {
    upstream.requests().last().expect("a request").body.clone()
}

/// The last message of a request body.
fn last_message(body: &Value) -> &Value {
    body["messages"].as_array().and_then(|m| m.last()).expect("messages")
}

fn decode(data: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(data).expect("base64")
}

async fn vision_server(openai: &Upstream, anthropic: &Upstream, plain: &Upstream) -> Server {
    Server::start(
        ServerOpts::new()
            .provider("vis-openai", "Vision GPT", "openai", &openai.url())
            .env("LLM_PROVIDER_1_VISION", "true")
            .provider("vis-claude", "Vision Claude", "anthropic", &anthropic.url())
            .env("LLM_PROVIDER_2_VISION", "true")
            .provider("plain", "Plain", "openai", &plain.url()),
    )
    .await
}

#[tokio::test]
async fn vision_models_get_the_uploaded_image_and_others_do_not() {
    let (openai, anthropic, plain) =
        (Upstream::start().await, Upstream::start().await, Upstream::start().await);
    for upstream in [&openai, &anthropic, &plain] {
        upstream.set_default(Script::reply(["A ", "picture"]));
    }
    let server = vision_server(&openai, &anthropic, &plain).await;

    // OpenAI-compatible: text then an image_url part with a data URL of the exact bytes.
    let token = server.token("gpt-user", &["user"], None);
    let file = upload(&server, &token).await;
    ask_about_file(&server, "gpt-user", None, &file).await;
    let body = last_body(&openai);
    let content = &last_message(&body)["content"];
    let parts = content.as_array().unwrap_or_else(|| panic!("content parts: {body}"));
    assert_eq!(parts[0], json!({"type": "text", "text": "What is in this picture?"}));
    assert_eq!(parts.len(), 2, "{body}");
    assert_eq!(parts[1]["type"], "image_url");
    let url = parts[1]["image_url"]["url"].as_str().expect("url");
    let data = url.strip_prefix("data:image/png;base64,").unwrap_or_else(|| panic!("{url}"));
    assert_eq!(decode(data), PNG, "the exact uploaded bytes");
    // Earlier lines stay plain text.
    assert_eq!(body["messages"][0]["content"], "Hello");

    // Anthropic: an image block (base64 source) before the text block.
    let token = server.token("claude-user", &["user"], None);
    let file = upload(&server, &token).await;
    ask_about_file(&server, "claude-user", Some("vis-claude"), &file).await;
    let body = last_body(&anthropic);
    let blocks =
        last_message(&body)["content"].as_array().cloned().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(blocks.len(), 2, "{body}");
    assert_eq!(blocks[0]["type"], "image");
    assert_eq!(blocks[0]["source"]["type"], "base64");
    assert_eq!(blocks[0]["source"]["media_type"], "image/png");
    assert_eq!(decode(blocks[0]["source"]["data"].as_str().expect("data")), PNG);
    assert_eq!(blocks[1], json!({"type": "text", "text": "What is in this picture?"}));

    // A model without vision: today's behaviour, text only.
    let token = server.token("plain-user", &["user"], None);
    let file = upload(&server, &token).await;
    ask_about_file(&server, "plain-user", Some("plain"), &file).await;
    let body = last_body(&plain);
    assert_eq!(last_message(&body)["content"], "What is in this picture?", "{body}");
    assert!(!body.to_string().contains("image_url"), "{body}");
}

#[tokio::test]
async fn another_users_upload_is_not_sent() {
    let (openai, anthropic, plain) =
        (Upstream::start().await, Upstream::start().await, Upstream::start().await);
    openai.set_default(Script::reply(["No"]));
    let server = vision_server(&openai, &anthropic, &plain).await;
    let owner = server.token("owner", &["user"], None);
    let file = upload(&server, &owner).await;
    // Another user names the owner's file (id and signed URL) in a frame of their own session.
    ask_about_file(&server, "intruder", None, &file).await;
    let body = last_body(&openai);
    assert_eq!(last_message(&body)["content"], "What is in this picture?", "{body}");
}

#[tokio::test]
async fn vision_on_a_provider_that_takes_no_images_stops_the_start_up() {
    let secret = chatbox::app::cli::generate_secret();
    let (status, _, stderr) = check_config(&[
        ("JWT_SECRET", &secret),
        ("LLM_PROVIDER_1_ID", "echo"),
        ("LLM_PROVIDER_1_NAME", "Echo"),
        ("LLM_PROVIDER_1_TYPE", "echo"),
        ("LLM_PROVIDER_1_VISION", "true"),
        ("LLM_PROVIDER_2_ID", "gpt"),
        ("LLM_PROVIDER_2_NAME", "GPT"),
        ("LLM_PROVIDER_2_TYPE", "openai"),
        ("LLM_PROVIDER_2_ENDPOINT", "https://api.example.com/v1"),
        ("LLM_PROVIDER_2_API_KEY", "sk-0123456789"),
        ("LLM_PROVIDER_2_VISION", "maybe"),
    ])
    .await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("LLM_PROVIDER_1_VISION"), "{stderr}");
    assert!(stderr.contains("LLM_PROVIDER_2_VISION"), "{stderr}");
}
