//! The MongoDB store against a real MongoDB-wire server (SecantusDB, started by
//! `scripts/mongo-server.sh` on a free loopback port): the whole `SessionStore` contract
//! (`common/contract.rs`), documents in the original's exact shape in both directions, the
//! one-active-session guard across two clients, the admin search against the shared semantics,
//! the §8.3 indexes, and the error classification on real failures.
//!
//! These tests fail — never skip — when the server cannot be started.
#![allow(clippy::disallowed_methods, reason = "store tests call the store port directly")]
#![cfg(all(not(madsim), feature = "mongodb"))]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use chatbox::adapters::store::mongo::{classify, INDEX_NAMES};
use chatbox::adapters::store::MongoStore;
use chatbox::engine::store::{
    search_matches, search_order, search_page, CreateOutcome, SearchKey, SessionDoc, SessionPatch,
    SessionStore, StoreError,
};
use chatbox_core::config::{MongoConfig, Origin, Secret};
use chatbox_core::protocol::query::SortField;
use chatbox_core::session::EndCause;
use chatbox_core::UnixMillis;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};

use common::contract::{self, admin_query, message, session};

// ---- the server ----

/// A SecantusDB server process on a free loopback port with its own data directory.
///
/// Dropping it kills the process. The shared instance ([`server`]) lives in a static, which is
/// never dropped: the script's `--exit-with` stops it (and removes its directory) when this
/// test binary exits.
struct MongoServer {
    child: Child,
    port: u16,
}

impl MongoServer {
    /// Starts the server; panics (fails the test) when it cannot.
    fn start() -> MongoServer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/mongo-server.sh");
        let dir = tempfile::Builder::new()
            .prefix("chatbox-mongo-test-")
            .tempdir()
            .expect("temporary directory for the server")
            .keep();
        let mut child = Command::new("bash")
            .arg(&script)
            .args(["start", "--port", "0", "--remove-dir", "--dir"])
            .arg(&dir)
            .args(["--exit-with", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        // The script prints the line once the port accepts connections; it closes the pipe
        // (EOF) if the server exits first or does not listen within 60 s.
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the server's readiness line");
        let port = line
            .trim()
            .strip_prefix("listening 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "MongoDB test server did not start (scripts/mongo-server.sh said {line:?}; \
                     see its stderr above)"
                )
            });
        MongoServer { child, port }
    }

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/", self.port)
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server shared by every test of this binary (each test uses its own collection).
fn server() -> &'static MongoServer {
    static SERVER: OnceLock<MongoServer> = OnceLock::new();
    SERVER.get_or_init(MongoServer::start)
}

/// A configuration for `collection` in the test database.
fn config(uri: String, collection: &str) -> MongoConfig {
    MongoConfig {
        uri: Secret::new(uri, Origin::Builtin),
        database: "chatbox_test".into(),
        collection: collection.into(),
        connect_timeout: Duration::from_secs(10),
        server_selection_timeout: Duration::from_secs(10),
    }
}

