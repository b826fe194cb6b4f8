//! The vocabulary of a call: identifiers, wire enums, events and errors.

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, ErrorCode};
use crate::ids::{ChannelId, Identity};
pub use amphi_proto::calls::{
    CallId, CallType, EndReason, LegState, Media, MediaChangeResult, RejectReason, TransactionId,
};

/// A group call is a conversation, not a broadcast: every call event fans out to every member
/// and every member's media crosses the call's private channel. Bigger audiences use channels.
pub const MAX_MEMBERS: usize = 32;

/// What a call tells its members. Serialized with the wire names, tagged by `event`, so the
/// signalling layer only adds `type`, `call_id` and `seq` around it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CallEvent {
    #[serde(rename = "call_incoming")]
    Incoming {
        caller: Identity,
        invited_by: Identity,
        /// Everyone in the call at the time of the invitation, the invitee included.
        members: Vec<Identity>,
        call_type: CallType,
        media: Media,
        extra: Value,
    },
    #[serde(rename = "call_ringing")]
    Ringing { callees: Vec<Identity> },
    /// To members as they connect. `start_time` is when the call itself connected (unix ms),
    /// so a late joiner's timer shows the same duration as everyone else's.
    #[serde(rename = "call_connected")]
    Connected { start_time: i64, media: Media },
    ParticipantState {
        user: Identity,
        state: LegState,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<EndReason>,
        /// The member's client dropped and the reconnect grace runs.
        reconnecting: bool,
        /// The note the member left with (`reject` or `hangup`).
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    #[serde(rename = "call_ended")]
    Ended {
        reason: EndReason,
        /// The note of the member whose reject or hangup ended the call.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    #[serde(rename = "call_missed")]
    Missed { user: Identity },
    #[serde(rename = "call_type_changed")]
    TypeChanged { call_type: CallType },
    MediaChangeRequested {
        transaction: TransactionId,
        media: Media,
        by: Identity,
    },
    /// `media` is the call's media after the change (unchanged unless accepted).
    MediaChangeResult {
        transaction: TransactionId,
        result: MediaChangeResult,
        media: Media,
    },
}

/// One event and who receives it. `seq` increases by one per output of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub seq: u64,
    pub to: Vec<Identity>,
    pub event: CallEvent,
}

/// What anyone outside a call hears about it, whether or not it exists.
pub const NO_SUCH_CALL: &str = "no call with that ID is in progress for you";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Worded like a call that does not exist (`NO_SUCH_CALL`): a stranger must not learn
    /// whether a call ID is live.
    #[error("{NO_SUCH_CALL}")]
    NotInCall(Identity),
    #[error("{0}")]
    WrongState(&'static str),
    #[error("an audio call can only be accepted as audio")]
    MediaNotAllowed,
    #[error("{0}")]
    NotPermitted(&'static str),
    #[error("no pending media change {0}")]
    UnknownTransaction(TransactionId),
    #[error("a call has at most {} members", MAX_MEMBERS)]
    TooManyMembers,
    #[error("{0}")]
    Invalid(String),
}

impl From<crate::ids::IdError> for CallError {
    fn from(e: crate::ids::IdError) -> Self {
        CallError::Invalid(e.to_string())
    }
}

impl CallError {
    pub fn code(&self) -> ErrorCode {
        match self {
            // A stranger learns nothing about whether the call exists.
            CallError::NotInCall(_) | CallError::UnknownTransaction(_) => ErrorCode::NotFound,
            CallError::WrongState(_) | CallError::TooManyMembers => ErrorCode::Conflict,
            CallError::MediaNotAllowed | CallError::NotPermitted(_) => ErrorCode::Forbidden,
            CallError::Invalid(_) => ErrorCode::BadRequest,
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// Which of two glaring calls survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survivor {
    First,
    Second,
}

/// Glare: A calls B while B calls A. The call placed by the caller whose identity sorts lower
/// (bytewise) survives; the same caller on both (two devices) falls back to the lower call ID.
/// It depends on nothing but the two calls, so every node and both clients agree without
/// talking to each other, whichever call they saw first. The loser ends with `replaced`.
pub fn glare_winner(a: &CallId, a_caller: &Identity, b: &CallId, b_caller: &Identity) -> Survivor {
    if (a_caller, a) <= (b_caller, b) {
        Survivor::First
    } else {
        Survivor::Second
    }
}

/// A media change waiting for the other side's answer.
#[derive(Debug, Clone)]
pub(super) struct PendingChange {
    pub(super) tx: TransactionId,
    pub(super) by: Identity,
    pub(super) media: Media,
    pub(super) deadline: Instant,
}

/// Channels named `call:<call ID>` carry a call's media; only its connected members may join.
pub const CALL_CHANNEL_PREFIX: &str = "call:";

pub fn call_channel(id: &CallId) -> ChannelId {
    ChannelId::parse(&format!("{CALL_CHANNEL_PREFIX}{id}")).expect("call IDs are channel-safe")
}

/// The call a `call:` channel belongs to.
pub fn channel_call(channel: &ChannelId) -> Option<CallId> {
    let id = channel.as_str().strip_prefix(CALL_CHANNEL_PREFIX)?;
    CallId::parse(id).ok()
}
