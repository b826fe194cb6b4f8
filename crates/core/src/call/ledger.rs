//! A call's log rows, kept in step with the call: which rows to open, when a callee rang, when
//! a member connected, heard first audio and left, and when the call's shape changed. It
//! decides what to write and when; the shell writes it (one row per call per member).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{Call, CallId, CallType, EndReason, LegState, Media};
use crate::ids::Identity;
use amphi_proto::calls::Direction;

/// A row as the call opens it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCallLog {
    pub call_id: CallId,
    pub user: Identity,
    pub call_type: CallType,
    pub media: Media,
    pub direction: Direction,
    /// The other members, as this user saw them when the row opened.
    pub peers: Vec<Identity>,
    pub start_ms: i64,
    pub ring_ms: Option<i64>,
}

/// One change to the call's rows.
#[derive(Debug, Clone, PartialEq)]
pub enum RowWrite {
    Open(Vec<NewCallLog>),
    Ringing {
        user: Identity,
        at_ms: i64,
    },
    Connect {
        user: Identity,
        at_ms: i64,
    },
    FirstAudio {
        user: Identity,
        at_ms: i64,
    },
    /// The call's type or media changed: every row follows.
    Shape {
        call_type: CallType,
        media: Media,
    },
    Close {
        user: Identity,
        at_ms: i64,
        reason: EndReason,
        /// The member's own note as it left, else the note that ended the call.
        note: Option<String>,
    },
}

/// What the call's latest changes mean for its rows.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// To write now, in this order (rows are opened before anything else touches them).
    pub writes: Vec<RowWrite>,
    /// A member connected: its events wait until `writes` are committed (a connected call
    /// is billable, so a crash must not lose it).
    pub connects: bool,
    /// How long each callee that connected now took to answer after its phone rang.
    pub answered: Vec<Duration>,
    /// Members who left a call that goes on; they leave its media too.
    pub left_ongoing: Vec<Identity>,
}

#[derive(Debug)]
pub struct Ledger {
    /// The (type, media) the rows carry.
    shape: (CallType, Media),
    /// Each member's leg state as the rows last saw it.
    seen: HashMap<Identity, LegState>,
    rang_at: HashMap<Identity, Instant>,
    connect_logged: HashSet<Identity>,
    heard: HashSet<Identity>,
    /// Writes that follow the events being delivered (a `call_log` comes after
    /// `call_ended`; a ring after `call_incoming` reached a phone).
    after_events: Vec<RowWrite>,
}

impl Ledger {
    /// The rows a new call opens, as of `requested_at`. `busy` callees decline at once: they
    /// are seen as ringing, so the first step logs their departure.
    pub fn open(
        call: &Call,
        requested_at: Instant,
        busy: &HashSet<Identity>,
    ) -> (Self, Vec<NewCallLog>) {
        let rows = (0..call.legs().len())
            .map(|i| row(call, i, requested_at))
            .collect();
        let seen = call
            .legs()
            .iter()
            .map(|leg| {
                let state = if busy.contains(leg.user()) {
                    LegState::Ringing
                } else {
                    leg.state()
                };
                (leg.user().clone(), state)
            })
            .collect();
        let ledger = Self {
            shape: (call.call_type(), call.media()),
            seen,
            rang_at: HashMap::new(),
            connect_logged: HashSet::new(),
            heard: HashSet::new(),
            after_events: Vec::new(),
        };
        (ledger, rows)
    }

