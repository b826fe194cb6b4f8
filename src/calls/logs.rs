//! `CallLogActor`: the one owner of the call-log store. It runs on a thread of its own (a
//! one-thread `SyncArbiter`) because every write waits for an fsync, which must never stall
//! an actor that carries signalling.

use actix::prelude::*;

use super::call::{CallId, CallType, EndReason, Media};
use super::store::{CallLog, CallLogStore, LogPage, NewCallLog, PageRequest, StoreError};
use crate::ids::Identity;

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

/// Runs on the log thread with a row just closed (and committed).
pub type OnClosed = Box<dyn FnOnce(CallLog) + Send>;

/// A change to the logs. Each is committed before its reply: the reply is the acknowledgement.
pub enum LogWrite {
    Open(Vec<NewCallLog>),
    Ringing {
        call_id: CallId,
        user: Identity,
        at_ms: i64,
    },
    Connect {
        call_id: CallId,
        user: Identity,
        at_ms: i64,
    },
    FirstAudio {
        call_id: CallId,
        user: Identity,
        at_ms: i64,
    },
    /// The call's type or media changed (a group upgrade, a media change, video taken as
    /// audio): every row of the call follows.
    Shape {
        call_id: CallId,
        call_type: CallType,
        media: Media,
    },
    /// Writes nothing: its reply means every write queued before it is committed.
    Barrier,
    /// Closes the row and answers with it, for the member's `call_log` event.
    Close {
        call_id: CallId,
        user: Identity,
        at_ms: i64,
        reason: EndReason,
        then: Option<OnClosed>,
    },
}

impl Message for LogWrite {
    type Result = Result<Option<CallLog>, StoreError>;
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

/// A member's own view of the logs.
#[derive(Debug, Clone)]
pub enum LogQuery {
    Page {
        user: Identity,
        page: PageRequest,
    },
    Ongoing {
        user: Identity,
    },
    Delete {
        user: Identity,
        call_ids: Vec<CallId>,
    },
    DeleteAll {
        user: Identity,
    },
}

#[derive(Debug)]
pub enum LogAnswer {
    Page(LogPage),
    Ongoing(Vec<CallLog>),
    Deleted(usize),
}

impl Message for LogQuery {
    type Result = Result<LogAnswer, StoreError>;
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
