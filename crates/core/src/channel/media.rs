//! What the media plane needs from a channel: permissions, publishers, speakers and levels.

use super::*;

impl Channel {
    /// Whether `participant` may send and receive audio.
    pub fn media_permissions(&self, participant: &ParticipantId) -> Result<&Member, ApiError> {
        let m = self.require_member(participant)?;
        if !m.spec.publish && !m.spec.subscribe {
            return Err(ApiError::forbidden(format!(
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
        on_stage
            .into_iter()
            .map(|m| Publisher {
                key: crate::peer::peer_key(&m.id),
                participant: m.id.clone(),
                identity: m.identity.clone(),
                muted: m.muted || m.paused.is_some(),
            })
            .collect()
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
        let everyone = Target::Group {
            everyone: true,
            also: None,
            except: None,
        };
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
