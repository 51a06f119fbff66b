//! The MongoDB side of the queries: the §8.3 indexes (plus the one-active-session guard), and
//! the admin search of §4.6 translated into a filter, a sort and a page that MongoDB runs —
//! with exactly the semantics of the port's `search_matches`, `search_order` and `search_page`;
//! and the history read, which fetches only the end of a session's message array.

use chatbox_core::protocol::query::{AdminSessionQuery, SortField, SortOrder, StatusFilter};
use chatbox_core::UnixMillis;
use chrono::{DateTime, Utc};
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

use super::schema::{date, field};

/// `{uid: 1}`.
pub const IDX_USER_ID: &str = "idx_user_id";
/// `{ts: -1}`.
pub const IDX_START_TIME: &str = "idx_start_time";
/// `{adminAssisted: 1}`.
pub const IDX_ADMIN_ASSISTED: &str = "idx_admin_assisted";
/// `{uid: 1, ts: -1}`: a user's sessions, newest first.
pub const IDX_USER_START_TIME: &str = "idx_user_start_time";
/// `{shareToken: 1}`, unique and sparse.
pub const IDX_SHARE_TOKEN: &str = "idx_share_token";
/// Ours: `{activeUid: 1}`, unique, partial on `activeUid` existing — one active session per user.
pub const IDX_ACTIVE_USER: &str = "idx_active_user";

/// Name of the field the message-count search adds (and removes again) in its pipeline.
const MESSAGE_COUNT: &str = "_msgCount";

/// Name of the field [`recent_pipeline`] fills with the length of the whole message array.
pub(super) const RECENT_TOTAL: &str = "n";

/// The last `limit` (at least 1) messages of session `session_id` and the length of its array,
/// `{n, msgs}`, served by `_id`. The server slices, so a reply reads O(limit) messages
/// rather than the whole session.
pub(super) fn recent_pipeline(session_id: &str, limit: usize) -> Vec<Document> {
    let take = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
    let messages = doc! { "$ifNull": [format!("${}", field::MESSAGES), []] };
    vec![
        doc! { "$match": { field::ID: session_id } },
        doc! { "$project": {
            RECENT_TOTAL: { "$size": messages.clone() },
            field::MESSAGES: { "$slice": [messages, -take] },
        } },
    ]
}

/// The indexes `ensure_indexes` creates: §8.3 with its exact names, then the active-user guard.
/// Documents written by the original lack `activeUid`, so the partial filter leaves them
/// unguarded.
pub(super) fn index_models() -> Vec<IndexModel> {
    let plain = |name: &str, keys: Document| {
        IndexModel::builder()
            .keys(keys)
            .options(IndexOptions::builder().name(name.to_owned()).build())
            .build()
    };
    vec![
        plain(IDX_USER_ID, doc! { field::USER_ID: 1 }),
        plain(IDX_START_TIME, doc! { field::STARTED: -1 }),
        plain(IDX_ADMIN_ASSISTED, doc! { field::ADMIN_ASSISTED: 1 }),
        plain(IDX_USER_START_TIME, doc! { field::USER_ID: 1, field::STARTED: -1 }),
        IndexModel::builder()
            .keys(doc! { field::SHARE_TOKEN: 1 })
            .options(
                IndexOptions::builder()
                    .name(IDX_SHARE_TOKEN.to_owned())
                    .unique(true)
                    .sparse(true)
                    .build(),
            )
            .build(),
        IndexModel::builder()
            .keys(doc! { field::ACTIVE_USER: 1 })
            .options(
                IndexOptions::builder()
                    .name(IDX_ACTIVE_USER.to_owned())
                    .unique(true)
                    .partial_filter_expression(doc! { field::ACTIVE_USER: { "$exists": true } })
                    .build(),
            )
            .build(),
    ]
}

