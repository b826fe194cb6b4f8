//! Call logs: one row per call per user, behind [`CallLogStore`] so that a server database can
//! replace [`SqliteStore`] without touching its callers.
//!
//! Times are unix milliseconds, passed in. `start_ms`, `connect_ms` and `end_ms` are instants;
//! `duration_ms` (connect → end, 0 if never connected), `ring_ms` (start → ringing),
//! `answer_ms` (ringing → connect) and `first_audio_ms` (connect → first audio) are spans.
//!
//! Writes take `&mut self`: one owner (an actor) serializes them. Every write is a committed
//! transaction when the method returns; that is what acknowledging a call-log change means.

mod schema;
#[cfg(test)]
mod tests;

use schema::MIGRATIONS;

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::Serialize;

use super::call::{CallId, CallType, EndReason, Media};
use crate::ids::Identity;
pub use amphi_proto::calls::{Direction, Order, NEWEST};

/// Rows per page: a phone screen or two. A bigger page costs the owning actor more time per
/// request while every other user's call-log write waits behind it.
pub const MAX_PAGE: usize = 100;

/// Call IDs per delete: one transaction holds the write lock for all of them.
pub const MAX_DELETE: usize = 500;

/// Another process (an operator's sqlite3 shell, a backup) may hold the lock briefly.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A row as the call opens it (decided by the call's ledger in the core).
pub use amphi_core::call::ledger::NewCallLog;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallLog {
    pub call_id: CallId,
    pub user: Identity,
    pub call_type: CallType,
    pub media: Media,
    pub direction: Direction,
    pub peers: Vec<Identity>,
    pub start_ms: i64,
    pub connect_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub end_reason: Option<EndReason>,
    /// What the member who ended the call (or this member, leaving) said: `reject` and
    /// `hangup` take a short note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_note: Option<String>,
    pub ring_ms: Option<i64>,
    pub answer_ms: Option<i64>,
    pub first_audio_ms: Option<i64>,
}

/// Where a page starts. Rows are ordered by `(start_ms, call_id)`; a page starting `after` a
/// row resumes exactly behind it, so equal start times never make pages overlap or skip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cursor {
    pub start_ms: i64,
    /// Without it, the page starts at `start_ms` inclusive.
    pub after: Option<CallId>,
}

