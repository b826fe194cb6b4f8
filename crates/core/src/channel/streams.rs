//! The channel's mix as a stream: a recording of it, and a file played into it as a speaker.
//! The channel keeps what is going on and announces it (to members, and by webhook); the
//! media plane does the work and reports how it ended.

use super::*;
use crate::protocol::StreamEnd;

/// The channel's mix being recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub file: String,
    pub started: Instant,
    /// Why it is being stopped, once someone asked (the media plane reports the end).
    stopping: Option<StreamEnd>,
}

/// A file playing into the channel as a speaker that is not a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playback {
    pub file: String,
    pub participant: ParticipantId,
    pub identity: Identity,
    pub started: Instant,
}

/// The `recording_stopped` webhook's data; also sent by the shell for a recording that ends
/// after its channel did.
pub fn recording_stopped(file: &str, reason: StreamEnd, end: RecordingEnd) -> Value {
    serde_json::json!({
        "file": file,
        "reason": reason,
        "bytes": end.bytes,
        "duration_ms": end.duration_ms,
    })
}

/// How a recording ended, as the media plane saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingEnd {
    /// `Limit` or `Error` when the recorder itself stopped; otherwise whoever asked says why.
    pub reason: Option<StreamEnd>,
    pub bytes: u64,
    pub duration_ms: u64,
}

impl Channel {
    pub fn recording(&self) -> Option<&Recording> {
        self.recording.as_ref()
    }

    pub fn playback(&self) -> Option<&Playback> {
        self.playback.as_ref()
    }

    /// Whether a recording may start now (the shell asks before it starts the recorder).
    pub fn can_record(&self) -> Result<(), ChannelError> {
        if self.closed {
            return Err(ChannelError::not_found(format!(
                "channel '{}' has ended",
                self.id
            )));
        }
        match &self.recording {
            Some(r) => Err(ChannelError::conflict(format!(
                "channel '{}' is already being recorded to '{}'; stop that first",
                self.id, r.file
            ))),
            None => Ok(()),
        }
    }

    /// Whether a playback may start now (the shell asks before it starts the player).
    pub fn can_play(&self) -> Result<(), ChannelError> {
        if self.closed {
            return Err(ChannelError::not_found(format!(
                "channel '{}' has ended",
                self.id
            )));
        }
        match &self.playback {
            Some(p) => Err(ChannelError::conflict(format!(
                "'{}' is already playing in channel '{}'; stop it first",
                p.file, self.id
            ))),
            None => Ok(()),
        }
    }

    /// Starts recording the mix to `file` (named by the caller, created by the shell).
    pub fn start_recording(&mut self, now: Instant, file: String) -> Result<(), ChannelError> {
        self.can_record()?;
        self.recording = Some(Recording {
            file: file.clone(),
            started: now,
            stopping: None,
        });
        self.emit(
            Target::everyone(),
            &ChannelEvent::RecordingStarted { file: file.clone() },
        );
        self.webhook("recording_started", serde_json::json!({ "file": file }));
        Ok(())
    }

    /// Asks for the recording to stop; its end is announced when the media plane reports it.
    pub fn stop_recording(&mut self) -> Result<String, ChannelError> {
        match &mut self.recording {
            Some(r) if r.stopping.is_none() => {
                r.stopping = Some(StreamEnd::Stopped);
                Ok(r.file.clone())
            }
            Some(r) => Err(ChannelError::conflict(format!(
                "the recording to '{}' is already stopping",
                r.file
            ))),
            None => Err(ChannelError::not_found(format!(
                "channel '{}' is not being recorded",
                self.id
            ))),
        }
    }

    /// The media plane finished the recording to `file`.
    pub fn recording_ended(&mut self, file: &str, end: RecordingEnd) {
        let Some(r) = self.recording.take_if(|r| r.file == file) else {
            return;
        };
        let reason = end.reason.or(r.stopping).unwrap_or(StreamEnd::ChannelEnded);
        let event = ChannelEvent::RecordingStopped {
            file: r.file.clone(),
            reason,
            bytes: end.bytes,
            duration_ms: end.duration_ms,
        };
        if !self.closed {
            self.emit(Target::everyone(), &event);
        }
        self.webhook("recording_stopped", recording_stopped(&r.file, reason, end));
    }

    /// Starts playing `file` into the channel as speaker `participant`.
    pub fn start_playback(
        &mut self,
        now: Instant,
        file: String,
        participant: ParticipantId,
        identity: Identity,
    ) -> Result<(), ChannelError> {
        self.can_play()?;
        self.playback = Some(Playback {
            file: file.clone(),
            participant: participant.clone(),
            identity,
            started: now,
        });
        self.emit(
            Target::everyone(),
            &ChannelEvent::PlaybackStarted {
                file: file.clone(),
                participant: participant.clone(),
            },
        );
        self.webhook(
            "playback_started",
            serde_json::json!({ "file": file, "participant": participant }),
        );
        Ok(())
    }

    /// Ends the playback (the file ran out, an admin stopped it); its speaker leaves the stage.
    pub fn playback_ended(&mut self, participant: &ParticipantId, reason: StreamEnd) {
        let Some(p) = self.playback.take_if(|p| &p.participant == participant) else {
            return;
        };
        if !self.closed {
            self.emit(
                Target::everyone(),
                &ChannelEvent::PlaybackStopped {
                    file: p.file.clone(),
                    participant: p.participant.clone(),
                    reason,
                },
            );
        }
        self.webhook(
            "playback_stopped",
            serde_json::json!({
                "file": p.file,
                "participant": p.participant,
                "reason": reason,
            }),
        );
    }

    /// The playing speaker, to be stopped.
    pub fn stop_playback(&mut self) -> Result<ParticipantId, ChannelError> {
        let participant = self
            .playback
            .as_ref()
            .map(|p| p.participant.clone())
            .ok_or_else(|| {
                ChannelError::not_found(format!("nothing is playing in channel '{}'", self.id))
            })?;
        self.playback_ended(&participant, StreamEnd::Stopped);
        Ok(participant)
    }

    /// The channel is closing: a playback ends with it (a recording's end is reported by the
    /// media plane, which finishes the file).
    pub(super) fn end_streams(&mut self) {
        if let Some(p) = self.playback.clone() {
            self.playback_ended(&p.participant, StreamEnd::ChannelEnded);
        }
    }
}
