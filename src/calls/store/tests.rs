//! The SQLite store on a temporary file: lifecycle, paging, deletion, restarts, migrations.

use std::collections::HashSet;

use tempfile::TempDir;

use super::*;
use crate::error::{ApiError, ErrorCode};

fn user(name: &str) -> Identity {
    Identity::parse(name).unwrap()
}

fn call(n: u64) -> CallId {
    CallId::parse(&format!("c-{n:016x}")).unwrap()
}

fn temp() -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    (dir, path)
}

fn row(call_id: &CallId, who: &str, peer: &str, direction: Direction, start_ms: i64) -> NewCallLog {
    NewCallLog {
        call_id: call_id.clone(),
        user: user(who),
        call_type: CallType::OneToOne,
        media: Media::Audio,
        direction,
        peers: vec![user(peer)],
        start_ms,
        ring_ms: None,
    }
}

/// A 1:1 call from alice to bob: one row each.
fn open_pair(store: &mut SqliteStore, call_id: &CallId, start_ms: i64) {
    let rows = [
        row(call_id, "alice", "bob", Direction::Outgoing, start_ms),
        row(call_id, "bob", "alice", Direction::Incoming, start_ms),
    ];
    assert_eq!(store.open_call(&rows).unwrap(), 2);
}

fn page(start_ms: i64, after: Option<CallId>, count: usize, order: Order) -> PageRequest {
    PageRequest {
        from: Cursor { start_ms, after },
        count,
        order,
    }
}

#[test]
fn opening_sets_durability_pragmas_and_the_schema() {
    let (_dir, path) = temp();
    let store = SqliteStore::open(&path).unwrap();
    let pragma = |name: &str| -> String {
        store
            .conn
            .pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| match v {
                rusqlite::types::Value::Text(t) => t,
                rusqlite::types::Value::Integer(i) => i.to_string(),
                other => format!("{other:?}"),
            })
            .unwrap()
    };
    assert_eq!(pragma("journal_mode"), "wal");
    assert_eq!(pragma("synchronous"), "2", "FULL");
    assert_eq!(pragma("foreign_keys"), "1");
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
}

#[test]
fn reopening_keeps_rows_and_migrates_nothing_twice() {
    let (_dir, path) = temp();
    {
        let mut store = SqliteStore::open(&path).unwrap();
        open_pair(&mut store, &call(1), 1_000);
        store
            .close(&call(1), &user("alice"), 5_000, EndReason::Hangup)
            .unwrap();
    }
    for _ in 0..2 {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), 2);
        let log = store.get(&call(1), &user("alice")).unwrap().unwrap();
        assert_eq!(log.end_reason, Some(EndReason::Hangup));
        assert!(store.get(&call(1), &user("bob")).unwrap().is_some());
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let (_dir, path) = temp();
    drop(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).err().unwrap();
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 99,
                known: 2
            }
        ),
        "{err}"
    );
}

#[test]
fn a_first_version_database_gains_the_end_note_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.sqlite");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(super::MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute(
        "INSERT INTO call_logs (call_id, user_id, call_type, media, direction, peers, start_ms)
         VALUES (?1, 'alice', 'one_to_one', 'audio', 'outgoing', '[\"bob\"]', 1000)",
        [call(1).as_str()],
    )
    .unwrap();
    drop(conn);
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 2);
    assert!(store
        .close(&call(1), &user("alice"), 2_000, EndReason::Rejected)
        .unwrap());
    assert!(store.end_note(&call(1), &user("alice"), "later").unwrap());
    let log = store.get(&call(1), &user("alice")).unwrap().unwrap();
    assert_eq!(log.end_note.as_deref(), Some("later"));
    assert_eq!(log.start_ms, 1000);
}

#[test]
fn a_row_records_the_whole_call() {
    let (_dir, path) = temp();
    let mut store = SqliteStore::open(&path).unwrap();
    let id = call(7);
    let mut bob = row(&id, "bob", "alice", Direction::Incoming, 10_000);
    bob.peers = vec![user("alice"), user("carol")];
    bob.call_type = CallType::Group;
    bob.media = Media::Video;
    store.open_call(&[bob]).unwrap();
    let bob = user("bob");

    assert_eq!(store.ongoing(&bob).unwrap().len(), 1);
    assert!(store.ringing(&id, &bob, 10_150).unwrap());
    assert!(!store.ringing(&id, &bob, 10_900).unwrap(), "set once");
    assert!(
        !store.first_audio(&id, &bob, 10_000).unwrap(),
        "needs a connect first"
    );
    assert!(store.connect(&id, &bob, 14_150).unwrap());
    assert!(store.first_audio(&id, &bob, 14_230).unwrap());
    assert!(store.close(&id, &bob, 74_150, EndReason::Hangup).unwrap());
    assert!(
        !store.close(&id, &bob, 99_000, EndReason::Timeout).unwrap(),
        "closed once"
    );

    let log = store.get(&id, &bob).unwrap().unwrap();
    assert_eq!(
        log,
        CallLog {
            call_id: id.clone(),
            user: bob.clone(),
            call_type: CallType::Group,
            media: Media::Video,
            direction: Direction::Incoming,
            peers: vec![user("alice"), user("carol")],
            start_ms: 10_000,
            connect_ms: Some(14_150),
            end_ms: Some(74_150),
            duration_ms: Some(60_000),
            end_reason: Some(EndReason::Hangup),
            end_note: None,
            ring_ms: Some(150),
            answer_ms: Some(4_000),
            first_audio_ms: Some(80),
        }
    );
    assert!(store.ongoing(&bob).unwrap().is_empty());
    assert!(!store.connect(&call(8), &bob, 1).unwrap(), "no such row");
}

