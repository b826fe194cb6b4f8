//! What the media plane's handle and its workers exchange: peer specs, commands, errors.

use std::sync::Arc;

use actix::Recipient;
use tokio::sync::oneshot;

pub use super::error::MediaError;
use crate::channel::{Mixdown, Publisher};
use crate::ids::{ChannelId, Identity, ParticipantId, PeerKey};
use crate::messages::{FirstAudio, SpeakerLevel, ToSession};
use crate::protocol::AudioMode;

/// What a worker needs to create a peer.
#[derive(Clone)]
pub struct PeerSpec {
    pub key: PeerKey,
    pub participant: ParticipantId,
    pub identity: Identity,
    pub channel: ChannelId,
    pub can_publish: bool,
    pub can_subscribe: bool,
    /// What the peer receives: the mix, each speaker's stream, or what its channel does.
    pub audio: AudioMode,
    /// Video m-lines are negotiated (VP8, H.264): a call channel's peer. Whether video flows
    /// is the call's media, set per channel ([`Command::Video`]).
    pub video: bool,
    pub session: Recipient<ToSession>,
    pub levels: Recipient<SpeakerLevel>,
    pub first_audio: Recipient<FirstAudio>,
}

/// Called once when a playback ends (the file ran out, or it was stopped or dropped).
pub type PlaybackDone = Box<dyn FnOnce(crate::protocol::StreamEnd) + Send>;

/// A file's Opus packets (20 ms each), shared, played as the speaker `.0`.
pub(crate) type Playback = (PeerKey, Arc<[Arc<[u8]>]>, PlaybackDone);

pub(crate) enum Command {
    Offer {
        spec: Box<PeerSpec>,
        sdp: String,
        /// Whether the offer has an m-line that sends: RTP from a peer that offered none is
        /// refused before decryption.
        sends: bool,
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
    Audio {
        key: PeerKey,
        audio: AudioMode,
    },
    Routes {
        channel: ChannelId,
        publishers: Arc<[Publisher]>,
        mix: Mixdown,
        /// The channel, for speakers' levels measured by its mixer.
        levels: Recipient<SpeakerLevel>,
    },
    ChannelClosed {
        channel: ChannelId,
    },
    /// Whether the channel's members' video is forwarded (a call's media is `video`).
    Video {
        channel: ChannelId,
        on: bool,
    },
    /// Starts (`Some`) or stops recording the channel's mix; for its mixer's worker.
    Record {
        channel: ChannelId,
        recorder: Option<super::record::Recorder>,
    },
    /// Plays packets into the channel as speaker `key` (`None`: stops); for its mixer's worker.
    Play {
        channel: ChannelId,
        play: Option<Playback>,
    },
    Stop,
}
