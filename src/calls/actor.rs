//! `CallActor`: one per call. It feeds the [`Call`] state machine its inputs, delivers what it
//! says to the members' sessions (and proxies and webhooks), keeps the call log, the user
//! directory and the call's private channel in step, and runs the call's timers.

mod inspect;
mod ledger;

use std::collections::HashSet;
use std::time::Instant;

use actix::prelude::*;
use actix::SpawnHandle;
use serde_json::{json, Value};

use super::call::{
    call_channel, Call, CallError, CallEvent, EndReason, LegState, Media, Output, Phase,
    RejectReason,
};
use super::engine::CallEngine;
use super::webhook::WebhookEvent;
use crate::clock::unix_ms;
use crate::error::ApiError;
use crate::ids::{ChannelId, Identity};
use crate::messages::LogWrite;
use crate::messages::{
    AdminKick, AdminStop, CallOp, Op, PausePublisher, Placement, ReplyTo, Terminate,
};
use crate::metrics as m;
use crate::protocol;
use amphi_core::call::ledger::Ledger;
use std::sync::Arc;

/// A live channel's host taken into a call from that channel's audience.
struct Live {
    channel: ChannelId,
    host: Identity,
    paused: bool,
}

pub struct CallActor {
    engine: Arc<CallEngine>,
    call: Call,
    channel: ChannelId,
    push: Value,
    /// Callees that were busy when invited: they get `call_missed` instead of ringing.
    busy: HashSet<Identity>,
    /// Callees who block the caller (or an inviter): nothing of the call reaches them, their
    /// log or the app's webhooks about them; to the others they look offline.
    silent: HashSet<Identity>,
    live: Option<Live>,
    /// The `call` request's reply, sent once the call's log rows are committed.
    placed: Option<(ReplyTo, Vec<Identity>)>,
    requested_at: Instant,
    /// When the input being handled arrived: an invitation's ring time counts from it.
    input_at: Instant,
    /// What the call's log rows have recorded, and what they are to record next.
    ledger: Ledger,
    glare: bool,
    timer: Option<SpawnHandle>,
    finished: bool,
    /// Whether the media plane forwards video in the call's channel.
    video: bool,
}

impl CallActor {
    pub fn new(engine: Arc<CallEngine>, call: Call, placement: Placement) -> Self {
        let Placement {
            push,
            busy,
            blocked,
            live_channel,
            reply,
            requested_at,
            glare,
        } = placement;
        let channel = call_channel(call.id());
        let live = live_channel.map(|channel| Live {
            channel,
            host: call.legs()[1].user().clone(),
            paused: false,
        });
        let busy_set: HashSet<Identity> = busy.iter().cloned().collect();
        // Opened again in `started`, once busy callees have declined.
        let (ledger, _) = Ledger::open(&call, requested_at, &busy_set);
        Self {
            engine,
            channel,
            push,
            live,
            placed: Some((reply, busy)),
            busy: busy_set,
            silent: blocked.into_iter().collect(),
            requested_at,
            input_at: requested_at,
            ledger,
            glare,
            timer: None,
            finished: false,
            video: false,
            call,
        }
    }