impl Cursor {
    pub fn newest() -> Self {
        Self {
            start_ms: NEWEST,
            after: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub from: Cursor,
    pub count: usize,
    pub order: Order,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogPage {
    pub logs: Vec<CallLog>,
    pub has_more: bool,
    /// The server time the page was read at, for the client's next sync.
    pub sync_time_ms: i64,
    /// Where the next page starts, when there is one.
    pub next: Option<Cursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("call log database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("call log database needs WAL, but its journal mode is {0}")]
    NoWal(String),
    #[error("call log schema is version {found}; this server knows versions up to {known}")]
    NewerSchema { found: i64, known: usize },
    #[error("stored call log is corrupt: {0}")]
    Corrupt(String),
    #[error("count must be between 1 and {MAX_PAGE}")]
    BadCount,
    #[error("at most {MAX_DELETE} call IDs per request")]
    TooManyIds,
}

/// The call-log operations the call engine needs. Writes report whether a row matched.
pub trait CallLogStore {
    /// Inserts one row per member; rows that exist already (a re-invited member) are kept.
    /// Returns how many were inserted.
    fn open_call(&mut self, rows: &[NewCallLog]) -> Result<usize, StoreError>;
    /// The user's client is ringing at `at_ms`; sets `ring_ms` once.
    fn ringing(
        &mut self,
        call_id: &CallId,
        user: &Identity,
        at_ms: i64,
    ) -> Result<bool, StoreError>;
    /// The user is connected at `connect_ms`. A row closed earlier (the member left and
    /// rejoined a group call) is reopened, keeping its first connect time.
    fn connect(
        &mut self,
        call_id: &CallId,
        user: &Identity,
        connect_ms: i64,
    ) -> Result<bool, StoreError>;
    /// The user heard the first audio at `at_ms`; sets `first_audio_ms` once.
    fn first_audio(
        &mut self,
        call_id: &CallId,
        user: &Identity,
        at_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Keeps the note of the departure that closed the row.
    fn end_note(
        &mut self,
        call_id: &CallId,
        user: &Identity,
        note: &str,
    ) -> Result<bool, StoreError>;
    /// Closes an open row and computes its duration; a closed row is left as it is.
    fn close(
        &mut self,
        call_id: &CallId,
        user: &Identity,
        end_ms: i64,
        reason: EndReason,
    ) -> Result<bool, StoreError>;
    /// One page of the user's history in `page.order`, starting at `page.from` (see
    /// [`Cursor`]); `now_ms` becomes the page's `sync_time_ms`.
    fn list(&self, user: &Identity, page: &PageRequest, now_ms: i64)
        -> Result<LogPage, StoreError>;
    /// The user's rows without an end, newest first, at most [`MAX_PAGE`].
    fn ongoing(&self, user: &Identity) -> Result<Vec<CallLog>, StoreError>;
    /// Deletes the user's rows for `call_ids`; other members' rows of those calls stay.
    fn delete(&mut self, user: &Identity, call_ids: &[CallId]) -> Result<usize, StoreError>;
    fn delete_all(&mut self, user: &Identity) -> Result<usize, StoreError>;
    /// Closes every open row as `server_restart`: no call survives a restart.
    fn close_open_calls_at_startup(&mut self, now_ms: i64) -> Result<usize, StoreError>;
    /// Sets the type and media of every row of the call; returns how many rows there were.
    fn reshape(
        &mut self,
        call_id: &CallId,
        call_type: CallType,
        media: Media,
    ) -> Result<usize, StoreError>;
    /// One row, if it exists.
    fn row(&self, call_id: &CallId, user: &Identity) -> Result<Option<CallLog>, StoreError>;
}

const COLUMNS: &str = "call_id, user_id, call_type, media, direction, peers, start_ms, \
     connect_ms, end_ms, duration_ms, end_reason, ring_ms, answer_ms, first_audio_ms, end_note";

/// `duration_ms` for an end time bound to `?1`.
const DURATION_SQL: &str = "CASE WHEN connect_ms IS NULL THEN 0 ELSE MAX(0, ?1 - connect_ms) END";

pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// WAL lets readers proceed during a write; `synchronous=FULL` makes a commit survive a
    /// power cut, not only a crash.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal(mode));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Self { conn })
    }

    /// A database that lives as long as the process: nothing survives a restart, so it is
    /// for tests and demos, where a file left behind is the bigger nuisance.
    pub fn in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        migrate(&mut conn)?;
        Ok(Self { conn })
    }

    /// `:memory:` or a file path, as `calls.database` says.
    pub fn open_configured(database: &str) -> Result<Self, StoreError> {
        if database == ":memory:" {
            Self::in_memory()
        } else {
            Self::open(database)
        }
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// One row, if it exists.
    pub fn get(&self, call_id: &CallId, user: &Identity) -> Result<Option<CallLog>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM call_logs WHERE call_id = ?1 AND user_id = ?2");
        let raw = self
            .conn
            .query_row(&sql, params![call_id.as_str(), user.as_str()], RawLog::read)
            .optional()?;
        raw.map(RawLog::into_log).transpose()
    }

    /// Runs `f` in an immediate transaction and commits it: the write lock is taken up front,
    /// so a concurrent writer waits instead of failing to upgrade a read lock.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn update(
        &mut self,
        sql: &str,
        call_id: &CallId,
        user: &Identity,
        ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx.execute(sql, params![ms, call_id.as_str(), user.as_str()])?;
            Ok(n > 0)
        })
    }

    fn query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<CallLog>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let raws = stmt
            .query_map(params, RawLog::read)?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter().map(RawLog::into_log).collect()
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let applied = usize::try_from(found)
        .ok()
        .filter(|v| *v <= MIGRATIONS.len())
        .ok_or(StoreError::NewerSchema {
            found,
            known: MIGRATIONS.len(),
        })?;
    for (version, sql) in (1_i64..).zip(MIGRATIONS).skip(applied) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
    }
    tx.commit()?;
    Ok(())
}

