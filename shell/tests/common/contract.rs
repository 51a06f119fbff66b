//! The `SessionStore` contract, store-agnostic: ordering, idempotency, the one-active-session
//! guard (also under concurrency), patches, ending, listing, share tokens, the atomic claim of
//! the assisting admin and the admin search.
//! Each function is one test body; `embedded_store.rs` and `mongo_store.rs` run every one of
//! them with a fresh, empty store of their kind through [`contract_tests!`] (the patch test,
//! which reopens its store, each writes out).

#![allow(clippy::disallowed_methods, reason = "contract tests call the store port directly")]
// Test bodies outside `#[test]` functions: clippy's allow-unwrap-in-tests does not see them.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chatbox::engine::store::{
    CreateOutcome, HistoryMark, SessionDoc, SessionPatch, SessionStore, StoreError, StoredMessage,
};
use chatbox_core::protocol::query::AdminSessionQuery;
use chatbox_core::session::{AdminRef, EndCause};
use chatbox_core::UnixMillis;

/// One `#[tokio::test]` per contract function (but the patch test, which each store reopens its
/// own way), each on a fresh, empty store: `$fresh` is an `async fn(test_name: &str) -> (K, S)`
/// giving the store and what must outlive it (a temporary directory, say).
macro_rules! contract_tests {
    ($fresh:path) => {
        $crate::common::contract::contract_tests!(@each $fresh, ref, #[tokio::test];
            create_append_load_round_trip_keeps_order,
            append_is_idempotent_by_message_id,
            recent_messages_are_the_last_ones_in_order,
            history_mark_counts_appends_and_names_the_last,
            append_with_a_patch_is_one_idempotent_write,
            append_to_unknown_session_is_a_permanent_error,
            one_active_session_per_user,
            creating_an_ended_session_does_not_take_the_active_slot,
            end_sets_duration_and_ending_again_overwrites,
            reactivate_clears_end_and_takes_the_active_slot,
            list_by_user_is_newest_first_and_limited,
            share_tokens_are_stable_and_findable,
            search_filters_sorts_and_pages,
            started_between_is_inclusive_and_omits_messages);
        $crate::common::contract::contract_tests!(@each $fresh, arc,
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)];
            concurrent_creates_for_one_user_yield_one_session);
        $crate::common::contract::contract_tests!(@each $fresh, arc, #[tokio::test];
            one_assisting_admin_is_claimed_atomically);
    };
    (@each $fresh:path, $pass:ident, #[$attr:meta]; $($name:ident),+) => {
        $(
            #[$attr]
            async fn $name() {
                let (_keep, store) = $fresh(stringify!($name)).await;
                $crate::common::contract::contract_tests!(@pass $pass, $name, store);
            }
        )+
    };
    (@pass ref, $name:ident, $store:ident) => {
        $crate::common::contract::$name(&$store).await
    };
    (@pass arc, $name:ident, $store:ident) => {
        $crate::common::contract::$name(std::sync::Arc::new($store)).await
    };
}
pub(crate) use contract_tests;

/// A fresh active session.
pub fn session(id: &str, user: &str, started: i64) -> SessionDoc {
    SessionDoc::new(id.to_owned(), user.to_owned(), UnixMillis(started))
}

/// A message without file or metadata.
pub fn message(id: &str, content: &str, ts: i64, sender: &str) -> StoredMessage {
    StoredMessage {
        id: id.to_owned(),
        content: content.to_owned(),
        ts: UnixMillis(ts),
        sender: sender.to_owned(),
        file_id: String::new(),
        file_url: String::new(),
        meta: BTreeMap::new(),
    }
}

