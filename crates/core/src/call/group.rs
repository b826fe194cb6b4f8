//! Growing a call: invitations (a 1:1 call becomes a group call) and joining a group call.

use std::time::Instant;

use super::{
    dedup, Call, CallError, CallEvent, CallType, Leg, LegState, MediaChangeResult, MAX_MEMBERS,
};
use crate::ids::Identity;

impl Call {
    /// A connected member invites more users; a 1:1 call becomes a group call. Users already
    /// ringing or connected are skipped; users who left are invited again. Returns those
    /// actually invited. Busy users are for the caller of this method to filter out.
    pub fn invite(
        &mut self,
        by: &Identity,
        callees: Vec<Identity>,
        now: Instant,
    ) -> Result<Vec<Identity>, CallError> {
        self.ensure_live()?;
        let i = self.index(by)?;
        if self.legs[i].state != LegState::Connected {
            return Err(CallError::NotPermitted(
                "only a connected member can invite others",
            ));
        }
        if self.connected_at.is_none() {
            return Err(CallError::WrongState(
                "users can be invited once the call is connected",
            ));
        }
        let fresh: Vec<Identity> = dedup(callees)
            .into_iter()
            .filter(|u| !self.is_present(u))
            .collect();
        let new_legs = fresh.iter().filter(|u| self.leg(u).is_none()).count();
        if self.legs.len() + new_legs > MAX_MEMBERS {
            return Err(CallError::TooManyMembers);
        }
        if fresh.is_empty() {
            return Ok(fresh);
        }
        if self.call_type == CallType::OneToOne {
            self.call_type = CallType::Group;
            // The handshake is defined between two people only.
            self.resolve_media_change(MediaChangeResult::Canceled);
            let to = self.present();
            self.emit(
                to,
                CallEvent::TypeChanged {
                    call_type: CallType::Group,
                },
            );
        }
        let by = by.clone();
        self.ring(&by, fresh.clone(), now);
        Ok(fresh)
    }

    /// Enters a group call: answers it while ringing, or comes back after leaving. Only users
    /// invited at some point may join.
    pub fn join(&mut self, user: &Identity, now: Instant) -> Result<(), CallError> {
        self.ensure_live()?;
        let i = self.index(user)?;
        if self.call_type != CallType::Group {
            return Err(CallError::WrongState("only a group call can be joined"));
        }
        if self.legs[i].state == LegState::Connected {
            return Err(CallError::WrongState("already in the call"));
        }
        self.connect_leg(i, self.media, now);
        Ok(())
    }

    /// Invites `callees` (none of them present) on behalf of `by`.
    pub(super) fn ring(&mut self, by: &Identity, callees: Vec<Identity>, now: Instant) {
        let others = self.present();
        for user in &callees {
            let mut leg = Leg::new(user.clone(), self.media);
            leg.invited_by = Some(by.clone());
            leg.ring_deadline = Some(now + self.ring_timeout);
            // Someone invited again starts afresh in the slot of their earlier leg.
            match self.legs.iter().position(|l| &l.user == user) {
                Some(i) => self.legs[i] = leg,
                None => self.legs.push(leg),
            }
        }
        let members = self.present();
        for user in &callees {
            self.emit(
                vec![user.clone()],
                CallEvent::Incoming {
                    caller: self.caller.clone(),
                    invited_by: by.clone(),
                    members: members.clone(),
                    call_type: self.call_type,
                    media: self.media,
                    extra: self.extra.clone(),
                },
            );
        }
        self.emit(
            vec![by.clone()],
            CallEvent::Ringing {
                callees: callees.clone(),
            },
        );
        // Members already in the call learn who is being rung; the caller of a new call
        // knows from `call_ringing`.
        let watchers: Vec<Identity> = others.into_iter().filter(|u| u != by).collect();
        for user in &callees {
            self.emit(
                watchers.clone(),
                CallEvent::ParticipantState {
                    user: user.clone(),
                    state: LegState::Ringing,
                    reason: None,
                    reconnecting: false,
                    note: None,
                },
            );
        }
    }
}
