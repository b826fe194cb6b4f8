//! The call actor's timers in paused time: ring timeout, reconnect grace and the media-change
//! timeout at their default lengths, each checked just before and just after it is due,
//! without waiting for any of them.
//!
//! Tokio's time is paused, so the actors' timers and `clock::now()` move only when the test
//! advances them. The test never parks the runtime while it waits for the actors (it yields,
//! and lets the call-log thread run), so paused time never jumps ahead on its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use super::actor::CallActor;
use super::call::Media;
use super::engine::{CallEngine, PlaceCall};
use crate::config::Config;
use crate::ids::{Identity, SessionId};
use crate::messages::{CallHandle, CallOp, Op, ReplyTo, ToSession};
use crate::registry::ChannelRegistry;

/// A session stand-in that keeps every frame it is sent.
struct Inbox(Arc<Mutex<Vec<Value>>>);

impl Actor for Inbox {
    type Context = Context<Self>;
}

impl Handler<ToSession> for Inbox {
    type Result = ();

    fn handle(&mut self, msg: ToSession, _: &mut Context<Self>) {
        let frame = match msg {
            ToSession::Frame(f) | ToSession::Reply { frame: f, .. } => f,
            _ => return,
        };
        let v = serde_json::from_str(&frame).expect("frames are JSON");
        self.0.lock().unwrap().push(v);
    }
}

struct User {
    identity: Identity,
    session: SessionId,
    frames: Arc<Mutex<Vec<Value>>>,
    to: Recipient<ToSession>,
}

impl User {
    fn new(engine: &CallEngine, name: &str) -> Self {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let to = Inbox(frames.clone()).start().recipient();
        let identity = Identity::parse(name).unwrap();
        let session = SessionId::random();
        engine.register(&identity, &session, to.clone());
        Self {
            identity,
            session,
            frames,
            to,
        }
    }

    fn reply_to(&self) -> ReplyTo {
        ReplyTo::new(self.to.clone(), Some(1), 1, None)
    }

    fn find(&self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .find(|v| pred(v))
            .cloned()
    }

    /// The call event `name`, once it has arrived.
    async fn event(&self, name: &str) -> Value {
        self.event_where(name, |_| true).await
    }

    /// The first call event `name` that `pred` accepts, once it has arrived.
    async fn event_where(&self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let wanted = |v: &Value| v["event"] == name && pred(v);
        self.until(|u| u.find(wanted).is_some(), name).await;
        self.find(wanted).unwrap()
    }

    /// Lets the actors run until `fact` holds of this user's frames.
    async fn until(&self, fact: impl Fn(&User) -> bool, what: &str) {
        for _ in 0..5_000 {
            if fact(self) {
                return;
            }
            settle().await;
        }
        panic!(
            "{}: no {what}: {:?}",
            self.identity,
            self.frames.lock().unwrap()
        );
    }

    fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|v| pred(v))
            .count()
    }

    fn has(&self, name: &str) -> bool {
        self.find(|v| v["event"] == name).is_some()
    }
}

/// Lets the actors (and the call-log thread) run without parking the runtime.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    std::thread::sleep(Duration::from_micros(200));
}

async fn settle_long() {
    for _ in 0..50 {
        settle().await;
    }
}

/// Moves time to just before `due` (`user` has no `event` yet), then just past it.
async fn cross(due: Duration, user: &User, event: &str) {
    tokio::time::advance(due - Duration::from_millis(100)).await;
    settle_long().await;
    assert!(!user.has(event), "{event} before it was due");
    tokio::time::advance(Duration::from_millis(200)).await;
}

/// Bob's last session goes; Alice hears he is reconnecting.
async fn drop_bob(engine: &CallEngine, alice: &User, bob: &User) {
    engine.unregister(&bob.identity, &bob.session);
    let state = alice
        .event_where("participant_state", |v| v["reconnecting"] == true)
        .await;
    assert_eq!(state["user"], "bob", "{state}");
}

/// Paused time, a call engine, and Alice and Bob online.
fn start() -> (Config, Arc<CallEngine>, User, User) {
    tokio::time::pause();
    let (config, engine) = engine();
    let alice = User::new(&engine, "alice");
    let bob = User::new(&engine, "bob");
    (config, engine, alice, bob)
}

