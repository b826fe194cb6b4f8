//! Events: what the server tells members of a channel or a call, and a connection about its
//! own media (docs/protocol.md §4, §11, §12), with the frames they are written as.

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::calls::CallId;
use crate::ids::{ChannelId, Identity, ParticipantId, RoleName};

/// One speaker's volume in an `audio_levels` event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpeakerVolume {
    pub participant: ParticipantId,
    /// 0 (silence) to 255 (full scale), the shape of common volume-indication callbacks.
    pub volume: u8,
    pub vad: bool,
}

/// Client requests. Each variant's fields are the request's params; `id` and `type` are the
/// envelope, handled by [`parse_request`].
/// A frame as written to the socket.
pub(crate) fn to_frame(value: &impl Serialize) -> ByteString {
    ByteString::from(serde_json::to_string(value).expect("protocol types always serialize"))
}

/// Why a participant is no longer in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Kicked,
    ChannelStopped,
    Disconnected,
    Replaced,
    ServerShutdown,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Kicked => "kicked",
            LeaveReason::ChannelStopped => "channel_stopped",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::Replaced => "replaced",
            LeaveReason::ServerShutdown => "server_shutdown",
        }
    }
}

/// Why a recording or a playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEnd {
    /// Stopped by an admin request.
    Stopped,
    /// A playback reached the end of its file.
    Finished,
    /// A recording reached the configured size or duration.
    Limit,
    /// Writing the file failed (the server's log says why).
    Error,
    /// The channel ended.
    ChannelEnded,
}

impl StreamEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamEnd::Stopped => "stopped",
            StreamEnd::Finished => "finished",
            StreamEnd::Limit => "limit",
            StreamEnd::Error => "error",
            StreamEnd::ChannelEnded => "channel_ended",
        }
    }
}

/// A participant as other participants see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantInfo {
    pub participant: ParticipantId,
    pub identity: Identity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub role: RoleName,
    pub muted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// How a channel's audio reaches its listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixPolicy {
    /// Every listener receives each speaker's own stream.
    Forward,
    /// The server mixes: one stream for every listener, the mix without itself for a speaker.
    Mix,
    /// Forward while few speakers are unmuted, mix above (the threshold is the server's).
    Auto,
}

/// What one member receives, whatever the channel's policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioMode {
    /// One stream: the mix (for a speaker, the mix without itself), even in a forwarding
    /// channel — what a client on a weak network asks for.
    Mixed,
    /// Each speaker's own stream, even in a mixing channel.
    Forwarded,
    /// Whatever the channel does now.
    #[default]
    Auto,
}

impl AudioMode {
    pub fn is_auto(&self) -> bool {
        *self == AudioMode::Auto
    }

    /// Whether a member in this mode receives the mix while the channel does (`mixing`) or
    /// does not.
    pub fn receives_mix(self, mixing: bool) -> bool {
        match self {
            AudioMode::Mixed => true,
            AudioMode::Forwarded => false,
            AudioMode::Auto => mixing,
        }
    }
}

/// Channel events; serialized once per event and shared by every receiver.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChannelEvent {
    ParticipantJoined {
        #[serde(flatten)]
        info: ParticipantInfo,
    },
    ParticipantLeft {
        participant: ParticipantId,
        identity: Identity,
        reason: LeaveReason,
    },
    RoleChanged {
        participant: ParticipantId,
        identity: Identity,
        role: RoleName,
    },
    RoleRequested {
        participant: ParticipantId,
        identity: Identity,
        role: RoleName,
    },
    MuteChanged {
        participant: ParticipantId,
        muted: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<ParticipantId>,
        /// Muted (or unmuted) through the admin API.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        admin: bool,
    },
    /// The mix policy changed, or (under `auto`) whether the channel's mixer runs.
    MixChanged {
        policy: MixPolicy,
        mixing: bool,
    },
    /// The channel's mix is being recorded (to `file`, in the server's recordings directory).
    RecordingStarted {
        file: String,
    },
    RecordingStopped {
        file: String,
        reason: StreamEnd,
        bytes: u64,
        duration_ms: u64,
    },
    /// A file plays into the channel as a speaker (`participant`, not a member).
    PlaybackStarted {
        file: String,
        participant: ParticipantId,
    },
    PlaybackStopped {
        file: String,
        participant: ParticipantId,
        reason: StreamEnd,
    },
    Left {
        reason: LeaveReason,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    AudienceCount {
        count: usize,
    },
    /// `from` and `identity` are null for a message the app sends through the admin API.
    Message {
        from: Option<ParticipantId>,
        identity: Option<Identity>,
        kind: String,
        content: Value,
    },
    /// A host's publishing paused for a call taken from this channel, or resumed after it.
    PublishingPaused {
        participant: ParticipantId,
        identity: Identity,
        paused: bool,
        call_id: String,
    },
    ActiveSpeaker {
        participant: Option<ParticipantId>,
    },
    AudioLevels {
        speakers: Vec<SpeakerVolume>,
        total_volume: u8,
    },
}

/// A call event: `{"type":"event","event":…,"call_id":…,"seq":…,…fields}`. `seq` counts the
/// call's state events; relayed messages carry none.
pub fn call_event(
    call_id: &CallId,
    seq: Option<u64>,
    event: &impl Serialize,
    extra: &[(&str, Value)],
) -> ByteString {
    let mut map = Map::new();
    map.insert("type".into(), "event".into());
    if let Ok(Value::Object(fields)) = serde_json::to_value(event) {
        map.extend(fields);
    }
    map.insert("call_id".into(), call_id.as_str().into());
    if let Some(seq) = seq {
        map.insert("seq".into(), seq.into());
    }
    for (k, v) in extra {
        map.insert((*k).into(), v.clone());
    }
    to_frame(&map)
}

/// What the media plane tells one member about its own peer (no `seq`: advisory, and only
/// for that member).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MediaEvent {
    /// A receive slot (`mid`) now carries this publisher, or nobody.
    Track {
        mid: String,
        participant: Option<ParticipantId>,
        identity: Option<Identity>,
    },
    /// The server renegotiates (more slots); answer with `media_answer`.
    MediaOffer { sdp: String },
    /// `connected`, `disconnected` or `closed`.
    MediaState { state: &'static str },
    /// RTCP-derived quality of one direction (`receive`: what the member's peer reports about
    /// the audio it gets; `send`: what the server measures of the audio it sends).
    Quality {
        direction: &'static str,
        mid: String,
        rtt_ms: Option<f64>,
        loss: Option<f32>,
        jitter_ms: Option<f64>,
    },
}

pub fn media_event(channel: &ChannelId, event: &MediaEvent) -> ByteString {
    #[derive(Serialize)]
    struct EventFrame<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        channel: &'a ChannelId,
        #[serde(flatten)]
        event: &'a MediaEvent,
    }
    to_frame(&EventFrame {
        kind: "event",
        channel,
        event,
    })
}

pub fn channel_event(channel: &ChannelId, seq: u64, event: &ChannelEvent) -> ByteString {
    #[derive(Serialize)]
    struct EventFrame<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        channel: &'a ChannelId,
        seq: u64,
        #[serde(flatten)]
        event: &'a ChannelEvent,
    }
    to_frame(&EventFrame {
        kind: "event",
        channel,
        seq,
        event,
    })
}
