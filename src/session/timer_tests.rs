//! The session's own timers in paused time: the join timeout and the heartbeat, each checked
//! just before and just after it is due, at their default lengths, without waiting for them.
//!
//! The session writes to a detached sink (no socket): the test decodes what it wrote. Tokio's
//! time is paused, so the actor's timers and `clock::now()` move only when the test advances
//! them; the test yields while the actor works and never parks the runtime.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_codec::Decoder;
use actix_http::ws::{CloseCode, Codec, Frame};
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::SessionActor;
use crate::config::Config;
use crate::ids::Identity;
use crate::media::MediaPlane;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::token::Grant;

/// What the session wrote so far, decoded as its client would.
struct Client {
    rx: mpsc::Receiver<Bytes>,
    codec: Codec,
    buf: BytesMut,
    texts: usize,
    pings: usize,
    closed: Option<(CloseCode, String)>,
}

impl Client {
    fn read(&mut self) {
        while let Ok(bytes) = self.rx.try_recv() {
            self.buf.extend_from_slice(&bytes);
        }
        while let Some(frame) = self.codec.decode(&mut self.buf).expect("server frames") {
            match frame {
                Frame::Text(_) => self.texts += 1,
                Frame::Ping(_) => self.pings += 1,
                Frame::Close(reason) => {
                    let r = reason.expect("a close says why");
                    self.closed = Some((r.code, r.description.unwrap_or_default()));
                }
                _ => {}
            }
        }
    }
}

/// A server's state (no HTTP) and a session on it for a token with `grants`.
fn session(grants: &[&str]) -> (Config, Arc<AppState>, Client) {
    tokio::time::pause();
    let mut config = Config::dev();
    config.media.udp_port = 0;
    config.calls.database = ":memory:".into();
    let metrics = Metrics::new();
    let media = MediaPlane::start(&config.media, &metrics).expect("media plane");
    let state = Arc::new(crate::server::compose(config.clone(), media, metrics).expect("state"));
    let grant = Grant {
        identity: Identity::parse("idle").unwrap(),
        name: None,
        channel: None,
        roles: vec!["audience".into()],
        grants: grants.iter().map(|g| g.to_string()).collect(),
        jti: None,
        expires_at: u64::MAX,
    };
    let (sink, rx) = crate::ws::WsSink::detached(config.limits.outbound_queue);
    let s = state.clone();
    SessionActor::create(move |_| SessionActor::new(grant, s, sink));
    let client = Client {
        rx,
        codec: Codec::new().client_mode(),
        buf: BytesMut::new(),
        texts: 0,
        pings: 0,
        closed: None,
    };
    (config, state, client)
}

/// Lets the actor run. A one-millisecond sleep parks the runtime once, which makes its timer
/// driver fire what the last advance made due (paused time moves by that millisecond at most).
async fn settle(client: &mut Client) {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    client.read();
}

/// Moves time to just before `due` (nothing closed yet), then just past it.
async fn cross(due: Duration, client: &mut Client) {
    tokio::time::advance(due - Duration::from_millis(100)).await;
    settle(client).await;
    assert!(
        client.closed.is_none(),
        "closed before it was due: {:?}",
        client.closed
    );
    tokio::time::advance(Duration::from_millis(200)).await;
    settle(client).await;
}

#[actix_rt::test]
async fn a_connection_that_joins_nothing_is_closed_at_the_join_timeout() {
    let (config, state, mut client) = session(&[]);
    settle(&mut client).await;
    assert_eq!(client.texts, 1, "the welcome");
    cross(config.timeouts.join_timeout, &mut client).await;
    let (code, reason) = client
        .closed
        .clone()
        .expect("closed once the join timeout passed");
    assert_eq!(code, CloseCode::Policy);
    assert_eq!(reason, "no channel joined in time");
    state.media.stop();
}

#[actix_rt::test]
async fn a_client_that_never_answers_a_ping_is_dropped_after_the_heartbeat_timeout() {
    // A token that may take calls waits for them without joining a channel.
    let (config, state, mut client) = session(&["call"]);
    let t = &config.timeouts;
    settle(&mut client).await;
    // Time moves one heartbeat interval at a time, as the session's check runs: the session
    // pings at each check until one finds the client silent for longer than the timeout.
    let mut at = Duration::ZERO;
    while client.closed.is_none() && at < t.heartbeat_timeout * 3 {
        tokio::time::advance(t.heartbeat_interval - Duration::from_millis(1)).await;
        at += t.heartbeat_interval;
        settle(&mut client).await;
    }
    // Closed by the check that comes at the timeout (each settle's millisecond puts that
    // check just past it) or the one after, never before.
    assert!(
        at >= t.heartbeat_timeout && at <= t.heartbeat_timeout + t.heartbeat_interval,
        "closed at {at:?}; the timeout is {:?}",
        t.heartbeat_timeout
    );
    let checks = (at.as_millis() / t.heartbeat_interval.as_millis()) as usize;
    assert_eq!(client.pings, checks - 1, "a ping at every check before");
    let (code, reason) = client
        .closed
        .clone()
        .expect("dropped after the heartbeat timeout");
    assert_eq!(code, CloseCode::Away);
    assert_eq!(reason, "heartbeat timeout");
    state.media.stop();
}