#[test]
fn an_unanswered_call_lasts_zero() {
    let (_dir, path) = temp();
    let mut store = SqliteStore::open(&path).unwrap();
    open_pair(&mut store, &call(1), 1_000);
    store
        .close(&call(1), &user("bob"), 31_000, EndReason::Timeout)
        .unwrap();
    let log = store.get(&call(1), &user("bob")).unwrap().unwrap();
    assert_eq!((log.connect_ms, log.duration_ms), (None, Some(0)));
    assert_eq!(log.answer_ms, None);
}

#[test]
fn reopening_a_call_keeps_existing_rows() {
    let (_dir, path) = temp();
    let mut store = SqliteStore::open(&path).unwrap();
    open_pair(&mut store, &call(1), 1_000);
    let again = row(&call(1), "alice", "zed", Direction::Incoming, 9_000);
    assert_eq!(store.open_call(&[again]).unwrap(), 0);
    let log = store.get(&call(1), &user("alice")).unwrap().unwrap();
    assert_eq!((log.start_ms, log.direction), (1_000, Direction::Outgoing));
}

#[test]
fn a_member_who_rejoins_keeps_one_row_from_first_connect_to_last_leave() {
    let (_dir, path) = temp();
    let mut store = SqliteStore::open(&path).unwrap();
    open_pair(&mut store, &call(1), 0);
    let bob = user("bob");
    store.connect(&call(1), &bob, 1_000).unwrap();
    store
        .close(&call(1), &bob, 5_000, EndReason::Hangup)
        .unwrap();
    store.connect(&call(1), &bob, 9_000).unwrap();
    assert_eq!(store.ongoing(&bob).unwrap().len(), 1);
    store
        .close(&call(1), &bob, 12_000, EndReason::Disconnected)
        .unwrap();
    let log = store.get(&call(1), &bob).unwrap().unwrap();
    assert_eq!(log.connect_ms, Some(1_000));
    assert_eq!(log.duration_ms, Some(11_000));
    assert_eq!(log.end_reason, Some(EndReason::Disconnected));
}

/// Alice's history: equal start times on purpose, and bob's rows interleaved.
fn history(store: &mut SqliteStore) -> Vec<(i64, CallId)> {
    let starts = [300, 100, 200, 100, 300, 100, 200, 300];
    let mut expected = Vec::new();
    for (n, start) in starts.into_iter().enumerate() {
        // Call IDs out of time order, so the tie-break is really by ID.
        let id = call(((n as u64) * 7919) % 97);
        open_pair(store, &id, start);
        expected.push((start, id));
    }
    expected.sort();
    expected
}

fn walk(store: &SqliteStore, count: usize, order: Order) -> Vec<(i64, CallId)> {
    let alice = user("alice");
    let mut seen = Vec::new();
    let mut from = Cursor::newest();
    loop {
        let req = PageRequest {
            from: from.clone(),
            count,
            order,
        };
        let page = store.list(&alice, &req, 42).unwrap();
        assert_eq!(page.sync_time_ms, 42);
        assert!(page.logs.len() <= count);
        assert!(page.logs.iter().all(|l| l.user == alice));
        seen.extend(page.logs.iter().map(|l| (l.start_ms, l.call_id.clone())));
        match page.next {
            Some(next) => {
                assert!(page.has_more);
                assert_eq!(page.logs.len(), count);
                from = next;
            }
            None => {
                assert!(!page.has_more);
                return seen;
            }
        }
    }
}

#[test]
fn pages_never_overlap_or_skip_across_equal_start_times() {
    let (_dir, path) = temp();
    let mut store = SqliteStore::open(&path).unwrap();
    let asc = history(&mut store);
    let mut desc = asc.clone();
    desc.reverse();
    for count in [1, 2, 3, 8, 100] {
        assert_eq!(walk(&store, count, Order::Asc), asc, "asc by {count}");
        assert_eq!(walk(&store, count, Order::Desc), desc, "desc by {count}");
    }
    let unique: HashSet<_> = asc.iter().collect();
    assert_eq!(unique.len(), asc.len());
}