/// A collection name no other test uses.
fn fresh_collection(test: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{test}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A store on `collection` with its indexes.
async fn store_on(collection: &str) -> MongoStore {
    let store = MongoStore::connect(&config(server().uri(), collection)).await.expect("connect");
    store.ensure_indexes().await.expect("ensure indexes");
    store
}

/// A store on a fresh, empty collection.
async fn fresh(test: &str) -> MongoStore {
    store_on(&fresh_collection(test)).await
}

// ---- the contract ----

/// A store on a fresh collection, for the contract's tests.
async fn fresh_for(test: &str) -> ((), MongoStore) {
    ((), fresh(test).await)
}

contract::contract_tests!(fresh_for);

#[tokio::test]
async fn update_persists_each_patch_field() {
    let collection = fresh_collection("update");
    // A second client on the same collection proves the values are in the database.
    let reopen = |store: MongoStore| {
        let collection = collection.clone();
        async move {
            drop(store);
            store_on(&collection).await
        }
    };
    contract::update_persists_each_patch_field(store_on(&collection).await, reopen).await;
}

/// Another instance stored a message after the ending instance's quiet point: the idle end
/// is refused in the same find-and-update, and goes through once the session is quiet.
#[tokio::test]
async fn an_idle_end_is_refused_while_a_message_came_within_the_quiet_time() {
    let store = fresh("idle_end").await;
    store.create(&session("s", "u", 1_000)).await.expect("create");
    store.append_message("s", &message("m1", "hi", 5_000, "user")).await.expect("append");
    let ended = |store: &MongoStore| {
        let store = store.clone();
        async move { store.load("s").await.expect("load").expect("stored").ended }
    };
    assert!(!store.end_if_idle("s", UnixMillis(9_000), UnixMillis(4_999)).await.expect("ask"));
    assert_eq!(ended(&store).await, None, "still active");
    assert!(store.end_if_idle("s", UnixMillis(9_000), UnixMillis(5_000)).await.expect("ask"));
    assert_eq!(ended(&store).await, Some(UnixMillis(9_000)));
    assert!(!store.end_if_idle("nobody", UnixMillis(9_000), UnixMillis(9_000)).await.expect("ask"));
}

// ---- the original's documents ----

fn at(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

/// A session as the original server writes it: int32 `totalTokens`, int64 `dur` and
/// `maxRespTime`, a double `avgRespTime`, messages without `mid`, no `activeUid`, no
/// `lastActivity` (it is only set by a `$push`), `_ts`/`_mt` from its helper library.
fn original_document(id: &str, user: &str, started: i64, ended: Option<i64>) -> Document {
    let mut d = doc! {
        "_id": id,
        "uid": user,
        "nm": "Hello there",
        "modelId": "openai-gpt4",
        "msgs": [
            { "content": "Hello there", "ts": at(started + 100), "sender": "user" },
            { "content": "Hi! How can I help?", "ts": at(started + 200), "sender": "ai" },
            { "content": "", "ts": at(started + 300), "sender": "user",
              "fileId": "f1", "fileUrl": "https://files.example/f1.png",
              "meta": { "filename": "f1.png", "size": "1234" } },
        ],
        "ts": at(started),
        "dur": 0_i64,
        "adminAssisted": true,
        "assistingAdminId": "a1",
        "assistingAdminName": "Ann",
        "helpRequested": false,
        "totalTokens": 321_i32,
        "maxRespTime": 900_i64,
        "avgRespTime": 450.0_f64,
        "_ts": at(started),
        "_mt": at(started),
    };
    if let Some(ended) = ended {
        d.insert("endTs", at(ended));
        d.insert("dur", (ended - started) / 1000);
    }
    d
}

#[tokio::test]
async fn documents_written_by_the_original_read_through_the_store() {
    let store = fresh("original_in").await;
    let raw = store.collection();
    raw.insert_one(original_document("old", "u1", 1_000, Some(61_000))).await.unwrap();
    raw.insert_one(original_document("live", "u1", 100_000, None)).await.unwrap();
    // The sparsest legal shape: no msgs, no numbers, no flags.
    raw.insert_one(doc! { "_id": "bare", "uid": "u2", "ts": at(5_000), "totalTokens": 7.0_f64 })
        .await
        .unwrap();

    let old = store.load("old").await.unwrap().expect("stored");
    assert_eq!(old.user_id, "u1");
    assert_eq!(old.name, "Hello there");
    assert_eq!(old.model_id, "openai-gpt4");
    assert_eq!(old.started, UnixMillis(1_000));
    assert_eq!(old.ended, Some(UnixMillis(61_000)));
    assert_eq!(old.duration_secs, 60);
    assert!(old.admin_assisted);
    assert_eq!((old.assisting_admin_id.as_str(), old.assisting_admin_name.as_str()), ("a1", "Ann"));
    assert!(!old.help_requested);
    assert_eq!(old.total_tokens, 321);
    assert_eq!((old.max_response_ms, old.avg_response_ms), (900, 450));
    assert_eq!(old.last_activity, None);
    assert_eq!(old.share_token, None);
    let ids: Vec<_> = old.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["legacy-0", "legacy-1", "legacy-2"], "stable ids for messages without mid");
    assert_eq!(old.messages[1].content, "Hi! How can I help?");
    assert_eq!(old.messages[1].sender, "ai");
    assert_eq!(old.messages[1].ts, UnixMillis(1_200));
    assert_eq!(old.messages[2].file_id, "f1");
    assert_eq!(old.messages[2].file_url, "https://files.example/f1.png");
    assert_eq!(old.messages[2].meta.get("filename").map(String::as_str), Some("f1.png"));

    // The history read slices on the server and numbers mid-less messages the same way.
    let recent = |id: &'static str, limit: usize| {
        let store = &store;
        async move {
            let messages = store.recent_messages(id, limit).await.unwrap().expect("stored");
            messages.into_iter().map(|m| m.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(recent("old", 2).await, ["legacy-1", "legacy-2"]);
    assert_eq!(recent("old", 9).await, ["legacy-0", "legacy-1", "legacy-2"]);
    assert_eq!(
        store.recent_messages("old", 1).await.unwrap().unwrap(),
        old.messages[2..],
        "the same messages as the whole session's tail"
    );
    assert_eq!(recent("bare", 5).await, Vec::<String>::new(), "no msgs field");
    // The mark numbers mid-less messages the same way, and a document without `msgs` has none.
    let mark = store.history_mark("old").await.unwrap().expect("stored");
    assert_eq!((mark.count, mark.last_id.as_deref()), (3, Some("legacy-2")));
    let bare = store.history_mark("bare").await.unwrap().expect("stored");
    assert_eq!((bare.count, bare.last_id), (0, None));

    let bare = store.load("bare").await.unwrap().expect("stored");
    let mut expected = SessionDoc::new("bare".into(), "u2".into(), UnixMillis(5_000));
    expected.total_tokens = 7;
    assert_eq!(bare, expected);

    // Listing, search and metrics see them too.
    let listed: Vec<_> =
        store.list_by_user("u1", 10).await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(listed, ["live", "old"]);
    let active = store.search(&admin_query(&[("status", "active")])).await.unwrap();
    assert_eq!(contract::ids(&active), ["live", "bare"]);
    let by_count = admin_query(&[("sort_by", "message_count"), ("sort_order", "asc")]);
    assert_eq!(contract::ids(&store.search(&by_count).await.unwrap()), ["bare", "live", "old"]);
    assert_eq!(store.started_between(UnixMillis(0), UnixMillis(10_000)).await.unwrap().len(), 2);

    // Writing to an original document: appends are idempotent next to the mid-less messages,
    // and work on a document without `msgs`.
    let reply = message("m-new", "More?", 120_000, "user");
    store.append_message("live", &reply).await.unwrap();
    store.append_message("live", &reply).await.unwrap();
    let live = store.load("live").await.unwrap().unwrap();
    let ids: Vec<_> = live.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["legacy-0", "legacy-1", "legacy-2", "m-new"]);
    assert_eq!(recent("live", 2).await, ["legacy-2", "m-new"]);
    assert_eq!(live.last_activity, Some(UnixMillis(120_000)));
    store.append_message("bare", &message("b1", "hi", 6_000, "user")).await.unwrap();
    assert_eq!(store.load("bare").await.unwrap().unwrap().messages.len(), 1);

    // The original's active session carries no guard, so it does not block a new one (the
    // original never had the guard either); once ended through us it is a normal document.
    let ended = store.end("live", UnixMillis(130_000), EndCause::Requested).await.unwrap().unwrap();
    assert_eq!(ended.duration_secs, 30);
    let raw_live = raw.find_one(doc! { "_id": "live" }).await.unwrap().unwrap();
    assert!(raw_live.get("activeUid").is_none());
    assert!(matches!(raw_live.get("totalTokens"), Some(Bson::Int32(321))), "left as written");
}

/// The BSON type of every field, by name.
fn shape(d: &Document) -> BTreeMap<String, &'static str> {
    d.iter()
        .map(|(k, v)| {
            let t = match v {
                Bson::String(_) => "string",
                Bson::DateTime(_) => "date",
                Bson::Int32(_) => "int32",
                Bson::Int64(_) => "int64",
                Bson::Double(_) => "double",
                Bson::Boolean(_) => "bool",
                Bson::Array(_) => "array",
                Bson::Document(_) => "object",
                Bson::Null => "null",
                _ => "other",
            };
            (k.clone(), t)
        })
        .collect()
}

/// The fields (and their BSON types) every stored session has, fresh or ended.
const EVERY_SESSION: &[(&str, &str)] = &[
    ("_id", "string"),
    ("uid", "string"),
    ("nm", "string"),
    ("modelId", "string"),
    ("msgs", "array"),
    ("ts", "date"),
    ("dur", "int64"),
    ("adminAssisted", "bool"),
    ("helpRequested", "bool"),
    ("totalTokens", "int32"),
    ("maxRespTime", "int64"),
    ("avgRespTime", "int64"),
    ("_ts", "date"),
    ("_mt", "date"),
];

fn expect_shape(d: &Document, expected: &[(&str, &'static str)]) {
    let expected: BTreeMap<String, &'static str> =
        expected.iter().map(|(k, t)| ((*k).to_owned(), *t)).collect();
    assert_eq!(shape(d), expected, "{d:?}");
}

#[tokio::test]
async fn documents_written_by_the_store_have_the_original_shape() {
    let store = fresh("original_out").await;
    let raw = store.collection();
    store.create(&session("s1", "u1", 1_000)).await.unwrap();

    let fresh_doc = raw.find_one(doc! { "_id": "s1" }).await.unwrap().unwrap();
    expect_shape(&fresh_doc, &[EVERY_SESSION, &[("activeUid", "string")]].concat());
    assert_eq!(fresh_doc.get_str("activeUid").unwrap(), "u1");
    assert_eq!(fresh_doc.get_datetime("ts").unwrap().timestamp_millis(), 1_000);
    assert!(fresh_doc.get_array("msgs").unwrap().is_empty());

    store.append_message("s1", &message("m1", "Hello", 1_500, "user")).await.unwrap();
    let mut with_file = message("m2", "", 1_600, "user");
    with_file.file_id = "f1".into();
    with_file.file_url = "https://files.example/f1".into();
    with_file.meta.insert("filename".into(), "a.png".into());
    store.append_message("s1", &with_file).await.unwrap();
    let patch = SessionPatch {
        name: Some("Hello".into()),
        model_id: Some("openai-gpt4".into()),
        assistance: Some((true, "a1".into(), "Ann".into())),
        help_requested: Some(true),
        total_tokens: Some(42),
        response_ms: Some((900, 450)),
        reactivate: false,
    };
    store.update("s1", &patch).await.unwrap();
    store.end("s1", UnixMillis(11_000), EndCause::Requested).await.unwrap().unwrap();
    store.set_share_token("s1", "tok").await.unwrap();

    let d = raw.find_one(doc! { "_id": "s1" }).await.unwrap().unwrap();
    assert_eq!(d.get_str("endCause"), Ok("requested"));
    expect_shape(
        &d,
        &[
            EVERY_SESSION,
            &[
                ("endTs", "date"),
                // chatbox's one addition (issue 16): why it ended, so an explicit end stays final.
                ("endCause", "string"),
                ("assistingAdminId", "string"),
                ("assistingAdminName", "string"),
                ("lastActivity", "date"),
                ("shareToken", "string"),
            ],
        ]
        .concat(),
    );
    assert_eq!(d.get_str("nm").unwrap(), "Hello");
    assert_eq!(d.get_i64("dur").unwrap(), 10);
    assert_eq!(d.get_i32("totalTokens").unwrap(), 42);
    assert_eq!(d.get_i64("maxRespTime").unwrap(), 900);
    assert_eq!(d.get_datetime("endTs").unwrap().timestamp_millis(), 11_000);
    assert_eq!(d.get_datetime("lastActivity").unwrap().timestamp_millis(), 1_600);
    assert_eq!(d.get_str("shareToken").unwrap(), "tok");
    let msgs = d.get_array("msgs").unwrap();
    let first = msgs[0].as_document().unwrap();
    expect_shape(
        first,
        &[("content", "string"), ("ts", "date"), ("sender", "string"), ("mid", "string")],
    );
    assert_eq!(first.get_str("content").unwrap(), "Hello");
    assert_eq!(first.get_str("mid").unwrap(), "m1");
    let second = msgs[1].as_document().unwrap();
    expect_shape(
        second,
        &[
            ("content", "string"),
            ("ts", "date"),
            ("sender", "string"),
            ("fileId", "string"),
            ("fileUrl", "string"),
            ("meta", "object"),
            ("mid", "string"),
        ],
    );
    expect_shape(second.get_document("meta").unwrap(), &[("filename", "string")]);

    // Clearing the assistance removes the admin fields (omitted when empty); a large token
    // total becomes int64.
    let clear = SessionPatch {
        assistance: Some((false, String::new(), String::new())),
        total_tokens: Some(u64::from(u32::MAX)),
        ..SessionPatch::default()
    };
    store.update("s1", &clear).await.unwrap();
    let d = raw.find_one(doc! { "_id": "s1" }).await.unwrap().unwrap();
    assert!(d.get("assistingAdminId").is_none() && d.get("assistingAdminName").is_none());
    assert_eq!(d.get_i64("totalTokens").unwrap(), i64::from(u32::MAX));

    // Reactivation removes endTs and restores the guard; ending removes it again.
    store
        .update("s1", &SessionPatch { reactivate: true, ..SessionPatch::default() })
        .await
        .unwrap();
    let d = raw.find_one(doc! { "_id": "s1" }).await.unwrap().unwrap();
    assert!(d.get("endTs").is_none());
    assert_eq!(d.get_str("activeUid").unwrap(), "u1");
}

// ---- two instances ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_create_from_two_instances_yields_one_active_session() {
    let collection = fresh_collection("two_instances");
    let first = store_on(&collection).await;
    let second = store_on(&collection).await;
    for round in 0..10 {
        let user = format!("u{round}");
        let a = session(&format!("a{round}"), &user, 1_000);
        let b = session(&format!("b{round}"), &user, 1_000);
        let (from_first, from_second) = tokio::join!(first.create(&a), second.create(&b));
        let outcomes =
            [(a.id.as_str(), from_first.unwrap()), (b.id.as_str(), from_second.unwrap())];
        let winners: Vec<&str> = outcomes
            .iter()
            .filter(|(_, o)| *o == CreateOutcome::Created)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
        for (_, outcome) in &outcomes {
            if let CreateOutcome::ActiveExists(active) = outcome {
                assert_eq!(active, winners[0], "the loser reuses the winner's session");
            }
        }
        let query = admin_query(&[("user_id", &user), ("status", "active")]);
        assert_eq!(contract::ids(&first.search(&query).await.unwrap()), [winners[0]]);
    }
}

// ---- search against the shared semantics ----

/// id, user, start, end, assisted, number of messages, token total.
type Spec = (&'static str, &'static str, i64, Option<i64>, bool, usize, u64);

#[tokio::test]
async fn search_matches_the_shared_semantics_for_every_sort_and_filter() {
    let store = fresh("semantics").await;
    // A mix with ties on every sort key, so the `_id` tie-break matters.
    let specs: [Spec; 12] = [
        ("a", "u1", 1_000, Some(9_000), false, 3, 10),
        ("b", "u1", 1_000, None, true, 0, 10),
        ("c", "u2", 2_000, Some(9_000), false, 3, 0),
        ("d", "u2", 3_000, Some(4_000), true, 1, 5_000_000_000),
        ("e", "u3", 3_000, None, false, 2, 7),
        ("f", "u7", 4_000, Some(4_500), false, 0, 7),
        ("g", "u10", 5_000, Some(6_000), true, 5, 1),
        ("h", "u0", 5_000, None, false, 1, 0),
        ("i", "u6", 6_000, Some(7_000), false, 2, 99),
        ("j", "u4", -2_000, Some(-1_000), false, 0, 3),
        ("k", "u4", 7_000, Some(8_000), true, 3, 3),
        ("l", "u5", 7_000, Some(9_000), false, 1, 10),
    ];
    for (id, user, started, ended, assisted, messages, tokens) in specs {
        let outcome = store.create(&session(id, user, started)).await.unwrap();
        assert_eq!(outcome, CreateOutcome::Created, "{id}");
        for n in 0..messages {
            let ts = started + 10 + i64::try_from(n).unwrap();
            store.append_message(id, &message(&format!("{id}{n}"), "x", ts, "user")).await.unwrap();
        }
        let patch = SessionPatch {
            assistance: assisted.then(|| (true, "a1".to_owned(), "Ann".to_owned())),
            total_tokens: Some(tokens),
            ..SessionPatch::default()
        };
        store.update(id, &patch).await.unwrap();
        if let Some(ended) = ended {
            store.end(id, UnixMillis(ended), EndCause::Requested).await.unwrap();
        }
    }
    // And one the original wrote: no msgs, double tokens, no guard.
    store
        .collection()
        .insert_one(doc! { "_id": "m", "uid": "u1", "ts": at(3_000), "totalTokens": 10.0_f64,
        "adminAssisted": false })
        .await
        .unwrap();
    let ids: Vec<&str> = specs.iter().map(|s| s.0).chain(["m"]).collect();
    let mut all = Vec::new();
    for id in &ids {
        all.push(store.load(id).await.unwrap().unwrap());
    }

    let filters: [&[(&str, &str)]; 9] = [
        &[],
        &[("user_id", "u1")],
        &[("status", "active")],
        &[("status", "ended")],
        &[("admin_assisted", "true")],
        &[("admin_assisted", "false")],
        &[("start_time_from", "1970-01-01T00:00:03Z")],
        // Sub-millisecond bounds: 3.0005 s excludes 3 000 ms; 5.0009 s includes 5 000 ms.
        &[
            ("start_time_from", "1970-01-01T00:00:03.0005Z"),
            ("start_time_to", "1970-01-01T00:00:05.0009Z"),
        ],
        &[
            ("status", "ended"),
            ("admin_assisted", "false"),
            ("start_time_to", "1970-01-01T00:00:07Z"),
        ],
    ];
    let pages: [&[(&str, &str)]; 3] =
        [&[], &[("limit", "3"), ("offset", "2")], &[("limit", "1000"), ("offset", "20")]];
    let mut checked = 0;
    for sort in SortField::ALL {
        for order in ["asc", "desc"] {
            for filter in filters {
                for page in pages {
                    let mut pairs: Vec<(&str, &str)> =
                        vec![("sort_by", sort.as_str()), ("sort_order", order)];
                    pairs.extend_from_slice(filter);
                    pairs.extend_from_slice(page);
                    let query = admin_query(&pairs);

                    let mut keys: Vec<SearchKey<'_>> = all
                        .iter()
                        .map(SearchKey::of)
                        .filter(|k| search_matches(&query, k))
                        .collect();
                    keys.sort_by(|a, b| search_order(&query, a, b));
                    let expected: Vec<&str> =
                        search_page(keys, &query).into_iter().map(|k| k.id).collect();

                    let found = store.search(&query).await.unwrap();
                    assert_eq!(contract::ids(&found), expected, "query {pairs:?}");
                    for doc in &found {
                        let whole = all.iter().find(|d| d.id == doc.id).unwrap();
                        assert_eq!(doc, whole, "search returns whole documents");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 5 * 2 * 9 * 3);
}

// ---- indexes ----

#[tokio::test]
async fn ensure_indexes_creates_the_protocol_indexes_and_is_repeatable() {
    let store = fresh("indexes").await;
    store.ensure_indexes().await.expect("a second run changes nothing");
    let cursor = store.collection().list_indexes().await.unwrap();
    let indexes: Vec<_> = cursor.try_collect().await.unwrap();
    let by_name: BTreeMap<String, _> = indexes
        .into_iter()
        .filter_map(|m| {
            let name = m.options.as_ref().and_then(|o| o.name.clone())?;
            Some((name, m))
        })
        .collect();
    let names: BTreeSet<&str> = by_name.keys().map(String::as_str).collect();
    for expected in INDEX_NAMES {
        assert!(names.contains(expected), "{expected} missing from {names:?}");
    }
    let keys = |name: &str| by_name[name].keys.clone();
    assert_eq!(keys("idx_user_id"), doc! { "uid": 1 });
    assert_eq!(keys("idx_start_time"), doc! { "ts": -1 });
    assert_eq!(keys("idx_admin_assisted"), doc! { "adminAssisted": 1 });
    assert_eq!(keys("idx_user_start_time"), doc! { "uid": 1, "ts": -1 });
    assert_eq!(keys("idx_share_token"), doc! { "shareToken": 1 });
    assert_eq!(keys("idx_active_user"), doc! { "activeUid": 1 });
    let share = by_name["idx_share_token"].options.clone().unwrap();
    assert_eq!((share.unique, share.sparse), (Some(true), Some(true)));
    let active = by_name["idx_active_user"].options.clone().unwrap();
    assert_eq!(active.unique, Some(true));
    assert_eq!(active.partial_filter_expression, Some(doc! { "activeUid": { "$exists": true } }));
}

// ---- errors ----

#[tokio::test]
async fn a_duplicate_key_is_permanent() {
    let store = fresh("duplicate").await;
    let d = doc! { "_id": "s1", "uid": "u1", "ts": at(1_000) };
    store.collection().insert_one(d.clone()).await.unwrap();
    let err = store.collection().insert_one(d).await.unwrap_err();
    assert!(matches!(classify(&err), StoreError::Permanent(_)), "{err:?}");
    // Through the store: another session's share token.
    store.set_share_token("s1", "tok").await.unwrap();
    store.create(&session("s2", "u2", 2_000)).await.unwrap();
    let err = store.set_share_token("s2", "tok").await.unwrap_err();
    assert!(matches!(err, StoreError::Permanent(_)), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_transient_and_connect_does_not_need_it() {
    // A port nothing listens on: bind, note it, close it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut cfg = config(format!("mongodb://127.0.0.1:{port}/"), "sessions");
    cfg.connect_timeout = Duration::from_millis(300);
    let store = MongoStore::connect(&cfg).await.expect("connecting is lazy");
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Transient(_)), "{err:?}");
    let err = store.create(&session("s1", "u1", 1_000)).await.unwrap_err();
    assert!(matches!(err, StoreError::Transient(_)), "{err:?}");
    let err = store.ensure_indexes().await.unwrap_err();
    assert!(matches!(err, StoreError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn an_invalid_uri_is_permanent_and_never_shows_credentials() {
    let cfg = config("mongodb://alice:hunter2@127.0.0.1:notaport/".into(), "x");
    let err = MongoStore::connect(&cfg).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Permanent(_)), "{text}");
    assert!(!text.contains("hunter2") && !text.contains("alice"), "{text}");
}

#[tokio::test]
async fn the_server_answers_ping() {
    let store = fresh("ping").await;
    store.ping().await.unwrap();
    store.flush().await.unwrap();
    assert!(format!("{store:?}").contains("127.0.0.1"));
}

/// Arms the server's `failCommand` fail point for the next `times` runs of `command` (the driver
/// retries a retryable read or write once, so two failures make one failed operation).
async fn fail_next(store: &MongoStore, command: &str, times: i32, data: Document) {
    let mut data = data;
    data.insert("failCommands", vec![command]);
    store
        .client()
        .database("admin")
        .run_command(doc! {
            "configureFailPoint": "failCommand",
            "mode": { "times": times },
            "data": data,
        })
        .await
        .expect("configureFailPoint (the server runs with --enable-test-commands)");
}

#[tokio::test]
async fn server_failures_are_classified_by_code_and_label() {
    // Fail points are server-wide: this test has a server of its own (stopped on drop).
    let server = MongoServer::start();
    // Not-primary and shutdown codes mark the server unknown until the next heartbeat: make
    // that quick, so the next operation finds it again.
    let uri = format!("{}?heartbeatFrequencyMS=500", server.uri());
    let store = MongoStore::connect(&config(uri, "sessions")).await.unwrap();
    store.ensure_indexes().await.unwrap();
    store.create(&session("s1", "u1", 1_000)).await.unwrap();
    let hello = message("m1", "hi", 1_500, "user");

    // Codes: not-primary and shutdown are transient, a bad value is permanent.
    fail_next(&store, "find", 2, doc! { "errorCode": 91 }).await;
    let err = store.load("s1").await.unwrap_err();
    assert!(matches!(err, StoreError::Transient(_)), "ShutdownInProgress: {err:?}");
    fail_next(&store, "update", 2, doc! { "errorCode": 10107 }).await;
    let err = store.append_message("s1", &hello).await.unwrap_err();
    assert!(matches!(err, StoreError::Transient(_)), "NotWritablePrimary: {err:?}");
    fail_next(&store, "find", 2, doc! { "errorCode": 2 }).await;
    let err = store.load("s1").await.unwrap_err();
    assert!(matches!(err, StoreError::Permanent(_)), "BadValue: {err:?}");

    // A label makes an otherwise permanent code transient.
    let labelled = doc! { "errorCode": 2, "errorLabels": ["TransientTransactionError"] };
    fail_next(&store, "find", 2, labelled).await;
    let err = store.load("s1").await.unwrap_err();
    assert!(matches!(err, StoreError::Transient(_)), "labelled: {err:?}");

    // A connection closed mid-command is an I/O error.
    fail_next(&store, "update", 2, doc! { "closeConnection": true }).await;
    let err = store.append_message("s1", &hello).await.unwrap_err();
    assert!(matches!(err, StoreError::Transient(_)), "closed connection: {err:?}");

    // A write concern timeout is transient (and not retried by the driver: one failure). The
    // write itself was applied, which is why appends are idempotent.
    let wc = doc! { "writeConcernError": { "code": 64, "codeName": "WriteConcernFailed",
    "errmsg": "waiting for replication timed out" } };
    fail_next(&store, "update", 1, wc).await;
    let err = store.append_message("s1", &hello).await.unwrap_err();
    assert!(matches!(err, StoreError::Transient(_)), "write concern: {err:?}");

    // And after the failures, the retried append stored the message exactly once.
    store.append_message("s1", &hello).await.unwrap();
    assert_eq!(store.load("s1").await.unwrap().unwrap().messages, [hello]);
}

// ---- the metrics aggregation runs in MongoDB ----

#[tokio::test]
async fn window_stats_in_mongodb_equal_the_engine_aggregation() {
    use chatbox::engine::admin::aggregate;
    let store = fresh("window").await;
    // Ended, active, overlapping, touching, outside the windows; tokens, times, assistance.
    let spans: [(i64, Option<i64>, u64, u64, u64, bool); 9] = [
        (1_000, Some(5_000), 10, 120, 300, false),
        (2_000, None, 7, 80, 90, true),
        (3_000, Some(3_000), 0, 0, 0, false),
        (5_000, Some(9_000), 3, 33, 40, false),
        (6_000, None, 1_000_000, 999, 5_000, true),
        (8_500, Some(20_000), 2, 10, 11, false),
        (12_000, Some(13_000), 5, 50, 60, false),
        (30_000, None, 4, 40, 41, true),
        (500, Some(700), 1, 1, 1, false),
    ];
    for (n, (start, end, tokens, avg, max, assisted)) in spans.into_iter().enumerate() {
        let id = format!("w{n}");
        let created = store.create(&session(&id, &format!("u{n}"), start)).await;
        assert_eq!(created, Ok(CreateOutcome::Created));
        let patch = SessionPatch {
            total_tokens: Some(tokens),
            response_ms: Some((max, avg)),
            assistance: assisted.then(|| (true, "a1".to_string(), "Ann".to_string())),
            ..Default::default()
        };
        store.update(&id, &patch).await.expect("update");
        if let Some(end) = end {
            store.end(&id, UnixMillis(end), EndCause::Requested).await.expect("end");
        }
    }
    // One document as the original writes it: int32 tokens, a double average.
    let original = original_document("w-orig", "u-orig", 4_000, Some(7_000));
    store.collection().insert_one(original).await.expect("insert an original document");

    let now = UnixMillis(25_000);
    for (from, to) in [(0, 10_000), (2_000, 8_500), (0, 40_000), (9_000, 9_500), (31_000, 32_000)] {
        let (from, to) = (UnixMillis(from), UnixMillis(to));
        let got = store.window_stats(from, to, now).await.expect("window stats");
        let docs = store.started_between(from, to).await.expect("started between");
        let want = aggregate(&docs, from, to, now);
        assert_eq!(got.totals, want.totals, "totals of {from:?}..={to:?}");
        assert_eq!(got.max_concurrent, want.max_concurrent, "peak of {from:?}..={to:?}");
        assert!(
            (got.avg_concurrent - want.avg_concurrent).abs() < 1e-9,
            "average concurrency of {from:?}..={to:?}: {} vs {}",
            got.avg_concurrent,
            want.avg_concurrent
        );
    }
    let all = store.window_stats(UnixMillis(0), UnixMillis(40_000), now).await.expect("stats");
    assert_eq!(all.totals.total_sessions, 10, "every session counted: {all:?}");
    assert!(all.max_concurrent >= 3, "overlaps are seen: {all:?}");
}