pub async fn create_append_load_round_trip_keeps_order(store: &dyn SessionStore) {
    let doc = session("s1", "u1", 1_000);
    assert_eq!(store.create(&doc).await.unwrap(), CreateOutcome::Created);

    let mut with_file = message("m3", "", 3_000, "user");
    with_file.file_id = "a.png".into();
    with_file.file_url = "https://files.example/a.png".into();
    with_file.meta.insert("filename".into(), "a.png".into());
    let msgs = vec![
        message("m1", "Hello", 1_500, "user"),
        message("m2", "Hi! How can I help?", 2_000, "ai"),
        with_file,
        message("m4", "later", 4_000, "admin"),
    ];
    for m in &msgs {
        store.append_message("s1", m).await.unwrap();
    }

    let loaded = store.load("s1").await.unwrap().expect("session stored");
    assert_eq!(loaded.messages, msgs);
    assert_eq!(loaded.last_activity, Some(UnixMillis(4_000)));
    assert_eq!(loaded.user_id, "u1");
    assert_eq!(loaded.started, UnixMillis(1_000));
    assert_eq!(loaded.ended, None);
    assert_eq!(store.load("missing").await.unwrap(), None);
}

pub async fn append_is_idempotent_by_message_id(store: &dyn SessionStore) {
    store.create(&session("s1", "u1", 1_000)).await.unwrap();

    let m1 = message("m1", "Hello", 2_000, "user");
    store.append_message("s1", &m1).await.unwrap();
    store.append_message("s1", &m1).await.unwrap();
    // A retry carrying the same id but a later time is still the same message.
    store.append_message("s1", &message("m1", "Hello", 9_000, "user")).await.unwrap();
    store.append_message("s1", &message("m2", "Hi", 3_000, "ai")).await.unwrap();

    let loaded = store.load("s1").await.unwrap().unwrap();
    let ids: Vec<_> = loaded.messages.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert_eq!(loaded.last_activity, Some(UnixMillis(3_000)));
}

