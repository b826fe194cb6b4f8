//! The actor message catalogue: what sessions receive, and how a request's one reply travels.
//!
//! Layer rule: this file imports only the layers below the actors (ids, error, protocol, the
//! channel and call logic); actor files import it, never each other, so no actor can form an
//! import circle. Actors are reached through handles made of `Recipient`s, never `Addr<_>`
//! of another actor's type.

use std::time::Instant;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use bytestring::ByteString;
use serde::Serialize;
use serde_json::Value;

use crate::calls::call::{CallId, CallType, EndReason, Media, RejectReason, TransactionId};
use crate::calls::store::{CallLog, LogPage, NewCallLog, PageRequest, StoreError};
use crate::channel::{ChannelSummary, JoinSpec};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ChannelId, Identity, ParticipantId};
use crate::protocol::{self, ParticipantInfo};

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
    /// A media event about the session's own peer in `channel`, from the media plane.
    Media {
        channel: ChannelId,
        event: protocol::MediaEvent,
    },
    /// Close the connection.
    Close { code: u16, reason: String },
    /// Token ID `jti` was revoked: a session opened with it ends.
    Revoked { jti: String },
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

// ---- The channel actor's messages ----

/// Join a channel. The reply frame travels through the session's mailbox, after which every
/// event for it follows in order; the `send` result only tells the session whether the actor
/// was still alive to take the request.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub spec: JoinSpec,
    pub reply: ReplyTo,
    pub session: Recipient<ToSession>,
    /// When the session read the request, for the join latency histogram.
    pub received: Instant,
}

/// A member's request; the reply goes to the member's session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MemberRequest {
    pub participant: ParticipantId,
    pub reply: ReplyTo,
    pub op: MemberOp,
}

#[derive(Debug, Clone)]
pub enum MemberOp {
    Leave,
    Stop,
    SetRole {
        role: String,
        target: Option<ParticipantId>,
    },
    RequestRole {
        role: String,
    },
    Mute {
        muted: bool,
        target: Option<ParticipantId>,
    },
    SetMix {
        policy: crate::protocol::MixPolicy,
    },
    SetAudio {
        audio: crate::protocol::AudioMode,
    },
    SetVolume {
        target: ParticipantId,
        gain: f64,
    },
    Kick {
        target: ParticipantId,
        reason: Option<String>,
    },
    Unban {
        identity: Identity,
    },
    Send {
        kind: String,
        content: Value,
        to: Vec<ParticipantId>,
    },
    MediaOffer {
        sdp: String,
    },
    MediaAnswer {
        sdp: String,
    },
    MediaCandidate {
        candidate: String,
    },
}

/// The member's connection is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnected {
    pub participant: ParticipantId,
}

#[derive(Message)]
#[rtype(result = "ChannelDetails")]
pub struct Inspect;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ChannelDetails {
    #[serde(flatten)]
    pub summary: ChannelSummary,
    pub participant_list: Vec<ParticipantInfo>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct AdminStop;

/// A member named by the admin API: by participant ID or by identity.
#[derive(Message)]
#[rtype(result = "Result<ParticipantId, ApiError>")]
pub enum AdminKick {
    Participant(ParticipantId),
    Identity(Identity),
}

/// What the admin API does to a channel's members; the reply is the result's JSON.
#[derive(Message)]
#[rtype(result = "Result<serde_json::Value, ApiError>")]
pub enum AdminOp {
    Mute {
        who: AdminKick,
        muted: bool,
    },
    /// Everyone on stage (with `spare_moderators`, but the moderators).
    MuteAll {
        muted: bool,
        spare_moderators: bool,
    },
    SetRole {
        who: AdminKick,
        role: String,
    },
    Send {
        kind: String,
        content: serde_json::Value,
        to: Vec<ParticipantId>,
    },
}

/// Pauses or resumes a host's publishing for a call taken from this channel.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PausePublisher {
    pub identity: Identity,
    pub paused: bool,
    pub call_id: String,
}

/// Server shutdown: every member gets `left` with `server_shutdown`. Answered once every frame
/// is queued to its session, so the caller can close sessions after.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// An admin starts (with the file's name and the file, created) or stops recording a
/// channel's mix. The result describes the recording.
#[derive(Message)]
#[rtype(result = "Result<Value, ApiError>")]
pub enum AdminRecord {
    Start { name: String, file: std::fs::File },
    Stop,
}

