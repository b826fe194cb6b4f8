//! `Call`: the state machine of one call, without IO or a clock of its own.
//!
//! Inputs take `now`; [`Call::drain`] yields what to send and [`Call::next_deadline`] says when
//! [`Call::timeout`] must run next (ring timeouts, reconnect graces, a pending media change).
//!
//! # When a call ends
//!
//! One rule covers 1:1 and group calls. A call goes on while
//! - at least two members are connected, or
//! - exactly one member is connected and at least one invitee is still ringing (the caller
//!   waiting for an answer, or the last member waiting for someone invited to help).
//!
//! Otherwise it ends, with the reason of the departure that broke the rule: `rejected`/`busy`
//! when the last ringing callee declines, `timeout` when it goes unanswered, `hangup` or
//! `disconnected` when a connected member leaves. So a 1:1 call ends for both sides on either
//! side's hangup, and a group call ends when its second-to-last member leaves with nobody ringing.
//!
//! One exception: the caller leaving before anyone answered ends the call for everyone, as
//! `canceled` when it hung up (or with its departure reason otherwise, e.g. `disconnected`).

mod group;
pub mod ledger;
mod leg;
mod media_change;
mod types;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ids::Identity;

pub use leg::Leg;
use types::PendingChange;
pub use types::{
    call_channel, channel_call, glare_winner, CallError, CallEvent, CallId, CallType, EndReason,
    LegState, Media, MediaChangeResult, Output, RejectReason, Survivor, TransactionId,
    CALL_CHANNEL_PREFIX, MAX_MEMBERS, NO_SUCH_CALL,
};

/// How long the other side has to answer a media change request, by default. A person reads
/// one prompt in that time, as they do for a ring; longer leaves the requester's screen hanging.
pub const MEDIA_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a new call needs.
#[derive(Debug, Clone)]
pub struct CallSetup {
    pub id: CallId,
    pub caller: Identity,
    pub callees: Vec<Identity>,
    pub media: Media,
    /// Opaque to the server, handed to invitees.
    pub extra: Value,
    pub ring_timeout: Duration,
    /// How long a connected member whose client dropped keeps its place.
    pub reconnect_grace: Duration,
    /// How long a media change request waits for its answer.
    pub media_change_timeout: Duration,
    /// The wall clock at `now` when the call is created. Every time the call reports is this
    /// plus monotonic time elapsed, so a wall-clock step mid-call cannot reorder its events.
    pub created_unix_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nobody has answered yet.
    Ringing,
    Connected,
    Ended(EndReason),
}

#[derive(Debug)]
pub struct Call {
    id: CallId,
    caller: Identity,
    call_type: CallType,
    media: Media,
    extra: Value,
    created_at: Instant,
    created_unix_ms: i64,
    ring_timeout: Duration,
    reconnect_grace: Duration,
    media_change_timeout: Duration,
    /// Index 0 is the caller. Members who left keep their leg, so the call log and a rejoin
    /// see their history; `MAX_MEMBERS` bounds the vector.
    legs: Vec<Leg>,
    connected_at: Option<Instant>,
    ended: Option<(EndReason, Instant)>,
    /// The note of the departure that ended the call.
    end_note: Option<String>,
    media_change: Option<PendingChange>,
    transactions: u64,
    seq: u64,
    outbox: Vec<Output>,
}

impl Call {
    pub fn new(setup: CallSetup, now: Instant) -> Result<Self, CallError> {
        let callees = dedup(setup.callees);
        if callees.is_empty() {
            return Err(CallError::Invalid(
                "a call needs at least one callee".into(),
            ));
        }
        if callees.contains(&setup.caller) {
            return Err(CallError::Invalid("a caller cannot call itself".into()));
        }
        if callees.len() + 1 > MAX_MEMBERS {
            return Err(CallError::TooManyMembers);
        }
        let mut caller = Leg::new(setup.caller.clone(), setup.media);
        caller.state = LegState::Connected;
        caller.joined_at = Some(now);
        let mut call = Self {
            id: setup.id,
            caller: setup.caller,
            call_type: if callees.len() == 1 {
                CallType::OneToOne
            } else {
                CallType::Group
            },
            media: setup.media,
            extra: setup.extra,
            created_at: now,
            created_unix_ms: setup.created_unix_ms,
            ring_timeout: setup.ring_timeout,
            reconnect_grace: setup.reconnect_grace,
            media_change_timeout: setup.media_change_timeout,
            legs: vec![caller],
            connected_at: None,
            ended: None,
            end_note: None,
            media_change: None,
            transactions: 0,
            seq: 0,
            outbox: Vec::new(),
        };
        let by = call.caller.clone();
        call.ring(&by, callees, now);
        Ok(call)
    }

