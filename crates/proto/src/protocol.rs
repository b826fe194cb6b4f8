//! The signalling wire format: request parsing, replies and events (docs/protocol.md).

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::calls::{CallId, EndReason, Media, Order, RejectReason, NEWEST};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ChannelId, Identity, ParticipantId, RoleName};

pub const PROTOCOL_VERSION: u32 = 1;
/// The server's name in the welcome; the wire crate is versioned with the server.
pub const SERVER_NAME: &str = concat!("amphi/", env!("CARGO_PKG_VERSION"));

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Join {
        channel: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        uri: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<Value>,
        /// What this member receives: the mix, each speaker's own stream, or what the channel
        /// does (the default).
        #[serde(default, skip_serializing_if = "AudioMode::is_auto")]
        audio: AudioMode,
    },
    Leave {
        channel: String,
    },
    Stop {
        channel: String,
    },
    SetRole {
        channel: String,
        role: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        participant: Option<String>,
    },
    RequestRole {
        channel: String,
        role: String,
    },
    Mute {
        channel: String,
        muted: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        participant: Option<String>,
    },
    /// How the channel's audio reaches its listeners (needs `stop` or `moderate`).
    SetMix {
        channel: String,
        policy: MixPolicy,
    },
    /// What the requester receives: the mix, each speaker's stream, or what the channel does.
    SetAudio {
        channel: String,
        audio: AudioMode,
    },
    /// A speaker's level in the mix, 0.0 (silent) to 2.0; 1.0 unchanged (needs `moderate`).
    SetVolume {
        channel: String,
        participant: String,
        gain: f64,
    },
    Kick {
        channel: String,
        participant: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Lets a kicked identity back into the channel (needs `moderate`).
    Unban {
        channel: String,
        identity: String,
    },
    /// To a channel (`channel`) or to the other members of a call (`call_id`).
    Send {
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        kind: String,
        content: Value,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        to: Vec<String>,
    },
    Ping {},
    /// Takes over a session whose WebSocket dropped (docs/protocol.md §Resume): its
    /// memberships, its peer connections, and the events it missed.
    Resume {
        session: String,
        resume_token: String,
        /// Per channel, the last event `seq` the client saw.
        #[serde(default)]
        last_seq: std::collections::HashMap<String, u64>,
    },
    MediaOffer {
        channel: String,
        sdp: String,
    },
    MediaAnswer {
        channel: String,
        sdp: String,
    },
    MediaCandidate {
        channel: String,
        candidate: String,
    },
    Call {
        callees: Vec<String>,
        media: Media,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        extra: Value,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        push: Value,
        /// Live-to-1v1: the channel where the caller is in the audience and the callee hosts.
        #[serde(skip_serializing_if = "Option::is_none")]
        live_channel: Option<String>,
        /// A proxy acting for another identity.
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    Accept {
        call_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        media: Option<Media>,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    Reject {
        call_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<RejectReason>,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    Hangup {
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<EndReason>,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    Invite {
        call_id: String,
        callees: Vec<String>,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    JoinCall {
        call_id: String,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    MediaChange {
        call_id: String,
        media: Media,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    MediaChangeCancel {
        transaction: String,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    MediaChangeReply {
        transaction: String,
        agree: bool,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    /// This member's microphone/camera state, relayed to the others as `remote_media_state`.
    CallMediaState {
        call_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        microphone: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        camera: Option<bool>,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    CallLogs {
        #[serde(default = "newest")]
        start_time: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        count: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        order: Option<Order>,
        /// The `next.after` of the previous page: resumes exactly behind its last row.
        #[serde(skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    OngoingCalls {},
    DeleteCallLogs {
        call_ids: Vec<String>,
    },
    DeleteAllCallLogs {},
}

fn newest() -> i64 {
    NEWEST
}

const REQUEST_TYPES: &[&str] = &[
    "join",
    "leave",
    "stop",
    "set_role",
    "request_role",
    "mute",
    "set_mix",
    "set_audio",
    "set_volume",
    "kick",
    "unban",
    "send",
    "ping",
    "resume",
    "media_offer",
    "media_answer",
    "media_candidate",
    "call",
    "accept",
    "reject",
    "hangup",
    "invite",
    "join_call",
    "media_change",
    "media_change_cancel",
    "media_change_reply",
    "call_logs",
    "delete_call_logs",
    "delete_all_call_logs",
    "call_media_state",
    "ongoing_calls",
];

/// JSON with every key once: a request that repeats a key (two `type`s, say) is refused, since
/// a proxy reading the first and the server reading the last would disagree about it.
mod strict {
    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    pub struct Strict(pub Value);

    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(StrictVisitor).map(Strict)
        }
    }

    struct StrictVisitor;

    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }

        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }

        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }

        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }

        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }

        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }

        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            Strict::deserialize(d).map(|s| s.0)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(Strict(v)) = seq.next_element()? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let Strict(v) = map.next_value()?;
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format_args!(
                        "the key \"{}\" appears twice; each key may appear once",
                        key.chars().take(64).collect::<String>()
                    )));
                }
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
    }
}

