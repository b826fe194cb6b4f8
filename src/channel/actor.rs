//! `ChannelActor`: the thin shell around [`Channel`]. It feeds the logic messages, delivers
//! the frames it produces to participants' sessions, and schedules the logic's timers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix::SpawnHandle;
use bytestring::ByteString;

use super::{recording_stopped, Channel, ChannelSettings, Mixdown, Output, RecordingEnd};
use crate::calls::call::channel_call;
use crate::error::ApiError;
use crate::ids::{ChannelId, ParticipantId};
use crate::levels::Levels;
use crate::media::{
    peer_key, FirstAudio, MediaError, MediaPlane, PeerSpec, Publisher, SpeakerLevel,
};
use crate::messages::{
    AdminKick, AdminMix, AdminOp, AdminPlay, AdminRecord, AdminStop, CallOp, ChannelDetails,
    ChannelHandle, Disconnected, Inspect, Join, MemberOp, MemberRequest, Op, PausePublisher,
    PlaybackDone, RecordingDone, ReplyTo, Shutdown, ToSession, WebhookSink,
};
use crate::protocol::LeaveReason;
use crate::protocol::StreamEnd;
use crate::registry::ChannelRegistry;
use amphi_core::webhook::Subject;

mod streams;

pub struct ChannelActor {
    channel: Channel,
    sessions: HashMap<ParticipantId, Recipient<ToSession>>,
    registry: Arc<ChannelRegistry>,
    media: Arc<MediaPlane>,
    mailbox: usize,
    timer: Option<(Instant, SpawnHandle)>,
    levels: Levels,
    /// What the media workers were last told is on stage.
    routed: Vec<Publisher>,
    routed_mix: Mixdown,
    /// The reply path of the request being handled: the logic's one reply goes through it.
    replying: Option<(ParticipantId, ReplyTo)>,
    /// Where the channel's webhooks go (none configured: nowhere).
    webhooks: Option<WebhookSink>,
    /// Who is kept out of which channel, shared with the sessions that check joins.
    bans: Arc<crate::bans::Bans>,
    /// How long a kick keeps its identity out; `None`: until its token expires.
    kick_ban: Option<std::time::Duration>,
}

impl ChannelActor {
    pub fn new(
        id: ChannelId,
        settings: ChannelSettings,
        registry: Arc<ChannelRegistry>,
        media: Arc<MediaPlane>,
        mailbox: usize,
    ) -> Self {
        Self {
            channel: Channel::new(id, settings, crate::clock::now()),
            sessions: HashMap::new(),
            registry,
            media,
            mailbox,
            timer: None,
            levels: Levels::default(),
            routed: Vec::new(),
            routed_mix: Mixdown::default(),
            replying: None,
            webhooks: None,
            bans: Arc::new(crate::bans::Bans::in_memory()),
            kick_ban: None,
        }
    }

    /// Kicks are kept in `bans`, for `kick_ban` (or until the kicked token expires).
    pub fn with_bans(
        mut self,
        bans: Arc<crate::bans::Bans>,
        kick_ban: Option<std::time::Duration>,
    ) -> Self {
        self.bans = bans;
        self.kick_ban = kick_ban;
        self
    }

    pub fn with_webhooks(mut self, webhooks: Option<WebhookSink>) -> Self {
        self.webhooks = webhooks;
        self
    }

    fn webhook(&self, kind: &'static str, data: serde_json::Value) {
        if let Some(w) = &self.webhooks {
            w.push(Subject::Channel(self.channel.id().clone()), kind, data);
        }
    }

    /// Tells the media workers who is on stage, when that changed.
    fn update_routes(&mut self, ctx: &mut Context<Self>) {
        let publishers = self.channel.publishers();
        let mix = self.channel.mixdown();
        if publishers != self.routed || mix != self.routed_mix {
            self.media.routes(
                self.channel.id(),
                Arc::from(publishers.clone()),
                mix,
                ctx.address().recipient(),
            );
            self.routed = publishers;
            self.routed_mix = mix;
        }
    }

