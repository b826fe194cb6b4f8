//! `SessionActor`: one per WebSocket connection. It decodes frames, enforces the
//! connection's limits and heartbeat, routes requests to channels and writes what they send.

mod calls;
mod requests;
mod resume;
#[cfg(test)]
mod timer_tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;
use actix_http::ws::Frame;
use bytestring::ByteString;

use crate::error::{ApiError, ErrorCode};
use crate::ids::{ChannelId, ParticipantId, SessionId};
use crate::messages::{ChannelHandle, Disconnected};
use crate::messages::{ReplyTo, ToSession};
use crate::protocol;
use crate::state::AppState;
use crate::token::{Grant, GRANT_CALL, GRANT_PROXY};
use crate::ws::{CloseCode, Item, WsError, WsSink};
pub use amphi_core::session::{Admit, Heartbeat, RateLimiter, Replay};

/// Requests read but not yet dispatched, while an earlier one waits for its reply. The rate
/// limit (40 requests of burst by default) keeps it far below this; past it the client is
/// not reading its replies at all.
const MAX_QUEUED_REQUESTS: usize = 256;

/// How long a dispatched request may wait for its reply before the session answers it with
/// an error and moves on. Every server-side wait is shorter (a media offer gives up after
/// 10 s, a call-log write after its fsync), so this only fires on a server bug.
const REPLY_DEADLINE: Duration = Duration::from_secs(30);

/// A frame read from the socket, waiting for its turn to be answered.
enum Queued {
    Request(String),
    /// Refused by the rate limit when it arrived: answered `rate_limited` in its turn.
    Limited(String),
    /// Binary frames are not part of the protocol; the error goes out in its turn.
    Binary,
}

/// The request whose reply the session waits for.
struct InFlight {
    token: u64,
    id: Option<u64>,
    since: Instant,
}

struct Membership {
    participant: ParticipantId,
    /// `None` while the join is on its way to the channel.
    addr: Option<ChannelHandle>,
    /// Given back when the membership ends, whatever ends it.
    _seat: crate::admission::Seat,
}

pub struct SessionActor {
    session: SessionId,
    grant: Arc<Grant>,
    allowed_roles: Arc<[String]>,
    state: Arc<AppState>,
    limiter: RateLimiter,
    heartbeat: Heartbeat,
    /// Whether this connection has sent a `join` (the join timeout closes it otherwise).
    joined_once: bool,
    channels: HashMap<ChannelId, Membership>,
    /// A fragmented text message being reassembled, bounded by `max_frame_bytes`.
    fragments: Option<Vec<u8>>,
    /// Requests are handled one at a time, so each gets exactly one reply, in the order
    /// sent, and each sees the membership the previous replies described.
    queued: VecDeque<Queued>,
    in_flight: Option<InFlight>,
    next_token: u64,
    /// The token of the reply path handed out by the request being dispatched.
    issued: Option<(u64, Option<u64>)>,
    /// Where frames to the client go: its socket, nowhere yet (parked), or the connection
    /// that resumed this session.
    link: Link,
    /// What was sent lately, for a client that resumes.
    replay: Replay,
    /// The secret a `resume` of this session must present; a new one after each resume.
    resume_token: String,
    /// This connection carries another session (it resumed it): frames go there.
    carrying: Option<Carrying>,
    /// When this session parked (its resume window counts from then).
    parked_at: Option<Instant>,
    /// What it held outside itself is given back (`release`).
    released: bool,
}

/// Where a session's frames go.
enum Link {
    Socket(WsSink),
    /// The socket dropped; the session waits for a resume until the window passes.
    Parked,
    /// Resumed on another connection, which relays.
    Relay(Recipient<crate::messages::RelayOut>),
}

/// A connection that resumed another session: the client's frames go to it, its frames come
/// back (held until the resume's reply is out, so that the reply comes first).
struct Carrying {
    to: Option<Recipient<crate::messages::RelayIn>>,
    held: Option<Vec<ByteString>>,
}

