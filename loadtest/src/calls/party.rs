//! One side of a call: its signalling link, the events it waits for, and the requests it
//! sends.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use amphi_client::{AudioPeer, ClientError, PeerOptions, Signal, Tone};
use amphi_proto::calls::Media;
use amphi_proto::protocol::Request;
use serde_json::Value;

use super::stats::{Failure, FailureKind, Timeouts};
use crate::tokens::token_with_grants;

/// Call events read while waiting for another one are kept, since the next wait may be for
/// them; a server flooding events must not grow this without bound.
const BACKLOG: usize = 64;

/// What a party waits for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Want<'a> {
    /// `call_incoming` from this caller: the call's ID is not known when the wait begins (the
    /// call reply and the callee's event race).
    Incoming { caller: &'a str },
    Event {
        event: &'static str,
        call_id: &'a str,
    },
}

impl Want<'_> {
    pub(super) fn matches(&self, v: &Value) -> bool {
        if v["type"] != "event" {
            return false;
        }
        match *self {
            Want::Incoming { caller } => v["event"] == "call_incoming" && v["caller"] == caller,
            Want::Event { event, call_id } => v["event"] == event && v["call_id"] == call_id,
        }
    }

    /// The call ended, so what is awaited will never come: fail now rather than at the
    /// timeout.
    pub(super) fn forecloses(&self, v: &Value) -> bool {
        match *self {
            Want::Event { event, call_id } => {
                event != "call_ended"
                    && v["type"] == "event"
                    && v["event"] == "call_ended"
                    && v["call_id"] == call_id
            }
            Want::Incoming { .. } => false,
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match *self {
            Want::Incoming { .. } => "call_incoming",
            Want::Event { event, .. } => event,
        }
    }
}

/// How long a request the connection's rate limit refused waits before it goes again: the
/// server's bucket refills in tens of milliseconds, and a second refusal in a row counts
/// towards a disconnect.
const RATE_PAUSE: Duration = Duration::from_millis(250);

pub(super) fn call_request(callee: &str) -> Request {
    Request::Call {
        callees: vec![callee.to_string()],
        media: Media::Audio,
        extra: Value::Null,
        push: Value::Null,
        live_channel: None,
        on_behalf: None,
    }
}

pub(super) fn hangup_request(call_id: &str) -> Request {
    Request::Hangup {
        call_id: Some(call_id.to_string()),
        reason: None,
        note: None,
        on_behalf: None,
    }
}

/// One user's signalling connection; cloned so a request and an event wait on the same
/// connection can run at once.
#[derive(Clone)]
pub(super) struct Link {
    pub(super) identity: String,
    pub(super) signal: Signal,
}

impl Link {
    /// Sends `req` and waits for its reply, within `within`. A request the connection's rate
    /// limit refused (`rate_limited` without a retry hint: nothing was done) is sent again
    /// after a pause, as a client that respects the server would; one with a hint is the
    /// caller's to handle (the per-caller call rate).
    pub(super) async fn request(&self, req: Request, within: Duration) -> Result<Value, Failure> {
        let send = async {
            loop {
                match self.signal.send(&req).await {
                    Err(ClientError::Server {
                        code,
                        retry_after_ms: None,
                        ..
                    }) if code == "rate_limited" => tokio::time::sleep(RATE_PAUSE).await,
                    other => return other,
                }
            }
        };
        // The request's type names a failure only; it is not worked out for every success.
        match tokio::time::timeout(within, send).await {
            Ok(r) => r.map_err(|e| Failure::client(&self.identity, &req.kind(), e)),
            Err(_) => Err(Failure::new(
                FailureKind::Timeout,
                format!(
                    "{}: {}: no reply within {within:?}",
                    self.identity,
                    req.kind()
                ),
            )),
        }
    }