    fn apply(&mut self, user: &Identity, op: Op, now: Instant) -> Result<Value, ApiError> {
        let none = json!({});
        match op {
            Op::Accept { media } => {
                self.call.accept(user, media, now)?;
                self.took_call(user, now);
            }
            Op::Join => {
                self.call.join(user, now)?;
                self.took_call(user, now);
            }
            Op::Reject { reason, note } => self.call.reject_with_note(user, reason, note, now)?,
            Op::Hangup { reason, note } => self.call.hangup_with_note(user, reason, note, now)?,
            Op::Invite { callees } => {
                let blocking = self.engine.blocking(&callees, user);
                let mut busy = self.engine.busy(&callees, self.call.id());
                busy.retain(|b| !blocking.contains(b));
                let invited = self.call.invite(user, callees, now)?;
                for u in invited.iter().filter(|u| !busy.contains(u)) {
                    self.busy.remove(u);
                }
                for u in invited.iter() {
                    if blocking.contains(u) {
                        self.silent.insert(u.clone());
                    } else {
                        self.silent.remove(u);
                    }
                }
                let busy: Vec<Identity> = invited
                    .iter()
                    .filter(|u| busy.contains(u))
                    .cloned()
                    .collect();
                for b in &busy {
                    self.busy.insert(b.clone());
                    // Just invited, so ringing: a busy line declines at once.
                    let _ = self.call.reject(b, RejectReason::Busy, now);
                }
                return Ok(json!({ "busy": busy, "invited": invited }));
            }
            Op::MediaChange { media } => {
                let tx = self.call.request_media_change(user, media, now)?;
                return Ok(json!({ "transaction": tx }));
            }
            Op::MediaChangeCancel { transaction } => {
                self.call.cancel_media_change(user, &transaction)?
            }
            Op::MediaChangeReply { transaction, agree } => {
                self.call.reply_media_change(user, &transaction, agree)?
            }
            Op::Send { kind, content } => self.relay(
                user,
                json!({"event": "call_message", "from": user, "kind": kind, "content": content}),
            )?,
            Op::MediaState { microphone, camera } => self.relay(
                user,
                json!({"event": "remote_media_state", "user": user,
                       "microphone": microphone, "camera": camera}),
            )?,
            // Sent after the directory's lock is released, so it can arrive after the user's
            // next session came online: then it is stale.
            Op::Disconnect if self.engine.online(user) => {}
            Op::Disconnect => self.call.disconnect(user, now)?,
            Op::Reconnect => {
                self.call.reconnect(user)?;
                self.resume(user);
            }
            Op::FirstAudio => self.first_audio(user, now),
        }
        Ok(none)
    }

    /// A member is online again after having no session: its new session learns where the
    /// call stands (ringing, or connected with the channel to rejoin for media).
    fn resume(&self, user: &Identity) {
        let Some(leg) = self.call.leg(user) else {
            return;
        };
        let event = match (leg.state(), self.call.connected_at()) {
            // A callee who blocks the caller stays unreached, however often it comes online.
            (LegState::Ringing, _) if self.silent.contains(user) => return,
            (LegState::Ringing, _) if !self.busy.contains(user) => {
                self.callee_online(user);
                json!({
                "event": "call_incoming",
                "caller": self.call.caller(),
                "invited_by": leg.invited_by(),
                "members": self.call.legs().iter().filter(|l| l.state() != LegState::Left)
                    .map(|l| l.user()).collect::<Vec<_>>(),
                "call_type": self.call.call_type(),
                "media": self.call.media(),
                "extra": self.call.extra(),
                })
            }
            (LegState::Connected, None) => {
                let callees: Vec<Identity> = self
                    .call
                    .legs()
                    .iter()
                    .filter(|l| l.state() == LegState::Ringing)
                    .map(|l| l.user().clone())
                    .collect();
                json!({
                    "event": "call_ringing",
                    "offline": self.offline(&callees),
                    "callees": callees,
                })
            }
            (LegState::Connected, Some(at)) => json!({
                "event": "call_connected",
                "start_time": self.call.unix_ms(at),
                "media": self.call.media(),
                "channel": self.channel,
            }),
            _ => return,
        };
        let frame = protocol::call_event(self.call.id(), None, &event, &[("resumed", json!(true))]);
        self.engine.deliver(std::slice::from_ref(user), &frame);
    }

    /// A ringing callee that had no device online now has one: the members waiting learn it
    /// rings somewhere (the `offline` of their `call_ringing` no longer holds).
    fn callee_online(&self, user: &Identity) {
        let event = json!({"event": "callee_online", "user": user});
        let frame = protocol::call_event(self.call.id(), None, &event, &[]);
        self.engine.deliver(&self.others(user), &frame);
    }