impl SessionActor {
    pub fn new(grant: Grant, state: Arc<AppState>, out: WsSink) -> Self {
        let replay = Replay::new(state.config.limits.resume_buffer);
        let now = crate::clock::now();
        let limits = &state.config.limits;
        let limiter = RateLimiter::new(
            limits.messages_per_second,
            limits.message_burst,
            limits.rate_limit_strikes,
            now,
        );
        let heartbeat = Heartbeat::new(state.config.timeouts.heartbeat_timeout, now);
        Self {
            session: SessionId::random(),
            allowed_roles: grant.roles.clone().into(),
            grant: Arc::new(grant),
            state,
            limiter,
            heartbeat,
            joined_once: false,
            channels: HashMap::new(),
            fragments: None,
            queued: VecDeque::new(),
            in_flight: None,
            next_token: 0,
            issued: None,
            link: Link::Socket(out),
            replay,
            resume_token: crate::token::new_jti(),
            carrying: None,
            parked_at: None,
            released: false,
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str) {
        match &mut self.link {
            Link::Socket(out) => out.close(code, reason),
            Link::Relay(to) => to.do_send(crate::messages::RelayOut::Close {
                code: code.into(),
                reason: reason.to_string(),
            }),
            Link::Parked => {}
        }
        ctx.stop();
    }

    /// Writes a frame to the client. A client whose queue is full is not reading: it is
    /// closed (the queue keeps room for the close frame).
    fn text(&mut self, frame: impl Into<ByteString>, ctx: &mut Context<Self>) {
        let frame = frame.into();
        let attached = !matches!(self.link, Link::Parked);
        if self.resumable() {
            self.replay.record(&frame, attached);
        }
        let full = match &mut self.link {
            Link::Socket(out) => out.text(frame).is_err(),
            Link::Relay(to) => to
                .try_send(crate::messages::RelayOut::Frame(frame))
                .is_err(),
            Link::Parked => false,
        };
        if full {
            self.too_slow(ctx);
        }
    }

    /// Whether this session would wait for a resume if its connection dropped: it is in a
    /// channel and resuming is on.
    fn resumable(&self) -> bool {
        !self.channels.is_empty() && !self.state.config.timeouts.resume_window.is_zero()
    }

    fn too_slow(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(session = %self.session, "closing a client that does not read");
        self.close(ctx, CloseCode::Policy, "too slow to receive channel events");
    }

    fn on_text(&mut self, text: String, ctx: &mut Context<Self>) {
        let item = match self.limiter.admit(crate::clock::now()) {
            Admit::Yes => Queued::Request(text),
            Admit::Limited => Queued::Limited(text),
            Admit::Disconnect => {
                tracing::info!(session = %self.session, identity = %self.grant.identity,
                    "disconnecting a client that kept flooding");
                self.close(ctx, CloseCode::Policy, "rate limit exceeded");
                return;
            }
        };
        self.enqueue(item, ctx);
    }

    fn enqueue(&mut self, item: Queued, ctx: &mut Context<Self>) {
        if self.queued.len() >= MAX_QUEUED_REQUESTS {
            tracing::info!(session = %self.session, "closing a client that reads no replies");
            self.close(
                ctx,
                CloseCode::Policy,
                "too many requests waiting for replies",
            );
            return;
        }
        self.queued.push_back(item);
        self.pump(ctx);
    }

    /// Handles queued requests until one waits for a reply from another actor.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight.is_none() {
            let Some(q) = self.queued.pop_front() else {
                return;
            };
            self.handle_request(q, ctx);
        }
    }

    fn handle_request(&mut self, q: Queued, ctx: &mut Context<Self>) {
        let text = match q {
            Queued::Request(text) => text,
            Queued::Binary => {
                let err = ApiError::bad_request(
                    "binary frames are not part of the protocol; send JSON text frames",
                );
                self.text(protocol::error(None, &err), ctx);
                return;
            }
            Queued::Limited(text) => {
                let (id, _) = protocol::parse_request(&text);
                let err = ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} requests per second; slow down or be disconnected",
                        self.state.config.limits.messages_per_second
                    ),
                );
                self.text(protocol::error(id, &err), ctx);
                return;
            }
        };
        let (id, parsed) = protocol::parse_request(&text);
        self.issued = None;
        let result = parsed.and_then(|req| self.dispatch(id, req, ctx));
        match (result, self.issued.take()) {
            // A reply path went out with the request: its reply comes through the mailbox.
            (Ok(()), Some((token, id))) => {
                self.in_flight = Some(InFlight {
                    token,
                    id,
                    since: crate::clock::now(),
                })
            }
            (Ok(()), None) => {}
            // Refused here: a reply path handed out on the way is stale and its reply ignored.
            (Err(err), _) => self.text(protocol::error(id, &err), ctx),
        }
    }

    /// The reply path of the request being dispatched; its reply ends the wait. `fallback`
    /// answers the request if it is dropped unanswered.
    pub(crate) fn reply_to(
        &mut self,
        id: Option<u64>,
        fallback: Option<ApiError>,
        ctx: &mut Context<Self>,
    ) -> ReplyTo {
        self.next_token += 1;
        self.issued = Some((self.next_token, id));
        ReplyTo::new(ctx.address().recipient(), id, self.next_token, fallback)
    }

    /// Answers a request whose reply never came, so the requests behind it are not stuck.
    fn check_reply_deadline(&mut self, ctx: &mut Context<Self>) {
        let Some(f) = &self.in_flight else { return };
        if f.since.elapsed() < REPLY_DEADLINE {
            return;
        }
        tracing::error!(session = %self.session, request = ?f.id, "a request got no reply");
        let err = ApiError::new(
            ErrorCode::Internal,
            "the server did not answer this request in time; send it again",
        );
        let frame = protocol::error(f.id, &err);
        let token = f.token;
        self.on_reply(token, frame, ctx);
    }

    /// Writes the reply to the request in flight (a stale one is dropped) and moves on.
    fn on_reply(&mut self, token: u64, frame: ByteString, ctx: &mut Context<Self>) {
        if self.in_flight.as_ref().map(|f| f.token) != Some(token) {
            tracing::debug!(session = %self.session, token, "dropping a stale reply");
            return;
        }
        self.in_flight = None;
        self.text(frame, ctx);
        self.pump(ctx);
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.state.config.limits.outbound_queue);
        self.state
            .sessions
            .insert(self.session.clone(), ctx.address().recipient());
        if self.grant.has(GRANT_CALL) {
            self.state.calls.register(
                &self.grant.identity,
                &self.session,
                ctx.address().recipient(),
            );
        }
        if self.grant.has(GRANT_PROXY) {
            self.state
                .calls
                .register_proxy(&self.session, ctx.address().recipient());
        }
        self.text(
            protocol::welcome(
                self.session.as_str(),
                &self.grant.identity,
                &self.resume_token,
            ),
            ctx,
        );
        // A connection that can only join channels must join one: an idle authenticated
        // socket is a cost to the server and nothing to its owner.
        if !self.grant.has(GRANT_CALL) && !self.grant.has(GRANT_PROXY) {
            ctx.run_later(self.state.config.timeouts.join_timeout, |act, ctx| {
                if !act.joined_once {
                    act.close(ctx, CloseCode::Policy, "no channel joined in time");
                }
            });
        }
        let interval = self.state.config.timeouts.heartbeat_interval;
        ctx.run_interval(interval, |act, ctx| {
            act.check_reply_deadline(ctx);
            // Only a session's own socket is watched; a relaying connection watches its own.
            let Link::Socket(out) = &mut act.link else {
                return;
            };
            if act.heartbeat.expired(crate::clock::now()) {
                tracing::debug!(session = %act.session, "heartbeat timed out");
                out.close(CloseCode::Away, "heartbeat timeout");
                act.connection_lost(ctx);
            } else if out.ping().is_err() {
                act.too_slow(ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.release();
    }
}

impl SessionActor {
    /// Ends what the session holds outside itself: its place in the server's tables, its
    /// calls' registration, its memberships. Runs once, when the actor stops, or when it is
    /// dropped without stopping (its code panicked: the runtime dropped it).
    fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        self.state.sessions.remove(&self.session);
        self.state.parked.remove(&self.session);
        if let Some(to) = self.carrying.as_mut().and_then(|c| c.to.take()) {
            to.do_send(crate::messages::RelayIn::Lost);
        }
        self.state
            .calls
            .unregister(&self.grant.identity, &self.session);
        for (channel, m) in self.channels.drain() {
            // A join whose send future has not resolved yet has no address; the registry
            // knows where it went (leaving twice is harmless).
            if let Some(addr) = m.addr.or_else(|| self.state.channels.get(&channel)) {
                // One message per membership at the end of a connection: bounded by the
                // membership limit, and it must not be lost, so it bypasses the mailbox bound.
                addr.do_send(Disconnected {
                    participant: m.participant,
                });
            }
        }
    }
}

impl Drop for SessionActor {
    fn drop(&mut self) {
        if !self.released {
            tracing::warn!(session = %self.session, "a session ended without stopping (its code panicked); its memberships end as a disconnect");
            self.release();
        }
    }
}

impl Handler<ToSession> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: ToSession, ctx: &mut Self::Context) {
        let _scope = crate::panics::ConnectionScope::enter();
        match msg {
            ToSession::Frame(frame) => self.text(frame, ctx),
            ToSession::Media { channel, event } => {
                self.text(protocol::media_event(&channel, &event), ctx)
            }
            ToSession::Reply { token, frame } => self.on_reply(token, frame, ctx),
            ToSession::Detached {
                channel,
                participant,
            } => {
                if self
                    .channels
                    .get(&channel)
                    .is_some_and(|m| m.participant == participant)
                {
                    self.channels.remove(&channel);
                }
            }
            ToSession::Close { code, reason } => {
                self.close(ctx, CloseCode::from(code), &reason);
            }
            ToSession::Revoked { jti } => {
                if self.grant.jti.as_deref() == Some(jti.as_str()) {
                    self.close(
                        ctx,
                        CloseCode::Policy,
                        "the token of this connection was revoked; connect with a new one",
                    );
                }
            }
        }
    }
}