pub async fn recent_messages_are_the_last_ones_in_order(store: &dyn SessionStore) {
    assert_eq!(store.recent_messages("nope", 3).await.unwrap(), None);
    store.create(&session("s1", "u1", 1_000)).await.unwrap();
    assert_eq!(store.recent_messages("s1", 3).await.unwrap(), Some(vec![]));
    for i in 0..5 {
        let sender = if i % 2 == 0 { "user" } else { "ai" };
        store
            .append_message("s1", &message(&format!("m{i}"), "x", 2_000 + i, sender))
            .await
            .unwrap();
    }
    let ids = |messages: Option<Vec<StoredMessage>>| -> Vec<String> {
        messages.unwrap().into_iter().map(|m| m.id).collect()
    };
    assert_eq!(ids(store.recent_messages("s1", 3).await.unwrap()), ["m2", "m3", "m4"]);
    assert_eq!(ids(store.recent_messages("s1", 9).await.unwrap()), ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(ids(store.recent_messages("s1", 0).await.unwrap()), Vec::<String>::new());
    // The contents come back as stored (decrypted when the store encrypts).
    let last = store.recent_messages("s1", 1).await.unwrap().unwrap();
    assert_eq!(last, [message("m4", "x", 2_004, "user")]);
}

/// The mark a reply checks its cached history against: the message count and the last id, moved
/// by every append and by nothing else (a repeated append, an update).
pub async fn history_mark_counts_appends_and_names_the_last(store: &dyn SessionStore) {
    assert_eq!(store.history_mark("nope").await.unwrap(), None);
    store.create(&session("s1", "u1", 1_000)).await.unwrap();
    let empty = HistoryMark { count: 0, last_id: None };
    assert_eq!(store.history_mark("s1").await.unwrap(), Some(empty));
    for i in 0..3 {
        store
            .append_message("s1", &message(&format!("m{i}"), "x", 2_000 + i, "user"))
            .await
            .unwrap();
    }
    let three = HistoryMark { count: 3, last_id: Some("m2".into()) };
    assert_eq!(store.history_mark("s1").await.unwrap(), Some(three.clone()));
    // A repeated append and an update store nothing new: the mark stays.
    store.append_message("s1", &message("m1", "x", 2_001, "user")).await.unwrap();
    let patch = SessionPatch { total_tokens: Some(5), ..SessionPatch::default() };
    store.update("s1", &patch).await.unwrap();
    assert_eq!(store.history_mark("s1").await.unwrap(), Some(three));
    store.append_message("s1", &message("m3", "x", 2_003, "ai")).await.unwrap();
    let four = HistoryMark { count: 4, last_id: Some("m3".into()) };
    assert_eq!(store.history_mark("s1").await.unwrap(), Some(four.clone()));
    assert_eq!(
        store.history_mark("s1").await.unwrap(),
        Some(HistoryMark::of(&store.load("s1").await.unwrap().unwrap().messages)),
        "the mark of the whole stored conversation"
    );
}

/// A reply and the statistics it changed, stored together: both or (on a repeat) neither.
pub async fn append_with_a_patch_is_one_idempotent_write(store: &dyn SessionStore) {
    store.create(&session("s1", "u1", 1_000)).await.unwrap();
    let stats = |total: u64, max_ms: u64, avg_ms: u64| SessionPatch {
        total_tokens: Some(total),
        response_ms: Some((max_ms, avg_ms)),
        ..SessionPatch::default()
    };
    let reply = message("a1", "an answer", 2_000, "ai");
    store.append_message_with("s1", &reply, &stats(7, 30, 20)).await.unwrap();
    let doc = store.load("s1").await.unwrap().unwrap();
    assert_eq!(doc.messages, std::slice::from_ref(&reply));
    assert_eq!((doc.total_tokens, doc.max_response_ms, doc.avg_response_ms), (7, 30, 20));
    assert_eq!(doc.last_activity, Some(UnixMillis(2_000)));
    // A repeat (a retry after an ambiguous failure) stores nothing, not even a newer patch.
    store.append_message_with("s1", &reply, &stats(9, 40, 25)).await.unwrap();
    let again = store.load("s1").await.unwrap().unwrap();
    assert_eq!(again.messages.len(), 1);
    assert_eq!(again.total_tokens, 7);
    let err = store.append_message_with("nope", &reply, &stats(1, 1, 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Permanent(_)), "{err:?}");
}

pub async fn append_to_unknown_session_is_a_permanent_error(store: &dyn SessionStore) {
    let err = store.append_message("nope", &message("m1", "x", 1, "user")).await.unwrap_err();
    assert!(matches!(err, StoreError::Permanent(_)), "{err:?}");
}

pub async fn one_active_session_per_user(store: &dyn SessionStore) {
    assert_eq!(store.create(&session("s1", "u1", 1_000)).await.unwrap(), CreateOutcome::Created);
    // The same id again is an idempotent success.
    assert_eq!(store.create(&session("s1", "u1", 1_000)).await.unwrap(), CreateOutcome::Created);
    assert_eq!(
        store.create(&session("s2", "u1", 2_000)).await.unwrap(),
        CreateOutcome::ActiveExists("s1".into())
    );
    assert_eq!(store.load("s2").await.unwrap(), None);
    // Another user is unaffected.
    assert_eq!(store.create(&session("t1", "u2", 2_000)).await.unwrap(), CreateOutcome::Created);

    store.end("s1", UnixMillis(3_000), EndCause::Requested).await.unwrap().unwrap();
    assert_eq!(store.create(&session("s2", "u1", 4_000)).await.unwrap(), CreateOutcome::Created);
    assert_eq!(
        store.create(&session("s3", "u1", 5_000)).await.unwrap(),
        CreateOutcome::ActiveExists("s2".into())
    );
}

pub async fn creating_an_ended_session_does_not_take_the_active_slot(store: &dyn SessionStore) {
    let mut old = session("old", "u1", 1_000);
    old.ended = Some(UnixMillis(2_000));
    old.duration_secs = 1;
    assert_eq!(store.create(&old).await.unwrap(), CreateOutcome::Created);
    assert_eq!(store.create(&session("new", "u1", 3_000)).await.unwrap(), CreateOutcome::Created);
}

pub async fn end_sets_duration_and_ending_again_overwrites(store: &dyn SessionStore) {
    store.create(&session("s1", "u1", 1_000)).await.unwrap();
    store.append_message("s1", &message("m1", "Hello", 1_200, "user")).await.unwrap();

    let first = store.end("s1", UnixMillis(10_999), EndCause::Idle).await.unwrap().unwrap();
    assert_eq!(first.ended, Some(UnixMillis(10_999)));
    assert_eq!(first.duration_secs, 9);
    assert_eq!(first.messages.len(), 1, "end returns the whole document");
    assert!(!first.ended_on_request, "an idle end stays resumable");

    let second = store.end("s1", UnixMillis(61_000), EndCause::Requested).await.unwrap().unwrap();
    assert_eq!(second.ended, Some(UnixMillis(61_000)));
    assert_eq!(second.duration_secs, 60);
    assert!(second.ended_on_request, "an end on request is stored as final");
    assert_eq!(store.load("s1").await.unwrap().unwrap(), second);

    // Resuming (an idle-ended session, by the engine's rule) clears the cause with the end.
    let resume = SessionPatch { reactivate: true, ..Default::default() };
    store.update("s1", &resume).await.unwrap();
    let resumed = store.load("s1").await.unwrap().unwrap();
    assert_eq!((resumed.ended, resumed.ended_on_request), (None, false));

    assert_eq!(store.end("missing", UnixMillis(1), EndCause::Requested).await.unwrap(), None);
}

pub async fn update_persists_each_patch_field<S, F>(store: S, reopen: impl FnOnce(S) -> F)
where
    S: SessionStore,
    F: Future<Output = S>,
{
    store.create(&session("s1", "u1", 1_000)).await.unwrap();

    let patches = [
        SessionPatch { name: Some("Hello".into()), ..SessionPatch::default() },
        SessionPatch { model_id: Some("openai-gpt4".into()), ..SessionPatch::default() },
        SessionPatch {
            assistance: Some((true, "a1".into(), "Alice".into())),
            ..SessionPatch::default()
        },
        SessionPatch { help_requested: Some(true), ..SessionPatch::default() },
        SessionPatch { total_tokens: Some(1234), ..SessionPatch::default() },
        SessionPatch { response_ms: Some((900, 450)), ..SessionPatch::default() },
    ];
    for patch in &patches {
        store.update("s1", patch).await.unwrap();
    }
    // An empty patch changes nothing.
    store.update("s1", &SessionPatch::default()).await.unwrap();

    // Read back through a fresh handle to prove the values are stored, not cached.
    let store = reopen(store).await;
    let doc = store.load("s1").await.unwrap().unwrap();
    assert_eq!(doc.name, "Hello");
    assert_eq!(doc.model_id, "openai-gpt4");
    assert!(doc.admin_assisted);
    assert_eq!(doc.assisting_admin_id, "a1");
    assert_eq!(doc.assisting_admin_name, "Alice");
    assert!(doc.help_requested);
    assert_eq!(doc.total_tokens, 1234);
    assert_eq!(doc.max_response_ms, 900);
    assert_eq!(doc.avg_response_ms, 450);

    // Clearing assistance with empty strings.
    store
        .update(
            "s1",
            &SessionPatch {
                assistance: Some((false, String::new(), String::new())),
                ..SessionPatch::default()
            },
        )
        .await
        .unwrap();
    let doc = store.load("s1").await.unwrap().unwrap();
    assert!(doc.admin_assisted, "adminAssisted stays: the session was assisted (issue 15)");
    assert_eq!(doc.assisting_admin_id, "");
    assert_eq!(doc.assisting_admin_name, "");
    assert_eq!(doc.name, "Hello", "fields not in the patch stay");

    let err = store.update("missing", &SessionPatch::default()).await.unwrap_err();
    assert_eq!(err, StoreError::Permanent("session not found".into()));
}

pub async fn reactivate_clears_end_and_takes_the_active_slot(store: &dyn SessionStore) {
    let reactivate = SessionPatch { reactivate: true, ..SessionPatch::default() };
    store.create(&session("s1", "u1", 1_000)).await.unwrap();
    store.end("s1", UnixMillis(5_000), EndCause::Requested).await.unwrap();

    store.update("s1", &reactivate).await.unwrap();
    let doc = store.load("s1").await.unwrap().unwrap();
    assert_eq!(doc.ended, None);
    assert_eq!(doc.duration_secs, 0);
    assert_eq!(
        store.create(&session("s2", "u1", 6_000)).await.unwrap(),
        CreateOutcome::ActiveExists("s1".into()),
        "the reactivated session holds the user's active slot"
    );
    // Reactivating an active session is harmless.
    store.update("s1", &reactivate).await.unwrap();

    // With another session active, reactivation is refused and nothing in the patch applies.
    store.end("s1", UnixMillis(7_000), EndCause::Requested).await.unwrap();
    assert_eq!(store.create(&session("s2", "u1", 8_000)).await.unwrap(), CreateOutcome::Created);
    let refused =
        SessionPatch { name: Some("renamed".into()), reactivate: true, ..SessionPatch::default() };
    let err = store.update("s1", &refused).await.unwrap_err();
    match err {
        StoreError::Permanent(text) => assert!(text.contains("s2"), "{text}"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    let doc = store.load("s1").await.unwrap().unwrap();
    assert_eq!(doc.ended, Some(UnixMillis(7_000)));
    assert_eq!(doc.name, "");
}

pub async fn list_by_user_is_newest_first_and_limited(store: &dyn SessionStore) {
    // Created out of start order; each ended so the next one may be created.
    for (id, started) in [("b", 2_000), ("d", 4_000), ("a", 1_000), ("c", 3_000)] {
        assert_eq!(
            store.create(&session(id, "u1", started)).await.unwrap(),
            CreateOutcome::Created
        );
        store.end(id, UnixMillis(started + 500), EndCause::Requested).await.unwrap();
    }
    // Before the epoch sorts after (older than) every later start.
    let mut ancient = session("z", "u1", -5_000);
    ancient.ended = Some(UnixMillis(-4_000));
    store.create(&ancient).await.unwrap();
    // Other users' sessions never appear, including a user id that extends "u1".
    store.create(&session("x", "u10", 9_000)).await.unwrap();
    store.create(&session("y", "u0", 9_000)).await.unwrap();

    let ids = |docs: Vec<SessionDoc>| docs.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_by_user("u1", 100).await.unwrap()), ["d", "c", "b", "a", "z"]);
    assert_eq!(ids(store.list_by_user("u1", 2).await.unwrap()), ["d", "c"]);
    assert!(store.list_by_user("u1", 0).await.unwrap().is_empty());
    assert!(store.list_by_user("nobody", 10).await.unwrap().is_empty());

    store.append_message("c", &message("m1", "hi", 3_100, "user")).await.unwrap();
    let listed = store.list_by_user("u1", 2).await.unwrap();
    assert_eq!(listed[1].messages.len(), 1, "listed documents carry their messages");
}

pub async fn concurrent_creates_for_one_user_yield_one_session(store: Arc<dyn SessionStore>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let id = format!("s{i}");
            (id.clone(), store.create(&session(&id, "u1", 1_000 + i)).await)
        });
    }
    let mut created = Vec::new();
    let mut active_exists = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (id, outcome) = joined.unwrap();
        match outcome.unwrap() {
            CreateOutcome::Created => created.push(id),
            CreateOutcome::ActiveExists(other) => active_exists.push(other),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(active_exists.len(), 7);
    assert!(active_exists.iter().all(|other| *other == created[0]));
    assert_eq!(store.list_by_user("u1", 100).await.unwrap().len(), 1);
}