/// The filter of `search_matches`. `null` and missing are the same to the reader, so the
/// status filter tests `endTs` against `null` (which matches both), and "not assisted" is
/// anything but `true`. The start-time bounds may carry sub-millisecond precision while stored
/// times are whole milliseconds: the lower bound rounds up, the upper bound down.
pub(super) fn search_filter(query: &AdminSessionQuery) -> Document {
    let mut filter = Document::new();
    if let Some(user_id) = &query.user_id {
        filter.insert(field::USER_ID, user_id);
    }
    match query.status {
        Some(StatusFilter::Active) => {
            filter.insert(field::ENDED, Bson::Null);
        }
        Some(StatusFilter::Ended) => {
            filter.insert(field::ENDED, doc! { "$ne": Bson::Null });
        }
        None => {}
    }
    flag_filter(&mut filter, field::ADMIN_ASSISTED, query.admin_assisted);
    flag_filter(&mut filter, field::HELP_REQUESTED, query.help_requested);
    let mut started = Document::new();
    if let Some(from) = query.start_time_from {
        started.insert("$gte", date(ceil_millis(from)));
    }
    if let Some(to) = query.start_time_to {
        started.insert("$lte", date(floor_millis(to)));
    }
    if !started.is_empty() {
        filter.insert(field::STARTED, started);
    }
    filter
}

/// The sort of `search_order`: the query's field in its direction, then `_id` ascending. A
/// missing `endTs` sorts as `null`, before every date, as the port's order says.
pub(super) fn search_sort(query: &AdminSessionQuery) -> Document {
    let key = match query.sort_by {
        SortField::StartTime => field::STARTED,
        SortField::EndTime => field::ENDED,
        SortField::MessageCount => MESSAGE_COUNT,
        SortField::TotalTokens => field::TOTAL_TOKENS,
        SortField::UserId => field::USER_ID,
    };
    let direction = match query.sort_order {
        SortOrder::Asc => 1,
        SortOrder::Desc => -1,
    };
    doc! { key: direction, field::ID: 1 }
}

/// Whether the search needs the aggregation (sorting on the number of messages).
pub(super) fn needs_pipeline(query: &AdminSessionQuery) -> bool {
    query.sort_by == SortField::MessageCount
}

/// The aggregation for `sort_by=message_count`: match, add the size of `msgs` (missing counts as
/// empty, §8.5), sort, skip, limit, drop the added field.
pub(super) fn search_pipeline(query: &AdminSessionQuery) -> Vec<Document> {
    vec![
        doc! { "$match": search_filter(query) },
        doc! { "$addFields": { MESSAGE_COUNT: { "$size": { "$ifNull": [format!("${}", field::MESSAGES), []] } } } },
        doc! { "$sort": search_sort(query) },
        doc! { "$skip": i64::try_from(query.offset).unwrap_or(i64::MAX) },
        doc! { "$limit": i64::from(query.limit) },
        doc! { "$project": { MESSAGE_COUNT: 0 } },
    ]
}

/// The filter of `started_between`: `ts` within `from..=to`.
pub(super) fn started_between_filter(from: UnixMillis, to: UnixMillis) -> Document {
    doc! { field::STARTED: { "$gte": date(from), "$lte": date(to) } }
}

/// The smallest whole millisecond not before `at`.
fn ceil_millis(at: DateTime<Utc>) -> UnixMillis {
    let floor = at.timestamp_millis();
    if at.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        UnixMillis(floor)
    } else {
        UnixMillis(floor.saturating_add(1))
    }
}

/// The largest whole millisecond not after `at`.
fn floor_millis(at: DateTime<Utc>) -> UnixMillis {
    UnixMillis(at.timestamp_millis())
}

/// A session's start clipped to a window starting at `from`.
fn clipped_start(from: UnixMillis) -> Document {
    doc! { "$max": [format!("${}", field::STARTED), date(from)] }
}

/// A session's end clipped to a window ending at `to` (an active one is open until `now`).
fn clipped_end(now: UnixMillis, to: UnixMillis) -> Document {
    doc! { "$min": [{ "$ifNull": [format!("${}", field::ENDED), date(now)] }, date(to)] }
}