impl StreamHandler<Result<Frame, WsError>> for SessionActor {
    fn handle(&mut self, item: Result<Frame, WsError>, ctx: &mut Self::Context) {
        let _scope = crate::panics::ConnectionScope::enter();
        let frame = match item {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!(session = %self.session, error = %e, "websocket closed");
                match e.close_code() {
                    Some(code) => self.close(ctx, code, e.close_reason()),
                    // The peer went away mid-frame: nobody is left to tell.
                    None => self.connection_lost(ctx),
                }
                return;
            }
        };
        self.heartbeat.seen(crate::clock::now());
        match frame {
            Frame::Text(bytes) => match String::from_utf8(bytes.to_vec()) {
                Ok(text) => self.on_client_text(text, ctx),
                Err(_) => self.close(ctx, CloseCode::Invalid, "text message is not UTF-8"),
            },
            Frame::Binary(_) => {
                if self.limiter.admit(crate::clock::now()) == Admit::Disconnect {
                    self.close(ctx, CloseCode::Policy, "rate limit exceeded");
                    return;
                }
                self.enqueue(Queued::Binary, ctx);
            }
            Frame::Continuation(item) => self.on_fragment(item, ctx),
            Frame::Ping(p) => {
                if let Link::Socket(out) = &mut self.link {
                    if out.pong(p).is_err() {
                        self.too_slow(ctx);
                    }
                }
            }
            Frame::Pong(_) => {}
            Frame::Close(reason) => {
                // A goodbye, not a loss: the session ends, and so does one this connection
                // resumed.
                if let Link::Socket(out) = &mut self.link {
                    out.close_echo(reason);
                }
                if let Some(to) = self.carrying.as_mut().and_then(|c| c.to.take()) {
                    to.do_send(crate::messages::RelayIn::Goodbye);
                }
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if matches!(self.link, Link::Socket(_)) {
            self.connection_lost(ctx);
        }
    }
}

impl SessionActor {
    fn on_fragment(&mut self, item: Item, ctx: &mut Context<Self>) {
        let max = self.state.config.limits.max_frame_bytes;
        let (data, last) = match item {
            Item::FirstText(data) => {
                self.fragments = Some(Vec::new());
                (data, false)
            }
            Item::FirstBinary(_) => {
                self.fragments = None;
                self.enqueue(Queued::Binary, ctx);
                return;
            }
            Item::Continue(data) => (data, false),
            Item::Last(data) => (data, true),
        };
        let Some(buf) = self.fragments.as_mut() else {
            return;
        };
        if buf.len() + data.len() > max {
            self.close(ctx, CloseCode::Size, "message too large");
            return;
        }
        buf.extend_from_slice(&data);
        if last {
            let buf = self.fragments.take().unwrap_or_default();
            match String::from_utf8(buf) {
                Ok(text) => self.on_client_text(text, ctx),
                Err(_) => self.close(ctx, CloseCode::Invalid, "text message is not UTF-8"),
            }
        }
    }
}