    /// Passes `event` from a connected member to the other connected members, outside the
    /// state machine (no `seq`).
    fn relay(&self, user: &Identity, event: Value) -> Result<(), ApiError> {
        self.require_connected(user)?;
        let frame = protocol::call_event(self.call.id(), None, &event, &[]);
        self.engine.deliver(&self.others(user), &frame);
        Ok(())
    }

    fn require_connected(&self, user: &Identity) -> Result<(), ApiError> {
        match self.call.leg(user) {
            Some(l) if l.state() == LegState::Connected && self.call.connected_at().is_some() => {
                Ok(())
            }
            Some(_) => Err(CallError::WrongState("not connected to the call").into()),
            None => Err(CallError::NotInCall(user.clone()).into()),
        }
    }

    fn others(&self, user: &Identity) -> Vec<Identity> {
        self.call
            .legs()
            .iter()
            .filter(|l| l.state() == LegState::Connected && l.user() != user)
            .map(|l| l.user().clone())
            .collect()
    }

    /// `user` just answered or joined this call. One active call per user: the directory
    /// makes this call the user's one, under its lock, and the calls it replaces end for the
    /// user as `replaced` (two answers racing on two devices leave the user in the last).
    /// A member with no live session (a proxy answered for it) starts the reconnect grace at
    /// once, so a call nobody is on cannot run forever.
    fn took_call(&mut self, user: &Identity, now: Instant) {
        self.busy.remove(user);
        for other in self.engine.claim_active(user, self.call.id()) {
            let _ = self.engine.route(
                &other,
                CallOp::internal(
                    user.clone(),
                    Op::Hangup {
                        reason: EndReason::Replaced,
                        note: None,
                    },
                ),
            );
        }
        if !self.engine.online(user) {
            let _ = self.call.disconnect(user, now);
        }
    }

