//! `chatbox` command-line entry point.

fn main() -> std::process::ExitCode {
    eprintln!("chatbox: server not built yet (see the chat-path issue); chatbox-core is available");
    std::process::ExitCode::from(2)
}
