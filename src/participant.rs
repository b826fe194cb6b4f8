//! `ParticipantActor`: one per WebSocket connection. It decodes frames, enforces the
//! connection's limits and heartbeat, routes requests to channels and writes what they send.

mod calls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use bytestring::ByteString;

use crate::calls::actor::Op as CallAction;
use crate::channel::actor::{ChannelActor, Disconnected, Join, MemberOp, MemberRequest};
use crate::channel::JoinSpec;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ChannelId, ParticipantId, SessionId};
use crate::protocol::{self, Request};
use crate::session::{Admit, Heartbeat, RateLimiter};
use crate::state::AppState;
use crate::token::{Grant, GRANT_CALL, GRANT_PROXY};

/// Everything a session receives from the rest of the server.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ToSession {
    /// A frame to write as is.
    Frame(ByteString),
    /// The session is no longer in `channel` as `participant`.
    Detached {
        channel: ChannelId,
        participant: ParticipantId,
    },
    /// Close the connection.
    Close { code: u16, reason: String },
}

struct Membership {
    participant: ParticipantId,
    /// `None` while the join is on its way to the channel.
    addr: Option<Addr<ChannelActor>>,
}

pub struct ParticipantActor {
    session: SessionId,
    grant: Arc<Grant>,
    allowed_roles: Arc<[String]>,
    state: Arc<AppState>,
    limiter: RateLimiter,
    heartbeat: Heartbeat,
    channels: HashMap<ChannelId, Membership>,
    /// A fragmented text message being reassembled, bounded by `max_frame_bytes`.
    fragments: Option<Vec<u8>>,
}