/// One assisting admin at a time (issue 14): a claim wins only when nobody (or the claimant)
/// assists; of many concurrent claims by different admins exactly one wins; a leave (patch
/// with empty strings) frees the session; `adminAssisted` stays raised.
pub async fn one_assisting_admin_is_claimed_atomically(store: Arc<dyn SessionStore>) {
    let admin = |id: &str| AdminRef { id: id.to_owned(), name: format!("Admin {id}") };
    store.create(&session("s1", "u1", 1_000)).await.unwrap();
    assert_eq!(store.claim_assistance("missing", &admin("a1")).await.unwrap(), None);
    assert_eq!(store.assisting_admin("missing").await.unwrap(), None);
    assert_eq!(store.assisting_admin("s1").await.unwrap(), Some(None));

    let claims = (0..8).map(|i| {
        let store = Arc::clone(&store);
        async move { store.claim_assistance("s1", &admin(&format!("a{i}"))).await.unwrap() }
    });
    let holders: Vec<AdminRef> =
        futures_util::future::join_all(claims).await.into_iter().map(Option::unwrap).collect();
    let winner = holders[0].clone();
    assert!(holders.iter().all(|h| *h == winner), "every claim names one winner: {holders:?}");
    assert_eq!(store.assisting_admin("s1").await.unwrap(), Some(Some(winner.clone())));
    // The winner claims again (a repeated takeover); another admin is still refused.
    assert_eq!(store.claim_assistance("s1", &winner).await.unwrap(), Some(winner.clone()));
    let other = if winner.id == "a0" { admin("a1") } else { admin("a0") };
    assert_eq!(store.claim_assistance("s1", &other).await.unwrap(), Some(winner.clone()));

    let leave = SessionPatch {
        assistance: Some((false, String::new(), String::new())),
        ..Default::default()
    };
    store.update("s1", &leave).await.unwrap();
    assert_eq!(store.assisting_admin("s1").await.unwrap(), Some(None));
    assert_eq!(store.claim_assistance("s1", &other).await.unwrap(), Some(other.clone()));
    let doc = store.load("s1").await.unwrap().unwrap();
    assert!(doc.admin_assisted);
    assert_eq!((doc.assisting_admin_id, doc.assisting_admin_name), (other.id, other.name));
}

