//! The call's log rows, kept in step with the call by amphi-core's `Ledger`: this writes what
//! it decides through the call-log thread and records the setup times it measures.

use super::*;
use amphi_core::call::ledger::{NewCallLog, RowWrite};

impl CallActor {
    pub(super) fn first_audio(&mut self, user: &Identity, now: Instant) {
        if let Some((after, write)) = self.ledger.first_audio(&self.call, user, now) {
            metrics::histogram!(m::CALL_SETUP_FIRST_AUDIO).record(after.as_secs_f64());
            self.write_row(write);
        }
    }

    pub(super) fn rang(&mut self, callee: &Identity, now: Instant) {
        if let Some(after) = self.ledger.rang(&self.call, callee, self.requested_at, now) {
            metrics::histogram!(m::CALL_SETUP_RING).record(after.as_secs_f64());
        }
    }

    /// Issues the log writes the legs' changes call for; true when one of them connects a
    /// member (the events wait for it).
    pub(super) fn log_transitions(&mut self, now: Instant) -> bool {
        let step = self.ledger.step(&self.call, now);
        for answered in step.answered {
            metrics::histogram!(m::CALL_SETUP_ANSWER).record(answered.as_secs_f64());
        }
        for user in step.left_ongoing {
            // A member who left a group call leaves its media too.
            if let Some(ch) = self.engine.channels.get(&self.channel) {
                ch.do_send(AdminKick::Identity(user));
            }
        }
        // In order: rows open before anything else about them is written (the log thread's
        // mailbox is FIFO).
        for w in step.writes {
            self.write_row(w);
        }
        step.connects
    }

    /// The writes that follow the events just delivered: rings, and closes, each close
    /// followed by the member's `call_log` event once its row is committed.
    pub(super) fn write_after_events(&mut self) {
        let writes: Vec<RowWrite> = self.ledger.after_events().collect();
        for w in writes {
            self.write_row(w);
        }
    }

    /// The rows of `opened` that are written: none for a callee who blocks the caller, so
    /// the call leaves nothing in that callee's log.
    pub(super) fn logged(&self, mut opened: Vec<NewCallLog>) -> Vec<NewCallLog> {
        opened.retain(|row| !self.silent.contains(&row.user));
        opened
    }

    fn write_row(&self, write: RowWrite) {
        let call_id = self.call.id().clone();
        let about = match &write {
            RowWrite::Ringing { user, .. }
            | RowWrite::Connect { user, .. }
            | RowWrite::FirstAudio { user, .. }
            | RowWrite::Close { user, .. } => Some(user),
            RowWrite::Open(_) | RowWrite::Shape { .. } => None,
        };
        if about.is_some_and(|u| self.silent.contains(u)) {
            return;
        }
        let log = match write {
            RowWrite::Open(rows) => LogWrite::Open(self.logged(rows)),
            RowWrite::Ringing { user, at_ms } => LogWrite::Ringing {
                call_id,
                user,
                at_ms,
            },
            RowWrite::Connect { user, at_ms } => LogWrite::Connect {
                call_id,
                user,
                at_ms,
            },
            RowWrite::FirstAudio { user, at_ms } => LogWrite::FirstAudio {
                call_id,
                user,
                at_ms,
            },
            RowWrite::Shape { call_type, media } => LogWrite::Shape {
                call_id,
                call_type,
                media,
            },
            RowWrite::Close {
                user,
                at_ms,
                reason,
                note,
            } => {
                let engine = self.engine.clone();
                let (to, id) = (user.clone(), call_id.clone());
                LogWrite::Close {
                    call_id,
                    user,
                    at_ms,
                    reason,
                    note,
                    then: Some(Box::new(move |row| {
                        let frame = protocol::call_event(
                            &id,
                            None,
                            &json!({"event": "call_log", "log": row}),
                            &[],
                        );
                        engine.deliver(&[to], &frame);
                    })),
                }
            }
        };
        self.engine.logs.write.do_send(log);
    }
}