/// Parses one text frame. The `id` is returned whenever it could be read, so that even a
/// malformed request gets a reply the client can match.
pub fn parse_request(text: &str) -> (Option<u64>, Result<Request, ApiError>) {
    let value: Value = match serde_json::from_str::<strict::Strict>(text) {
        Ok(v) => v.0,
        Err(e) => {
            return (
                None,
                Err(ApiError::bad_request(format!(
                    "the frame is not valid JSON: {e}"
                ))),
            )
        }
    };
    let Value::Object(mut map) = value else {
        return (
            None,
            Err(ApiError::bad_request(
                "a request must be a JSON object with \"type\" and \"id\"",
            )),
        );
    };
    let id = match map.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(_) => {
            return (
                None,
                Err(ApiError::bad_request(
                    "\"id\" must be a non-negative integer",
                )),
            )
        }
    };
    let kind = match map.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return (id, Err(ApiError::bad_request("\"type\" must be a string"))),
        None => {
            return (
                id,
                Err(ApiError::bad_request("the request has no \"type\"")),
            )
        }
    };
    if !REQUEST_TYPES.contains(&kind.as_str()) {
        let kind: String = kind.chars().take(64).collect();
        return (
            id,
            Err(ApiError::new(
                ErrorCode::UnknownType,
                format!("unknown request type '{kind}'; docs/protocol.md lists the types"),
            )),
        );
    }
    let result = serde_json::from_value::<Request>(Value::Object(map))
        .map_err(|e| ApiError::bad_request(format!("invalid '{kind}' request: {e}")));
    (id, result)
}

impl Request {
    /// Whether the request is about calls (placing, answering, call logs), not a channel.
    pub fn is_call_request(&self) -> bool {
        matches!(
            self,
            Request::Call { .. }
                | Request::Accept { .. }
                | Request::Reject { .. }
                | Request::Hangup { .. }
                | Request::Invite { .. }
                | Request::JoinCall { .. }
                | Request::MediaChange { .. }
                | Request::MediaChangeCancel { .. }
                | Request::MediaChangeReply { .. }
                | Request::CallMediaState { .. }
                | Request::CallLogs { .. }
                | Request::OngoingCalls {}
                | Request::DeleteCallLogs { .. }
                | Request::DeleteAllCallLogs {}
        )
    }

    /// The request's wire `type`.
    pub fn kind(&self) -> String {
        match serde_json::to_value(self) {
            Ok(v) => v["type"].as_str().unwrap_or_default().to_string(),
            Err(_) => String::new(),
        }
    }
}

/// A request as a client writes it: the request's fields with `type`, and `id` when given.
pub fn encode_request(id: Option<u64>, request: &Request) -> String {
    let mut value = serde_json::to_value(request).expect("requests always serialize");
    if let (Some(id), Value::Object(map)) = (id, &mut value) {
        map.insert("id".into(), id.into());
    }
    value.to_string()
}

fn to_frame(value: &impl Serialize) -> ByteString {
    ByteString::from(serde_json::to_string(value).expect("protocol types always serialize"))
}

pub fn welcome(session: &str, identity: &Identity, resume_token: &str) -> ByteString {
    to_frame(&serde_json::json!({
        "type": "welcome",
        "protocol": PROTOCOL_VERSION,
        "session": session,
        "identity": identity,
        "server": SERVER_NAME,
        "resume_token": resume_token,
    }))
}