#[test]
fn a_start_time_without_a_call_id_is_inclusive() {
    let (_dir, path) = temp();
    let mut store = SqliteStore::open(&path).unwrap();
    let all = history(&mut store);
    let alice = user("alice");
    let older = store
        .list(&alice, &page(200, None, 100, Order::Desc), 0)
        .unwrap();
    let want: Vec<_> = all
        .iter()
        .rev()
        .filter(|(s, _)| *s <= 200)
        .cloned()
        .collect();
    let got: Vec<_> = older
        .logs
        .iter()
        .map(|l| (l.start_ms, l.call_id.clone()))
        .collect();
    assert_eq!(got, want);
    let newer = store
        .list(&alice, &page(300, None, 100, Order::Asc), 0)
        .unwrap();
    assert_eq!(newer.logs.len(), 3);
    assert!(newer.logs.iter().all(|l| l.start_ms == 300));
    assert!(!newer.has_more);
}

#[test]
fn page_sizes_are_bounded() {
    let (_dir, path) = temp();
    let store = SqliteStore::open(&path).unwrap();
    for count in [0, MAX_PAGE + 1] {
        let err = store
            .list(&user("alice"), &page(NEWEST, None, count, Order::Desc), 0)
            .unwrap_err();
        assert!(matches!(err, StoreError::BadCount));
        assert_eq!(ApiError::from(err).code, ErrorCode::BadRequest);
    }
}

#[test]
fn deleting_touches_only_the_requesters_rows() {
    let (_dir, path) = temp();
    let mut store = SqliteStore::open(&path).unwrap();
    for n in 1..=3 {
        open_pair(&mut store, &call(n), n as i64 * 100);
    }
    let (alice, bob) = (user("alice"), user("bob"));
    assert_eq!(store.delete(&alice, &[call(1), call(9)]).unwrap(), 1);
    assert!(store.get(&call(1), &alice).unwrap().is_none());
    assert!(
        store.get(&call(1), &bob).unwrap().is_some(),
        "bob keeps his row"
    );
    assert_eq!(store.delete(&user("mallory"), &[call(2)]).unwrap(), 0);

    assert_eq!(store.delete_all(&alice).unwrap(), 2);
    let all = page(NEWEST, None, 10, Order::Desc);
    assert!(store.list(&alice, &all, 0).unwrap().logs.is_empty());
    assert_eq!(store.list(&bob, &all, 0).unwrap().logs.len(), 3);

    let too_many: Vec<CallId> = (0..=MAX_DELETE as u64).map(call).collect();
    let err = store.delete(&bob, &too_many).unwrap_err();
    assert!(matches!(err, StoreError::TooManyIds));
}

#[test]
fn a_restart_closes_every_open_row() {
    let (_dir, path) = temp();
    {
        let mut store = SqliteStore::open(&path).unwrap();
        open_pair(&mut store, &call(1), 1_000);
        open_pair(&mut store, &call(2), 2_000);
        store.connect(&call(1), &user("alice"), 1_500).unwrap();
        store
            .close(&call(2), &user("alice"), 2_500, EndReason::Canceled)
            .unwrap();
        store
            .close(&call(2), &user("bob"), 2_500, EndReason::Canceled)
            .unwrap();
    }
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.close_open_calls_at_startup(10_000).unwrap(), 2);
    let alice = store.get(&call(1), &user("alice")).unwrap().unwrap();
    assert_eq!(alice.end_reason, Some(EndReason::ServerRestart));
    assert_eq!(
        (alice.end_ms, alice.duration_ms),
        (Some(10_000), Some(8_500))
    );
    let bob = store.get(&call(1), &user("bob")).unwrap().unwrap();
    assert_eq!(
        (bob.end_reason, bob.duration_ms),
        (Some(EndReason::ServerRestart), Some(0))
    );
    let done = store.get(&call(2), &user("alice")).unwrap().unwrap();
    assert_eq!(
        done.end_reason,
        Some(EndReason::Canceled),
        "closed rows stay as they were"
    );
    assert!(store.ongoing(&user("alice")).unwrap().is_empty());
    assert_eq!(store.close_open_calls_at_startup(20_000).unwrap(), 0);
}

#[test]
fn internal_errors_do_not_reach_clients_in_detail() {
    let err = StoreError::Corrupt("peers column is not JSON".into());
    let api = ApiError::from(err);
    assert_eq!(api.code, ErrorCode::Internal);
    assert!(!api.message.contains("JSON"));
}