impl CallLogStore for SqliteStore {
    fn reshape(
        &mut self,
        call_id: &CallId,
        call_type: CallType,
        media: Media,
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE call_logs SET call_type = ?1, media = ?2 WHERE call_id = ?3",
                params![call_type.as_str(), media.as_str(), call_id.as_str()],
            )?)
        })
    }

    fn row(&self, call_id: &CallId, user: &Identity) -> Result<Option<CallLog>, StoreError> {
        self.get(call_id, user)
    }

    fn open_call(&mut self, rows: &[NewCallLog]) -> Result<usize, StoreError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO call_logs
                     (call_id, user_id, call_type, media, direction, peers, start_ms, ring_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (call_id, user_id) DO NOTHING",
            )?;
            let mut inserted = 0;
            for row in rows {
                let peers =
                    serde_json::to_string(&row.peers).expect("a list of strings serializes");
                inserted += stmt.execute(params![
                    row.call_id.as_str(),
                    row.user.as_str(),
                    row.call_type.as_str(),
                    row.media.as_str(),
                    row.direction.as_str(),
                    peers,
                    row.start_ms,
                    row.ring_ms,
                ])?;
            }
            Ok(inserted)
        })
    }

    fn ringing(
        &mut self,
        call_id: &CallId,
        user: &Identity,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.update(
            "UPDATE call_logs SET ring_ms = MAX(0, ?1 - start_ms)
             WHERE call_id = ?2 AND user_id = ?3 AND ring_ms IS NULL",
            call_id,
            user,
            at_ms,
        )
    }

    fn connect(
        &mut self,
        call_id: &CallId,
        user: &Identity,
        connect_ms: i64,
    ) -> Result<bool, StoreError> {
        self.update(
            "UPDATE call_logs SET
                 answer_ms = COALESCE(answer_ms, MAX(0, ?1 - start_ms - ring_ms)),
                 connect_ms = COALESCE(connect_ms, ?1),
                 end_ms = NULL, duration_ms = NULL, end_reason = NULL, end_note = NULL
             WHERE call_id = ?2 AND user_id = ?3",
            call_id,
            user,
            connect_ms,
        )
    }

    fn first_audio(
        &mut self,
        call_id: &CallId,
        user: &Identity,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.update(
            "UPDATE call_logs SET first_audio_ms = MAX(0, ?1 - connect_ms)
             WHERE call_id = ?2 AND user_id = ?3
               AND connect_ms IS NOT NULL AND first_audio_ms IS NULL",
            call_id,
            user,
            at_ms,
        )
    }

    fn end_note(
        &mut self,
        call_id: &CallId,
        user: &Identity,
        note: &str,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE call_logs SET end_note = ?3 WHERE call_id = ?1 AND user_id = ?2",
                params![call_id.as_str(), user.as_str(), note],
            )?;
            Ok(n > 0)
        })
    }

    fn close(
        &mut self,
        call_id: &CallId,
        user: &Identity,
        end_ms: i64,
        reason: EndReason,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE call_logs SET end_ms = ?1, duration_ms = {DURATION_SQL}, end_reason = ?4
             WHERE call_id = ?2 AND user_id = ?3 AND end_ms IS NULL"
        );
        self.write(|tx| {
            let n = tx.execute(
                &sql,
                params![end_ms, call_id.as_str(), user.as_str(), reason.as_str()],
            )?;
            Ok(n > 0)
        })
    }

    fn list(
        &self,
        user: &Identity,
        page: &PageRequest,
        now_ms: i64,
    ) -> Result<LogPage, StoreError> {
        if page.count == 0 || page.count > MAX_PAGE {
            return Err(StoreError::BadCount);
        }
        let (cmp, dir) = match page.order {
            Order::Asc => (">", "ASC"),
            Order::Desc => ("<", "DESC"),
        };
        let bound = match (&page.from.after, page.from.start_ms) {
            (_, NEWEST) => String::new(),
            (None, _) => format!("AND start_ms {cmp}= ?2"),
            (Some(_), _) => {
                format!("AND (start_ms {cmp} ?2 OR (start_ms = ?2 AND call_id {cmp} ?3))")
            }
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM call_logs WHERE user_id = ?1 {bound}
             ORDER BY start_ms {dir}, call_id {dir} LIMIT ?4"
        );
        // One row past the page tells whether another page follows.
        let limit = i64::try_from(page.count + 1).unwrap_or(i64::MAX);
        let after = page.from.after.as_ref().map_or("", CallId::as_str);
        let mut logs = self.query(
            &sql,
            params![user.as_str(), page.from.start_ms, after, limit],
        )?;
        let has_more = logs.len() > page.count;
        logs.truncate(page.count);
        let next = logs.last().filter(|_| has_more).map(|l| Cursor {
            start_ms: l.start_ms,
            after: Some(l.call_id.clone()),
        });
        Ok(LogPage {
            logs,
            has_more,
            sync_time_ms: now_ms,
            next,
        })
    }

    fn ongoing(&self, user: &Identity) -> Result<Vec<CallLog>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM call_logs WHERE user_id = ?1 AND end_ms IS NULL
             ORDER BY start_ms DESC, call_id DESC LIMIT {MAX_PAGE}"
        );
        self.query(&sql, params![user.as_str()])
    }

    fn delete(&mut self, user: &Identity, call_ids: &[CallId]) -> Result<usize, StoreError> {
        if call_ids.len() > MAX_DELETE {
            return Err(StoreError::TooManyIds);
        }
        self.write(|tx| {
            let mut stmt =
                tx.prepare_cached("DELETE FROM call_logs WHERE user_id = ?1 AND call_id = ?2")?;
            let mut deleted = 0;
            for id in call_ids {
                deleted += stmt.execute(params![user.as_str(), id.as_str()])?;
            }
            Ok(deleted)
        })
    }

    fn delete_all(&mut self, user: &Identity) -> Result<usize, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM call_logs WHERE user_id = ?1",
                params![user.as_str()],
            )?)
        })
    }

    fn close_open_calls_at_startup(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        // The true end is somewhere in the downtime; restart time is the latest it can be.
        let sql = format!(
            "UPDATE call_logs SET end_ms = MAX(start_ms, ?1), duration_ms = {DURATION_SQL},
                 end_reason = ?2
             WHERE end_ms IS NULL"
        );
        self.write(|tx| Ok(tx.execute(&sql, params![now_ms, EndReason::ServerRestart.as_str()])?))
    }
}

