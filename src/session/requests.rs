//! A session's requests: routing each to its channel (or to the calls), and joining.

use std::sync::Arc;

use actix::prelude::*;

use super::{Membership, SessionActor};
use crate::channel::JoinSpec;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ChannelId, ParticipantId};
use crate::messages::Op as CallAction;
use crate::messages::{Join, MemberOp, MemberRequest, ReplyTo};
use crate::protocol::{self, Request};

/// A join that passed its checks: the channel, the role asked for and the roles allowed.
type Admitted = (ChannelId, Option<String>, Arc<[String]>);

impl SessionActor {
    /// Routes one request. Channel requests are answered by the channel through this
    /// session's mailbox, so replies and events stay in order.
    pub(super) fn dispatch(
        &mut self,
        id: Option<u64>,
        req: Request,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        let (channel, op) = match req {
            Request::Resume {
                session,
                resume_token,
                last_seq,
            } => return self.resume(id, session, resume_token, last_seq, ctx),
            Request::Ping {} => {
                crate::panics::injected(&self.grant.identity, "session");
                self.text(
                    protocol::ok(
                        id,
                        serde_json::json!({ "time_ms": crate::clock::now_unix_ms() }),
                    ),
                    ctx,
                );
                return Ok(());
            }
            Request::Join {
                channel,
                uri,
                role,
                metadata,
                audio,
            } => return self.join(id, &channel, uri, role, metadata, audio, ctx),
            Request::Send {
                channel: None,
                call_id: Some(call_id),
                kind,
                content,
                to,
            } => return self.send_to_call(id, call_id, kind, content, to, ctx),
            other if other.is_call_request() => return self.call_request(id, other, ctx),
            other => channel_op(other)?,
        };
        self.request_channel(id, channel, op, ctx)
    }

    /// A `send` to the other members of a call.
    fn send_to_call(
        &mut self,
        id: Option<u64>,
        call_id: String,
        kind: String,
        content: serde_json::Value,
        to: Vec<String>,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        check_kind(&kind)?;
        if !to.is_empty() {
            return Err(ApiError::bad_request(
                "\"to\" is for channels; a call message reaches every other member of the call",
            ));
        }
        let user = self.caller(None)?;
        self.route_call(id, &call_id, user, CallAction::Send { kind, content }, ctx)
    }

    /// Sends a member's request to its channel; the channel answers through the mailbox.
    fn request_channel(
        &mut self,
        id: Option<u64>,
        channel: String,
        op: MemberOp,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
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
        let participant = membership.participant.clone();
        // A channel that stops with this request in its mailbox drops it unhandled: the
        // reply path's fallback then tells the client the channel ended.
        let ended = ApiError::not_found(format!("channel '{channel}' has ended"));
        let msg = MemberRequest {
            participant,
            reply: self.reply_to(id, Some(ended), ctx),
            op,
        };
        // `send` waits for mailbox space, bounded by one request in flight per session.
        ctx.spawn(addr.send(msg).into_actor(self).map(|_, _, _| ()));
        Ok(())
    }