/// The totals of the §4.7 metrics over the sessions started in `from..=to`, in one `$group`:
/// count, active (no `endTs`), admin-assisted, token sum, the largest `maxRespTime`, the sum of
/// `avgRespTime` (divided by the count in Rust, truncating, as the engine does) and the open
/// milliseconds of each session clipped to the window (an active one is open until `now`).
/// Missing numeric fields count as 0, as in documents the original wrote before a reply.
pub(super) fn window_totals_pipeline(
    from: UnixMillis,
    to: UnixMillis,
    now: UnixMillis,
) -> Vec<Document> {
    vec![
        doc! { "$match": started_between_filter(from, to) },
        doc! { "$project": {
            "active": { "$cond": [{ "$ifNull": [format!("${}", field::ENDED), false] }, 0, 1] },
            "assisted": { "$cond": [{ "$eq": [format!("${}", field::ADMIN_ASSISTED), true] }, 1, 0] },
            "tokens": { "$ifNull": [format!("${}", field::TOTAL_TOKENS), 0] },
            "max_ms": { "$ifNull": [format!("${}", field::MAX_RESPONSE_MS), 0] },
            "avg_ms": { "$ifNull": [format!("${}", field::AVG_RESPONSE_MS), 0] },
            "open_ms": { "$max": [0, { "$subtract": [clipped_end(now, to), clipped_start(from)] }] },
        } },
        doc! { "$group": {
            "_id": Bson::Null,
            "count": { "$sum": 1 },
            "active": { "$sum": "$active" },
            "assisted": { "$sum": "$assisted" },
            "tokens": { "$sum": "$tokens" },
            "max_ms": { "$max": "$max_ms" },
            "sum_avg_ms": { "$sum": "$avg_ms" },
            "open_ms": { "$sum": "$open_ms" },
        } },
    ]
}

/// The open/close events of the same sessions, sorted by time with closes first at one instant
/// (intervals are half-open), so the peak concurrency is one pass over a cursor in O(1) memory.
pub(super) fn window_events_pipeline(
    from: UnixMillis,
    to: UnixMillis,
    now: UnixMillis,
) -> Vec<Document> {
    vec![
        doc! { "$match": started_between_filter(from, to) },
        doc! { "$project": {
            "_id": 0,
            "start": clipped_start(from),
            "end": clipped_end(now, to),
        } },
        doc! { "$match": { "$expr": { "$gt": ["$end", "$start"] } } },
        doc! { "$project": { "ev": [{ "t": "$start", "d": 1 }, { "t": "$end", "d": -1 }] } },
        doc! { "$unwind": "$ev" },
        doc! { "$sort": { "ev.t": 1, "ev.d": 1 } },
        doc! { "$project": { "_id": 0, "d": "$ev.d" } },
    ]
}

/// Filters on a boolean field: `true` only where it is true, `false` wherever it is not (absent
/// counts as false, as the original's documents may omit it), `None` not at all.
fn flag_filter(filter: &mut Document, key: &str, want: Option<bool>) {
    match want {
        Some(true) => {
            filter.insert(key, true);
        }
        Some(false) => {
            filter.insert(key, doc! { "$ne": true });
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_round_inwards_to_whole_milliseconds() {
        let at = DateTime::from_timestamp(2, 500_000).unwrap(); // 2.0005 s
        assert_eq!(ceil_millis(at), UnixMillis(2_001));
        assert_eq!(floor_millis(at), UnixMillis(2_000));
        let exact = DateTime::from_timestamp_millis(-1_500).unwrap();
        assert_eq!(ceil_millis(exact), UnixMillis(-1_500));
        assert_eq!(floor_millis(exact), UnixMillis(-1_500));
        let before_epoch = DateTime::from_timestamp(-2, 500_000).unwrap(); // -1.9995 s
        assert_eq!(ceil_millis(before_epoch), UnixMillis(-1_999));
        assert_eq!(floor_millis(before_epoch), UnixMillis(-2_000));
    }

    #[test]
    fn every_index_has_its_name() {
        let names: Vec<_> = index_models()
            .into_iter()
            .map(|m| m.options.and_then(|o| o.name).unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                IDX_USER_ID,
                IDX_START_TIME,
                IDX_ADMIN_ASSISTED,
                IDX_USER_START_TIME,
                IDX_SHARE_TOKEN,
                IDX_ACTIVE_USER
            ]
        );
    }
}
