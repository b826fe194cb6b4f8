//! The signalling wire format: requests as parsed and encoded, replies (docs/protocol.md);
//! the events are in `events` and re-exported here.

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::calls::{EndReason, Media, Order, RejectReason, NEWEST};
use crate::error::{ApiError, ErrorCode};
use crate::ids::Identity;

use crate::events::to_frame;
pub use crate::events::*;

pub const PROTOCOL_VERSION: u32 = 1;
/// The server's name in the welcome; the wire crate is versioned with the server.
pub const SERVER_NAME: &str = concat!("amphi/", env!("CARGO_PKG_VERSION"));

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
        /// A short word for the others ("in a meeting, call you back").
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    Hangup {
        #[serde(skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<EndReason>,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
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
    /// Calls from `user` no longer reach this identity: they look to the caller as calls to
    /// someone offline, and leave no trace with this identity.
    Block {
        user: String,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    Unblock {
        user: String,
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    /// The identities this one blocks.
    BlockedUsers {
        #[serde(rename = "as")]
        #[serde(skip_serializing_if = "Option::is_none")]
        on_behalf: Option<String>,
    },
    /// Which of `users` a call would ring now (a device of theirs is online for calls).
    Presence {
        users: Vec<String>,
    },
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
    "block",
    "unblock",
    "blocked_users",
    "presence",
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
                | Request::Block { .. }
                | Request::Unblock { .. }
                | Request::BlockedUsers { .. }
                | Request::Presence { .. }
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
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    }
    to_frame(&ErrorFrame {
        id,
        kind: "error",
        code: err.code,
        message: &err.message,
        retry_after_ms: err.retry_after_ms,
    })
}

#[cfg(test)]
mod tests;
