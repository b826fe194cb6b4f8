//! Resuming a session from a new connection (docs/protocol.md §8.8). When a session's socket
//! drops while it is in a channel, the session *parks*: it keeps its memberships, its peer
//! connections (audio never stops) and what it sends, for `timeouts.resume_window`. A new
//! connection of the same identity that presents the session's ID and resume token becomes
//! its transport: the parked session writes through it from then on, and the client gets the
//! events it missed, each once, in order. Nothing moves between actors but the link, so every
//! channel, call and media worker keeps addressing the session it always knew.

use std::collections::HashMap;

use actix::prelude::*;
use serde_json::json;

use super::{Carrying, Link, SessionActor};
use crate::error::{ApiError, ErrorCode};
use crate::ids::SessionId;
use crate::messages::{RelayIn, RelayOut, ResumeSession, Resumed};
use crate::protocol;
use crate::ws::CloseCode;

fn gone(session: &str) -> ApiError {
    ApiError::new(
        ErrorCode::SessionGone,
        format!(
            "session '{}' cannot be resumed (its window passed, it was closed, or the token \
             does not match): join afresh",
            session.chars().take(64).collect::<String>()
        ),
    )
}

impl SessionActor {
    /// A text frame from this connection's client: this session's, or the resumed one's.
    pub(super) fn on_client_text(&mut self, text: String, ctx: &mut Context<Self>) {
        if let Some(to) = self.carrying.as_ref().and_then(|c| c.to.as_ref()) {
            if to.try_send(RelayIn::Text(text)).is_err() {
                self.close(
                    ctx,
                    CloseCode::Policy,
                    "too many requests waiting for replies",
                );
            }
            return;
        }
        self.on_text(text, ctx);
    }

    /// The socket is gone without a goodbye: park for a resume if there is something to
    /// resume, end otherwise.
    pub(super) fn connection_lost(&mut self, ctx: &mut Context<Self>) {
        if !self.resumable() || matches!(self.link, Link::Parked) {
            ctx.stop();
            return;
        }
        tracing::debug!(session = %self.session, "connection lost; waiting for a resume");
        self.link = Link::Parked;
        self.state
            .parked
            .insert(self.session.clone(), ctx.address().recipient());
        let window = self.state.config.timeouts.resume_window;
        let parked_at = crate::clock::now();
        ctx.run_later(window, move |act, ctx| {
            // Still parked since then: nobody came back.
            if matches!(act.link, Link::Parked) && act.parked_since(parked_at) {
                tracing::debug!(session = %act.session, "resume window passed");
                ctx.stop();
            }
        });
        self.parked_at = Some(parked_at);
    }

    fn parked_since(&self, at: std::time::Instant) -> bool {
        self.parked_at == Some(at)
    }

    /// `resume`: this new connection takes over a parked session of the same identity.
    pub(super) fn resume(
        &mut self,
        id: Option<u64>,
        session: String,
        resume_token: String,
        last_seq: HashMap<String, u64>,
        ctx: &mut Context<Self>,
    ) -> Result<(), ApiError> {
        if !self.channels.is_empty() || self.carrying.is_some() {
            return Err(ApiError::conflict(
                "resume is the first request of a new connection",
            ));
        }
        let target = SessionId::parse(&session)
            .ok()
            .and_then(|sid| self.state.parked.get(&sid).map(|r| r.clone()))
            .ok_or_else(|| gone(&session))?;
        // The reply comes when the parked session answers; its frames wait until then.
        self.next_token += 1;
        let token = self.next_token;
        self.issued = Some((token, id));
        self.joined_once = true;
        self.carrying = Some(Carrying {
            to: None,
            held: Some(Vec::new()),
        });
        let msg = ResumeSession {
            resume_token,
            identity: self.grant.identity.clone(),
            last_seq,
            relay: ctx.address().recipient(),
        };
        let fut = async move { target.send(msg).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let resumed = match res {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    act.carrying = None;
                    act.on_reply(token, protocol::error(id, &e), ctx);
                    return;
                }
                Err(_) => {
                    act.carrying = None;
                    act.on_reply(token, protocol::error(id, &gone(&session)), ctx);
                    return;
                }
            };
            let Resumed {
                channels,
                missed,
                resync,
                resume_token,
                inbound,
            } = resumed;
            tracing::debug!(session = %session, via = %act.session, "session resumed");
            let reply = json!({
                "session": session,
                "channels": channels,
                "resume_token": resume_token,
                "resync": resync,
            });
            act.on_reply(token, protocol::ok(id, reply), ctx);
            for frame in missed {
                act.text(frame, ctx);
            }
            let held = act
                .carrying
                .as_mut()
                .and_then(|c| c.held.take())
                .unwrap_or_default();
            for frame in held {
                act.text(frame, ctx);
            }
            // Requests the client sent behind its `resume` are the resumed session's.
            for q in std::mem::take(&mut act.queued) {
                if let super::Queued::Request(text) | super::Queued::Limited(text) = q {
                    let _ = inbound.try_send(RelayIn::Text(text));
                }
            }
            if let Some(c) = act.carrying.as_mut() {
                c.to = Some(inbound);
            }
        }));
        Ok(())
    }
}

impl Handler<ResumeSession> for SessionActor {
    type Result = Result<Resumed, ApiError>;

    fn handle(&mut self, msg: ResumeSession, ctx: &mut Self::Context) -> Self::Result {
        let refused = !matches!(self.link, Link::Parked)
            || msg.identity != self.grant.identity
            || msg.resume_token != self.resume_token;
        if refused {
            return Err(gone(self.session.as_str()));
        }
        let channels: Vec<_> = self.channels.keys().cloned().collect();
        let names: Vec<&str> = channels.iter().map(|c| c.as_str()).collect();
        let missed = self.replay.missed(&names, &msg.last_seq);
        if missed.others_lost {
            tracing::info!(session = %self.session, "frames other than events were lost while parked");
        }
        self.replay.attached();
        self.link = Link::Relay(msg.relay);
        self.parked_at = None;
        self.state.parked.remove(&self.session);
        // Each token is good once: a stale resume can never take over a newer connection.
        self.resume_token = crate::token::new_jti();
        Ok(Resumed {
            channels,
            missed: missed.frames,
            resync: missed.resync,
            resume_token: self.resume_token.clone(),
            inbound: ctx.address().recipient(),
        })
    }
}

impl Handler<RelayIn> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: RelayIn, ctx: &mut Self::Context) {
        if !matches!(self.link, Link::Relay(_)) {
            return;
        }
        match msg {
            RelayIn::Text(text) => self.on_text(text, ctx),
            RelayIn::Lost => self.connection_lost(ctx),
            RelayIn::Goodbye => ctx.stop(),
        }
    }
}

impl Handler<RelayOut> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: RelayOut, ctx: &mut Self::Context) {
        match msg {
            RelayOut::Frame(frame) => {
                if let Some(held) = self.carrying.as_mut().and_then(|c| c.held.as_mut()) {
                    held.push(frame);
                } else {
                    self.text(frame, ctx);
                }
            }
            RelayOut::Close { code, reason } => {
                // The resumed session ended: so does its transport, without telling it back.
                if let Some(c) = self.carrying.as_mut() {
                    c.to = None;
                }
                self.close(ctx, CloseCode::from(code), &reason);
            }
        }
    }
}
