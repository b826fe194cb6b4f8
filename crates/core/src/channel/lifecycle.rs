//! How members go and how a channel ends: leave, drop, stop, end.

use super::*;

impl Channel {
    /// A member asks to leave; it gets a reply, the others `participant_left` with `left`.
    pub fn leave(
        &mut self,
        now: Instant,
        participant: &ParticipantId,
        request: Option<u64>,
    ) -> Result<(), ChannelError> {
        self.require_member(participant)?;
        self.reply_ok(participant, request);
        self.remove(now, participant, LeaveReason::Left, None, false);
        Ok(())
    }

    /// A member is gone without asking (connection lost, too slow): no reply, no `left`.
    pub fn drop_member(&mut self, now: Instant, participant: &ParticipantId) {
        if self.members.contains_key(participant) {
            self.remove(now, participant, LeaveReason::Disconnected, None, false);
        }
    }

    pub fn stop(
        &mut self,
        now: Instant,
        participant: &ParticipantId,
        request: Option<u64>,
    ) -> Result<(), ChannelError> {
        let m = self.require_member(participant)?;
        if !m.spec.stop {
            return Err(ChannelError::forbidden(format!(
                "the role '{}' cannot stop the channel",
                m.role
            )));
        }
        self.reply_ok(participant, request);
        self.end(now, LeaveReason::ChannelStopped, Some(participant.clone()));
        Ok(())
    }

    /// Ends the channel for everyone (admin stop, server shutdown).
    pub fn end(&mut self, now: Instant, reason: LeaveReason, spared: Option<ParticipantId>) {
        if self.closed {
            return;
        }
        self.seq += 1;
        let frame = protocol::channel_event(
            &self.id,
            self.seq,
            &ChannelEvent::Left {
                reason,
                message: None,
            },
        );
        let ids: Vec<ParticipantId> = self.members.keys().cloned().collect();
        for (role, n) in self.role_counts.drain() {
            self.outbox.push(Output::Members {
                role,
                delta: -(n as i64),
            });
        }
        for id in ids {
            if spared.as_ref() != Some(&id) {
                self.outbox.push(Output::Send {
                    to: Target::One(id.clone()),
                    frame: frame.clone(),
                });
            }
            self.outbox.push(Output::Detach(id));
        }
        self.members.clear();
        self.by_identity.clear();
        self.privileged.clear();
        self.on_stage = 0;
        self.empty_since = Some(now);
        self.close(serde_json::json!(reason));
    }

    /// `reason`: a leave reason (the channel was ended), or `empty` (its last member left and
    /// the grace ran out).
    pub(super) fn close(&mut self, reason: Value) {
        self.end_streams();
        self.closed = true;
        self.webhook(
            "channel_stopped",
            serde_json::json!({"reason": reason, "channel_seq": self.seq}),
        );
        self.outbox.push(Output::Close);
    }

    /// A webhook about this channel; `channel_seq` in `data` is the `seq` of the channel event
    /// it reports, so an app's backend can line it up with what members saw.
    pub(super) fn webhook(&mut self, kind: &'static str, data: Value) {
        self.outbox.push(Output::Webhook { kind, data });
    }
}