    fn media_request(
        &mut self,
        participant: &ParticipantId,
        reply: ReplyTo,
        op: MemberOp,
        ctx: &mut Context<Self>,
    ) -> Result<(), Box<(ReplyTo, ApiError)>> {
        match self.channel.media_permissions(participant) {
            Ok(_) if self.sessions.contains_key(participant) => {}
            Ok(_) => {
                return Err(Box::new((
                    reply,
                    ApiError::not_found("you are not in this channel"),
                )))
            }
            Err(e) => return Err(Box::new((reply, e.into()))),
        }
        let member = self
            .channel
            .media_permissions(participant)
            .expect("checked");
        let session = self.sessions.get(participant).cloned().expect("checked");
        let key = peer_key(participant);
        match op {
            MemberOp::MediaOffer { sdp } => {
                let spec = PeerSpec {
                    key,
                    participant: participant.clone(),
                    identity: member.identity.clone(),
                    channel: self.channel.id().clone(),
                    can_publish: Channel::can_publish(member),
                    can_subscribe: Channel::can_subscribe(member),
                    audio: member.audio,
                    video: amphi_core::call::channel_call(self.channel.id()).is_some(),
                    session: session.clone(),
                    levels: ctx.address().recipient(),
                    first_audio: ctx.address().recipient(),
                };
                let pending = match self.media.offer(spec, sdp) {
                    Ok(p) => p,
                    Err(e) => return Err(Box::new((reply, e.into()))),
                };
                actix_rt::spawn(async move {
                    match pending.await.unwrap_or(Err(MediaError::Busy)) {
                        Ok(answer) => reply.ok(serde_json::json!({ "sdp": answer })),
                        Err(e) => reply.error(&ApiError::from(e)),
                    }
                });
            }
            MemberOp::MediaAnswer { sdp } => {
                let media = self.media.clone();
                actix_rt::spawn(async move {
                    match media.answer(key, sdp).await {
                        Ok(()) => reply.ok(()),
                        Err(e) => reply.error(&ApiError::from(e)),
                    }
                });
            }
            MemberOp::MediaCandidate { candidate } => match self.media.candidate(key, candidate) {
                Ok(()) => reply.ok(()),
                Err(e) => return Err(Box::new((reply, e.into()))),
            },
            _ => unreachable!("only media operations reach media_request"),
        }
        Ok(())
    }

    /// Answers the request being handled with `err`.
    fn reply_error(&mut self, err: &ApiError) {
        if let Some((_, reply)) = self.replying.take() {
            reply.error(err);
        }
    }

    /// Delivers the logic's reply to the request being handled. A requester the reply leaves
    /// outside the channel hears that first, so its next request sees the channel gone.
    fn deliver_reply(&mut self, to: &ParticipantId, frame: ByteString) {
        let Some((requester, reply)) = self.replying.take() else {
            tracing::error!(channel = %self.channel.id(), "a reply with no request to answer");
            return;
        };
        debug_assert_eq!(&requester, to, "replies go to the requester");
        if self.channel.member(to).is_none() {
            reply.detach_first(self.channel.id(), to);
        }
        reply.send(frame);
    }

    /// Every request gets its one reply, even one the logic forgot.
    fn finish_request(&mut self) {
        if let Some((_, reply)) = self.replying.take() {
            tracing::error!(channel = %self.channel.id(), "a request the logic left unanswered");
            reply.error(&crate::messages::dropped_request());
        }
    }