fn engine() -> (Config, Arc<CallEngine>) {
    let mut config = Config::default();
    config.calls.database = ":memory:".into();
    let registry = Arc::new(ChannelRegistry::new(Box::new(|id, _| {
        panic!("these calls open no channel, yet {id} was asked for")
    })));
    let logs = super::logs::CallLogActor::start_configured(&config.calls).unwrap();
    let engine = CallEngine::start(
        &config.calls,
        registry,
        logs,
        None,
        Arc::new(crate::bans::Bans::in_memory()),
        Box::new(|engine, call, placement| {
            CallHandle::new(CallActor::new(engine, call, placement).start())
        }),
        Box::new(|_, _| {}),
    );
    (config, engine)
}

/// Alice calls Bob; returns the call ID once Bob's phone rings.
async fn ring(engine: &Arc<CallEngine>, alice: &User, bob: &User) -> String {
    engine
        .place_call(PlaceCall {
            caller: alice.identity.clone(),
            callees: vec![bob.identity.clone()],
            media: Media::Audio,
            extra: Value::Null,
            push: Value::Null,
            live_channel: None,
            reply: alice.reply_to(),
        })
        .unwrap();
    let incoming = bob.event("call_incoming").await;
    incoming["call_id"].as_str().unwrap().to_string()
}

async fn connect(engine: &Arc<CallEngine>, alice: &User, bob: &User) -> String {
    let id = ring(engine, alice, bob).await;
    let call = super::call::CallId::parse(&id).unwrap();
    let mut op = CallOp::internal(bob.identity.clone(), Op::Accept { media: None });
    op.reply = Some(bob.reply_to());
    engine.route(&call, op).unwrap();
    alice.event("call_connected").await;
    id
}

#[actix_rt::test]
async fn an_unanswered_call_rings_exactly_the_ring_timeout() {
    let (config, engine, alice, bob) = start();
    let ring_timeout = config.calls.ring_timeout;
    ring(&engine, &alice, &bob).await;

    cross(ring_timeout, &alice, "call_ended").await;
    assert_eq!(alice.event("call_ended").await["reason"], "timeout");
    assert_eq!(bob.event("call_missed").await["user"], "bob");
    assert_eq!(bob.event("call_ended").await["reason"], "timeout");
}

#[actix_rt::test]
async fn a_dropped_member_keeps_its_place_for_the_reconnect_grace() {
    let (config, engine, alice, bob) = start();
    let grace = config.calls.reconnect_grace;
    connect(&engine, &alice, &bob).await;

    drop_bob(&engine, &alice, &bob).await;
    cross(grace, &alice, "call_ended").await;
    assert_eq!(alice.event("call_ended").await["reason"], "disconnected");
}

#[actix_rt::test]
async fn a_member_back_within_the_grace_stays_in_the_call() {
    let (config, engine, alice, bob) = start();
    let grace = config.calls.reconnect_grace;
    connect(&engine, &alice, &bob).await;

    drop_bob(&engine, &alice, &bob).await;
    tokio::time::advance(grace / 2).await;
    let _bob_again = User::new(&engine, "bob");
    // The second "connected, not reconnecting" state: the first came when the call connected.
    let back_again = |v: &Value| v["event"] == "participant_state" && v["reconnecting"] == false;
    alice
        .until(|u| u.count(back_again) >= 2, "second participant_state")
        .await;
    let back = alice.frames.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (back["event"].clone(), back["reconnecting"].clone()),
        (Value::from("participant_state"), Value::from(false)),
        "{back}"
    );
    // The grace was cancelled: well past where it would have ended, the call stands.
    tokio::time::advance(grace * 2).await;
    settle_long().await;
    assert!(!alice.has("call_ended"), "ended although bob came back");
}

#[actix_rt::test]
async fn an_unanswered_media_change_times_out_on_time() {
    let (config, engine, alice, bob) = start();
    let timeout = config.calls.media_change_timeout;
    let id = connect(&engine, &alice, &bob).await;
    let call = super::call::CallId::parse(&id).unwrap();
    let mut op = CallOp::internal(
        alice.identity.clone(),
        Op::MediaChange {
            media: Media::Video,
        },
    );
    op.reply = Some(alice.reply_to());
    engine.route(&call, op).unwrap();
    bob.event("media_change_requested").await;

    tokio::time::advance(timeout - Duration::from_millis(100)).await;
    settle_long().await;
    assert!(
        !alice.has("media_change_result"),
        "answered before the timeout"
    );

    tokio::time::advance(Duration::from_millis(200)).await;
    for user in [&alice, &bob] {
        let result = user.event("media_change_result").await;
        assert_eq!(
            (result["result"].clone(), result["media"].clone()),
            (Value::from("timeout"), Value::from("audio")),
            "{result}"
        );
    }
}
