//! Smoke simulation: the real server on a simulated node, one simulated client over madsim TCP,
//! a streamed echo reply. Deterministic per seed (`MADSIM_TEST_SEED`).
#![cfg(madsim)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chatbox::adapters::llm::echo::EchoProvider;
use chatbox::engine::llm::LlmProvider;
use chatbox::engine::persistence::MemoryStore as SimStore;
use chatbox::http::auth::mint;
use chatbox_core::config::Config;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "sim-Zq8LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0NeRr4";

#[madsim::test]
async fn echo_reply_streams_over_simulated_tcp() {
    let handle = madsim::runtime::Handle::current();
    let server_ip = "10.0.0.1".parse().expect("literal ip");
    let server = handle.create_node().name("server").ip(server_ip).build();
    server.spawn(async move {
        let mut config = Config::for_dev(SECRET.to_string(), "unused");
        config.server.host = "0.0.0.0".into();
        config.server.port = 8080;
        let providers: Vec<Arc<dyn LlmProvider>> = vec![Arc::new(EchoProvider)];
        let running = chatbox::server::start(
            Arc::new(config),
            chatbox::server::Ports {
                store: Arc::new(SimStore::new()),
                outbox: Arc::new(chatbox::engine::persistence::MemoryOutbox::new(100)),
                providers,
                notifier: Arc::new(chatbox::engine::notify::LogNotifier),
                resolver: Arc::new(chatbox_sim::resolver::world()),
            },
        )
        .await
        .expect("server starts");
        // Keep the server alive for the whole simulation.
        std::future::pending::<()>().await;
        drop(running);
    });

    let client =
        handle.create_node().name("client").ip("10.0.0.2".parse().expect("literal ip")).build();
    let resumed_frames = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let resumed_out = std::sync::Arc::clone(&resumed_frames);
    let frames = client
        .spawn(async move {
            let mut resumed = Vec::new();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let addr: SocketAddr = "10.0.0.1:8080".parse().expect("literal addr");
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let token =
                mint(SECRET.as_bytes(), "sim-user", None, &["user".into()], None).expect("mint");
            let mut request =
                "ws://10.0.0.1:8080/chatbox/ws".into_client_request().expect("request");
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().expect("header value"));
            let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.expect("upgrade");
            let hello =
                r#"{"type":"user_message","session_id":"s-1","content":"hello simulated world"}"#;
            ws.send(Message::text(hello)).await.expect("send");
            let mut frames = Vec::new();
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let frame: serde_json::Value =
                    serde_json::from_str(text.as_str()).expect("json frame");
                let done = frame["metadata"]["done"] == "true" || frame["type"] == "error";
                frames.push(frame);
                if done {
                    break;
                }
            }
            // The `file_url` rule through the simulated resolver: a name that resolves to a
            // private address is refused, a public one stored and broadcast.
            let session =
                frames.last().and_then(|f| f["session_id"].as_str()).unwrap_or("").to_string();
            for host in ["intranet.example.com", "files.example.com"] {
                let upload = serde_json::json!({"type": "file_upload", "session_id": session,
                    "file_id": "f1", "file_url": format!("https://{host}/a.png")});
                ws.send(Message::text(upload.to_string())).await.expect("send");
            }
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let frame: serde_json::Value =
                    serde_json::from_str(text.as_str()).expect("json frame");
                let done = frame["type"] == "file_upload";
                frames.push(frame);
                if done {
                    break;
                }
            }
            // Resume (issue 14): the reply after its first chunk, then an unknown reply.
            let reply = frames
                .iter()
                .find_map(|f| f["metadata"]["reply_id"].as_str())
                .unwrap_or("")
                .to_string();
            for id in [reply.as_str(), "no-such-reply"] {
                let resume = serde_json::json!({"type": "resume", "session_id": session,
                    "metadata": {"reply_id": id, "after_seq": "1"}});
                ws.send(Message::text(resume.to_string())).await.expect("send");
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(text) = msg else { continue };
                    let frame: serde_json::Value =
                        serde_json::from_str(text.as_str()).expect("json frame");
                    let done = frame["metadata"]["done"] == "true" || frame["type"] == "error";
                    resumed.push(frame);
                    if done {
                        break;
                    }
                }
            }
            *resumed_out.lock().expect("not poisoned") = resumed;
            frames
        })
        .await
        .expect("client task");
    let resumed = resumed_frames.lock().expect("not poisoned").clone();

    // Every resume replays exactly the missing frames or answers RESUME_UNAVAILABLE.
    let reply_frames: Vec<_> = frames
        .iter()
        .filter(|f| f["type"] == "ai_response" && f["metadata"]["seq"] != "1")
        .cloned()
        .collect();
    let replayed: Vec<_> = resumed.iter().filter(|f| f["type"] != "connection_status").collect();
    let (replay, unavailable) = replayed.split_at(replayed.len().saturating_sub(1));
    assert!(!reply_frames.is_empty(), "the reply has frames after seq 1: {frames:?}");
    assert_eq!(replay.iter().map(|f| (*f).clone()).collect::<Vec<_>>(), reply_frames);
    assert_eq!(unavailable[0]["error"]["code"], "RESUME_UNAVAILABLE", "{resumed:?}");
    let (frames, uploads) = match frames.iter().position(|f| f["metadata"]["done"] == "true") {
        Some(done) => (frames[..=done].to_vec(), frames[done + 1..].to_vec()),
        None => (frames, Vec::new()),
    };
    let upload_types: Vec<&str> = uploads.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(upload_types, ["error", "file_upload"], "{uploads:?}");
    assert_eq!(uploads[0]["error"]["code"], "INVALID_FORMAT");
    assert_eq!(uploads[1]["file_url"], "https://files.example.com/a.png");
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"connection_status"), "greeting first: {types:?}");
    assert!(types.contains(&"loading"), "{types:?}");
    let text: String = frames
        .iter()
        .filter(|f| f["type"] == "ai_response" && f["metadata"]["done"] == "false")
        .filter_map(|f| f["content"].as_str())
        .collect();
    assert_eq!(text, "hello simulated world");
    let last = frames.last().expect("frames");
    assert_eq!(last["metadata"]["done"], "true");
    assert_eq!(last["metadata"]["streaming"], "true");
}