    /// Delivers what the logic produced. A session whose mailbox is full is too slow to
    /// follow the channel: it is removed (as `disconnected`) rather than skipped, so nobody
    /// ever sees a silent gap, and its connection is closed.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        loop {
            self.channel.sync_mixing();
            let outputs: Vec<Output> = self.channel.drain().collect();
            if outputs.is_empty() {
                break;
            }
            let mut evicted: Vec<ParticipantId> = Vec::new();
            for output in outputs {
                match output {
                    Output::Reply { to, frame } => self.deliver_reply(&to, frame),
                    Output::Send { to, frame } => {
                        self.channel.for_each_recipient(&to, |p| {
                            let Some(session) = self.sessions.get(p) else {
                                return;
                            };
                            if session.try_send(ToSession::Frame(frame.clone())).is_err() {
                                evicted.push(p.clone());
                            }
                        });
                    }
                    Output::Permissions {
                        participant,
                        publish,
                        subscribe,
                    } => self
                        .media
                        .permissions(peer_key(&participant), publish, subscribe),
                    Output::Detach(p) => {
                        self.media.remove(peer_key(&p));
                        self.levels.forget(&p);
                        if let Some(session) = self.sessions.remove(&p) {
                            session.do_send(ToSession::Detached {
                                channel: self.channel.id().clone(),
                                participant: p,
                            });
                        }
                    }
                    Output::Webhook { kind, data } => self.webhook(kind, data),
                    Output::Ban {
                        identity,
                        token_expires_s,
                    } => {
                        let now = crate::clock::now_unix_ms();
                        let until = match (self.kick_ban, token_expires_s) {
                            (Some(t), _) => now + t.as_millis() as u64,
                            (None, Some(exp)) => exp * 1000,
                            // A kicked member always has a token; an hour if it did not.
                            (None, None) => now + 3_600_000,
                        };
                        self.bans.ban(self.channel.id(), &identity, until);
                    }
                    Output::Unban { identity } => {
                        self.bans.lift(self.channel.id(), &identity);
                    }
                    Output::Audio { participant, audio } => {
                        self.media.audio(peer_key(&participant), audio)
                    }
                    Output::Members { role, delta } => {
                        metrics::gauge!(crate::metrics::PARTICIPANTS, "role" => role.to_string())
                            .increment(delta as f64);
                    }
                    Output::Close => ctx.stop(),
                }
            }
            evicted.sort();
            evicted.dedup();
            for p in evicted {
                if let Some(session) = self.sessions.get(&p) {
                    tracing::warn!(
                        channel = %self.channel.id(),
                        participant = %p,
                        identity = %self.channel.member(&p).map_or("?", |m| m.identity.as_str()),
                        "session cannot keep up with channel events; disconnecting it"
                    );
                    // One message past the bound, once per slow session: closing is the cure.
                    session.do_send(ToSession::Close {
                        code: 1008,
                        reason: "too slow to receive channel events".into(),
                    });
                }
                self.channel.drop_member(crate::clock::now(), &p);
            }
        }
        if !self.channel.is_closed() {
            self.update_routes(ctx);
        }
        self.schedule(ctx);
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        let deadline = match (
            self.channel.next_deadline(),
            self.levels.next_deadline(crate::clock::now()),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(deadline) = deadline else {
            if let Some((_, h)) = self.timer.take() {
                ctx.cancel_future(h);
            }
            return;
        };
        if let Some((at, h)) = self.timer {
            if at <= deadline {
                return;
            }
            ctx.cancel_future(h);
        }
        let delay = deadline.saturating_duration_since(crate::clock::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            let now = crate::clock::now();
            act.channel.tick(now);
            let announce = act.levels.tick(now);
            act.channel.announce_levels(announce);
            act.flush(ctx);
        });
        self.timer = Some((deadline, handle));
    }
}

impl Actor for ChannelActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
        metrics::gauge!(crate::metrics::CHANNELS).increment(1.0);
        tracing::debug!(channel = %self.channel.id(), "channel created");
        self.schedule(ctx);
    }

    fn stopping(&mut self, ctx: &mut Self::Context) -> Running {
        self.media.channel_closed(self.channel.id());
        metrics::gauge!(crate::metrics::CHANNELS).decrement(1.0);
        // Leave the registry first: a join racing with this stop then creates a new channel.
        self.registry
            .remove(self.channel.id(), &ChannelHandle::new(ctx.address()));
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(w) = &self.webhooks {
            w.finish(Subject::Channel(self.channel.id().clone()));
        }
        for (p, session) in self.sessions.drain() {
            session.do_send(ToSession::Detached {
                channel: self.channel.id().clone(),
                participant: p,
            });
        }
        tracing::debug!(channel = %self.channel.id(), "channel removed");
    }
}

