//! What the media plane needs from a channel: permissions, publishers, speakers and levels.

use super::*;

impl Channel {
    /// Whether `participant` may send and receive audio.
    pub fn media_permissions(&self, participant: &ParticipantId) -> Result<&Member, ChannelError> {
        let m = self.require_member(participant)?;
        if !m.spec.publish && !m.spec.subscribe {
            return Err(ChannelError::forbidden(format!(
                "the role '{}' neither sends nor receives audio",
                m.role
            )));
        }
        Ok(m)
    }

    pub fn can_publish(m: &Member) -> bool {
        m.spec.publish
    }

    pub fn can_subscribe(m: &Member) -> bool {
        m.spec.subscribe
    }

    /// On-stage members in join order: what the media workers route.
    pub fn publishers(&self) -> Vec<Publisher> {
        let mut on_stage: Vec<&Member> = self.members.values().filter(|m| m.spec.publish).collect();
        on_stage.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then(a.id.cmp(&b.id)));
        let mut publishers: Vec<Publisher> = on_stage
            .into_iter()
            .map(|m| Publisher {
                key: crate::peer::peer_key(&m.id),
                participant: m.id.clone(),
                identity: m.identity.clone(),
                muted: m.muted || m.paused.is_some(),
                gain_permille: m.gain_permille,
            })
            .collect();
        // A file playing into the channel speaks last.
        if let Some(p) = &self.playback {
            publishers.push(Publisher {
                key: crate::peer::peer_key(&p.participant),
                participant: p.participant.clone(),
                identity: p.identity.clone(),
                muted: false,
                gain_permille: 1000,
            });
        }
        publishers
    }

    pub fn mix_policy(&self) -> MixPolicy {
        self.mix_policy
    }

    /// Whether the channel mixes now: by policy, or under `auto` by how many speakers are
    /// unmuted.
    pub fn mixing(&self) -> bool {
        match self.mix_policy {
            MixPolicy::Forward => false,
            MixPolicy::Mix => true,
            MixPolicy::Auto => {
                let unmuted = self
                    .members
                    .values()
                    .filter(|m| m.spec.publish && !m.muted && m.paused.is_none())
                    .count()
                    + usize::from(self.playback.is_some());
                unmuted > self.settings.mix_auto_above
            }
        }
    }

    /// Sets the mix policy (`stop` or `moderate` permission).
    pub fn set_mix(
        &mut self,
        actor: &ParticipantId,
        request: Option<u64>,
        policy: MixPolicy,
    ) -> Result<(), ChannelError> {
        let me = self.require_member(actor)?;
        if !me.spec.stop && !me.spec.moderate {
            return Err(ChannelError::forbidden(format!(
                "the role '{}' cannot change how the channel is mixed",
                me.role
            )));
        }
        self.reply_ok(actor, request);
        self.apply_mix(policy);
        Ok(())
    }

    /// Sets the mix policy for the server's operator (the admin API): no member asks.
    pub fn set_mix_admin(&mut self, policy: MixPolicy) {
        self.apply_mix(policy);
    }

    fn apply_mix(&mut self, policy: MixPolicy) {
        if self.mix_policy != policy && !self.closed {
            self.mix_policy = policy;
            self.announce_mix();
        }
    }

    /// What the media plane does with speakers' audio now: whether the channel mixes, whether
    /// its mixer runs (also for members that asked for the mix in a forwarding channel), and
    /// whether speakers' own streams are forwarded (also to members that asked for them in a
    /// mixing channel).
    pub fn mixdown(&self) -> Mixdown {
        let mixing = self.mixing();
        let listening = || self.members.values().filter(|m| m.spec.subscribe);
        Mixdown {
            mixing,
            // A recording is of the mix: the mixer runs for it too.
            mixer: mixing
                || self.recording.is_some()
                || listening().any(|m| m.audio == AudioMode::Mixed),
            forward: !mixing || listening().any(|m| m.audio == AudioMode::Forwarded),
        }
    }

    /// What the requester receives from now on.
    pub fn set_audio(
        &mut self,
        actor: &ParticipantId,
        request: Option<u64>,
        audio: AudioMode,
    ) -> Result<(), ChannelError> {
        self.require_member(actor)?;
        let m = self.members.get_mut(actor).expect("checked above");
        let changed = m.audio != audio;
        m.audio = audio;
        self.reply_ok(actor, request);
        if changed {
            self.outbox.push(Output::Audio {
                participant: actor.clone(),
                audio,
            });
        }
        Ok(())
    }

    /// A moderator's volume for one member in the mix (0.0–2.0; 1.0 unchanged).
    pub fn set_volume(
        &mut self,
        actor: &ParticipantId,
        request: Option<u64>,
        target: &ParticipantId,
        gain: f64,
    ) -> Result<(), ChannelError> {
        let me = self.require_member(actor)?;
        if !me.spec.moderate {
            return Err(ChannelError::forbidden(format!(
                "the role '{}' cannot set others' volume",
                me.role
            )));
        }
        if !gain.is_finite() || !(0.0..=2.0).contains(&gain) {
            return Err(ChannelError::invalid(format!(
                "gain is {gain}; it goes from 0.0 (silent) to 2.0, 1.0 leaves the level as it is"
            )));
        }
        self.require_member(target)?;
        let m = self.members.get_mut(target).expect("checked above");
        m.gain_permille = (gain * 1000.0).round() as u16;
        self.reply_ok(actor, request);
        Ok(())
    }

    /// Tells everyone when the channel started or stopped mixing (under `auto`, a speaker
    /// unmuting can do it); the actor calls it after every change.
    pub fn sync_mixing(&mut self) {
        if self.mixing() != self.announced_mixing && !self.closed {
            self.announce_mix();
        }
    }

    fn announce_mix(&mut self) {
        let mixing = self.mixing();
        self.announced_mixing = mixing;
        self.emit(
            Target::everyone(),
            &ChannelEvent::MixChanged {
                policy: self.mix_policy,
                mixing,
            },
        );
    }

    /// Tells one member who is speaking now (a late joiner would otherwise wait for a change).
    pub fn tell_active_speaker(&mut self, to: &ParticipantId, speaker: ParticipantId) {
        self.emit(
            Target::One(to.clone()),
            &ChannelEvent::ActiveSpeaker {
                participant: Some(speaker),
            },
        );
    }

    /// Speaking events to everyone (bounded in rate by the caller's `Levels`).
    pub fn announce_levels(&mut self, a: crate::levels::Announce) {
        let everyone = Target::everyone();
        if let Some(participant) = a.active_speaker {
            self.emit(
                everyone.clone(),
                &ChannelEvent::ActiveSpeaker { participant },
            );
        }
        if let Some((speakers, total_volume)) = a.levels {
            self.emit(
                everyone,
                &ChannelEvent::AudioLevels {
                    speakers,
                    total_volume,
                },
            );
        }
    }
}