    /// Joins the call's channel on stage and starts a peer sending this side's tone.
    pub(super) async fn media(
        &self,
        channel: &str,
        tone: f64,
        to: &Timeouts,
    ) -> Result<AudioPeer, Failure> {
        let join = Request::Join {
            channel: channel.into(),
            uri: false,
            role: Some("host".into()),
            metadata: None,
            audio: Default::default(),
        };
        self.request(join, to.step).await?;
        let start = async {
            loop {
                let opts = PeerOptions {
                    publish: Some(Box::new(Tone::new(tone))),
                    slots: 1,
                    decode: false,
                    ..PeerOptions::default()
                };
                // The offer refused by the connection's rate limit: nothing was negotiated.
                match AudioPeer::start(&self.signal, channel, opts).await {
                    Err(ClientError::Server {
                        code,
                        retry_after_ms: None,
                        ..
                    }) if code == "rate_limited" => tokio::time::sleep(RATE_PAUSE).await,
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(to.step, start).await {
            Ok(r) => r.map_err(|e| Failure::client(&self.identity, "media", e)),
            Err(_) => Err(Failure::new(
                FailureKind::Timeout,
                format!(
                    "{}: media: not negotiated within {:?}",
                    self.identity, to.step
                ),
            )),
        }
    }

    /// A channel the server has already closed (the call's end may close it) is left too.
    pub(super) async fn leave(&self, channel: &str, within: Duration) -> Result<(), Failure> {
        match self
            .request(
                Request::Leave {
                    channel: channel.into(),
                },
                within,
            )
            .await
        {
            Err(f) if f.code.as_deref() == Some("not_found") => Ok(()),
            r => r.map(|_| ()),
        }
    }

    pub(super) async fn close(&self, within: Duration) {
        let _ = tokio::time::timeout(within, self.signal.close()).await;
    }
}

pub(super) struct Party {
    pub(super) link: Link,
    /// Call events read while waiting for another one.
    pub(super) backlog: VecDeque<(Value, Instant)>,
}

impl Party {
    pub(super) async fn connect(
        url: &str,
        key: &str,
        identity: &str,
        within: Duration,
    ) -> Result<Self, Failure> {
        let token = token_with_grants(key, identity, "host", &["call"]);
        let signal = match tokio::time::timeout(within, Signal::connect(url, &token)).await {
            Ok(r) => r.map_err(|e| Failure::client(identity, "connect", e))?,
            Err(_) => {
                return Err(Failure::new(
                    FailureKind::Timeout,
                    format!("{identity}: connect: no welcome within {within:?}"),
                ))
            }
        };
        Ok(Self {
            link: Link {
                identity: identity.to_string(),
                signal,
            },
            backlog: VecDeque::new(),
        })
    }

    pub(super) fn identity(&self) -> &str {
        &self.link.identity
    }

    /// The awaited event and when this side saw it.
    pub(super) async fn wait(
        &mut self,
        want: Want<'_>,
        within: Duration,
    ) -> Result<(Value, Instant), Failure> {
        if let Some(i) = self.backlog.iter().position(|(v, _)| want.matches(v)) {
            return Ok(self.backlog.remove(i).expect("position is in range"));
        }
        if let Some((v, _)) = self.backlog.iter().find(|(v, _)| want.forecloses(v)) {
            return Err(self.ended_early(&want, v));
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let asked = Instant::now();
            let event = if left.is_zero() {
                None
            } else {
                self.link.signal.next_event(left).await
            };
            let Some(v) = event else {
                // No event before the time was up is a timeout; no event sooner means the
                // connection's reader has stopped.
                return Err(if asked.elapsed() < left {
                    Failure::new(
                        FailureKind::Connection,
                        format!(
                            "{}: the connection closed while waiting for {}",
                            self.identity(),
                            want.name()
                        ),
                    )
                } else {
                    Failure::new(
                        FailureKind::Timeout,
                        format!("{}: no {} within {within:?}", self.identity(), want.name()),
                    )
                });
            };
            let at = Instant::now();
            if want.matches(&v) {
                return Ok((v, at));
            }
            if want.forecloses(&v) {
                return Err(self.ended_early(&want, &v));
            }
            if v.get("call_id").is_some() {
                if self.backlog.len() >= BACKLOG {
                    self.backlog.pop_front();
                }
                self.backlog.push_back((v, at));
            }
        }
    }

    pub(super) fn ended_early(&self, want: &Want<'_>, ended: &Value) -> Failure {
        Failure::protocol(
            self.identity(),
            format!(
                "the call ended ({}) while waiting for {}",
                ended["reason"].as_str().unwrap_or("no reason given"),
                want.name()
            ),
        )
    }
}
