//! What members do to each other and to themselves: roles, mutes, kicks, pauses, messages.

use super::*;

impl Channel {
    pub fn set_role(
        &mut self,
        actor: &ParticipantId,
        request: Option<u64>,
        target: Option<&ParticipantId>,
        role: &str,
    ) -> Result<(), ChannelError> {
        let me = self.require_member(actor)?;
        let target_id = target.unwrap_or(actor).clone();
        let (role_name, role_spec) = self.lookup_role(role)?;
        if &target_id != actor {
            if !me.spec.moderate {
                return Err(ChannelError::forbidden(format!(
                    "the role '{}' cannot change other participants' roles",
                    me.role
                )));
            }
        } else {
            let stepping_down = role_spec.is_subset_of(&me.spec);
            let by_itself = me.may_take(role, &self.settings.default_role)
                && (role_spec.self_assign || me.spec.moderate);
            if !stepping_down && !by_itself {
                return Err(ChannelError::forbidden(format!(
                    "the role '{role}' must be granted by a moderator; send request_role to ask"
                )));
            }
        }
        self.change_role(&target_id, role_name, role_spec, Some((actor, request)))
    }

    /// Gives `target_id` the role; `reply`: the requester to answer once it is allowed.
    pub(super) fn change_role(
        &mut self,
        target_id: &ParticipantId,
        role_name: RoleName,
        role_spec: RoleSpec,
        reply: Option<(&ParticipantId, Option<u64>)>,
    ) -> Result<(), ChannelError> {
        let target_id = target_id.clone();
        let target = self.require_member(&target_id)?;
        let permissions_changed = target.spec.publish != role_spec.publish
            || target.spec.subscribe != role_spec.subscribe;
        if target.role == role_name {
            if let Some((actor, request)) = reply {
                self.reply_ok(actor, request);
            }
            return Ok(());
        }
        self.check_role_capacity(&role_name, &role_spec, 0)?;
        let old_stage = target.spec.publish;
        let mut member = self.take(&target_id);
        member.role = role_name.clone();
        member.spec = role_spec;
        let new_stage = member.spec.publish;
        let identity = member.identity.clone();
        let (publish, subscribe) = (member.spec.publish, member.spec.subscribe);
        self.insert(member);
        if let Some((actor, request)) = reply {
            self.reply_ok(actor, request);
        }
        if permissions_changed {
            self.outbox.push(Output::Permissions {
                participant: target_id.clone(),
                publish,
                subscribe,
            });
        }
        self.emit(
            Target::Group {
                everyone: old_stage || new_stage,
                also: Some(target_id.clone()),
                except: None,
            },
            &ChannelEvent::RoleChanged {
                participant: target_id.clone(),
                identity: identity.clone(),
                role: role_name.clone(),
            },
        );
        self.webhook(
            "role_changed",
            serde_json::json!({"participant": target_id, "identity": identity,
                "role": role_name, "channel_seq": self.seq}),
        );
        Ok(())
    }

    /// Raise hand: asks the moderators for a role.
    pub fn request_role(
        &mut self,
        actor: &ParticipantId,
        request: Option<u64>,
        role: &str,
    ) -> Result<(), ChannelError> {
        let (role_name, _) = self.lookup_role(role)?;
        let me = self.require_member(actor)?;
        let identity = me.identity.clone();
        if !self.members.values().any(|m| m.spec.moderate) {
            return Err(ChannelError::not_found(
                "no moderator is in the channel to grant the role",
            ));
        }
        self.reply_ok(actor, request);
        self.emit(
            Target::Moderators,
            &ChannelEvent::RoleRequested {
                participant: actor.clone(),
                identity,
                role: role_name,
            },
        );
        Ok(())
    }

    pub fn mute(
        &mut self,
        actor: &ParticipantId,
        request: Option<u64>,
        target: Option<&ParticipantId>,
        muted: bool,
    ) -> Result<(), ChannelError> {
        let me = self.require_member(actor)?;
        let target_id = target.unwrap_or(actor).clone();
        let by_moderator = &target_id != actor;
        if by_moderator && !me.spec.moderate {
            return Err(ChannelError::forbidden(format!(
                "the role '{}' cannot mute other participants",
                me.role
            )));
        }
        let target = self.require_member(&target_id)?;
        if !by_moderator && !muted && target.muted_by_moderator && !target.spec.moderate {
            return Err(ChannelError::forbidden(
                "a moderator muted you; only a moderator can unmute you",
            ));
        }
        let by = by_moderator.then(|| actor.clone());
        self.reply_ok(actor, request);
        self.apply_mute(&target_id, muted, by, false);
        Ok(())
    }

