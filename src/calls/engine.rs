//! `CallEngine`: the user directory (who is online to be called, who is in which call) and
//! call placement with busy and glare decided under one lock, so two calls racing for the
//! same users always see each other.
//!
//! The lock guards plain maps and is held for microseconds on the signalling path; media
//! never touches it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;
use bytestring::ByteString;
use serde_json::{json, Value};

use super::call::{call_channel, Call, CallId, CallSetup, LegState, Media};
use super::webhook::WebhookEvent;
use crate::bans::Bans;
use crate::clock::unix_ms;
use crate::config::CallsConfig;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{ChannelId, Identity, SessionId};
use crate::messages::{
    CallDirectory, CallHandle, CallLogHandle, CallOp, LogWrite, Op, Placement, ReplyTo, Terminate,
    ToSession, WebhookPush, WebhookSink,
};
use crate::registry::ChannelRegistry;
use amphi_core::directory::{self, CallRate, Decision};
use amphi_core::webhook::Subject;

/// Starts a call's actor and returns its handle.
pub type CallFactory = Box<dyn Fn(Arc<CallEngine>, Call, Placement) -> CallHandle + Send + Sync>;

#[derive(Default)]
struct User {
    sessions: Vec<(SessionId, Recipient<ToSession>)>,
    /// The calls this user is ringing or connected in.
    legs: HashMap<CallId, LegState>,
}

impl User {
    fn connected_call(&self) -> Option<&CallId> {
        self.legs
            .iter()
            .find(|(_, s)| **s == LegState::Connected)
            .map(|(c, _)| c)
    }
}

struct Entry {
    handle: CallHandle,
    caller: Identity,
    /// Nobody has answered yet.
    unanswered: bool,
}

#[derive(Default)]
struct Directory {
    users: HashMap<Identity, User>,
    proxies: HashMap<SessionId, Recipient<ToSession>>,
    calls: HashMap<CallId, Entry>,
    /// The calls each identity placed in the last minute (ring-spam bound).
    placed: CallRate,
}

impl Directory {
    fn prune(&mut self, user: &Identity) {
        if self
            .users
            .get(user)
            .is_some_and(|u| u.sessions.is_empty() && u.legs.is_empty())
        {
            self.users.remove(user);
        }
    }

    fn connected_call(&self, user: &Identity) -> Option<CallId> {
        self.users.get(user)?.connected_call().cloned()
    }
}

impl directory::Users for Directory {
    fn connected_call(&self, user: &Identity) -> Option<CallId> {
        Directory::connected_call(self, user)
    }

    fn leg(&self, user: &Identity, call: &CallId) -> Option<LegState> {
        self.users.get(user)?.legs.get(call).copied()
    }

    fn unanswered_caller(&self, call: &CallId) -> Option<Identity> {
        self.calls
            .get(call)
            .filter(|e| e.unanswered)
            .map(|e| e.caller.clone())
    }
}

/// A `call` request, checked for form by the session.
pub struct PlaceCall {
    pub caller: Identity,
    pub callees: Vec<Identity>,
    pub media: Media,
    pub extra: Value,
    pub push: Value,
    pub live_channel: Option<ChannelId>,
    pub reply: ReplyTo,
}

/// Starts (`true`) or stops forwarding video in a call's channel: the media plane's switch,
/// given by the composition root.
pub type VideoSwitch = Box<dyn Fn(&ChannelId, bool) + Send + Sync>;

pub struct CallEngine {
    pub config: CallsConfig,
    /// Video flows in a call's channel while the call's media is video.
    pub video: VideoSwitch,
    /// Set under the directory lock when shutdown ends every call: no call starts after.
    closing: std::sync::atomic::AtomicBool,
    dir: Mutex<Directory>,
    pub logs: CallLogHandle,
    webhooks: Option<WebhookSink>,
    pub channels: Arc<ChannelRegistry>,
    /// Who refuses whose calls (and the channels' kicks, which the engine does not read).
    bans: Arc<Bans>,
    factory: CallFactory,
}

impl CallEngine {
    /// The engine over the call log's thread and the webhook sender the composition root
    /// started.
    pub fn start(
        config: &CallsConfig,
        channels: Arc<ChannelRegistry>,
        logs: CallLogHandle,
        webhooks: Option<WebhookSink>,
        bans: Arc<Bans>,
        factory: CallFactory,
        video: VideoSwitch,
    ) -> Arc<Self> {
        Arc::new(Self {
            config: config.clone(),
            video,
            closing: std::sync::atomic::AtomicBool::new(false),
            dir: Mutex::new(Directory::default()),
            logs,
            webhooks,
            channels,
            bans,
            factory,
        })
    }