pub async fn share_tokens_are_stable_and_findable(store: &dyn SessionStore) {
    store.create(&session("s1", "u1", 1_000)).await.unwrap();
    store.end("s1", UnixMillis(2_000), EndCause::Requested).await.unwrap();
    store.create(&session("s2", "u1", 3_000)).await.unwrap();

    assert_eq!(store.set_share_token("s1", "tok-1").await.unwrap(), Some("tok-1".into()));
    assert_eq!(
        store.set_share_token("s1", "tok-other").await.unwrap(),
        Some("tok-1".into()),
        "an existing token is kept"
    );
    assert!(matches!(store.set_share_token("s2", "tok-1").await, Err(StoreError::Permanent(_))));
    assert_eq!(store.set_share_token("missing", "t").await.unwrap(), None);

    let shared = store.find_by_share_token("tok-1").await.unwrap().unwrap();
    assert_eq!(shared.id, "s1");
    assert_eq!(shared.share_token.as_deref(), Some("tok-1"));
    assert_eq!(store.find_by_share_token("tok-other").await.unwrap(), None);

    // Revoked (issue 15): the token no longer finds the session, and a new one can be set.
    assert_eq!(store.clear_share_token("s1").await.unwrap(), Some(()));
    assert_eq!(store.find_by_share_token("tok-1").await.unwrap(), None);
    assert_eq!(store.load("s1").await.unwrap().unwrap().share_token, None);
    assert_eq!(store.clear_share_token("s1").await.unwrap(), Some(()), "again: still fine");
    assert_eq!(store.clear_share_token("missing").await.unwrap(), None);
    assert_eq!(store.set_share_token("s1", "tok-2").await.unwrap(), Some("tok-2".into()));
    assert_eq!(store.find_by_share_token("tok-2").await.unwrap().map(|d| d.id), Some("s1".into()));
    // The revoked token is free again (another session may take it).
    assert_eq!(store.set_share_token("s2", "tok-1").await.unwrap(), Some("tok-1".into()));
}

