//! The embedded redb store against the `SessionStore` contract (`common/contract.rs`: ordering,
//! idempotency, the one-active-session guard also under concurrency, patches, ending, listing,
//! share tokens, search), plus what is particular to it: persistence across reopening the same
//! data directory, and the file lock.
#![allow(clippy::disallowed_methods, reason = "store tests call the store port directly")]
#![cfg(not(madsim))]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chatbox::adapters::store::embedded::WriteStats;
use chatbox::adapters::store::EmbeddedStore;
use chatbox::engine::store::{CreateOutcome, SessionStore, StoreError};

use common::contract::{self, message, session};

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir).expect("open embedded store")
}

/// A store in a fresh temporary directory (kept until the test ends).
async fn fresh(_test: &str) -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = open(dir.path());
    (dir, store)
}

contract::contract_tests!(fresh);

#[tokio::test]
async fn update_persists_each_patch_field() {
    let dir = tempfile::tempdir().unwrap();
    // Reopening the directory proves the values are in the file.
    let reopen = |store: EmbeddedStore| async {
        drop(store);
        open(dir.path())
    };
    contract::update_persists_each_patch_field(open(dir.path()), reopen).await;
}

#[tokio::test]
async fn data_survives_reopening_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("data");
    {
        let store = open(&data_dir);
        assert_eq!(store.path(), data_dir.join(EmbeddedStore::FILE_NAME).as_path());
        store.create(&session("s1", "u1", 1_000)).await.unwrap();
        store.append_message("s1", &message("m1", "Hello", 1_500, "user")).await.unwrap();
        store.flush().await.unwrap();
    }

    let store = open(&data_dir);
    store.ping().await.unwrap();
    let doc = store.load("s1").await.unwrap().unwrap();
    assert_eq!(doc.messages, [message("m1", "Hello", 1_500, "user")]);
    // The indexes came back too: the active slot, the message ids, the user listing.
    assert_eq!(
        store.create(&session("s2", "u1", 2_000)).await.unwrap(),
        CreateOutcome::ActiveExists("s1".into())
    );
    store.append_message("s1", &message("m1", "Hello", 1_500, "user")).await.unwrap();
    store.append_message("s1", &message("m2", "Hi", 1_600, "ai")).await.unwrap();
    let doc = store.load("s1").await.unwrap().unwrap();
    assert_eq!(doc.messages.len(), 2);
    assert_eq!(store.list_by_user("u1", 10).await.unwrap().len(), 1);
}

/// Issue 16: at start-up nothing retries, so a locked file is a permanent error that names the
/// file and the likely cause, not a "transient store failure".
#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    let StoreError::Permanent(text) = &err else { panic!("permanent: {err:?}") };
    let file = dir.path().join(EmbeddedStore::FILE_NAME);
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("locked by another process"), "{text}");
}

/// Environment variable that turns [`acknowledged_writes_survive_a_crash`] into its own child.
const CRASH_CHILD: &str = "CHATBOX_EMBEDDED_CRASH_CHILD";

/// Writes are acknowledged only after the group commit that makes them durable: a process that
/// aborts (no destructor runs, nothing more is flushed) with writes still in flight loses none of
/// the writes it acknowledged. The child process appends concurrently, prints each acknowledged
/// message id, and aborts after the 150th acknowledgement; the parent reopens the file.
#[tokio::test]
async fn acknowledged_writes_survive_a_crash() {
    if let Ok(dir) = std::env::var(CRASH_CHILD) {
        crash_child(Path::new(&dir)).await;
        unreachable!("the child aborts");
    }
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "acknowledged_writes_survive_a_crash", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD, dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "the child aborts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The test harness prints its own text on the first line, so find the marks anywhere.
    let acked: Vec<&str> =
        stdout.split("ACK:").skip(1).filter_map(|rest| rest.split_whitespace().next()).collect();
    assert!(acked.len() >= 150, "the child acknowledged {} writes:\n{stdout}", acked.len());

    let store = open(dir.path());
    let doc = store.load("crash").await.unwrap().expect("the session was acknowledged");
    let stored: std::collections::HashSet<&str> =
        doc.messages.iter().map(|m| m.id.as_str()).collect();
    let lost: Vec<&&str> = acked.iter().filter(|id| !stored.contains(**id)).collect();
    assert!(lost.is_empty(), "acknowledged but lost after the crash: {lost:?}");
}

