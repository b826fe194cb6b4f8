//! A stand-in server: the call requests and events of the protocol, channels that can be
//! joined and left, and no media.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::claims;

#[derive(Clone, Copy, Default)]
pub(super) struct Behaviour {
    /// Refuse `call` with this error code (today's server says `unsupported`).
    pub(super) refuse_call: Option<&'static str>,
    /// Report the callee busy in the call reply.
    pub(super) busy: bool,
    /// Never send `call_incoming`.
    pub(super) silent: bool,
    /// End the call with `timeout` instead of connecting it on `accept`.
    pub(super) end_on_accept: bool,
}

#[derive(Default)]
pub(super) struct MockState {
    behaviour: Behaviour,
    users: Mutex<HashMap<String, mpsc::UnboundedSender<String>>>,
    calls: Mutex<HashMap<String, (String, String)>>,
    log: Mutex<Vec<String>>,
    next: AtomicU64,
}

impl MockState {
    fn send(&self, to: &str, v: Value) {
        if let Some(tx) = self.users.lock().unwrap().get(to) {
            let _ = tx.send(v.to_string());
        }
    }

    fn log(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }

    pub(super) fn count(&self, prefix: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.starts_with(prefix)).count()
    }
}

pub(super) async fn mock(behaviour: Behaviour) -> (String, Arc<MockState>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(MockState {
        behaviour,
        ..MockState::default()
    });
    let st = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(st.clone(), stream));
        }
    });
    (url, state)
}

/// The WebSocket handshake and the claims of the token in its query.
// The handshake callback's error type is tungstenite's, large or not.
#[allow(clippy::result_large_err)]
async fn accept(stream: TcpStream) -> Option<(WebSocketStream<TcpStream>, Value)> {
    let mut query = String::new();
    let callback = |req: &Request, resp: Response| {
        query = req.uri().query().unwrap_or_default().to_string();
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, callback)
        .await
        .ok()?;
    let token = query.strip_prefix("token=").unwrap_or_default();
    Some((ws, claims(token)?))
}

async fn connection(state: Arc<MockState>, stream: TcpStream) {
    let Some((ws, claims)) = accept(stream).await else {
        return;
    };
    let me = claims["sub"].as_str().unwrap_or_default().to_string();
    let may_call = claims["grants"]
        .as_array()
        .is_some_and(|g| g.iter().any(|x| x == "call"));
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    let _ = tx.send(
        json!({"type": "welcome", "protocol": 1, "session": "s-0", "identity": me}).to_string(),
    );
    state.users.lock().unwrap().insert(me.clone(), tx.clone());
    state.log(format!("connect {me}"));
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(req) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let kind = req["type"].as_str().unwrap_or_default().to_string();
        state.log(format!("{kind} {me}"));
        let answer = Answer {
            state: &state,
            me: &me,
            tx: &tx,
            req: &req,
        };
        match kind.as_str() {
            "call" | "accept" | "hangup" if !may_call => answer.error("forbidden"),
            "call" => answer.call(),
            "accept" => answer.accept(),
            "hangup" => answer.hang_up(),
            "join" => answer.ok(json!({"channel": req["channel"], "participant": "p-1",
                                       "role": req["role"], "seq": 1})),
            // The call's channel may already be gone when a member leaves it.
            "leave" => answer.error("not_found"),
            // No media plane here.
            "media_offer" => answer.error("unsupported"),
            _ => answer.error("unknown_type"),
        }
    }
    state.log(format!("close {me}"));
}

/// One request being answered: the reply goes to its sender, the events it causes to the
/// users they concern.
struct Answer<'a> {
    state: &'a MockState,
    me: &'a str,
    tx: &'a mpsc::UnboundedSender<String>,
    req: &'a Value,
}

impl Answer<'_> {
    fn ok(&self, extra: Value) {
        let mut v = json!({"id": self.req["id"], "type": "ok"});
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        let _ = self.tx.send(v.to_string());
    }

    fn error(&self, code: &str) {
        let v = json!({"id": self.req["id"], "type": "error", "code": code, "message": "mock"});
        let _ = self.tx.send(v.to_string());
    }

    fn call_id(&self) -> String {
        self.req["call_id"].as_str().unwrap_or_default().to_string()
    }

    fn call(&self) {
        let (state, me, b) = (self.state, self.me, self.state.behaviour);
        if let Some(code) = b.refuse_call {
            return self.error(code);
        }
        let callee = self.req["callees"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let n = state.next.fetch_add(1, Ordering::Relaxed) + 1;
        let call_id = format!("c-{n:016x}");
        state
            .calls
            .lock()
            .unwrap()
            .insert(call_id.clone(), (me.to_string(), callee.clone()));
        let busy = if b.busy { vec![callee.clone()] } else { vec![] };
        self.ok(json!({"call_id": call_id, "busy": busy, "channel": format!("call:{call_id}")}));
        if b.busy {
            return;
        }
        state.send(
            me,
            json!({"type": "event", "event": "call_ringing",
                   "call_id": call_id, "callees": [callee]}),
        );
        if !b.silent {
            state.send(
                &callee,
                json!({"type": "event", "event": "call_incoming",
                       "call_id": call_id, "seq": 1, "caller": me,
                       "invited_by": me, "members": [me, callee],
                       "call_type": "one_to_one", "media": "audio",
                       "extra": null}),
            );
        }
    }

    fn accept(&self) {
        let state = self.state;
        let call_id = self.call_id();
        let Some((caller, callee)) = state.calls.lock().unwrap().get(&call_id).cloned() else {
            return self.error("not_found");
        };
        self.ok(json!({}));
        // Another call's end first: a wait must not mistake it for this one's.
        state.send(
            &caller,
            json!({"type": "event", "event": "call_ended",
                   "call_id": "c-0000000000000000", "reason": "timeout"}),
        );
        for user in [&caller, &callee] {
            let event = if state.behaviour.end_on_accept {
                json!({"type": "event", "event": "call_ended", "call_id": call_id,
                       "reason": "timeout"})
            } else {
                json!({"type": "event", "event": "call_connected", "call_id": call_id,
                       "seq": 2, "start_time": 0, "media": "audio",
                       "channel": format!("call:{call_id}")})
            };
            state.send(user, event);
        }
    }

    fn hang_up(&self) {
        let call_id = self.call_id();
        let Some((caller, callee)) = self.state.calls.lock().unwrap().remove(&call_id) else {
            return self.error("not_found");
        };
        self.ok(json!({}));
        for user in [&caller, &callee] {
            self.state.send(
                user,
                json!({"type": "event", "event": "call_ended",
                       "call_id": call_id, "seq": 3, "reason": "hangup"}),
            );
        }
    }
}