/// A parsed admin query from `(name, value)` pairs.
pub fn admin_query(pairs: &[(&str, &str)]) -> AdminSessionQuery {
    let pairs: Vec<(String, String)> =
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    AdminSessionQuery::parse(&pairs).expect("a valid query")
}

/// The ids of `docs`, in order.
pub fn ids(docs: &[SessionDoc]) -> Vec<&str> {
    docs.iter().map(|d| d.id.as_str()).collect()
}

/// Four sessions: s1 (u1, ended, 3 messages), s2 (u1, active, assisted, 1 message, 50 tokens),
/// s3 (u2, ended, no message), s4 (u3, active, 2 messages, help requested).
pub async fn search_fixture(store: &dyn SessionStore) {
    store.create(&session("s1", "u1", 1_000)).await.expect("fixture write");
    for n in 0..3 {
        store
            .append_message("s1", &message(&format!("a{n}"), "x", 1_100 + n, "user"))
            .await
            .expect("fixture write");
    }
    store.end("s1", UnixMillis(5_000), EndCause::Requested).await.expect("fixture write");
    store.create(&session("s2", "u1", 2_000)).await.expect("fixture write");
    store.append_message("s2", &message("b0", "x", 2_100, "user")).await.expect("fixture write");
    let patch = SessionPatch {
        assistance: Some((true, "a1".into(), "Ann".into())),
        total_tokens: Some(50),
        ..Default::default()
    };
    store.update("s2", &patch).await.expect("fixture write");
    store.create(&session("s3", "u2", 3_000)).await.expect("fixture write");
    store.end("s3", UnixMillis(4_000), EndCause::Requested).await.expect("fixture write");
    store.create(&session("s4", "u3", 4_000)).await.expect("fixture write");
    store.append_message("s4", &message("d0", "x", 4_100, "user")).await.expect("fixture write");
    store.append_message("s4", &message("d1", "y", 4_200, "ai")).await.expect("fixture write");
    let help = SessionPatch { help_requested: Some(true), ..Default::default() };
    store.update("s4", &help).await.expect("fixture write");
}