    /// What the call's changes since the last step mean for its rows; closes are held for
    /// [`Ledger::after_events`].
    pub fn step(&mut self, call: &Call, now: Instant) -> Step {
        let mut step = Step::default();
        let mut opened = Vec::new();
        let mut connects = Vec::new();
        for (i, leg) in call.legs().iter().enumerate() {
            let user = leg.user().clone();
            let state = leg.state();
            let prev = self.seen.insert(user.clone(), state);
            if prev.is_none() {
                opened.push(row(call, i, now));
            }
            if state == LegState::Connected
                && call.connected_at().is_some()
                && self.connect_logged.insert(user.clone())
            {
                let joined = leg.joined_at().unwrap_or(now);
                let at = call.connected_at().map_or(joined, |c| c.max(joined));
                if let (true, Some(rang)) = (i > 0, self.rang_at.get(&user)) {
                    step.answered.push(joined.saturating_duration_since(*rang));
                }
                step.connects = true;
                connects.push(RowWrite::Connect {
                    user: user.clone(),
                    at_ms: call.unix_ms(at),
                });
            }
            if state == LegState::Left && prev != Some(LegState::Left) {
                self.connect_logged.remove(&user);
                let (reason, at) = leg.left().unwrap_or((EndReason::Hangup, now));
                let note = leg.note().or(call.end_note()).map(str::to_string);
                self.after_events.push(RowWrite::Close {
                    user: user.clone(),
                    at_ms: call.unix_ms(at),
                    reason,
                    note,
                });
                if !call.is_ended() {
                    step.left_ongoing.push(user);
                }
            }
        }
        if !opened.is_empty() {
            step.writes.push(RowWrite::Open(opened));
        }
        let shape = (call.call_type(), call.media());
        if shape != self.shape {
            self.shape = shape;
            step.writes.push(RowWrite::Shape {
                call_type: shape.0,
                media: shape.1,
            });
        }
        step.writes.extend(connects);
        step
    }

    /// `callee`'s phone rang at `now` (its `call_incoming` reached a session): the time since
    /// `requested_at`, the first time only. The rows of the callee and of whoever invited it
    /// record the ring after the events.
    pub fn rang(
        &mut self,
        call: &Call,
        callee: &Identity,
        requested_at: Instant,
        now: Instant,
    ) -> Option<Duration> {
        // The first ring counts: a later one (another of the callee's devices) does not
        // restart the answer time.
        if self.rang_at.contains_key(callee) {
            return None;
        }
        self.rang_at.insert(callee.clone(), now);
        let at_ms = call.unix_ms(now);
        let mut users = vec![callee.clone()];
        if let Some(by) = call.leg(callee).and_then(|l| l.invited_by()) {
            users.push(by.clone());
        }
        for user in users {
            self.after_events.push(RowWrite::Ringing { user, at_ms });
        }
        Some(now.saturating_duration_since(requested_at))
    }

    /// `user` heard the call's first audio at `now`: the time since it was connected and the
    /// write, once per member, and only for a member that joined.
    pub fn first_audio(
        &mut self,
        call: &Call,
        user: &Identity,
        now: Instant,
    ) -> Option<(Duration, RowWrite)> {
        if !self.heard.insert(user.clone()) {
            return None;
        }
        let joined = call.leg(user).and_then(|l| l.joined_at())?;
        let since = call.connected_at().map_or(joined, |c| c.max(joined));
        let write = RowWrite::FirstAudio {
            user: user.clone(),
            at_ms: call.unix_ms(now),
        };
        Some((now.saturating_duration_since(since), write))
    }

    /// The writes that follow the events just delivered, in order.
    pub fn after_events(&mut self) -> std::vec::Drain<'_, RowWrite> {
        self.after_events.drain(..)
    }
}

/// The row the `i`th leg opens at `at`: the first leg is the caller's.
fn row(call: &Call, i: usize, at: Instant) -> NewCallLog {
    let legs = call.legs();
    let user = legs[i].user();
    NewCallLog {
        call_id: call.id().clone(),
        user: user.clone(),
        call_type: call.call_type(),
        media: call.media(),
        direction: if i == 0 {
            Direction::Outgoing
        } else {
            Direction::Incoming
        },
        peers: legs
            .iter()
            .map(|l| l.user())
            .filter(|u| *u != user)
            .cloned()
            .collect(),
        start_ms: call.unix_ms(at),
        ring_ms: None,
    }
}

#[cfg(test)]
mod tests;