    pub fn id(&self) -> &CallId {
        &self.id
    }

    pub fn caller(&self) -> &Identity {
        &self.caller
    }

    pub fn call_type(&self) -> CallType {
        self.call_type
    }

    pub fn media(&self) -> Media {
        self.media
    }

    pub fn extra(&self) -> &Value {
        &self.extra
    }

    pub fn phase(&self) -> Phase {
        match (self.ended, self.connected_at) {
            (Some((reason, _)), _) => Phase::Ended(reason),
            (None, Some(_)) => Phase::Connected,
            (None, None) => Phase::Ringing,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.ended.is_some()
    }

    pub fn connected_at(&self) -> Option<Instant> {
        self.connected_at
    }

    /// The note of the member whose reject or hangup ended the call.
    pub fn end_note(&self) -> Option<&str> {
        self.end_note.as_deref()
    }

    pub fn ended_at(&self) -> Option<Instant> {
        self.ended.map(|(_, at)| at)
    }

    /// Every member ever invited, the caller first, including those who left.
    pub fn legs(&self) -> &[Leg] {
        &self.legs
    }

    pub fn leg(&self, user: &Identity) -> Option<&Leg> {
        self.legs.iter().find(|l| &l.user == user)
    }

    /// Whether `user` is ringing or connected here (for busy detection).
    pub fn is_present(&self, user: &Identity) -> bool {
        self.leg(user).is_some_and(Leg::present)
    }

    /// `at` on the wall clock, in unix ms, anchored at creation.
    pub fn unix_ms(&self, at: Instant) -> i64 {
        let elapsed = at.saturating_duration_since(self.created_at).as_millis();
        self.created_unix_ms
            .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.outbox.drain(..)
    }

    /// When [`Call::timeout`] must run next; `None` once the call has ended.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.is_ended() {
            return None;
        }
        let legs = self
            .legs
            .iter()
            .flat_map(|l| [l.ring_deadline, l.grace_deadline])
            .flatten();
        let change = self.media_change.as_ref().map(|c| c.deadline);
        legs.chain(change).min()
    }

    /// Answers the call. `media` defaults to the call's; an audio call cannot be taken as video.
    pub fn accept(
        &mut self,
        user: &Identity,
        media: Option<Media>,
        now: Instant,
    ) -> Result<(), CallError> {
        self.ensure_live()?;
        let i = self.index(user)?;
        match self.legs[i].state {
            LegState::Ringing => {}
            LegState::Connected => return Err(CallError::WrongState("already in the call")),
            LegState::Left => return Err(CallError::WrongState("no longer invited to the call")),
        }
        let media = media.unwrap_or(self.media);
        if self.media == Media::Audio && media == Media::Video {
            return Err(CallError::MediaNotAllowed);
        }
        self.connect_leg(i, media, now);
        Ok(())
    }

    /// A ringing callee declines. In a 1:1 call that ends the call for the caller.
    pub fn reject(
        &mut self,
        user: &Identity,
        reason: RejectReason,
        now: Instant,
    ) -> Result<(), CallError> {
        self.reject_with_note(user, reason, None, now)
    }

    /// [`Call::reject`] with a note for the others, carried by the events it causes.
    pub fn reject_with_note(
        &mut self,
        user: &Identity,
        reason: RejectReason,
        note: Option<String>,
        now: Instant,
    ) -> Result<(), CallError> {
        self.ensure_live()?;
        let i = self.index(user)?;
        if self.legs[i].state != LegState::Ringing {
            return Err(CallError::WrongState("only a ringing call can be rejected"));
        }
        self.legs[i].note = note;
        self.depart(i, reason.into(), now);
        Ok(())
    }

    /// A member leaves. The caller of an unanswered call cancels it; a ringing callee that
    /// hangs up rejects. `reason` is a departure reason ([`EndReason::is_departure`]):
    /// `hangup` from a user, the others from the server on the user's behalf.
    pub fn hangup(
        &mut self,
        user: &Identity,
        reason: EndReason,
        now: Instant,
    ) -> Result<(), CallError> {
        self.hangup_with_note(user, reason, None, now)
    }

    /// [`Call::hangup`] with a note for the others, carried by the events it causes.
    pub fn hangup_with_note(
        &mut self,
        user: &Identity,
        reason: EndReason,
        note: Option<String>,
        now: Instant,
    ) -> Result<(), CallError> {
        if !reason.is_departure() {
            return Err(CallError::Invalid(format!(
                "{reason} is not a reason to leave a call"
            )));
        }
        self.ensure_live()?;
        let i = self.index(user)?;
        let reason = match self.legs[i].state {
            LegState::Left => return Err(CallError::WrongState("already left the call")),
            LegState::Ringing if reason == EndReason::Hangup => EndReason::Rejected,
            LegState::Connected if i == 0 && self.connected_at.is_none() => {
                if reason == EndReason::Hangup {
                    EndReason::Canceled
                } else {
                    reason
                }
            }
            _ => reason,
        };
        self.legs[i].note = note;
        self.depart(i, reason, now);
        Ok(())
    }

    /// Ends the call for everyone, whatever its state: glare (`replaced`), shutdown
    /// (`server_restart`), an operator. A no-op on an ended call.
    pub fn terminate(&mut self, reason: EndReason, now: Instant) {
        if !self.is_ended() {
            self.end(reason, None, now);
        }
    }

    /// A connected member's client dropped. It keeps its place for the reconnect grace; a
    /// ringing callee keeps ringing (its other devices, or a push, may still answer).
    pub fn disconnect(&mut self, user: &Identity, now: Instant) -> Result<(), CallError> {
        self.ensure_live()?;
        let i = self.index(user)?;
        let leg = &mut self.legs[i];
        match leg.state {
            LegState::Left => return Err(CallError::WrongState("already left the call")),
            LegState::Ringing => return Ok(()),
            LegState::Connected if leg.grace_deadline.is_some() => return Ok(()),
            LegState::Connected => {}
        }
        leg.grace_deadline = Some(now + self.reconnect_grace);
        // The dropped client cannot hear about its own drop.
        self.emit_state(i, false);
        Ok(())
    }

    /// A member's client is back within the grace.
    pub fn reconnect(&mut self, user: &Identity) -> Result<(), CallError> {
        self.ensure_live()?;
        let i = self.index(user)?;
        let leg = &mut self.legs[i];
        if leg.state == LegState::Left {
            return Err(CallError::WrongState("the reconnect grace is over"));
        }
        if leg.grace_deadline.take().is_some() {
            self.emit_state(i, true);
        }
        Ok(())
    }

    /// Fires every timer due at `now`: unanswered invitations become missed, members past
    /// their reconnect grace leave as `disconnected`, a pending media change times out.
    pub fn timeout(&mut self, now: Instant) {
        for i in 0..self.legs.len() {
            if self.is_ended() {
                return;
            }
            let leg = &self.legs[i];
            if leg.ring_deadline.is_some_and(|d| d <= now) {
                let mut to = vec![leg.user.clone()];
                to.extend(leg.invited_by.clone());
                let user = leg.user.clone();
                self.emit(to, CallEvent::Missed { user });
                self.depart(i, EndReason::Timeout, now);
            } else if leg.grace_deadline.is_some_and(|d| d <= now) {
                self.depart(i, EndReason::Disconnected, now);
            }
        }
        if self
            .media_change
            .as_ref()
            .is_some_and(|c| c.deadline <= now)
        {
            self.resolve_media_change(MediaChangeResult::Timeout);
        }
    }

    fn connect_leg(&mut self, i: usize, media: Media, now: Instant) {
        let leg = &mut self.legs[i];
        leg.state = LegState::Connected;
        leg.media = media;
        leg.joined_at = Some(now);
        leg.ring_deadline = None;
        leg.grace_deadline = None;
        leg.left = None;
        leg.note = None;
        self.emit_state(i, true);
        let newly: Vec<Identity> = match self.connected_at {
            Some(_) => vec![self.legs[i].user.clone()],
            None => {
                self.connected_at = Some(now);
                if self.call_type == CallType::OneToOne {
                    // Taking a video call as audio makes it an audio call for both.
                    self.media = media;
                    self.legs[0].media = media;
                }
                self.legs
                    .iter()
                    .filter(|l| l.state == LegState::Connected)
                    .map(|l| l.user.clone())
                    .collect()
            }
        };
        let start_time = self.connected_at.map_or(0, |at| self.unix_ms(at));
        self.emit(
            newly,
            CallEvent::Connected {
                start_time,
                media: self.media,
            },
        );
    }

    /// Member `i` leaves with `reason`; the call ends if the module-level rule says so.
    fn depart(&mut self, i: usize, reason: EndReason, now: Instant) {
        let caller_gave_up = i == 0 && self.connected_at.is_none();
        let leg = &mut self.legs[i];
        leg.state = LegState::Left;
        leg.left = Some((reason, now));
        leg.ring_deadline = None;
        leg.grace_deadline = None;
        let user = leg.user.clone();
        if caller_gave_up || !self.sustainable() {
            self.end(reason, Some(user), now);
        } else {
            self.emit_state(i, true);
        }
    }

    fn sustainable(&self) -> bool {
        let count = |s| self.legs.iter().filter(|l| l.state == s).count();
        let connected = count(LegState::Connected);
        connected >= 2 || (connected == 1 && count(LegState::Ringing) >= 1)
    }

    /// Ends the call. Everyone still present leaves with `reason`; they and `leaver` (whose
    /// departure ended it, and whose other devices need to hear) get `call_ended`.
    fn end(&mut self, reason: EndReason, leaver: Option<Identity>, now: Instant) {
        let note = leaver
            .as_ref()
            .and_then(|u| self.leg(u))
            .and_then(|l| l.note.clone());
        let mut to: Vec<Identity> = leaver.into_iter().collect();
        for leg in self.legs.iter_mut().filter(|l| l.present()) {
            to.push(leg.user.clone());
            leg.state = LegState::Left;
            leg.left = Some((reason, now));
            leg.ring_deadline = None;
            leg.grace_deadline = None;
        }
        self.ended = Some((reason, now));
        self.media_change = None;
        self.end_note = note.clone();
        self.emit(to, CallEvent::Ended { reason, note });
    }

    /// Tells everyone present member `i`'s state. The member itself is told too when
    /// `tell_member` (so its other devices follow: stop ringing once it answered elsewhere).
    fn emit_state(&mut self, i: usize, tell_member: bool) {
        let leg = &self.legs[i];
        let mut to = self.present();
        to.retain(|u| u != &leg.user);
        if tell_member {
            to.push(leg.user.clone());
        }
        let event = CallEvent::ParticipantState {
            user: leg.user.clone(),
            state: leg.state,
            reason: leg.left.map(|(r, _)| r),
            reconnecting: leg.reconnecting(),
            note: (leg.state == LegState::Left)
                .then(|| leg.note.clone())
                .flatten(),
        };
        self.emit(to, event);
    }

    fn present(&self) -> Vec<Identity> {
        self.legs
            .iter()
            .filter(|l| l.present())
            .map(|l| l.user.clone())
            .collect()
    }

    fn emit(&mut self, to: Vec<Identity>, event: CallEvent) {
        if to.is_empty() {
            return;
        }
        self.seq += 1;
        self.outbox.push(Output {
            seq: self.seq,
            to,
            event,
        });
    }

    fn ensure_live(&self) -> Result<(), CallError> {
        if self.is_ended() {
            Err(CallError::WrongState("the call has ended"))
        } else {
            Ok(())
        }
    }

    fn index(&self, user: &Identity) -> Result<usize, CallError> {
        self.legs
            .iter()
            .position(|l| &l.user == user)
            .ok_or_else(|| CallError::NotInCall(user.clone()))
    }
}

/// Keeps the first occurrence of each identity, in order.
fn dedup(users: Vec<Identity>) -> Vec<Identity> {
    let mut out: Vec<Identity> = Vec::with_capacity(users.len());
    for u in users {
        if !out.contains(&u) {
            out.push(u);
        }
    }
    out
}
