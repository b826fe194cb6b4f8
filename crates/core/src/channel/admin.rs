//! What the app's backend sees of a channel and does to it through the admin API: a summary
//! and the member list; mute one member or everyone on stage, change a role, send a message.
//! No member is the actor, so no role permission applies; what the members see is what a
//! moderator's action shows, marked `admin`.

use super::*;

impl Channel {
    /// What the admin API lists for the channel.
    pub fn summary(&self, now: Instant) -> ChannelSummary {
        ChannelSummary {
            channel: self.id.clone(),
            participants: self.members.len(),
            hosts: self.on_stage,
            audience_count: self.audience_count(),
            seq: self.seq,
            age_seconds: now.saturating_duration_since(self.created_at).as_secs(),
        }
    }

    /// Every member, sorted by identity.
    pub fn participants(&self) -> Vec<ParticipantInfo> {
        let mut list: Vec<_> = self.members.values().map(Member::info).collect();
        list.sort_by(|a, b| a.identity.cmp(&b.identity));
        list
    }

    /// The participant `identity` is in the channel as, or why not.
    pub fn participant_of(&self, identity: &Identity) -> Result<ParticipantId, ChannelError> {
        self.by_identity
            .get(identity)
            .cloned()
            .ok_or_else(|| ChannelError::not_found(format!("'{identity}' is not in the channel")))
    }

    /// Mutes (or unmutes) a member; like a moderator's mute, the member cannot lift it.
    pub fn admin_mute(&mut self, target: &ParticipantId, muted: bool) -> Result<(), ChannelError> {
        self.require_member(target)?;
        self.apply_mute(target, muted, None, true);
        Ok(())
    }

    /// Mutes (or unmutes) everyone on stage (Janus's `mute_room`); with `spare_moderators`,
    /// not those whose role moderates, so they can still speak to a room they quieted.
    /// Returns who changed.
    pub fn admin_mute_all(&mut self, muted: bool, spare_moderators: bool) -> Vec<ParticipantId> {
        let mut ids: Vec<ParticipantId> = self
            .members
            .values()
            .filter(|m| m.spec.publish && m.muted != muted)
            .filter(|m| !(spare_moderators && m.spec.moderate))
            .map(|m| m.id.clone())
            .collect();
        ids.sort();
        for id in &ids {
            self.apply_mute(id, muted, None, true);
        }
        ids
    }

    /// Gives a member a role of the table (the role's capacity still applies).
    pub fn admin_set_role(
        &mut self,
        target: &ParticipantId,
        role: &str,
    ) -> Result<(), ChannelError> {
        let (role_name, role_spec) = self.lookup_role(role)?;
        self.change_role(target, role_name, role_spec, None)
    }

    /// Sends a message from the app (`from` and `identity` null) to every member, or to the
    /// participants in `to`.
    pub fn admin_send(
        &mut self,
        kind: String,
        content: Value,
        mut to: Vec<ParticipantId>,
    ) -> Result<(), ChannelError> {
        if let Some(missing) = to.iter().find(|p| !self.members.contains_key(*p)) {
            return Err(ChannelError::not_found(format!(
                "participant '{missing}' is not in the channel"
            )));
        }
        to.sort();
        to.dedup();
        let target = if to.is_empty() {
            Target::everyone()
        } else {
            Target::List(to)
        };
        self.emit(
            target,
            &ChannelEvent::Message {
                from: None,
                identity: None,
                kind,
                content,
            },
        );
        Ok(())
    }
}
