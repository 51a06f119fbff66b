//! Embedded-store write throughput: appends per second through [`EmbeddedStore`] with 1, 16 and
//! 128 concurrent writers (group commit: one fsync covers every write that committed while the
//! previous one ran), next to the floor it replaced — one redb transaction committed with
//! `Durability::Immediate` (one fsync) per write, which redb serialises whatever the concurrency.
//! Wall-clock figures on the machine's real disk: not a criterion benchmark, it prints a table.
//! 2 000 writes per case when benchmarking, 200 in test mode.
#![allow(clippy::disallowed_methods, reason = "store tests call the store port directly")]

use std::sync::Arc;

use chatbox::adapters::store::EmbeddedStore;
use chatbox::engine::store::{SessionDoc, SessionStore, StoredMessage};
use chatbox_benches::bench_mode;
use chatbox_core::UnixMillis;
use redb::{Database, Durability, TableDefinition};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("bench");

#[allow(clippy::disallowed_methods, reason = "a benchmark harness measures wall time")]
fn stopwatch() -> std::time::Instant {
    std::time::Instant::now()
}

fn message(i: usize) -> StoredMessage {
    StoredMessage {
        id: format!("m{i}"),
        content: "a typical user message of about sixty bytes, give or take".into(),
        ts: UnixMillis(1_000 + i as i64),
        sender: "user".into(),
        file_id: String::new(),
        file_url: String::new(),
        meta: Default::default(),
    }
}

/// Appends `n` messages to one session from `writers` concurrent tasks; returns appends/s.
#[allow(clippy::disallowed_methods, reason = "a benchmark's writers are plain tokio tasks")]
async fn group_commit(n: usize, writers: usize) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("open the embedded store"));
    let doc = SessionDoc::new("s".into(), "u".into(), UnixMillis(1_000));
    store.create(&doc).await.expect("create the session");
    let started = stopwatch();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(writers) {
                store.append_message("s", &message(i)).await.expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// `n` sequential redb transactions with immediate durability, one small row each.
fn immediate_per_write(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = Database::create(dir.path().join("bench.redb")).expect("create redb file");
    let row = vec![7u8; 200];
    let started = stopwatch();
    for i in 0..n as u64 {
        let mut txn = db.begin_write().expect("begin");
        txn.set_durability(Durability::Immediate);
        txn.open_table(TABLE).expect("table").insert(i, row.as_slice()).expect("insert");
        txn.commit().expect("commit");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench -- FILTER` passes the filter to every bench binary: run only when it names us.
    let filters: Vec<&String> = args.iter().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "store".contains(f.as_str())) {
        return;
    }
    let n = if bench_mode() { 2_000 } else { 200 };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    println!("store: {n} appends per case, embedded store on the real disk");
    println!("{:<34} {:>12}", "case", "writes/s");
    println!("{:<34} {:>12.0}", "redb, one fsync per write", immediate_per_write(n));
    for writers in [1, 16, 128] {
        let rate = runtime.block_on(group_commit(n, writers));
        println!("{:<34} {:>12.0}", format!("group commit, {writers} writers"), rate);
    }
}
