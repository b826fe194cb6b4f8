//! `CallLogActor`: the one owner of the call-log store. It runs on a thread of its own (a
//! one-thread `SyncArbiter`) because every write waits for an fsync, which must never stall
//! an actor that carries signalling.

use actix::prelude::*;

use super::store::{CallLog, CallLogStore, SqliteStore, StoreError};
use crate::config::CallsConfig;
use crate::messages::{CallLogHandle, LogAnswer, LogQuery, LogWrite};

pub struct CallLogActor {
    store: Box<dyn CallLogStore + Send>,
}

impl CallLogActor {
    pub fn new(store: Box<dyn CallLogStore + Send>) -> Self {
        Self { store }
    }

    /// Opens the call-log store, closes the calls a previous process left open, and starts the
    /// store's one thread (every write waits for an fsync: never on an actor that signals).
    pub fn start_configured(config: &CallsConfig) -> Result<CallLogHandle, StoreError> {
        let mut store = SqliteStore::open_configured(&config.database)?;
        let closed = store.close_open_calls_at_startup(crate::clock::unix_ms())?;
        if closed > 0 {
            tracing::warn!(
                rows = closed,
                "closed call-log rows left open by the previous run as server_restart"
            );
        }
        let store = std::sync::Mutex::new(Some(store));
        let logs = SyncArbiter::start(1, move || {
            let store = store
                .lock()
                .expect("store lock")
                .take()
                .expect("one log thread");
            CallLogActor::new(Box::new(store))
        });
        Ok(CallLogHandle::new(logs))
    }
}

impl Actor for CallLogActor {
    type Context = SyncContext<Self>;
}

impl Handler<LogWrite> for CallLogActor {
    type Result = Result<Option<CallLog>, StoreError>;

    fn handle(&mut self, msg: LogWrite, _: &mut Self::Context) -> Self::Result {
        let s = &mut self.store;
        match msg {
            LogWrite::Open(rows) => s.open_call(&rows).map(|_| None),
            LogWrite::Ringing {
                call_id,
                user,
                at_ms,
            } => s.ringing(&call_id, &user, at_ms).map(|_| None),
            LogWrite::Connect {
                call_id,
                user,
                at_ms,
            } => s.connect(&call_id, &user, at_ms).map(|_| None),
            LogWrite::FirstAudio {
                call_id,
                user,
                at_ms,
            } => s.first_audio(&call_id, &user, at_ms).map(|_| None),
            LogWrite::Barrier => Ok(None),
            LogWrite::Shape {
                call_id,
                call_type,
                media,
            } => s.reshape(&call_id, call_type, media).map(|_| None),
            LogWrite::Close {
                call_id,
                user,
                at_ms,
                reason,
                note,
                then,
            } => {
                let closed = s.close(&call_id, &user, at_ms, reason)?;
                if let (true, Some(note)) = (closed, note) {
                    s.end_note(&call_id, &user, &note)?;
                }
                let row = s.row(&call_id, &user)?;
                // A row already closed (a re-invited member who declined again) is not news.
                if let (true, Some(then), Some(row)) = (closed, then, row.clone()) {
                    then(row);
                }
                Ok(row)
            }
        }
    }
}

impl Handler<LogQuery> for CallLogActor {
    type Result = Result<LogAnswer, StoreError>;

    fn handle(&mut self, msg: LogQuery, _: &mut Self::Context) -> Self::Result {
        let s = &mut self.store;
        match msg {
            LogQuery::Page { user, page } => s
                .list(&user, &page, crate::clock::unix_ms())
                .map(LogAnswer::Page),
            LogQuery::Ongoing { user } => s.ongoing(&user).map(LogAnswer::Ongoing),
            LogQuery::Delete { user, call_ids } => {
                s.delete(&user, &call_ids).map(LogAnswer::Deleted)
            }
            LogQuery::DeleteAll { user } => s.delete_all(&user).map(LogAnswer::Deleted),
        }
    }
}
