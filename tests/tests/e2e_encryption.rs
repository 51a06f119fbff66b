#![cfg(not(madsim))]
//! Encryption at rest end to end through the real binary (PROTOCOL.md §8.4): with a 32-byte
//! `ENCRYPTION_KEY`, a chatted sentence (the user's line and the AI's echo of it) never appears
//! in plaintext in the data directory (`chatbox.redb`); a restart with the same key reads it back
//! in plaintext (and sends it to the LLM as history); a server without the key returns the stored
//! Base64 of `nonce ‖ ciphertext ‖ tag`, which opens with the key — so it really was encrypted.
//!
//! The sentence is the session's second message on purpose: the session name is derived from
//! the first message and, as in the original, stored unencrypted (§8.4 "Not encrypted: `nm`").

use std::path::Path;
use std::time::Duration;

use chatbox::engine::crypto::{ContentCipher, NONCE_LEN, TAG_LEN};
use chatbox_tests::e2e::{chat, files_containing, list_files};
use chatbox_tests::harness::{Server, ServerOpts};
use chatbox_tests::http::{get, ok_json};
use chatbox_tests::upstream::Upstream;
use serde_json::{json, Value};

const KEY: &str = "k3y-for-the-e2e-test-0123456789!";
const USER: &str = "enc-user-5b1e";
const OPENER: &str = "Good morning.";
const SENTENCE: &str = "The purple walrus audits invoices at midnight in Reykjavik.";

/// `GET {P}/sessions/S` as the owner: the messages.
async fn messages(server: &Server, session: &str) -> Vec<Value> {
    let token = server.token(USER, &["user"], None);
    let body = ok_json(&get(server, &format!("/sessions/{session}"), Some(&token)).await);
    body["messages"].as_array().cloned().expect("messages")
}

fn contents(messages: &[Value]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| {
            (
                m["sender"].as_str().unwrap_or_default().to_string(),
                m["content"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Stops `server` gracefully and waits for its exit.
async fn stop(server: &mut Server) {
    server.sigterm();
    let (status, _) = server.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit 0: {status}");
}

/// Copies every file of `from` into `to` (recursively), replacing what is there.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the target dir");
    for entry in std::fs::read_dir(from).expect("read the source dir").filter_map(Result::ok) {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a data file");
        }
    }
}

/// Whether `text` looks like standard Base64 (with padding) of `nonce ‖ sealed(plain) ‖ tag`.
fn is_sealed_base64(text: &str, plain: &str) -> bool {
    let raw_len = NONCE_LEN + plain.len() + TAG_LEN;
    text.len() == raw_len.div_ceil(3) * 4
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

#[tokio::test]
async fn content_is_encrypted_at_rest_and_readable_only_with_the_key() {
    assert_eq!(KEY.len(), 32);
    let upstream = Upstream::start().await;
    let with_key = ServerOpts::with_upstream(&upstream).embedded_store().env("ENCRYPTION_KEY", KEY);
    let mut server = Server::start(with_key).await;
    let mut client = server.connect(&server.token(USER, &["user"], None)).await;
    let (session, _) = chat(&mut client, "enc-1", OPENER).await;
    let (again, _) = chat(&mut client, &session, SENTENCE).await;
    assert_eq!(again, session);
    client.close().await;
    stop(&mut server).await;

    // At rest: the store holds the session (its owner id is plain) but not the sentence.
    let data = server.data_dir();
    let store = data.join("chatbox.redb");
    assert!(store.is_file(), "the embedded store exists: {:?}", list_files(&data));
    assert!(
        !files_containing(&data, USER.as_bytes()).is_empty(),
        "the scan sees the stored session (owner id in plain text): {:?}",
        list_files(&data)
    );
    for needle in [SENTENCE, "purple walrus", "Reykjavik"] {
        let leaks = files_containing(&data, needle.as_bytes());
        assert!(leaks.is_empty(), "{needle:?} is stored in plain text in {leaks:?}");
    }

    // Same key after a restart: plaintext over the API and in the LLM history.
    let mut server = server.restart().await;
    let expected = vec![
        ("user".to_string(), OPENER.to_string()),
        ("ai".to_string(), OPENER.to_string()),
        ("user".to_string(), SENTENCE.to_string()),
        ("ai".to_string(), SENTENCE.to_string()),
    ];
    assert_eq!(contents(&messages(&server, &session).await), expected);
    let mut client = server.connect(&server.token(USER, &["user"], None)).await;
    chat(&mut client, &session, "Still there?").await;
    let history = upstream.last_request().expect("a request").body["messages"].clone();
    assert_eq!(
        history,
        json!([
            {"role": "user", "content": OPENER}, {"role": "assistant", "content": OPENER},
            {"role": "user", "content": SENTENCE}, {"role": "assistant", "content": SENTENCE},
            {"role": "user", "content": "Still there?"},
        ]),
        "the history is decrypted before it reaches the LLM"
    );
    client.close().await;
    stop(&mut server).await;

    // Without the key (same data, copied into a keyless server's data dir): the stored Base64.
    let mut keyless = Server::start(ServerOpts::with_upstream(&upstream).embedded_store()).await;
    // One round trip first: the binary installs its SIGTERM handler only after printing its
    // `listening on` line (see e2e_ops.rs, sigterm_right_after_start_is_graceful).
    assert_eq!(get(&keyless, "/healthz", None).await.status, 200);
    stop(&mut keyless).await;
    copy_dir(&server.data_dir(), &keyless.data_dir());
    let keyless = keyless.restart().await;
    let stored = messages(&keyless, &session).await;
    assert_eq!(stored.len(), 6, "{stored:#?}");
    let cipher = ContentCipher::new(KEY.as_bytes()).expect("a 32-byte key");
    let plain = [OPENER, OPENER, SENTENCE, SENTENCE, "Still there?", "Still there?"];
    let mut seen = std::collections::BTreeSet::new();
    for (message, plain) in stored.iter().zip(plain) {
        let content = message["content"].as_str().expect("content");
        assert_ne!(content, plain, "not plaintext without the key: {message}");
        assert!(is_sealed_base64(content, plain), "Base64 of nonce‖ciphertext‖tag: {content}");
        assert_eq!(cipher.try_decrypt(content).as_deref(), Some(plain), "opens with the key");
        assert!(seen.insert(content.to_string()), "a fresh nonce per message: {content}");
    }
    let other = ContentCipher::new(b"another-key-another-key-another!").expect("a key");
    let first = stored[0]["content"].as_str().expect("content");
    assert_eq!(other.try_decrypt(first), None, "another key does not open it");
    drop(keyless);
}
