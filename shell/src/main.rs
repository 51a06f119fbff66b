//! `chatbox` command line: `serve`, `check-config`, `token`, `gen-secret`.

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    chatbox::app::cli::main()
}

#[cfg(madsim)]
fn main() {}