impl ParticipantActor {
    pub fn new(grant: Grant, state: Arc<AppState>) -> Self {
        let now = Instant::now();
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
            channels: HashMap::new(),
            fragments: None,
        }
    }

    fn close(ctx: &mut ws::WebsocketContext<Self>, code: CloseCode, reason: &str) {
        ctx.close(Some(CloseReason {
            code,
            description: Some(reason.to_string()),
        }));
        ctx.stop();
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        match self.limiter.admit(Instant::now()) {
            Admit::Yes => {}
            Admit::Limited => {
                let (id, _) = protocol::parse_request(text);
                let err = ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} requests per second; slow down or be disconnected",
                        self.state.config.limits.messages_per_second
                    ),
                );
                ctx.text(protocol::error(id, &err));
                return;
            }
            Admit::Disconnect => {
                tracing::info!(session = %self.session, identity = %self.grant.identity,
                    "disconnecting a client that kept flooding");
                Self::close(ctx, CloseCode::Policy, "rate limit exceeded");
                return;
            }
        }
        let (id, parsed) = protocol::parse_request(text);
        let result = parsed.and_then(|req| self.dispatch(id, req, ctx));
        if let Err(err) = result {
            ctx.text(protocol::error(id, &err));
        }
    }

    /// Routes one request. Channel requests are answered by the channel through this
    /// session's mailbox, so replies and events stay in order.
    fn dispatch(
        &mut self,
        id: Option<u64>,
        req: Request,
        ctx: &mut ws::WebsocketContext<Self>,
    ) -> Result<(), ApiError> {
        let (channel, op) = match req {
            Request::Ping {} => {
                ctx.text(protocol::ok(
                    id,
                    serde_json::json!({ "time_ms": crate::token::now_unix_ms() }),
                ));
                return Ok(());
            }
            Request::Join {
                channel,
                uri,
                role,
                metadata,
            } => return self.join(id, &channel, uri, role, metadata, ctx),
            Request::Leave { channel } => (channel, MemberOp::Leave),
            Request::Stop { channel } => (channel, MemberOp::Stop),
            Request::SetRole {
                channel,
                role,
                participant,
            } => (
                channel,
                MemberOp::SetRole {
                    role,
                    target: participant
                        .as_deref()
                        .map(ParticipantId::parse)
                        .transpose()?,
                },
            ),
            Request::RequestRole { channel, role } => (channel, MemberOp::RequestRole { role }),
            Request::Mute {
                channel,
                muted,
                participant,
            } => (
                channel,
                MemberOp::Mute {
                    muted,
                    target: participant
                        .as_deref()
                        .map(ParticipantId::parse)
                        .transpose()?,
                },
            ),
            Request::Kick {
                channel,
                participant,
                reason,
            } => (
                channel,
                MemberOp::Kick {
                    target: ParticipantId::parse(&participant)?,
                    reason,
                },
            ),
            other @ (Request::Call { .. }
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
            | Request::DeleteAllCallLogs {}) => return self.call_request(id, other, ctx),
            Request::MediaOffer { channel, sdp } => (channel, MemberOp::MediaOffer { sdp }),
            Request::MediaAnswer { channel, sdp } => (channel, MemberOp::MediaAnswer { sdp }),
            Request::MediaCandidate { channel, candidate } => {
                (channel, MemberOp::MediaCandidate { candidate })
            }
            Request::Send {
                channel,
                call_id,
                kind,
                content,
                to,
            } => {
                if kind.is_empty() || kind.len() > 64 {
                    return Err(ApiError::bad_request("\"kind\" must be 1 to 64 bytes"));
                }
                let channel = match (channel, call_id) {
                    (Some(c), None) => c,
                    (None, Some(call_id)) => {
                        if !to.is_empty() {
                            return Err(ApiError::bad_request(
                                "\"to\" is for channels; a call message reaches every other \
                                 member of the call",
                            ));
                        }
                        let user = self.caller(None)?;
                        return self.route_call(
                            id,
                            &call_id,
                            user,
                            CallAction::Send { kind, content },
                            ctx,
                        );
                    }
                    _ => {
                        return Err(ApiError::bad_request(
                            "send needs exactly one of \"channel\" and \"call_id\"",
                        ))
                    }
                };
                let to = to
                    .iter()
                    .map(|p| ParticipantId::parse(p))
                    .collect::<Result<Vec<_>, _>>()?;
                (channel, MemberOp::Send { kind, content, to })
            }
        };
        let channel = ChannelId::parse(&channel)?;
        let membership = self.channels.get(&channel).ok_or_else(|| {
            ApiError::not_found(format!("you are not in channel '{channel}'; join it first"))
        })?;
        // The join reply can arrive before the join's send future resolves: the registry
        // already knows the channel the join went to.
        let addr = membership
            .addr
            .clone()
            .or_else(|| self.state.channels.get(&channel))
            .ok_or_else(|| ApiError::not_found(format!("channel '{channel}' has ended")))?;
        let msg = MemberRequest {
            participant: membership.participant.clone(),
            request: id,
            op,
        };
        // `send`, not `try_send`: a channel that stops with this request in its mailbox drops
        // it unhandled, and only `send` tells; the client then hears the channel ended
        // instead of waiting for a reply that never comes. The wait for mailbox space is
        // bounded by this connection's rate limit.
        let fut = addr.send(msg);
        ctx.spawn(fut.into_actor(self).map(move |result, _, ctx| {
            if result.is_err() {
                let err = ApiError::not_found(format!("channel '{channel}' has ended"));
                ctx.text(protocol::error(id, &err));
            }
        }));
        Ok(())
    }

    fn join(
        &mut self,
        id: Option<u64>,
        requested: &str,
        uri: bool,
        role: Option<String>,
        metadata: Option<serde_json::Value>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) -> Result<(), ApiError> {
        if self.state.is_shutting_down() {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the server is shutting down; reconnect shortly",
            ));
        }
        let channel = if uri {
            ChannelId::from_uri(requested)?
        } else {
            ChannelId::parse(requested)?
        };
        if !self.grant.allows_channel(requested, &channel) {
            return Err(ApiError::forbidden(format!(
                "your token does not allow channel '{requested}'"
            )));
        }
        if self.channels.contains_key(&channel) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("you are already in channel '{channel}'"),
            ));
        }
        let max = self.state.config.limits.max_channels_per_connection;
        if self.channels.len() >= max {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("one connection can be in at most {max} channels; leave one first"),
            ));
        }
        let (role, allowed_roles) = match crate::calls::engine::channel_call(&channel) {
            Some(call) => {
                if !self
                    .state
                    .calls
                    .is_connected_member(&call, &self.grant.identity)
                {
                    return Err(ApiError::forbidden(format!(
                        "channel '{channel}' carries call '{call}'; only its connected members \
                         may join"
                    )));
                }
                let role = self.state.config.calls.role.clone();
                (Some(role.clone()), Arc::from(vec![role]))
            }
            None if channel
                .as_str()
                .starts_with(crate::calls::engine::CALL_CHANNEL_PREFIX) =>
            {
                return Err(ApiError::forbidden(format!(
                    "channel IDs starting with '{}' are reserved for calls",
                    crate::calls::engine::CALL_CHANNEL_PREFIX
                )));
            }
            None => (role, self.allowed_roles.clone()),
        };
        let participant = ParticipantId::random();
        self.channels.insert(
            channel.clone(),
            Membership {
                participant: participant.clone(),
                addr: None,
            },
        );
        let join = Join {
            spec: JoinSpec {
                request: id,
                participant: participant.clone(),
                identity: self.grant.identity.clone(),
                name: self.grant.name.clone(),
                role,
                allowed_roles,
                metadata,
            },
            session: ctx.address().recipient(),
            received: Instant::now(),
        };
        let registry = self.state.channels.clone();
        let target = channel.clone();
        // A channel that is ending refuses the message; the retry finds (or makes) a new one.
        let fut = async move {
            for _ in 0..3 {
                let addr = registry.get_or_create(&target);
                let msg = Join {
                    spec: join.spec.clone(),
                    session: join.session.clone(),
                    received: join.received,
                };
                if addr.send(msg).await.is_ok() {
                    return Some(addr);
                }
                registry.remove(&target, &addr);
            }
            None
        };
        ctx.spawn(fut.into_actor(self).map(move |addr, act, ctx| {
            let Some(m) = act.channels.get_mut(&channel) else {
                // Detached (join refused) before the send resolved.
                return;
            };
            if m.participant != participant {
                return;
            }
            match addr {
                Some(addr) => m.addr = Some(addr),
                None => {
                    act.channels.remove(&channel);
                    let err = ApiError::new(
                        ErrorCode::Internal,
                        format!("channel '{channel}' could not be joined; try again"),
                    );
                    ctx.text(protocol::error(id, &err));
                }
            }
        }));
        Ok(())
    }
}