impl Handler<Join> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: Join, ctx: &mut Self::Context) {
        crate::panics::injected(&msg.spec.identity, "channel");
        let participant = msg.spec.participant.clone();
        let received = msg.received;
        self.replying = Some((participant.clone(), msg.reply));
        // A call's channel: checked again here, as the member may have left the call while
        // its join was on the way (its kick found nobody to remove).
        let outsider = channel_call(self.channel.id()).and_then(|call| {
            let engine = self.registry.calls()?;
            (!engine.is_connected_member(&call, &msg.spec.identity)).then_some(call)
        });
        let joined = match outsider {
            Some(call) => Err(ApiError::forbidden(format!(
                "you are no longer connected to call '{call}'"
            ))),
            None => self
                .channel
                .join(crate::clock::now(), msg.spec)
                .map_err(ApiError::from),
        };
        match joined {
            Ok(()) => {
                if let Some(speaker) = self.levels.active().cloned() {
                    self.channel.tell_active_speaker(&participant, speaker);
                }
                self.sessions.insert(participant, msg.session);
                metrics::histogram!(crate::metrics::JOIN_LATENCY)
                    .record(received.elapsed().as_secs_f64());
            }
            Err(err) => {
                if let Some((_, reply)) = self.replying.take() {
                    reply.detach_first(self.channel.id(), &participant);
                    reply.error(&err);
                }
            }
        }
        self.flush(ctx);
        self.finish_request();
    }
}

impl Handler<MemberRequest> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: MemberRequest, ctx: &mut Self::Context) {
        let now = crate::clock::now();
        let p = &msg.participant;
        let id = msg.reply.id();
        if matches!(
            msg.op,
            MemberOp::MediaOffer { .. }
                | MemberOp::MediaAnswer { .. }
                | MemberOp::MediaCandidate { .. }
        ) {
            if let Err(refused) = self.media_request(p, msg.reply, msg.op, ctx) {
                let (reply, err) = *refused;
                reply.error(&err);
            }
            return;
        }
        self.replying = Some((p.clone(), msg.reply));
        let ch = &mut self.channel;
        let result = match msg.op {
            MemberOp::Leave => ch.leave(now, p, id),
            MemberOp::Stop => ch.stop(now, p, id),
            MemberOp::SetRole { role, target } => ch.set_role(p, id, target.as_ref(), &role),
            MemberOp::RequestRole { role } => ch.request_role(p, id, &role),
            MemberOp::Mute { muted, target } => ch.mute(p, id, target.as_ref(), muted),
            MemberOp::SetMix { policy } => ch.set_mix(p, id, policy),
            MemberOp::SetAudio { audio } => ch.set_audio(p, id, audio),
            MemberOp::Unban { identity } => ch.unban(p, id, identity),
            MemberOp::SetVolume { target, gain } => ch.set_volume(p, id, &target, gain),
            MemberOp::Kick { target, reason } => ch.kick(now, Some(p), id, &target, reason),
            MemberOp::Send { kind, content, to } => ch.send(p, id, kind, content, to),
            MemberOp::MediaOffer { .. }
            | MemberOp::MediaAnswer { .. }
            | MemberOp::MediaCandidate { .. } => Ok(()),
        };
        if let Err(err) = result {
            self.reply_error(&err.into());
        }
        self.flush(ctx);
        self.finish_request();
    }
}