#[allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "test code: concurrent writers need spawned tasks, and a failure should panic"
)]
async fn crash_child(dir: &Path) {
    use std::io::Write;
    let store = Arc::new(open(dir));
    store.create(&session("crash", "u1", 1_000)).await.unwrap();
    let acks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (store, acks) = (Arc::clone(&store), Arc::clone(&acks));
        tasks.push(tokio::spawn(async move {
            let id = format!("m{i:03}");
            store.append_message("crash", &message(&id, "x", 2_000 + i, "user")).await.unwrap();
            let mut out = std::io::stdout().lock();
            writeln!(out, "ACK:{id}").unwrap();
            out.flush().unwrap();
            if acks.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == 150 {
                std::process::abort();
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    std::process::abort();
}

/// Through the encrypting wrapper: the same contract, and the rows read back are sealed.
#[tokio::test]
async fn recent_messages_through_encryption_are_decrypted() {
    use chatbox::engine::crypto::ContentCipher;
    use chatbox::engine::encrypting_store::EncryptingStore;
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn SessionStore> = Arc::new(open(dir.path()));
    let cipher = ContentCipher::new(b"k3y-for-tests-0123456789abcdefgh").unwrap();
    let store = EncryptingStore::new(Arc::clone(&inner), cipher);
    contract::recent_messages_are_the_last_ones_in_order(&store).await;
    let raw = inner.recent_messages("s1", 1).await.unwrap().unwrap();
    assert_ne!(raw[0].content, "x", "stored sealed");
}

/// Writes queued together share one transaction; one that fails (an unknown session) must not
/// take the others down, and must not leave anything half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::disallowed_methods, reason = "test code: concurrent writers are spawned tasks")]
async fn a_failing_write_in_a_batch_leaves_the_others_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    store.create(&session("s1", "u1", 1_000)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200_i64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let (target, id) = if i % 10 == 0 { ("nope", "bad") } else { ("s1", "ok") };
            let msg = message(&format!("{id}{i:03}"), "x", 2_000 + i, "user");
            (target, store.append_message(target, &msg).await)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            ("s1", Ok(())) => ok += 1,
            ("nope", Err(StoreError::Permanent(_))) => refused += 1,
            (target, other) => panic!("append to {target}: {other:?}"),
        }
    }
    assert_eq!((ok, refused), (180, 20));
    let doc = store.load("s1").await.unwrap().unwrap();
    assert_eq!(doc.messages.len(), 180);
    assert!(store.load("nope").await.unwrap().is_none());
}

/// Group commit waits for company only when writes arrive together: one caller writing in
/// sequence commits each write at once, alone, and the writer never holds a batch open for it.
#[tokio::test]
async fn a_writer_in_sequence_is_never_held_for_company() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with_linger(dir.path(), Duration::from_millis(1)).unwrap();
    store.create(&session("s1", "u1", 1_000)).await.unwrap();
    for i in 0..50_i64 {
        store
            .append_message("s1", &message(&format!("m{i:02}"), "x", 2_000 + i, "user"))
            .await
            .unwrap();
    }
    let stats = store.write_stats();
    assert_eq!(stats.writes, 51, "{stats:?}");
    assert_eq!(stats.batches, stats.writes, "each write committed alone: {stats:?}");
    assert_eq!(stats.lingered, 0, "a lone writer never waits: {stats:?}");
}

/// Eight tasks, each creating its session and then appending 40 messages in sequence, against
/// a store whose writer waits `linger` for company. Returns how the writes shared commits;
/// every write is checked stored.
#[allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "test code: concurrent writers are spawned tasks, and a failure should panic"
)]
async fn eight_concurrent_writers(linger: Duration) -> WriteStats {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open_with_linger(dir.path(), linger).unwrap());
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let (id, user) = (format!("s{t}"), format!("u{t}"));
            store.create(&session(&id, &user, 1_000)).await.unwrap();
            for i in 0..40_i64 {
                let msg = message(&format!("m{i:02}"), "x", 2_000 + i, "user");
                store.append_message(&id, &msg).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for t in 0..8 {
        let doc = store.load(&format!("s{t}")).await.unwrap().unwrap();
        assert_eq!(doc.messages.len(), 40);
    }
    let stats = store.write_stats();
    assert_eq!(stats.writes, 8 * 41, "{stats:?}");
    stats
}

/// Under concurrent writers a commit that carried several writes makes the next batch wait for
/// company (`STORE_COMMIT_LINGER`), so writes share commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits_and_the_writer_waits_for_company() {
    let stats = eight_concurrent_writers(Duration::from_millis(1)).await;
    assert!(stats.batches < stats.writes, "writes shared commits: {stats:?}");
    assert!(stats.lingered > 0, "the writer waited for company: {stats:?}");
}

/// `STORE_COMMIT_LINGER=0s`: the writer never waits, whatever arrives together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zero_linger_never_waits_for_company() {
    let stats = eight_concurrent_writers(Duration::ZERO).await;
    assert_eq!(stats.lingered, 0, "{stats:?}");
}