/// An admin plays a file's Opus packets (20 ms each) into a channel, or stops it.
#[derive(Message)]
#[rtype(result = "Result<Value, ApiError>")]
pub enum AdminPlay {
    Start {
        name: String,
        packets: std::sync::Arc<[std::sync::Arc<[u8]>]>,
    },
    Stop,
}

/// An admin sets a channel's mix policy; the result is whether the channel mixes now.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct AdminMix(pub crate::protocol::MixPolicy);

/// The media plane finished recording `file`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordingDone {
    pub file: String,
    pub end: amphi_core::channel::RecordingEnd,
}

/// A file stopped playing into the channel as `participant`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PlaybackDone {
    pub participant: ParticipantId,
    pub reason: crate::protocol::StreamEnd,
}

/// Where a channel's messages go: one recipient per message, so nothing above the channel
/// actor names its type.
#[derive(Clone)]
pub struct ChannelHandle {
    pub join: Recipient<Join>,
    pub request: Recipient<MemberRequest>,
    pub disconnected: Recipient<Disconnected>,
    pub inspect: Recipient<Inspect>,
    pub stop: Recipient<AdminStop>,
    pub kick: Recipient<AdminKick>,
    pub admin: Recipient<AdminOp>,
    pub record: Recipient<AdminRecord>,
    pub mix: Recipient<AdminMix>,
    pub play: Recipient<AdminPlay>,
    pub pause: Recipient<PausePublisher>,
    pub shutdown: Recipient<Shutdown>,
}

impl ChannelHandle {
    pub fn new<A>(addr: Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<Join>
            + Handler<MemberRequest>
            + Handler<Disconnected>
            + Handler<Inspect>
            + Handler<AdminStop>
            + Handler<AdminKick>
            + Handler<AdminOp>
            + Handler<AdminRecord>
            + Handler<AdminMix>
            + Handler<AdminPlay>
            + Handler<PausePublisher>
            + Handler<Shutdown>,
    {
        Self {
            join: addr.clone().recipient(),
            request: addr.clone().recipient(),
            disconnected: addr.clone().recipient(),
            inspect: addr.clone().recipient(),
            stop: addr.clone().recipient(),
            kick: addr.clone().recipient(),
            admin: addr.clone().recipient(),
            record: addr.clone().recipient(),
            mix: addr.clone().recipient(),
            play: addr.clone().recipient(),
            pause: addr.clone().recipient(),
            shutdown: addr.recipient(),
        }
    }

    /// Whether the channel's actor is still running.
    pub fn connected(&self) -> bool {
        self.join.connected()
    }

    pub fn send<M: ToChannel>(&self, msg: M) -> RecipientRequest<M> {
        M::recipient(self).send(msg)
    }

    pub fn do_send<M: ToChannel>(&self, msg: M) {
        M::recipient(self).do_send(msg)
    }
}

/// A message a channel takes, and which of its handle's recipients carries it.
pub trait ToChannel: Message<Result: Send> + Send + Sized + 'static {
    fn recipient(handle: &ChannelHandle) -> &Recipient<Self>;
}

macro_rules! to_channel {
    ($($msg:ty => $field:ident),* $(,)?) => {
        $(impl ToChannel for $msg {
            fn recipient(handle: &ChannelHandle) -> &Recipient<Self> {
                &handle.$field
            }
        })*
    };
}

to_channel! {
    Join => join,
    MemberRequest => request,
    Disconnected => disconnected,
    Inspect => inspect,
    AdminStop => stop,
    AdminKick => kick,
    AdminOp => admin,
    AdminRecord => record,
    AdminMix => mix,
    AdminPlay => play,
    PausePublisher => pause,
    Shutdown => shutdown,
}

impl PartialEq for ChannelHandle {
    fn eq(&self, other: &Self) -> bool {
        self.join == other.join
    }
}

// ---- The call actor's messages ----

#[derive(Debug, Clone)]
pub enum Op {
    Accept {
        media: Option<Media>,
    },
    Reject {
        reason: RejectReason,
        note: Option<String>,
    },
    Hangup {
        reason: EndReason,
        note: Option<String>,
    },
    Invite {
        callees: Vec<Identity>,
    },
    Join,
    MediaChange {
        media: Media,
    },
    MediaChangeCancel {
        transaction: TransactionId,
    },
    MediaChangeReply {
        transaction: TransactionId,
        agree: bool,
    },
    Send {
        kind: String,
        content: Value,
    },
    MediaState {
        microphone: Option<bool>,
        camera: Option<bool>,
    },
    /// The user's last session is gone.
    Disconnect,
    /// The user has a session again.
    Reconnect,
    /// The user heard the call's first audio (its peer in the call channel got a packet).
    FirstAudio,
}