impl Actor for ParticipantActor {
    type Context = ws::WebsocketContext<Self>;

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
        ctx.text(protocol::welcome(
            self.session.as_str(),
            &self.grant.identity,
        ));
        let interval = self.state.config.timeouts.heartbeat_interval;
        ctx.run_interval(interval, |act, ctx| {
            if act.heartbeat.expired(Instant::now()) {
                tracing::debug!(session = %act.session, "heartbeat timed out");
                Self::close(ctx, CloseCode::Away, "heartbeat timeout");
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.state.sessions.remove(&self.session);
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

impl Handler<ToSession> for ParticipantActor {
    type Result = ();

    fn handle(&mut self, msg: ToSession, ctx: &mut Self::Context) {
        match msg {
            ToSession::Frame(frame) => ctx.text(frame),
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
                Self::close(ctx, CloseCode::from(code), &reason);
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ParticipantActor {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let msg = match item {
            Ok(msg) => msg,
            Err(ws::ProtocolError::Overflow) => {
                Self::close(ctx, CloseCode::Size, "frame too large");
                return;
            }
            Err(ws::ProtocolError::Io(e)) => {
                // The peer went away mid-frame: nobody is left to tell.
                tracing::debug!(session = %self.session, error = %e, "connection lost");
                ctx.stop();
                return;
            }
            Err(e) => {
                tracing::debug!(session = %self.session, error = %e, "websocket protocol error");
                Self::close(ctx, CloseCode::Protocol, "protocol error");
                return;
            }
        };
        self.heartbeat.seen(Instant::now());
        match msg {
            ws::Message::Text(text) => self.on_text(&text, ctx),
            ws::Message::Binary(_) => {
                if self.limiter.admit(Instant::now()) == Admit::Disconnect {
                    Self::close(ctx, CloseCode::Policy, "rate limit exceeded");
                    return;
                }
                let err = ApiError::bad_request(
                    "binary frames are not part of the protocol; send JSON text frames",
                );
                ctx.text(protocol::error(None, &err));
            }
            ws::Message::Continuation(item) => self.on_fragment(item, ctx),
            ws::Message::Ping(p) => ctx.pong(&p),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl ParticipantActor {
    fn on_fragment(&mut self, item: actix_http::ws::Item, ctx: &mut ws::WebsocketContext<Self>) {
        let max = self.state.config.limits.max_frame_bytes;
        let (data, last) = match item {
            actix_http::ws::Item::FirstText(data) => {
                self.fragments = Some(Vec::new());
                (data, false)
            }
            actix_http::ws::Item::FirstBinary(_) => {
                self.fragments = None;
                let err = ApiError::bad_request("binary frames are not part of the protocol");
                ctx.text(protocol::error(None, &err));
                return;
            }
            actix_http::ws::Item::Continue(data) => (data, false),
            actix_http::ws::Item::Last(data) => (data, true),
        };
        let Some(buf) = self.fragments.as_mut() else {
            return;
        };
        if buf.len() + data.len() > max {
            Self::close(ctx, CloseCode::Size, "message too large");
            return;
        }
        buf.extend_from_slice(&data);
        if last {
            let buf = self.fragments.take().unwrap_or_default();
            match String::from_utf8(buf) {
                Ok(text) => self.on_text(&text, ctx),
                Err(_) => Self::close(ctx, CloseCode::Invalid, "text message is not UTF-8"),
            }
        }
    }
}
