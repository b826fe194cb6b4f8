//! `CallLogActor`: the one owner of the call-log store. It runs on a thread of its own (a
//! one-thread `SyncArbiter`) because every write waits for an fsync, which must never stall
//! an actor that carries signalling.

use actix::prelude::*;

use super::store::{CallLog, CallLogStore, StoreError};
use crate::messages::{LogAnswer, LogQuery, LogWrite};

pub struct CallLogActor {
    store: Box<dyn CallLogStore + Send>,
}

impl CallLogActor {
    pub fn new(store: Box<dyn CallLogStore + Send>) -> Self {
        Self { store }
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
                then,
            } => {
                let closed = s.close(&call_id, &user, at_ms, reason)?;
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