/// A row as SQLite returns it, before its text is checked.
struct RawLog {
    call_id: String,
    user: String,
    call_type: String,
    media: String,
    direction: String,
    peers: String,
    start_ms: i64,
    connect_ms: Option<i64>,
    end_ms: Option<i64>,
    duration_ms: Option<i64>,
    end_reason: Option<String>,
    ring_ms: Option<i64>,
    answer_ms: Option<i64>,
    first_audio_ms: Option<i64>,
    end_note: Option<String>,
}

impl RawLog {
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            call_id: r.get(0)?,
            user: r.get(1)?,
            call_type: r.get(2)?,
            media: r.get(3)?,
            direction: r.get(4)?,
            peers: r.get(5)?,
            start_ms: r.get(6)?,
            connect_ms: r.get(7)?,
            end_ms: r.get(8)?,
            duration_ms: r.get(9)?,
            end_reason: r.get(10)?,
            ring_ms: r.get(11)?,
            answer_ms: r.get(12)?,
            first_audio_ms: r.get(13)?,
            end_note: r.get(14)?,
        })
    }

    fn into_log(self) -> Result<CallLog, StoreError> {
        let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
        let peers: Vec<String> = serde_json::from_str(&self.peers).map_err(|e| corrupt(&e))?;
        Ok(CallLog {
            call_id: CallId::parse(&self.call_id).map_err(|e| corrupt(&e))?,
            user: Identity::parse(&self.user).map_err(|e| corrupt(&e))?,
            call_type: self.call_type.parse().map_err(|e| corrupt(&e))?,
            media: self.media.parse().map_err(|e| corrupt(&e))?,
            direction: self.direction.parse().map_err(|e| corrupt(&e))?,
            peers: peers
                .iter()
                .map(|p| Identity::parse(p))
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt(&e))?,
            start_ms: self.start_ms,
            connect_ms: self.connect_ms,
            end_ms: self.end_ms,
            duration_ms: self.duration_ms,
            end_reason: self
                .end_reason
                .map(|r| r.parse())
                .transpose()
                .map_err(|e| corrupt(&e))?,
            end_note: self.end_note,
            ring_ms: self.ring_ms,
            answer_ms: self.answer_ms,
            first_audio_ms: self.first_audio_ms,
        })
    }
}