/// One input from (or on behalf of) a member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CallOp {
    pub user: Identity,
    pub op: Op,
    pub reply: Option<ReplyTo>,
    /// Replaces the `ok` reply's fields (a `call` that glared into the other side's call).
    pub ok_result: Option<Value>,
}

impl CallOp {
    pub fn internal(user: Identity, op: Op) -> Self {
        Self {
            user,
            op,
            reply: None,
            ok_result: None,
        }
    }
}

/// Ends the call for everyone (server shutdown, an operator).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Terminate {
    pub reason: EndReason,
}

/// How a call came to be, beyond the [`Call`] itself.
pub struct Placement {
    /// The app's push configuration, for `invite_offline`.
    pub push: Value,
    /// Callees connected in another call when it was placed.
    pub busy: Vec<Identity>,
    /// Callees who block the caller: the call rings them as if they were offline, and
    /// nothing of it reaches them or their call log.
    pub blocked: Vec<Identity>,
    pub live_channel: Option<ChannelId>,
    pub reply: ReplyTo,
    pub requested_at: Instant,
    /// The call met the callee's call to the caller, and stands.
    pub glare: bool,
}

/// Where a call's messages go.
#[derive(Clone)]
pub struct CallHandle {
    pub op: Recipient<CallOp>,
    pub terminate: Recipient<Terminate>,
    pub inspect: Recipient<InspectCall>,
}

impl CallHandle {
    pub fn new<A>(addr: Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<CallOp>
            + Handler<Terminate>
            + Handler<InspectCall>,
    {
        Self {
            op: addr.clone().recipient(),
            terminate: addr.clone().recipient(),
            inspect: addr.recipient(),
        }
    }
}

/// Where a call stands, for the admin API: its members, media, phase and times.
#[derive(Message)]
#[rtype(result = "Value")]
pub struct InspectCall;

/// What a channel asks of the calls: whether a joiner belongs in a call's private channel,
/// and where a call's inputs go. The call engine answers; the registry holds it weakly.
pub trait CallDirectory: Send + Sync {
    fn is_connected_member(&self, call: &CallId, user: &Identity) -> bool;
    fn route(&self, call: &CallId, op: CallOp) -> Result<(), ApiError>;
}

/// Queues a signed webhook event about `subject` (a call, a channel); the sender delivers a
/// subject's events in order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WebhookPush {
    pub subject: amphi_core::webhook::Subject,
    pub event: amphi_core::webhook::WebhookEvent,
}

/// The subject will push nothing more; its state goes once its events are done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WebhookFinish {
    pub subject: amphi_core::webhook::Subject,
}

/// How the webhook sender is doing, for the admin API and tests.
#[derive(Message)]
#[rtype(result = "WebhookStats")]
pub struct WebhookStatsQuery;

#[derive(Debug, Clone, Default, Serialize)]
pub struct WebhookStats {
    /// Events waiting or in flight.
    pub queued: usize,
    pub delivered: u64,
    /// Attempts that failed, retried or not.
    pub failed_attempts: u64,
    /// Events refused because the queue was full.
    pub dropped: u64,
    /// Events abandoned after their last attempt.
    pub given_up: u64,
    /// The last failed attempt's cause (a status, or a refused or timed-out connection).
    pub last_error: Option<String>,
    /// When it failed, unix milliseconds.
    pub last_error_ms: Option<i64>,
    /// When an event was last delivered, unix milliseconds.
    pub last_delivered_ms: Option<i64>,
}

/// One signed `webhook_test` event POSTed now, outside the queue (the events in it keep their
/// order), answered with what the receiver said.
#[derive(Message)]
#[rtype(result = "WebhookTestOutcome")]
pub struct WebhookTest;

