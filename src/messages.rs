//! The actor message catalogue: what sessions receive, and how a request's one reply travels.
//!
//! Layer rule: this file imports only the layers below the actors (ids, error, protocol);
//! actor files import it, never each other, so no actor can form an import circle.

use actix::prelude::*;
use bytestring::ByteString;
use serde::Serialize;

use crate::error::{ApiError, ErrorCode};
use crate::ids::{ChannelId, ParticipantId};
use crate::protocol;

/// Everything a session receives from the rest of the server.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ToSession {
    /// An event frame to write as is.
    Frame(ByteString),
    /// The one reply to the request the session numbered `token`.
    Reply { token: u64, frame: ByteString },
    /// The session is no longer in `channel` as `participant`.
    Detached {
        channel: ChannelId,
        participant: ParticipantId,
    },
    /// Close the connection.
    Close { code: u16, reason: String },
}

/// The reply path of one request: consumed by the one reply it carries, so no handler can
/// answer twice, and answered with its fallback error if it is dropped unanswered (a request
/// left in the mailbox of an actor that stopped), so no request goes without a reply.
///
/// Replies bypass the session's mailbox bound: a session has at most one request in flight,
/// so they add at most one message to it.
pub struct ReplyTo {
    to: Option<Recipient<ToSession>>,
    id: Option<u64>,
    token: u64,
    fallback: Option<ApiError>,
}

impl ReplyTo {
    pub fn new(
        to: Recipient<ToSession>,
        id: Option<u64>,
        token: u64,
        fallback: Option<ApiError>,
    ) -> Self {
        Self {
            to: Some(to),
            id,
            token,
            fallback,
        }
    }

    /// The request's wire `id`, echoed by the reply.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    pub fn ok(self, result: impl Serialize) {
        let frame = protocol::ok(self.id, result);
        self.send(frame);
    }

    pub fn error(self, err: &ApiError) {
        let frame = protocol::error(self.id, err);
        self.send(frame);
    }

    /// Sends a reply frame already built (with this request's `id`).
    pub fn send(mut self, frame: ByteString) {
        if let Some(to) = self.to.take() {
            to.do_send(ToSession::Reply {
                token: self.token,
                frame,
            });
        }
    }

    /// Tells the session its membership ended before the reply arrives, so a request queued
    /// behind this one already sees the channel gone.
    pub fn detach_first(&self, channel: &ChannelId, participant: &ParticipantId) {
        if let Some(to) = &self.to {
            to.do_send(ToSession::Detached {
                channel: channel.clone(),
                participant: participant.clone(),
            });
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let (Some(to), Some(err)) = (self.to.take(), self.fallback.take()) {
            to.do_send(ToSession::Reply {
                token: self.token,
                frame: protocol::error(self.id, &err),
            });
        }
    }
}

impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTo")
            .field("id", &self.id)
            .field("token", &self.token)
            .finish()
    }
}

/// The fallback of a request its handler never saw.
pub fn dropped_request() -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        "the server dropped this request before answering it; send it again",
    )
}

/// One speaker's level over the last window, reported to its channel.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SpeakerLevel {
    pub participant: ParticipantId,
    /// RFC 6464 level in -dBov: 0 is loudest, 127 is silence.
    pub dbov: u8,
    pub voice: bool,
}

/// A listener's peer received its first audio packet: once per peer, never per packet.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct FirstAudio {
    pub participant: ParticipantId,
}