    /// Whether this session may join `requested` (and as what): the checks a join passes
    /// before it goes to the channel.
    fn admit_join(
        &self,
        requested: &str,
        uri: bool,
        role: Option<String>,
    ) -> Result<Admitted, ApiError> {
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
        if !self.grant.allows_channel(&channel) {
            return Err(ApiError::forbidden(format!(
                "your token does not allow channel '{requested}'"
            )));
        }
        let now_ms = crate::clock::now_unix_ms();
        if let Some(until) = self
            .state
            .bans
            .banned_until(&channel, &self.grant.identity, now_ms)
        {
            return Err(ApiError::forbidden(format!(
                "you were removed from channel '{channel}'; you may join it again in {} s, or \
                 when a moderator lets you back in",
                (until - now_ms).div_ceil(1000)
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
        let (role, allowed_roles) = match crate::calls::call::channel_call(&channel) {
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
                .starts_with(crate::calls::call::CALL_CHANNEL_PREFIX) =>
            {
                return Err(ApiError::forbidden(format!(
                    "channel IDs starting with '{}' are reserved for calls",
                    crate::calls::call::CALL_CHANNEL_PREFIX
                )));
            }
            None => (role, self.allowed_roles.clone()),
        };
        Ok((channel, role, allowed_roles))
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        id: Option<u64>,
        requested: &str,
        uri: bool,
        role: Option<String>,
        metadata: Option<serde_json::Value>,
        audio: crate::protocol::AudioMode,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        let (channel, role, allowed_roles) = self.admit_join(requested, uri, role)?;
        let seat = self
            .state
            .seats
            .take("participants", "limits.max_participants")?;
        self.joined_once = true;
        let participant = ParticipantId::random();
        self.channels.insert(
            channel.clone(),
            Membership {
                participant: participant.clone(),
                addr: None,
                _seat: seat,
            },
        );
        // The reply paths of the attempts below are silent when dropped: a channel that
        // stops with the join in its mailbox is retried, and only the last failure answers.
        drop(self.reply_to(id, None, ctx));
        let token = self.next_token;
        let join = Join {
            reply: ReplyTo::new(ctx.address().recipient(), id, token, None),
            spec: JoinSpec {
                request: id,
                participant: participant.clone(),
                identity: self.grant.identity.clone(),
                name: self.grant.name.clone(),
                role,
                allowed_roles,
                metadata,
                audio,
                token_expires_s: Some(self.grant.expires_at),
            },
            session: ctx.address().recipient(),
            received: crate::clock::now(),
        };
        let registry = self.state.channels.clone();
        let target = channel.clone();
        // A channel that is ending refuses the message; the retry finds (or makes) a new one.
        let fut = async move {
            for _ in 0..3 {
                let addr = registry.get_or_create(&target);
                let msg = Join {
                    reply: ReplyTo::new(join.session.clone(), id, token, None),
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
            let mine = act
                .channels
                .get(&channel)
                .is_some_and(|m| m.participant == participant);
            match addr {
                Some(addr) => {
                    if mine {
                        if let Some(m) = act.channels.get_mut(&channel) {
                            m.addr = Some(addr);
                        }
                    }
                }
                None => {
                    if mine {
                        act.channels.remove(&channel);
                    }
                    let err = ApiError::new(
                        ErrorCode::Internal,
                        format!("channel '{channel}' could not be joined; try again"),
                    );
                    act.on_reply(token, protocol::error(id, &err), ctx);
                }
            }
        }));
        Ok(())
    }
}

fn check_kind(kind: &str) -> Result<(), ApiError> {
    if kind.is_empty() || kind.len() > 64 {
        return Err(ApiError::bad_request("\"kind\" must be 1 to 64 bytes"));
    }
    Ok(())
}

fn participant(p: Option<String>) -> Result<Option<ParticipantId>, ApiError> {
    Ok(p.as_deref().map(ParticipantId::parse).transpose()?)
}

/// A channel request as the member operation its channel handles, with the channel's name.
fn channel_op(req: Request) -> Result<(String, MemberOp), ApiError> {
    Ok(match req {
        Request::Leave { channel } => (channel, MemberOp::Leave),
        Request::Stop { channel } => (channel, MemberOp::Stop),
        Request::SetRole {
            channel,
            role,
            participant: p,
        } => (
            channel,
            MemberOp::SetRole {
                role,
                target: participant(p)?,
            },
        ),
        Request::RequestRole { channel, role } => (channel, MemberOp::RequestRole { role }),
        Request::Mute {
            channel,
            muted,
            participant: p,
        } => (
            channel,
            MemberOp::Mute {
                muted,
                target: participant(p)?,
            },
        ),
        Request::SetMix { channel, policy } => (channel, MemberOp::SetMix { policy }),
        Request::SetAudio { channel, audio } => (channel, MemberOp::SetAudio { audio }),
        Request::SetVolume {
            channel,
            participant,
            gain,
        } => (
            channel,
            MemberOp::SetVolume {
                target: ParticipantId::parse(&participant)?,
                gain,
            },
        ),
        Request::Unban { channel, identity } => (
            channel,
            MemberOp::Unban {
                identity: crate::ids::Identity::parse(&identity)?,
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
        Request::MediaOffer { channel, sdp } => (channel, MemberOp::MediaOffer { sdp }),
        Request::MediaAnswer { channel, sdp } => (channel, MemberOp::MediaAnswer { sdp }),
        Request::MediaCandidate { channel, candidate } => {
            (channel, MemberOp::MediaCandidate { candidate })
        }
        Request::Send {
            channel: Some(channel),
            call_id: None,
            kind,
            content,
            to,
        } => {
            check_kind(&kind)?;
            let to = to
                .iter()
                .map(|p| ParticipantId::parse(p))
                .collect::<Result<Vec<_>, _>>()?;
            (channel, MemberOp::Send { kind, content, to })
        }
        Request::Send { .. } => {
            return Err(ApiError::bad_request(
                "send needs exactly one of \"channel\" and \"call_id\"",
            ))
        }
        other => {
            return Err(ApiError::new(
                crate::error::ErrorCode::Internal,
                format!("'{}' is not a channel request", other.kind()),
            ))
        }
    })
}
