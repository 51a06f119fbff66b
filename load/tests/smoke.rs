//! Smoke test of the load generator, cheap enough for CI: `chatbox-load run`, `idle`, `soak`
//! and `outage` (on SecantusDB, `scripts/mongo-server.sh`) against the debug `chatbox` binary
//! (`target/<profile>/chatbox`, built once here if missing), and `run` against
//! `chatbox-load relay`. It checks counts and the shape of the `RESULT` report,
//! never timings.

use std::process::Command;

use serde_json::Value;

/// Runs `chatbox-load` with `args`; its `RESULT` reports.
fn load(args: &[&str]) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_chatbox-load"))
        .args(args)
        .arg("--server-bin")
        .arg(chatbox_tests::harness::binary())
        .output()
        .expect("run chatbox-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chatbox-load failed\n{stdout}\n{stderr}");
    let reports: Vec<Value> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).expect("RESULT is JSON"))
        .collect();
    assert!(!reports.is_empty(), "no RESULT line\n{stdout}\n{stderr}");
    reports
}

#[test]
fn run_delivers_every_message_a_complete_reply() {
    let reports = load(&[
        "run",
        "--rates",
        "20",
        "--duration",
        "2s",
        "--drain",
        "20s",
        "--pause",
        "0s",
        "--quiet",
    ]);
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    let count = |key: &str| r[key].as_u64().unwrap_or_else(|| panic!("{key} in {r}"));
    assert_eq!(count("scheduled"), 40, "{r}");
    assert_eq!(count("sent"), 40, "{r}");
    assert_eq!(count("first_chunks"), 40, "{r}");
    assert_eq!(count("done"), 40, "{r}");
    assert_eq!(count("complete"), 40, "{r}");
    assert_eq!(count("errors_total"), 0, "{r}");
    assert_eq!(count("unmatched_first_chunks"), 0, "{r}");
    for key in ["added", "added_total", "added_from_send", "ttfc"] {
        assert_eq!(r[key]["count"].as_u64(), Some(40), "{key} in {r}");
        assert!(r[key]["p99_ms"].is_number(), "{key} in {r}");
    }
    assert!(r["server_rss_kib"]["after_run"].as_u64().is_some(), "{r}");
    // CPU per reply is measured for both processes (a value, not a figure checked here).
    assert!(r["server_cpu_us_per_reply"].is_number(), "{r}");
    assert!(r["generator_cpu_us_per_reply"].is_number(), "{r}");
}

#[test]
fn idle_opens_every_connection_and_reports_memory() {
    let reports =
        load(&["idle", "--connections", "30", "--checkpoints", "10", "--settle", "200ms"]);
    let r = &reports[0];
    assert_eq!(r["failures"].as_u64(), Some(0), "{r}");
    let rows = r["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{r}");
    assert_eq!(rows[2]["connections"].as_u64(), Some(30), "{r}");
    assert!(rows.iter().all(|row| row["rss_kib"].as_u64().is_some_and(|k| k > 0)), "{r}");
    assert!(r["slope_bytes_per_connection"].is_number(), "{r}");
}

#[test]
fn the_bare_relay_carries_every_reply() {
    use std::io::{BufRead, BufReader};
    // A free port for the run's stub, which the relay calls (a tiny race is accepted).
    let stub_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let mut relay = Command::new(env!("CARGO_BIN_EXE_chatbox-load"))
        .args(["relay", "--port", "0", "--upstream", &format!("127.0.0.1:{stub_port}")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the relay");
    let stdout = relay.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("the relay prints its address");
    let addr = line
        .strip_prefix("relay listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_chatbox-load"))
        .env("JWT_SECRET", "unused-by-the-relay")
        .args(["--server-addr", &addr, "--stub-port", &stub_port.to_string()])
        .args(["run", "--rates", "20", "--duration", "2s", "--drain", "20s", "--quiet"])
        .output()
        .expect("run chatbox-load against the relay");
    let _ = relay.kill();
    let _ = relay.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let r: Value = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .map(|json| serde_json::from_str(json).expect("RESULT is JSON"))
        .unwrap_or_else(|| panic!("no RESULT line\n{stdout}"));
    for key in ["sent", "first_chunks", "done", "complete"] {
        assert_eq!(r[key].as_u64(), Some(40), "{key} in {r}");
    }
    assert_eq!(r["errors_total"].as_u64(), Some(0), "{r}");
    // Its upstream connections are kept alive and reused, as chatbox's client pool does.
    let upstream = r["stub_connections"].as_u64().unwrap_or_else(|| panic!("{r}"));
    assert!((1..40).contains(&upstream), "40 replies over {upstream} upstream connections: {r}");
}

#[test]
fn a_short_soak_answers_every_message_while_connections_and_sessions_churn() {
    let reports = load(&[
        "soak",
        "--duration",
        "6s",
        "--rate",
        "20",
        "--users",
        "10",
        "--messages-per-connection",
        "3",
        "--end-every",
        "2",
        "--sample",
        "2s",
        "--warmup",
        "2s",
    ]);
    let r = &reports[0];
    let count = |key: &str| r[key].as_u64().unwrap_or_else(|| panic!("{key} in {r}"));
    assert_eq!(count("messages"), 120, "{r}");
    assert_eq!(count("acknowledged"), 120, "{r}");
    assert_eq!(count("replies"), 120, "{r}");
    assert_eq!(count("errors_total"), 0, "{r}");
    assert!(count("connections_opened") >= 40, "a new connection every 3 messages: {r}");
    assert!(count("sessions_ended") >= 10, "{r}");
    assert!(r["samples"].as_array().is_some_and(|s| s.len() >= 4), "{r}");
    assert!(r["rss_drift_after_warmup_pct"].is_number(), "{r}");
    assert!(r["max_fds"].as_u64().is_some(), "{r}");
}

#[test]
fn a_short_outage_loses_no_acknowledged_message_and_reports_readyz() {
    let reports = load(&[
        "outage",
        "--rate",
        "20",
        "--connections",
        "10",
        "--before",
        "2s",
        "--outage",
        "3s",
        "--after",
        "2s",
        "--quiet",
    ]);
    let r = &reports[0];
    let count = |key: &str| r[key].as_u64().unwrap_or_else(|| panic!("{key} in {r}"));
    assert_eq!(count("messages"), 140, "{r}");
    assert!(count("acknowledged") > 0, "{r}");
    assert_eq!(count("acknowledged_found_in_store"), count("acknowledged"), "{r}");
    assert_eq!(count("acknowledged_lost"), 0, "{r}");
    assert!(r["phases"]["during"]["acknowledged"].as_u64() > Some(0), "acked in the outage: {r}");
    let readyz = &r["readyz"];
    for key in ["not_ready_after_kill_ms", "ready_after_restart_ms"] {
        assert!(readyz[key].is_number(), "{key} in {r}");
    }
}