    /// Sets a member's mute and tells the channel; a mute by a moderator (`by`) or the admin
    /// API (`admin`) is one the member cannot lift itself.
    pub(super) fn apply_mute(
        &mut self,
        target_id: &ParticipantId,
        muted: bool,
        by: Option<ParticipantId>,
        admin: bool,
    ) {
        let Some(m) = self.members.get_mut(target_id) else {
            return;
        };
        if m.muted == muted {
            return;
        }
        m.muted = muted;
        m.muted_by_moderator = muted && (by.is_some() || admin);
        let stage = m.spec.publish;
        self.emit(
            Target::Group {
                everyone: stage,
                also: Some(target_id.clone()),
                except: None,
            },
            &ChannelEvent::MuteChanged {
                participant: target_id.clone(),
                muted,
                by,
                admin,
            },
        );
    }

    pub fn kick(
        &mut self,
        now: Instant,
        actor: Option<&ParticipantId>,
        request: Option<u64>,
        target: &ParticipantId,
        message: Option<String>,
    ) -> Result<(), ChannelError> {
        if let Some(actor) = actor {
            let me = self.require_member(actor)?;
            if !me.spec.moderate {
                return Err(ChannelError::forbidden(format!(
                    "the role '{}' cannot kick participants",
                    me.role
                )));
            }
            if actor == target {
                return Err(ChannelError::invalid("use leave to leave the channel"));
            }
        }
        let kicked = self.require_member(target)?;
        let ban = Output::Ban {
            identity: kicked.identity.clone(),
            token_expires_s: kicked.token_expires_s,
        };
        if let Some(actor) = actor {
            self.reply_ok(actor, request);
        }
        // Kept out before it is out: a rejoin racing the kick finds the ban.
        self.outbox.push(ban);
        self.remove(now, target, LeaveReason::Kicked, message, true);
        Ok(())
    }

    /// A moderator lets a kicked identity back in.
    pub fn unban(
        &mut self,
        actor: &ParticipantId,
        request: Option<u64>,
        identity: Identity,
    ) -> Result<(), ChannelError> {
        let me = self.require_member(actor)?;
        if !me.spec.moderate {
            return Err(ChannelError::forbidden(format!(
                "the role '{}' cannot let kicked members back in",
                me.role
            )));
        }
        self.reply_ok(actor, request);
        self.outbox.push(Output::Unban { identity });
        Ok(())
    }

    /// Pauses (or resumes) the publishing of the member with `identity`, announced to the
    /// channel: its host is in a call taken from this channel (`call_id`).
    pub fn pause_publisher(&mut self, identity: &Identity, paused: bool, call_id: String) {
        let Some(id) = self.by_identity.get(identity).cloned() else {
            return;
        };
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        if m.paused.is_some() == paused || (paused && !m.spec.publish) {
            return;
        }
        m.paused = paused.then(|| call_id.clone());
        self.emit(
            Target::everyone(),
            &ChannelEvent::PublishingPaused {
                participant: id,
                identity: identity.clone(),
                paused,
                call_id,
            },
        );
    }

    pub fn kick_identity(
        &mut self,
        now: Instant,
        identity: &Identity,
    ) -> Result<ParticipantId, ChannelError> {
        let id = self.by_identity.get(identity).cloned().ok_or_else(|| {
            ChannelError::not_found(format!("'{identity}' is not in the channel"))
        })?;
        self.kick(now, None, None, &id, None)?;
        Ok(id)
    }

    pub fn send(
        &mut self,
        actor: &ParticipantId,
        request: Option<u64>,
        kind: String,
        content: Value,
        to: Vec<ParticipantId>,
    ) -> Result<(), ChannelError> {
        let me = self.require_member(actor)?;
        if !me.spec.send_messages {
            return Err(ChannelError::forbidden(format!(
                "the role '{}' cannot send messages",
                me.role
            )));
        }
        if let Some(missing) = to.iter().find(|p| !self.members.contains_key(*p)) {
            return Err(ChannelError::not_found(format!(
                "participant '{missing}' is not in the channel"
            )));
        }
        let identity = me.identity.clone();
        let mut to = to;
        to.sort();
        to.dedup();
        let target = if to.is_empty() {
            Target::Group {
                everyone: true,
                also: None,
                except: Some(actor.clone()),
            }
        } else {
            Target::List(to)
        };
        self.reply_ok(actor, request);
        self.emit(
            target,
            &ChannelEvent::Message {
                from: Some(actor.clone()),
                identity: Some(identity),
                kind,
                content,
            },
        );
        Ok(())
    }
}