pub async fn search_filters_sorts_and_pages(store: &dyn SessionStore) {
    search_fixture(store).await;

    let all = store.search(&admin_query(&[])).await.unwrap();
    assert_eq!(ids(&all), ["s4", "s3", "s2", "s1"], "newest start first by default");
    assert_eq!(all[3].messages.len(), 3, "documents come with their messages");

    let q = |pairs: &[(&str, &str)]| admin_query(pairs);
    assert_eq!(ids(&store.search(&q(&[("user_id", "u1")])).await.unwrap()), ["s2", "s1"]);
    assert_eq!(ids(&store.search(&q(&[("status", "active")])).await.unwrap()), ["s4", "s2"]);
    assert_eq!(ids(&store.search(&q(&[("status", "ended")])).await.unwrap()), ["s3", "s1"]);
    assert_eq!(ids(&store.search(&q(&[("admin_assisted", "true")])).await.unwrap()), ["s2"]);
    assert_eq!(ids(&store.search(&q(&[("help_requested", "true")])).await.unwrap()), ["s4"]);
    let not_asked = store.search(&q(&[("help_requested", "false")])).await.unwrap();
    assert_eq!(ids(&not_asked), ["s3", "s2", "s1"]);
    let window =
        [("start_time_from", "1970-01-01T00:00:02Z"), ("start_time_to", "1970-01-01T00:00:03Z")];
    assert_eq!(ids(&store.search(&q(&window)).await.unwrap()), ["s3", "s2"]);
    let by_count = [("sort_by", "message_count"), ("sort_order", "desc")];
    assert_eq!(ids(&store.search(&q(&by_count)).await.unwrap()), ["s1", "s4", "s2", "s3"]);
    let by_tokens = [("sort_by", "total_tokens")];
    assert_eq!(ids(&store.search(&q(&by_tokens)).await.unwrap())[0], "s2");
    let by_end = [("sort_by", "end_time"), ("sort_order", "asc")];
    assert_eq!(ids(&store.search(&q(&by_end)).await.unwrap()), ["s2", "s4", "s3", "s1"]);
    let page = [("limit", "2"), ("offset", "1")];
    assert_eq!(ids(&store.search(&q(&page)).await.unwrap()), ["s3", "s2"]);
    assert!(store.search(&q(&[("offset", "4")])).await.unwrap().is_empty());
}

pub async fn started_between_is_inclusive_and_omits_messages(store: &dyn SessionStore) {
    search_fixture(store).await;

    let mut found = store.started_between(UnixMillis(2_000), UnixMillis(4_000)).await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ids(&found), ["s2", "s3", "s4"]);
    assert!(found.iter().all(|d| d.messages.is_empty()), "no messages are loaded");
    assert!(found[0].admin_assisted && found[0].total_tokens == 50, "fields are there: {found:?}");
    assert_eq!(found[1].ended, Some(UnixMillis(4_000)));
    assert!(store.started_between(UnixMillis(4_001), UnixMillis(9_000)).await.unwrap().is_empty());
}
