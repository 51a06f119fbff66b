//! The embedded redb store against the `SessionStore` contract (`common/contract.rs`: ordering,
//! idempotency, the one-active-session guard also under concurrency, patches, ending, listing,
//! share tokens, search), plus what is particular to it: persistence across reopening the same
//! data directory, and the file lock.

#![cfg(not(madsim))]

mod common;

use std::path::Path;
use std::sync::Arc;

use chatbox::adapters::store::EmbeddedStore;
use chatbox::engine::store::{CreateOutcome, SessionStore, StoreError};

use common::contract::{self, message, session};

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir).expect("open embedded store")
}

#[tokio::test]
async fn create_append_load_round_trip_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    contract::create_append_load_round_trip_keeps_order(&open(dir.path())).await;
}

#[tokio::test]
async fn append_is_idempotent_by_message_id() {
    let dir = tempfile::tempdir().unwrap();
    contract::append_is_idempotent_by_message_id(&open(dir.path())).await;
}

#[tokio::test]
async fn append_to_unknown_session_is_a_permanent_error() {
    let dir = tempfile::tempdir().unwrap();
    contract::append_to_unknown_session_is_a_permanent_error(&open(dir.path())).await;
}

#[tokio::test]
async fn one_active_session_per_user() {
    let dir = tempfile::tempdir().unwrap();
    contract::one_active_session_per_user(&open(dir.path())).await;
}

#[tokio::test]
async fn creating_an_ended_session_does_not_take_the_active_slot() {
    let dir = tempfile::tempdir().unwrap();
    contract::creating_an_ended_session_does_not_take_the_active_slot(&open(dir.path())).await;
}

#[tokio::test]
async fn end_sets_duration_and_ending_again_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    contract::end_sets_duration_and_ending_again_overwrites(&open(dir.path())).await;
}

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
async fn reactivate_clears_end_and_takes_the_active_slot() {
    let dir = tempfile::tempdir().unwrap();
    contract::reactivate_clears_end_and_takes_the_active_slot(&open(dir.path())).await;
}

#[tokio::test]
async fn list_by_user_is_newest_first_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    contract::list_by_user_is_newest_first_and_limited(&open(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_for_one_user_yield_one_session() {
    let dir = tempfile::tempdir().unwrap();
    contract::concurrent_creates_for_one_user_yield_one_session(Arc::new(open(dir.path()))).await;
}

#[tokio::test]
async fn share_tokens_are_stable_and_findable() {
    let dir = tempfile::tempdir().unwrap();
    contract::share_tokens_are_stable_and_findable(&open(dir.path())).await;
}

#[tokio::test]
async fn search_filters_sorts_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    contract::search_filters_sorts_and_pages(&open(dir.path())).await;
}

#[tokio::test]
async fn started_between_is_inclusive_and_omits_messages() {
    let dir = tempfile::tempdir().unwrap();
    contract::started_between_is_inclusive_and_omits_messages(&open(dir.path())).await;
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

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Transient(_)), "{err:?}");
}