    fn dir(&self) -> MutexGuard<'_, Directory> {
        // A panic while holding the lock leaves plain maps behind, still usable.
        self.dir.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A session with the `call` grant is online: calls to its identity ring it. Calls the
    /// identity was in learn it is back (the reconnect grace stops).
    pub fn register(&self, identity: &Identity, session: &SessionId, to: Recipient<ToSession>) {
        let calls: Vec<CallHandle> = {
            let mut dir = self.dir();
            let user = dir.users.entry(identity.clone()).or_default();
            let first = user.sessions.is_empty();
            user.sessions.push((session.clone(), to));
            let ids: Vec<CallId> = if first {
                user.legs.keys().cloned().collect()
            } else {
                Vec::new()
            };
            ids.iter()
                .filter_map(|id| dir.calls.get(id).map(|e| e.handle.clone()))
                .collect()
        };
        for call in calls {
            call.op
                .do_send(CallOp::internal(identity.clone(), Op::Reconnect));
        }
    }

    /// The session is gone. When it was the identity's last, its calls start the grace.
    pub fn unregister(&self, identity: &Identity, session: &SessionId) {
        let calls: Vec<CallHandle> = {
            let mut dir = self.dir();
            dir.proxies.remove(session);
            let Some(user) = dir.users.get_mut(identity) else {
                return;
            };
            let before = user.sessions.len();
            user.sessions.retain(|(s, _)| s != session);
            let last = before > 0 && user.sessions.is_empty();
            let ids: Vec<CallId> = if last {
                user.legs.keys().cloned().collect()
            } else {
                Vec::new()
            };
            let addrs = ids
                .iter()
                .filter_map(|id| dir.calls.get(id).map(|e| e.handle.clone()))
                .collect();
            dir.prune(identity);
            addrs
        };
        for call in calls {
            call.op
                .do_send(CallOp::internal(identity.clone(), Op::Disconnect));
        }
    }

    /// A session with the `proxy` grant sees every call's events.
    pub fn register_proxy(&self, session: &SessionId, to: Recipient<ToSession>) {
        self.dir().proxies.insert(session.clone(), to);
    }

    pub fn online(&self, user: &Identity) -> bool {
        self.dir()
            .users
            .get(user)
            .is_some_and(|u| !u.sessions.is_empty())
    }

    /// Writes `frame` to every live session of each of `to`; returns those who had one.
    pub fn deliver(&self, to: &[Identity], frame: &ByteString) -> Vec<Identity> {
        let dir = self.dir();
        let mut reached = Vec::new();
        for user in to {
            let Some(u) = dir.users.get(user) else {
                continue;
            };
            for (_, session) in &u.sessions {
                // A session too slow to take a call event is closed, not skipped: a client
                // that reconnects is told where its calls stand (`resumed`), while one that
                // silently missed an event would be wrong about its call.
                if let Err(SendError::Full(_)) = session.try_send(ToSession::Frame(frame.clone())) {
                    session.do_send(ToSession::Close {
                        code: 1008,
                        reason: "too slow to receive call events".into(),
                    });
                }
            }
            if !u.sessions.is_empty() {
                reached.push(user.clone());
            }
        }
        reached
    }

    /// Copies a call event to every proxy session.
    pub fn observe(&self, frame: impl FnOnce() -> ByteString) {
        let dir = self.dir();
        if dir.proxies.is_empty() {
            return;
        }
        let frame = frame();
        for session in dir.proxies.values() {
            // A proxy that cannot keep up would act on a wrong picture of its calls.
            if let Err(SendError::Full(_)) = session.try_send(ToSession::Frame(frame.clone())) {
                session.do_send(ToSession::Close {
                    code: 1008,
                    reason: "too slow to receive call events".into(),
                });
            }
        }
    }

    /// The call `user` is connected in, if any.
    pub fn active_call(&self, user: &Identity) -> Option<CallId> {
        self.dir().connected_call(user)
    }

    /// Makes `call` the one `user` is connected in; returns the other calls the user was
    /// connected in, which the caller ends for the user.
    pub fn claim_active(&self, user: &Identity, call: &CallId) -> Vec<CallId> {
        let mut dir = self.dir();
        let u = dir.users.entry(user.clone()).or_default();
        let others = u
            .legs
            .iter()
            .filter(|(c, s)| *c != call && **s == LegState::Connected)
            .map(|(c, _)| c.clone())
            .collect();
        u.legs.insert(call.clone(), LegState::Connected);
        others
    }

