//! What the media plane's handle and its workers exchange: peer specs, commands, errors.

use std::sync::Arc;

use actix::Recipient;
use tokio::sync::oneshot;

use crate::channel::Publisher;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ChannelId, Identity, ParticipantId, PeerKey};
use crate::messages::{FirstAudio, SpeakerLevel, ToSession};

/// What a worker needs to create a peer.
#[derive(Clone)]
pub struct PeerSpec {
    pub key: PeerKey,
    pub participant: ParticipantId,
    pub identity: Identity,
    pub channel: ChannelId,
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub session: Recipient<ToSession>,
    pub levels: Recipient<SpeakerLevel>,
    pub first_audio: Recipient<FirstAudio>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    #[error("the SDP could not be parsed: {0}")]
    BadSdp(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no media session: send media_offer first")]
    NoPeer,
    #[error("no server offer is waiting for an answer")]
    NoPendingOffer,
    #[error("a server media_offer is waiting for your answer; answer it, then offer again")]
    OfferPending,
    #[error("the media plane is overloaded; retry shortly")]
    Busy,
    #[error("negotiation failed: {0}")]
    Negotiation(String),
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        let code = match e {
            MediaError::BadSdp(_) => ErrorCode::BadRequest,
            MediaError::Forbidden(_) => ErrorCode::Forbidden,
            MediaError::NoPeer | MediaError::NoPendingOffer => ErrorCode::NotFound,
            MediaError::Busy => ErrorCode::RateLimited,
            MediaError::OfferPending => ErrorCode::Conflict,
            MediaError::Negotiation(_) => ErrorCode::BadRequest,
        };
        ApiError::new(code, e.to_string())
    }
}

pub(crate) enum Command {
    Offer {
        spec: Box<PeerSpec>,
        sdp: String,
        reply: oneshot::Sender<Result<String, MediaError>>,
    },
    Answer {
        key: PeerKey,
        sdp: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    Candidate {
        key: PeerKey,
        candidate: String,
    },
    Permissions {
        key: PeerKey,
        can_publish: bool,
        can_subscribe: bool,
    },
    Remove {
        key: PeerKey,
    },
    Routes {
        channel: ChannelId,
        publishers: Arc<[Publisher]>,
    },
    ChannelClosed {
        channel: ChannelId,
    },
    Stop,
}