/// The channel and `seq` of a channel event frame written by [`channel_event`] (`None` for
/// any other frame), read without parsing it: they are its second and third keys.
pub fn event_position(frame: &str) -> Option<(&str, u64)> {
    let rest = frame.strip_prefix(r#"{"type":"event","channel":""#)?;
    let (channel, rest) = rest.split_once('"')?;
    let seq = rest.strip_prefix(r#","seq":"#)?;
    let end = seq.find(|c: char| !c.is_ascii_digit()).unwrap_or(seq.len());
    Some((channel, seq[..end].parse().ok()?))
}

/// `{"id":…,"type":"ok",…result}`; `result` must serialize to an object (or `()`).
pub fn ok(id: Option<u64>, result: impl Serialize) -> ByteString {
    let mut map = Map::new();
    if let Some(id) = id {
        map.insert("id".into(), id.into());
    }
    map.insert("type".into(), "ok".into());
    if let Ok(Value::Object(fields)) = serde_json::to_value(result) {
        map.extend(fields);
    }
    to_frame(&map)
}

pub fn error(id: Option<u64>, err: &ApiError) -> ByteString {
    #[derive(Serialize)]
    struct ErrorFrame<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        #[serde(rename = "type")]
        kind: &'static str,
        code: ErrorCode,
        message: &'a str,
    }
    to_frame(&ErrorFrame {
        id,
        kind: "error",
        code: err.code,
        message: &err.message,
    })
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
    Message {
        from: ParticipantId,
        identity: Identity,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client writes is what the server reads: every request type, encoded from the
    /// parsed form, parses back to the same request.
    #[test]
    fn every_request_round_trips() {
        let samples = [
            r#"{"type":"join","channel":"c","role":"host","metadata":{"a":1}}"#,
            r#"{"type":"join","channel":"room one","uri":true}"#,
            r#"{"type":"leave","channel":"c"}"#,
            r#"{"type":"stop","channel":"c"}"#,
            r#"{"type":"set_role","channel":"c","role":"host","participant":"p-1"}"#,
            r#"{"type":"request_role","channel":"c","role":"host"}"#,
            r#"{"type":"mute","channel":"c","muted":true}"#,
            r#"{"type":"kick","channel":"c","participant":"p-1","reason":"spam"}"#,
            r#"{"type":"send","channel":"c","kind":"chat","content":"hi","to":["p-1"]}"#,
            r#"{"type":"send","call_id":"c-00000000000000aa","kind":"x","content":{}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"media_offer","channel":"c","sdp":"v=0"}"#,
            r#"{"type":"call","callees":["bob"],"media":"video","extra":{"k":1},"as":"alice"}"#,
            r#"{"type":"accept","call_id":"c-00000000000000aa","media":"audio"}"#,
            r#"{"type":"reject","call_id":"c-00000000000000aa","reason":"busy"}"#,
            r#"{"type":"hangup","call_id":"c-00000000000000aa","reason":"hangup"}"#,
            r#"{"type":"call_logs","count":10,"order":"asc","after":"c-00000000000000aa"}"#,
            r#"{"type":"call_media_state","call_id":"c-00000000000000aa","microphone":false}"#,
        ];
        let mut kinds = std::collections::BTreeSet::new();
        for text in samples {
            let (_, parsed) = parse_request(text);
            let parsed = parsed.unwrap_or_else(|e| panic!("{text}: {e}"));
            let encoded = encode_request(Some(9), &parsed);
            let (id, again) = parse_request(&encoded);
            assert_eq!(id, Some(9), "{encoded}");
            assert_eq!(again.unwrap(), parsed, "{text} -> {encoded}");
            let v: Value = serde_json::from_str(&encoded).unwrap();
            kinds.insert(v["type"].as_str().unwrap().to_string());
        }
        assert!(kinds.len() >= 15, "{kinds:?}");
    }

    /// Media events keep the wire shape clients read (docs/protocol.md, media events).
    #[test]
    fn media_events_on_the_wire() {
        let ch = ChannelId::parse("c").unwrap();
        let v = |e: &MediaEvent| -> Value { serde_json::from_str(&media_event(&ch, e)).unwrap() };
        let track = v(&MediaEvent::Track {
            mid: "1".into(),
            participant: None,
            identity: None,
        });
        assert_eq!(
            track,
            serde_json::json!({"type": "event", "channel": "c", "event": "track", "mid": "1",
                "participant": null, "identity": null})
        );
        let state = v(&MediaEvent::MediaState { state: "connected" });
        assert_eq!(state["event"], "media_state");
        assert_eq!(state["state"], "connected");
        let q = v(&MediaEvent::Quality {
            direction: "send",
            mid: "0".into(),
            rtt_ms: None,
            loss: Some(0.5),
            jitter_ms: Some(2.0),
        });
        assert_eq!(
            (
                q["event"].clone(),
                q["direction"].clone(),
                q["loss"].clone(),
                q["jitter_ms"].clone()
            ),
            (
                Value::from("quality"),
                Value::from("send"),
                Value::from(0.5),
                Value::from(2.0)
            )
        );
        let offer = v(&MediaEvent::MediaOffer { sdp: "v=0".into() });
        assert_eq!(
            (offer["event"].clone(), offer["sdp"].clone()),
            (Value::from("media_offer"), Value::from("v=0"))
        );
    }

    #[test]
    fn parses_join() {
        let (id, req) = parse_request(r#"{"id":3,"type":"join","channel":"c1","role":"host"}"#);
        assert_eq!(id, Some(3));
        assert_eq!(
            req.unwrap(),
            Request::Join {
                channel: "c1".into(),
                uri: false,
                role: Some("host".into()),
                metadata: None,
                audio: AudioMode::Auto,
            }
        );
    }

    #[test]
    fn bad_frames_get_typed_errors_with_id() {
        let (id, r) = parse_request("nope");
        assert_eq!((id, r.unwrap_err().code), (None, ErrorCode::BadRequest));
        let (id, r) = parse_request(r#"{"id":4,"type":"join"}"#);
        let e = r.unwrap_err();
        assert_eq!((id, e.code), (Some(4), ErrorCode::BadRequest));
        assert!(e.message.contains("channel"), "{}", e.message);
        let (_, r) = parse_request(r#"{"id":5,"type":"join","channel":7}"#);
        assert!(r.unwrap_err().message.contains("invalid type"));
        let (_, r) = parse_request(r#"{"id":6,"type":"join","channel":"c","colour":1}"#);
        assert!(r.unwrap_err().message.contains("colour"));
        let (_, r) = parse_request(r#"{"id":7,"type":"dance"}"#);
        assert_eq!(r.unwrap_err().code, ErrorCode::UnknownType);
        let (_, r) = parse_request(r#"{"id":8}"#);
        assert_eq!(r.unwrap_err().code, ErrorCode::BadRequest);
        let (id, r) = parse_request(r#"{"id":-1,"type":"ping"}"#);
        assert_eq!((id, r.unwrap_err().code), (None, ErrorCode::BadRequest));
    }

    #[test]
    fn an_event_frame_says_its_channel_and_seq_without_a_parse() {
        let c = ChannelId::parse("room1").unwrap();
        let frame = channel_event(&c, 42, &ChannelEvent::AudienceCount { count: 3 });
        assert_eq!(event_position(&frame), Some(("room1", 42)));
        assert_eq!(event_position(&ok(Some(1), ())), None);
        assert_eq!(
            event_position(r#"{"type":"event","event":"call_ended","seq":3,"channel":"x"}"#),
            None,
            "call events are not channel events"
        );
    }

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        let (_, r) = parse_request(r#"{"id":1,"type":"ping","type":"join","channel":"c"}"#);
        let e = r.unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(
            e.message.contains("\"type\" appears twice"),
            "{}",
            e.message
        );
        let (_, r) =
            parse_request(r#"{"id":2,"type":"join","channel":"c","metadata":{"a":1,"a":2}}"#);
        assert!(r.unwrap_err().message.contains("appears twice"));
        // The same keys in different objects are fine; values keep their types.
        let (_, r) = parse_request(
            r#"{"id":3,"type":"join","channel":"c","metadata":{"id":[1,2.5,null,true,{"id":"x"}]}}"#,
        );
        let Request::Join { metadata, .. } = r.unwrap() else {
            panic!("a join");
        };
        assert_eq!(
            metadata.unwrap(),
            serde_json::json!({"id": [1, 2.5, null, true, {"id": "x"}]})
        );
    }

    #[test]
    fn event_frames_are_flat() {
        let c = ChannelId::parse("c1").unwrap();
        let frame = channel_event(&c, 9, &ChannelEvent::AudienceCount { count: 3 });
        let v: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"event","event":"audience_count","channel":"c1","seq":9,"count":3})
        );
    }
}