    /// Calls `user` rings or is connected in.
    pub fn calls_of(&self, user: &Identity) -> Vec<CallId> {
        self.dir()
            .users
            .get(user)
            .map(|u| u.legs.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_connected_member(&self, call: &CallId, user: &Identity) -> bool {
        self.dir()
            .users
            .get(user)
            .and_then(|u| u.legs.get(call))
            .is_some_and(|s| *s == LegState::Connected)
    }

    /// Of `users`, those connected in a call other than `except`.
    pub fn busy(&self, users: &[Identity], except: &CallId) -> Vec<Identity> {
        let dir = self.dir();
        users
            .iter()
            .filter(|u| dir.connected_call(u).is_some_and(|c| &c != except))
            .cloned()
            .collect()
    }

    /// Those of `users` who block calls from `caller`.
    pub fn blocking(&self, users: &[Identity], caller: &Identity) -> Vec<Identity> {
        users
            .iter()
            .filter(|u| self.bans.blocks(u, caller))
            .cloned()
            .collect()
    }

    pub fn route(&self, call: &CallId, op: CallOp) -> Result<(), ApiError> {
        let handle = self
            .dir()
            .calls
            .get(call)
            .map(|e| e.handle.clone())
            .ok_or_else(|| ApiError::not_found(amphi_core::call::NO_SUCH_CALL))?;
        handle.op.try_send(op).map_err(|e| match e {
            SendError::Full(_) => ApiError::new(
                ErrorCode::RateLimited,
                format!("call '{call}' is busy; retry shortly"),
            ),
            SendError::Closed(_) => ApiError::not_found(amphi_core::call::NO_SUCH_CALL),
        })
    }

    /// Mirrors a call's legs into the directory after every change.
    pub fn sync(&self, call: &Call) {
        let mut dir = self.dir();
        let id = call.id();
        for leg in call.legs() {
            let user = leg.user();
            match leg.state() {
                LegState::Left => {
                    if let Some(u) = dir.users.get_mut(user) {
                        u.legs.remove(id);
                    }
                    dir.prune(user);
                }
                state => {
                    dir.users
                        .entry(user.clone())
                        .or_default()
                        .legs
                        .insert(id.clone(), state);
                }
            }
        }
        if call.is_ended() {
            dir.calls.remove(id);
        } else if let Some(e) = dir.calls.get_mut(id) {
            e.unanswered = call.connected_at().is_none();
        }
    }

    pub fn webhook(&self, call: &CallId, event: WebhookEvent) {
        if let Some(w) = &self.webhooks {
            w.push.do_send(WebhookPush {
                subject: Subject::CallId(call.clone()),
                event,
            });
        }
    }

    pub fn webhook_finish(&self, call: &CallId) {
        if let Some(w) = &self.webhooks {
            w.finish(Subject::CallId(call.clone()));
        }
    }

    /// Ends every call (graceful shutdown); resolves once each call has taken the message.
    pub async fn terminate_all(&self, reason: super::call::EndReason) {
        let addrs: Vec<CallHandle> = self
            .dir()
            .calls
            .values()
            .map(|e| e.handle.clone())
            .collect();
        let sends = addrs.iter().map(|h| h.terminate.send(Terminate { reason }));
        let _ = futures_util::future::join_all(sends).await;
        // The ended calls' rows are queued to the log thread; they are on disk when this
        // answers, so a restart does not close them again with the downtime counted.
        let _ = self.logs.write.send(LogWrite::Barrier).await;
    }

    pub fn calls_in_progress(&self) -> usize {
        self.dir().calls.len()
    }

    /// Every call in progress as the directory sees it (caller, answered, each member's leg),
    /// ordered by call ID, for the admin API.
    pub fn summaries(&self) -> Vec<Value> {
        let dir = self.dir();
        let mut members: HashMap<&CallId, Vec<Value>> = HashMap::new();
        for (user, u) in &dir.users {
            for (call, state) in &u.legs {
                members
                    .entry(call)
                    .or_default()
                    .push(serde_json::json!({ "user": user, "state": state }));
            }
        }
        let mut calls: Vec<(&CallId, Value)> = dir
            .calls
            .iter()
            .map(|(id, e)| {
                let mut list = members.remove(id).unwrap_or_default();
                list.sort_by(|a, b| a["user"].as_str().cmp(&b["user"].as_str()));
                let v = serde_json::json!({
                    "call_id": id,
                    "caller": e.caller,
                    "answered": !e.unanswered,
                    "members": list,
                });
                (id, v)
            })
            .collect();
        calls.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        calls.into_iter().map(|(_, v)| v).collect()
    }

    /// The handle of a call in progress.
    pub fn handle(&self, call: &CallId) -> Option<CallHandle> {
        self.dir().calls.get(call).map(|e| e.handle.clone())
    }

    /// The webhook sender, when `calls.webhook_url` is set.
    pub fn webhooks(&self) -> Option<&WebhookSink> {
        self.webhooks.as_ref()
    }

    /// Places a call. Busy callees (connected in another call) are not rung; they get a
    /// missed call. A call to someone whose own unanswered call rings the caller is glare:
    /// one of the two calls survives by [`glare_winner`] and connects both.
    pub fn place_call(self: &Arc<Self>, req: PlaceCall) -> Result<(), ApiError> {
        let now = crate::clock::now();
        let callees = directory::callees(&req.caller, req.callees, req.live_channel.is_some())?;
        let mut dir = self.dir();
        if self.closing.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the server is shutting down; call again shortly",
            ));
        }
        if dir.calls.len() >= self.config.max_calls {
            crate::metrics::admission_refused("calls");
            return Err(ApiError::at_capacity(
                format!(
                    "the server carries its limit of {} calls (calls.max_calls); try again later",
                    self.config.max_calls
                ),
                crate::error::RETRY_AFTER_MS,
            ));
        }
        dir.placed
            .admit(&req.caller, now, self.config.max_calls_per_minute)?;
        let id = CallId::random();
        // A callee who blocks the caller is, to the caller, a callee who is not online: never
        // busy, never rung. Glare still stands: it only meets a call that callee placed.
        let blocked = self.blocking(&callees, &req.caller);
        let (busy, glare) = match directory::place(&*dir, &req.caller, &callees, &id)? {
            Decision::Place { mut busy, glare } => {
                busy.retain(|b| !blocked.contains(b));
                (busy, glare)
            }
            Decision::AnswerTheirs(theirs) => {
                let handle = dir.calls.get(&theirs).map(|e| e.handle.clone());
                drop(dir);
                answer_theirs(handle, theirs, req.caller, req.reply);
                return Ok(());
            }
        };
        let setup = CallSetup {
            id: id.clone(),
            caller: req.caller.clone(),
            callees: callees.clone(),
            media: req.media,
            extra: req.extra,
            ring_timeout: self.config.ring_timeout,
            reconnect_grace: self.config.reconnect_grace,
            media_change_timeout: self.config.media_change_timeout,
            created_unix_ms: unix_ms(),
        };
        let call = Call::new(setup, now).map_err(ApiError::from)?;
        let engine = self.clone();
        let handle = (self.factory)(
            engine,
            call,
            Placement {
                push: req.push,
                busy: busy.clone(),
                blocked,
                live_channel: req.live_channel,
                reply: req.reply,
                requested_at: now,
                glare,
            },
        );
        // Registered before the lock is released, so a racing call sees this one.
        dir.calls.insert(
            id.clone(),
            Entry {
                handle: handle.clone(),
                caller: req.caller.clone(),
                unanswered: true,
            },
        );
        dir.users
            .entry(req.caller.clone())
            .or_default()
            .legs
            .insert(id.clone(), LegState::Connected);
        for c in callees.iter().filter(|c| !busy.contains(c)) {
            dir.users
                .entry(c.clone())
                .or_default()
                .legs
                .insert(id.clone(), LegState::Ringing);
        }
        drop(dir);
        if glare {
            // This call stands: the callee answers it, which ends its own call as replaced.
            handle.op.do_send(CallOp::internal(
                callees[0].clone(),
                Op::Accept { media: None },
            ));
        }
        Ok(())
    }
}

/// Glare that the callee's call wins: the caller answers it, and its `call` request is
/// answered as if that call were the one it placed.
fn answer_theirs(handle: Option<CallHandle>, theirs: CallId, caller: Identity, reply: ReplyTo) {
    let channel = call_channel(&theirs);
    let mut op = CallOp::internal(caller, Op::Accept { media: None });
    op.reply = Some(reply);
    op.ok_result = Some(json!({
        "call_id": theirs,
        "busy": [],
        "channel": channel,
        "glare": true,
    }));
    if let Some(handle) = handle {
        handle.op.do_send(op);
    }
}

impl CallDirectory for CallEngine {
    fn is_connected_member(&self, call: &CallId, user: &Identity) -> bool {
        CallEngine::is_connected_member(self, call, user)
    }

    fn route(&self, call: &CallId, op: CallOp) -> Result<(), ApiError> {
        CallEngine::route(self, call, op)
    }
}
