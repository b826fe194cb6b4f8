//! The channel's recordings and playbacks, asked for by the admin API: started through the
//! media plane, announced by the channel when they start and end.

use super::*;

impl Handler<AdminRecord> for ChannelActor {
    type Result = Result<serde_json::Value, ApiError>;

    fn handle(&mut self, msg: AdminRecord, ctx: &mut Self::Context) -> Self::Result {
        let result = match msg {
            AdminRecord::Start { name, file } => self.start_recording(name, file, ctx),
            AdminRecord::Stop => {
                let file = self.channel.stop_recording()?;
                self.media.stop_recording(self.channel.id());
                Ok(serde_json::json!({ "file": file, "stopping": true }))
            }
        };
        self.flush(ctx);
        result
    }
}

impl ChannelActor {
    fn start_recording(
        &mut self,
        name: String,
        file: std::fs::File,
        ctx: &mut Context<Self>,
    ) -> Result<serde_json::Value, ApiError> {
        self.channel.can_record()?;
        // The recording ends after this actor when the channel ends first: its webhook then
        // goes straight to the sender.
        let (addr, webhooks) = (ctx.address(), self.webhooks.clone());
        let (channel, file_name) = (self.channel.id().clone(), name.clone());
        let done = Box::new(move |end: RecordingEnd| {
            let file = file_name.clone();
            if addr.try_send(RecordingDone { file, end }).is_ok() {
                return;
            }
            if let Some(w) = webhooks {
                let reason = end.reason.unwrap_or(StreamEnd::ChannelEnded);
                let data = recording_stopped(&file_name, reason, end);
                let subject = Subject::Channel(channel);
                w.push(subject.clone(), "recording_stopped", data);
                w.finish(subject);
            }
        });
        self.media.record(self.channel.id(), &name, file, done)?;
        self.channel
            .start_recording(crate::clock::now(), name.clone())?;
        Ok(serde_json::json!({ "file": name }))
    }
}

impl Handler<AdminMix> for ChannelActor {
    type Result = bool;

    fn handle(&mut self, msg: AdminMix, ctx: &mut Self::Context) -> bool {
        self.channel.set_mix_admin(msg.0);
        self.flush(ctx);
        self.channel.mixing()
    }
}

impl Handler<RecordingDone> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: RecordingDone, ctx: &mut Self::Context) {
        self.channel.recording_ended(&msg.file, msg.end);
        self.flush(ctx);
    }
}

impl Handler<AdminPlay> for ChannelActor {
    type Result = Result<serde_json::Value, ApiError>;

    fn handle(&mut self, msg: AdminPlay, ctx: &mut Self::Context) -> Self::Result {
        let result = match msg {
            AdminPlay::Start { name, packets } => {
                self.channel.can_play()?;
                self.start_playback(name, packets, ctx)
            }
            AdminPlay::Stop => {
                let participant = self.channel.stop_playback()?;
                self.media.stop_playing(self.channel.id());
                Ok(serde_json::json!({ "participant": participant }))
            }
        };
        self.flush(ctx);
        result
    }
}

impl ChannelActor {
    fn start_playback(
        &mut self,
        name: String,
        packets: Arc<[Arc<[u8]>]>,
        ctx: &mut Context<Self>,
    ) -> Result<serde_json::Value, ApiError> {
        let participant = ParticipantId::random();
        let addr = ctx.address();
        let who = participant.clone();
        let done = Box::new(move |reason| {
            // Nobody to tell once the channel has ended: it announced the end itself.
            let _ = addr.try_send(PlaybackDone {
                participant: who,
                reason,
            });
        });
        let duration_ms = packets.len() as u64 * 20;
        self.media
            .play(self.channel.id(), peer_key(&participant), packets, done)?;
        let identity = crate::ids::Identity::parse(PLAYER_IDENTITY).expect("a valid identity");
        self.channel.start_playback(
            crate::clock::now(),
            name.clone(),
            participant.clone(),
            identity,
        )?;
        Ok(serde_json::json!({
            "file": name,
            "participant": participant,
            "duration_ms": duration_ms,
        }))
    }
}

/// The identity a file playing into a channel speaks as.
const PLAYER_IDENTITY: &str = "amphi-player";

impl Handler<PlaybackDone> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: PlaybackDone, ctx: &mut Self::Context) {
        self.channel.playback_ended(&msg.participant, msg.reason);
        self.flush(ctx);
    }
}