impl Handler<Disconnected> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: Disconnected, ctx: &mut Self::Context) {
        self.sessions.remove(&msg.participant);
        self.channel
            .drop_member(crate::clock::now(), &msg.participant);
        self.flush(ctx);
    }
}

impl Handler<SpeakerLevel> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: SpeakerLevel, ctx: &mut Self::Context) {
        if self.channel.member(&msg.participant).is_some() {
            self.levels
                .report(crate::clock::now(), msg.participant, msg.dbov, msg.voice);
            self.schedule(ctx);
        }
    }
}

impl Handler<PausePublisher> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: PausePublisher, ctx: &mut Self::Context) {
        self.channel
            .pause_publisher(&msg.identity, msg.paused, msg.call_id);
        self.flush(ctx);
    }
}

impl Handler<FirstAudio> for ChannelActor {
    type Result = ();

    fn handle(&mut self, msg: FirstAudio, _: &mut Self::Context) {
        let Some(call) = channel_call(self.channel.id()) else {
            return;
        };
        let (Some(member), Some(engine)) =
            (self.channel.member(&msg.participant), self.registry.calls())
        else {
            return;
        };
        let op = CallOp::internal(member.identity.clone(), Op::FirstAudio);
        let _ = engine.route(&call, op);
    }
}

impl Handler<Inspect> for ChannelActor {
    type Result = MessageResult<Inspect>;

    fn handle(&mut self, _: Inspect, _: &mut Self::Context) -> Self::Result {
        MessageResult(ChannelDetails {
            summary: self.channel.summary(crate::clock::now()),
            participant_list: self.channel.participants(),
        })
    }
}

impl Handler<AdminStop> for ChannelActor {
    type Result = ();

    fn handle(&mut self, _: AdminStop, ctx: &mut Self::Context) {
        self.channel
            .end(crate::clock::now(), LeaveReason::ChannelStopped, None);
        self.flush(ctx);
    }
}

impl Handler<AdminKick> for ChannelActor {
    type Result = Result<ParticipantId, ApiError>;

    fn handle(&mut self, msg: AdminKick, ctx: &mut Self::Context) -> Self::Result {
        let now = crate::clock::now();
        let result = match msg {
            AdminKick::Participant(p) => self.channel.kick(now, None, None, &p, None).map(|_| p),
            AdminKick::Identity(i) => self.channel.kick_identity(now, &i),
        };
        self.flush(ctx);
        Ok(result?)
    }
}

impl Handler<AdminOp> for ChannelActor {
    type Result = Result<serde_json::Value, ApiError>;

    fn handle(&mut self, op: AdminOp, ctx: &mut Self::Context) -> Self::Result {
        let member = |ch: &amphi_core::channel::Channel, who: AdminKick| match who {
            AdminKick::Participant(p) => Ok(p),
            AdminKick::Identity(i) => ch.participant_of(&i),
        };
        let result = match op {
            AdminOp::Mute { who, muted } => member(&self.channel, who).and_then(|p| {
                self.channel
                    .admin_mute(&p, muted)
                    .map(|()| serde_json::json!({ "participant": p, "muted": muted }))
            }),
            AdminOp::MuteAll {
                muted,
                spare_moderators,
            } => {
                let changed = self.channel.admin_mute_all(muted, spare_moderators);
                Ok(serde_json::json!({ "changed": changed, "muted": muted }))
            }
            AdminOp::SetRole { who, role } => member(&self.channel, who).and_then(|p| {
                self.channel
                    .admin_set_role(&p, &role)
                    .map(|()| serde_json::json!({ "participant": p, "role": role }))
            }),
            AdminOp::Send { kind, content, to } => self
                .channel
                .admin_send(kind, content, to)
                .map(|()| serde_json::json!({ "sent": true })),
        };
        self.flush(ctx);
        Ok(result?)
    }
}

impl Handler<Shutdown> for ChannelActor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        self.channel
            .end(crate::clock::now(), LeaveReason::ServerShutdown, None);
        self.flush(ctx);
    }
}