#[derive(Debug, Clone, Serialize)]
pub struct WebhookTestOutcome {
    /// Whether the receiver answered 2xx.
    pub ok: bool,
    /// The receiver's HTTP status, when it answered at all.
    pub status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

/// Where webhook events go, for actors that are not the sender.
#[derive(Clone)]
pub struct WebhookSink {
    pub push: Recipient<WebhookPush>,
    pub finish: Recipient<WebhookFinish>,
    pub stats: Recipient<WebhookStatsQuery>,
    pub test: Recipient<WebhookTest>,
}

impl WebhookSink {
    pub fn new<A>(addr: Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<WebhookPush>
            + Handler<WebhookFinish>
            + Handler<WebhookStatsQuery>
            + Handler<WebhookTest>,
    {
        Self {
            push: addr.clone().recipient(),
            finish: addr.clone().recipient(),
            stats: addr.clone().recipient(),
            test: addr.recipient(),
        }
    }

    pub fn push(&self, subject: amphi_core::webhook::Subject, kind: &'static str, data: Value) {
        self.push.do_send(WebhookPush {
            subject,
            event: amphi_core::webhook::WebhookEvent::new(
                kind,
                crate::clock::now_unix_ms() as i64,
                data,
            ),
        });
    }

    /// `subject` pushes nothing more.
    pub fn finish(&self, subject: amphi_core::webhook::Subject) {
        self.finish.do_send(WebhookFinish { subject });
    }
}

// ---- The call log (its own thread) ----

/// Runs on the log thread with a row just closed (and committed).
pub type OnClosed = Box<dyn FnOnce(CallLog) + Send>;

/// A change to the logs. Each is committed before its reply: the reply is the acknowledgement.
pub enum LogWrite {
    Open(Vec<NewCallLog>),
    Ringing {
        call_id: CallId,
        user: Identity,
        at_ms: i64,
    },
    Connect {
        call_id: CallId,
        user: Identity,
        at_ms: i64,
    },
    FirstAudio {
        call_id: CallId,
        user: Identity,
        at_ms: i64,
    },
    /// The call's type or media changed (a group upgrade, a media change, video taken as
    /// audio): every row of the call follows.
    Shape {
        call_id: CallId,
        call_type: CallType,
        media: Media,
    },
    /// Writes nothing: its reply means every write queued before it is committed.
    Barrier,
    /// Closes the row and answers with it, for the member's `call_log` event.
    Close {
        call_id: CallId,
        user: Identity,
        at_ms: i64,
        reason: EndReason,
        /// The note of the reject or hangup behind the close, kept in the row.
        note: Option<String>,
        then: Option<OnClosed>,
    },
}

impl Message for LogWrite {
    type Result = Result<Option<CallLog>, StoreError>;
}

/// A member's own view of the logs.
#[derive(Debug, Clone)]
pub enum LogQuery {
    Page {
        user: Identity,
        page: PageRequest,
    },
    Ongoing {
        user: Identity,
    },
    Delete {
        user: Identity,
        call_ids: Vec<CallId>,
    },
    DeleteAll {
        user: Identity,
    },
}

#[derive(Debug)]
pub enum LogAnswer {
    Page(LogPage),
    Ongoing(Vec<CallLog>),
    Deleted(usize),
}

impl Message for LogQuery {
    type Result = Result<LogAnswer, StoreError>;
}

/// The call-log thread, as actors reach it.
#[derive(Clone)]
pub struct CallLogHandle {
    pub write: Recipient<LogWrite>,
    pub query: Recipient<LogQuery>,
}

impl CallLogHandle {
    pub fn new<A>(addr: Addr<A>) -> Self
    where
        A: Actor + Handler<LogWrite> + Handler<LogQuery>,
        A::Context: ToEnvelope<A, LogWrite> + ToEnvelope<A, LogQuery>,
    {
        Self {
            write: addr.clone().recipient(),
            query: addr.recipient(),
        }
    }
}

// ---- Resuming a session on a new connection ----

/// A new connection asks the parked session to take it as its transport.
#[derive(Message)]
#[rtype(result = "Result<Resumed, ApiError>")]
pub struct ResumeSession {
    pub resume_token: String,
    pub identity: Identity,
    pub last_seq: std::collections::HashMap<String, u64>,
    /// Where the resumed session writes its frames from now on.
    pub relay: Recipient<RelayOut>,
}

/// What a resumed session hands its new connection.
pub struct Resumed {
    /// The channels the session is still in.
    pub channels: Vec<ChannelId>,
    /// Frames the client missed, in order.
    pub missed: Vec<ByteString>,
    /// Channels whose missed events are gone: the client rejoins them.
    pub resync: Vec<String>,
    /// The token for the next resume (each is good once).
    pub resume_token: String,
    /// Where the connection sends the client's frames.
    pub inbound: Recipient<RelayIn>,
}

/// From a resumed session to the connection carrying it.
#[derive(Message)]
#[rtype(result = "()")]
pub enum RelayOut {
    Frame(ByteString),
    Close { code: u16, reason: String },
}

/// From the connection carrying a resumed session to the session.
#[derive(Message)]
#[rtype(result = "()")]
pub enum RelayIn {
    Text(String),
    /// The connection is gone: the session waits for another.
    Lost,
    /// The client closed the connection: the session ends.
    Goodbye,
}