    /// Brings the directory, logs, channel and timer in line with the call's new state and
    /// delivers what it produced. A member's connection is committed to the log before anyone
    /// hears `call_connected`: a connected call is billable, so a crash must not lose it.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let now = crate::clock::now();
        let outputs: Vec<Output> = self.call.drain().collect();
        self.engine.sync(&self.call);
        self.sync_video(!matches!(self.call.phase(), Phase::Ended(_)));
        if self.log_transitions(now) {
            let barrier = self.engine.logs.write.send(LogWrite::Barrier);
            ctx.wait(barrier.into_actor(self).map(move |result, act, ctx| {
                if !matches!(result, Ok(Ok(_))) {
                    tracing::error!(call = %act.call.id(), ?result, "call log write failed");
                }
                act.deliver(outputs, now, ctx);
            }));
        } else {
            self.deliver(outputs, now, ctx);
        }
    }

    /// The callees no device of theirs hears ringing: offline, or blocking the caller (who
    /// must not tell the two apart). The caller's app can say so while the call rings.
    fn offline(&self, callees: &[Identity]) -> Vec<Identity> {
        callees
            .iter()
            .filter(|u| self.silent.contains(*u) || !self.engine.online(u))
            .cloned()
            .collect()
    }

    fn deliver(&mut self, outputs: Vec<Output>, now: Instant, ctx: &mut Context<Self>) {
        let id = self.call.id().clone();
        for out in outputs {
            let name = event_name(&out.event);
            let extra: Vec<(&str, Value)> = match &out.event {
                CallEvent::Connected { .. } => vec![("channel", json!(self.channel))],
                CallEvent::Ringing { callees } => vec![("offline", json!(self.offline(callees)))],
                _ => Vec::new(),
            };
            if out.to.iter().all(|u| self.silent.contains(u)) {
                // Rings, misses and the like meant only for someone who blocks the caller.
                continue;
            }
            let mut to = out.to.clone();
            to.retain(|u| !self.silent.contains(u));
            if let CallEvent::Incoming { caller, .. } = &out.event {
                let callee = &out.to[0];
                if self.busy.contains(callee) {
                    let missed = json!({"event": "call_missed", "user": callee,
                                        "caller": caller, "reason": "busy"});
                    let frame = protocol::call_event(&id, Some(out.seq), &missed, &[]);
                    self.engine.deliver(&out.to, &frame);
                    self.engine.observe(|| {
                        protocol::call_event(
                            &id,
                            Some(out.seq),
                            &missed,
                            &[("observed_for", json!(out.to))],
                        )
                    });
                    let mut data = missed.clone();
                    if let Value::Object(map) = &mut data {
                        map.remove("event");
                        map.insert("to".into(), json!(out.to));
                    }
                    self.engine
                        .webhook(&id, WebhookEvent::new("call_missed", unix_ms(), data));
                    continue;
                } else {
                    let frame = protocol::call_event(&id, Some(out.seq), &out.event, &extra);
                    let reached = self.engine.deliver(&to, &frame);
                    to.clear();
                    if reached.is_empty() {
                        metrics::counter!(m::CALL_INVITES_OFFLINE).increment(1);
                        self.engine.webhook(
                            &id,
                            WebhookEvent::invite_offline(
                                &self.call,
                                callee,
                                self.push.clone(),
                                unix_ms(),
                            ),
                        );
                    } else {
                        self.rang(callee, now);
                    }
                }
            }
            // A busy callee's own leg events stay with the caller's side.
            to.retain(|u| !self.busy.contains(u) || matches!(out.event, CallEvent::Missed { .. }));
            if !to.is_empty() {
                let frame = protocol::call_event(&id, Some(out.seq), &out.event, &extra);
                self.engine.deliver(&to, &frame);
            }
            self.engine.observe(|| {
                let mut extra = extra.clone();
                extra.push(("observed_for", json!(out.to)));
                protocol::call_event(&id, Some(out.seq), &out.event, &extra)
            });
            let mut data = serde_json::to_value(&out.event).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut data {
                map.remove("event");
                map.insert("to".into(), json!(out.to));
            }
            self.engine
                .webhook(&id, WebhookEvent::new(name, unix_ms(), data));
        }
        self.write_after_events();
        self.sync_live();
        if self.call.is_ended() {
            self.finish(ctx);
        } else {
            self.schedule(ctx, now);
        }
    }

    fn sync_live(&mut self) {
        let Some(live) = &mut self.live else {
            return;
        };
        let want = self.call.phase() == Phase::Connected
            && self
                .call
                .leg(&live.host)
                .is_some_and(|l| l.state() == LegState::Connected);
        if want == live.paused {
            return;
        }
        live.paused = want;
        if let Some(ch) = self.engine.channels.get(&live.channel) {
            ch.do_send(PausePublisher {
                identity: live.host.clone(),
                paused: want,
                call_id: self.call.id().to_string(),
            });
        }
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some((_, at)) = self.call.ended_at().map(|at| ((), at)) {
            if let Phase::Ended(reason) = self.call.phase() {
                metrics::counter!(m::CALLS_ENDED, "reason" => reason.as_str()).increment(1);
                if let Some(c) = self.call.connected_at() {
                    metrics::histogram!(m::CALL_DURATION)
                        .record(at.saturating_duration_since(c).as_secs_f64());
                }
            }
        }
        metrics::gauge!(m::CALLS_ACTIVE).decrement(1.0);
        self.sync_video(false);
        if let Some(ch) = self.engine.channels.get(&self.channel) {
            ch.do_send(AdminStop);
        }
        self.engine.webhook_finish(self.call.id());
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        // No `ctx.stop()`: requests already queued would be dropped unanswered. With its
        // directory entry gone nothing new reaches this actor, and it stops once the last
        // address is dropped, answering what is queued with "has ended".
    }

    /// Video flows in the call's channel while the call lives and its media is video.
    fn sync_video(&mut self, live: bool) {
        let on = live && self.call.media() == Media::Video;
        if on != self.video {
            self.video = on;
            (self.engine.video)(&self.channel, on);
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>, now: Instant) {
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(at) = self.call.next_deadline() {
            let wait = at.saturating_duration_since(now);
            self.timer = Some(ctx.run_later(wait, |act, ctx| {
                act.timer = None;
                act.call.timeout(crate::clock::now());
                act.flush(ctx);
            }));
        }
    }
}

