//! CPU per commit of the embedded store's write shape (a user message or a reply: look up the
//! message id, insert the message row, the id row and the rewritten session row, in one
//! transaction) in redb 2.6.4, the version chatbox uses, and in redb 5.0.0, side by side in one
//! run. Each version gets a fresh file in `DIR` (default: `redb-versions` in the temporary
//! directory), 40 sessions with realistic row sizes, a warm-up of non-durable commits, then `N`
//! durable commits (`Durability::Immediate`, with the fsync) and `N` non-durable ones
//! (`Durability::None`), timed on this thread's CPU clock (`/proc/thread-self/schedstat`,
//! nanoseconds: user and kernel time, fsync included). Rounds alternate the versions.
//!
//! `cargo run --release -- [N [ROUNDS [DIR]]]`. `REDB_ONLY=2` or `5` runs one version and
//! `REDB_PHASE=durable` or `lazy` one kind of commit, so that under `valgrind --tool=callgrind`
//! the difference of the totals of two values of N, divided by the difference of the Ns, gives
//! instructions per commit (BENCHMARKS.md, "1f").

/// The write shape, written once for both versions (their APIs agree on what it uses).
macro_rules! shape {
    ($name:ident, $redb:ident) => {
        mod $name {
            use $redb::{Database, Durability, ReadableTable, TableDefinition};

            const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
            const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
            const IDS: TableDefinition<(&str, &str), u64> = TableDefinition::new("message_ids");

            /// A database with 40 sessions and the counters of the next message of each.
            pub struct Store {
                db: Database,
                sessions: Vec<String>,
                next: Vec<u64>,
                written: u64,
            }

            impl Store {
                pub fn create(path: &std::path::Path) -> Store {
                    let _ = std::fs::remove_file(path);
                    let db = $redb::Builder::new()
                        .set_cache_size(64 << 20)
                        .create(path)
                        .expect("create the database");
                    let sessions: Vec<String> = (0..40u64)
                        .map(|i| format!("{:08x}-1f2e-4d3c-9b8a-{:012x}", i * 7919, i * 104_729))
                        .collect();
                    let txn = db.begin_write().expect("begin");
                    {
                        let mut rows = txn.open_table(SESSIONS).expect("sessions");
                        for id in &sessions {
                            rows.insert(id.as_str(), [7u8; 250].as_slice()).expect("insert");
                        }
                        txn.open_table(MESSAGES).expect("messages");
                        txn.open_table(IDS).expect("ids");
                    }
                    txn.commit().expect("commit");
                    let next = vec![0; sessions.len()];
                    Store { db, sessions, next, written: 0 }
                }

                /// One message appended to the next session in turn, in its own transaction.
                pub fn append(&mut self, durable: bool) {
                    let k = (self.written % self.sessions.len() as u64) as usize;
                    let session = self.sessions[k].as_str();
                    let id = format!("m-{:016x}", self.written.wrapping_mul(2_654_435_761));
                    let mut txn = self.db.begin_write().expect("begin");
                    let durability = if durable { Durability::Immediate } else { Durability::None };
                    // redb 2 returns (), redb 5 a Result: both are fine to ignore here.
                    #[allow(clippy::let_unit_value)]
                    let _ = txn.set_durability(durability);
                    {
                        let mut rows = txn.open_table(SESSIONS).expect("sessions");
                        let mut messages = txn.open_table(MESSAGES).expect("messages");
                        let mut ids = txn.open_table(IDS).expect("ids");
                        let seen = ids.get((session, id.as_str())).expect("get").is_some();
                        assert!(!seen, "message ids are unique");
                        let row = rows.get(session).expect("get").map(|g| g.value().to_vec());
                        let row = row.expect("the session exists");
                        let seq = self.next[k];
                        messages.insert((session, seq), [b'x'; 150].as_slice()).expect("insert");
                        ids.insert((session, id.as_str()), seq).expect("insert");
                        rows.insert(session, row.as_slice()).expect("insert");
                        self.next[k] = seq + 1;
                    }
                    txn.commit().expect("commit");
                    self.written += 1;
                }
            }
        }
    };
}

shape!(v2, redb2);
shape!(v5, redb5);

/// What both versions' stores do.
trait Append {
    /// One message appended, durably or not.
    fn append(&mut self, durable: bool);
}

impl Append for v2::Store {
    fn append(&mut self, durable: bool) {
        v2::Store::append(self, durable);
    }
}

impl Append for v5::Store {
    fn append(&mut self, durable: bool) {
        v5::Store::append(self, durable);
    }
}

/// CPU µs per durable and per non-durable commit on `store`, after 4 000 warm-up commits.
fn measure(mut store: impl Append, (durable, lazy): (usize, usize)) -> (f64, f64) {
    per_call(4_000, || store.append(false));
    (per_call(durable, || store.append(true)), per_call(lazy, || store.append(false)))
}

/// This thread's CPU time so far, nanoseconds (user and kernel).
fn cpu_nanos() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    text.split_whitespace().next().and_then(|f| f.parse().ok()).expect("a CPU time")
}

/// CPU microseconds per call of `f` over `n` calls.
fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    let start = cpu_nanos();
    for _ in 0..n {
        f();
    }
    (cpu_nanos() - start) as f64 / 1_000.0 / n.max(1) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = args.get(3).map_or_else(|| std::env::temp_dir().join("redb-versions"), Into::into);
    std::fs::create_dir_all(&dir).expect("the data directory");
    // `REDB_ONLY=2` or `5` runs one version (for `perf stat` or callgrind of one of them).
    let only = std::env::var("REDB_ONLY").unwrap_or_default();
    // `REDB_PHASE=durable` or `lazy` skips the other phase (instruction counts of one kind).
    let phase = std::env::var("REDB_PHASE").unwrap_or_default();
    println!("round version   durable µs/commit   non-durable µs/commit   ({n} commits each)");
    // Commits of each kind: `n`, or none for the phase `REDB_PHASE` leaves out.
    let counts = (if phase == "lazy" { 0 } else { n }, if phase == "durable" { 0 } else { n });
    for round in 1..=rounds {
        if only != "5" {
            let (durable, lazy) = measure(v2::Store::create(&dir.join("v2.redb")), counts);
            println!("{round:>5} redb 2.6.4 {durable:>14.1} {lazy:>22.1}");
        }
        if only != "2" {
            let (durable, lazy) = measure(v5::Store::create(&dir.join("v5.redb")), counts);
            println!("{round:>5} redb 5.0.0 {durable:>14.1} {lazy:>22.1}");
        }
    }
}