pub fn event_name(e: &CallEvent) -> &'static str {
    match e {
        CallEvent::Incoming { .. } => "call_incoming",
        CallEvent::Ringing { .. } => "call_ringing",
        CallEvent::Connected { .. } => "call_connected",
        CallEvent::ParticipantState { .. } => "participant_state",
        CallEvent::Ended { .. } => "call_ended",
        CallEvent::Missed { .. } => "call_missed",
        CallEvent::TypeChanged { .. } => "call_type_changed",
        CallEvent::MediaChangeRequested { .. } => "media_change_requested",
        CallEvent::MediaChangeResult { .. } => "media_change_result",
    }
}

impl Actor for CallActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        metrics::gauge!(m::CALLS_ACTIVE).increment(1.0);
        metrics::counter!(m::CALLS_PLACED).increment(1);
        // Busy callees decline at once; the call may end right here (everyone busy).
        let now = crate::clock::now();
        for b in self.busy.clone() {
            let _ = self.call.reject(&b, RejectReason::Busy, now);
        }
        // Placed by a proxy for a caller with no live session: the grace runs from the start.
        let caller = self.call.caller().clone();
        if !self.engine.online(&caller) {
            let _ = self.call.disconnect(&caller, now);
        }
        // The rows are committed before the caller hears `ok`: an acknowledged call is on
        // disk. Nothing else runs in this actor until then.
        let (ledger, opened) = Ledger::open(&self.call, self.requested_at, &self.busy);
        self.ledger = ledger;
        let write = self
            .engine
            .logs
            .write
            .send(LogWrite::Open(self.logged(opened)));
        ctx.wait(write.into_actor(self).map(|result, act, ctx| {
            let ok = matches!(result, Ok(Ok(_)));
            if !ok {
                tracing::error!(call = %act.call.id(), ?result, "call log rows not written");
            }
            if let Some((reply, busy)) = act.placed.take() {
                if ok {
                    let mut result = json!({
                        "call_id": act.call.id(),
                        "busy": busy,
                        "channel": act.channel,
                    });
                    if act.glare {
                        result["glare"] = json!(true);
                    }
                    reply.ok(result);
                } else {
                    reply.error(&ApiError::new(
                        crate::error::ErrorCode::Internal,
                        "the call could not be logged, so it was not placed; try again",
                    ));
                    act.call.terminate(EndReason::Canceled, crate::clock::now());
                    let _ = act.call.drain().count();
                    act.engine.sync(&act.call);
                    act.finish(ctx);
                    return;
                }
            }
            act.flush(ctx);
        }));
    }
}

impl Handler<CallOp> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: CallOp, ctx: &mut Self::Context) {
        if self.finished {
            if let Some(r) = msg.reply {
                r.error(&ApiError::not_found(amphi_core::call::NO_SUCH_CALL));
            }
            return;
        }
        let now = crate::clock::now();
        self.input_at = now;
        match self.apply(&msg.user, msg.op, now) {
            Ok(result) => {
                if let Some(r) = msg.reply {
                    r.ok(msg.ok_result.unwrap_or(result));
                }
            }
            Err(err) => {
                if let Some(r) = msg.reply {
                    r.error(&err);
                }
            }
        }
        self.flush(ctx);
    }
}

impl Handler<Terminate> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: Terminate, ctx: &mut Self::Context) {
        self.call.terminate(msg.reason, crate::clock::now());
        self.flush(ctx);
    }
}
