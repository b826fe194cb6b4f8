//! The connection under a [`Signal`](super::Signal): one task reads and writes the socket,
//! routes replies and events, and when the network fails (a drop without a close frame)
//! reconnects and resumes the session (docs/protocol.md §8.8) with backoff and jitter, so the
//! application keeps its `Signal`, its pending event queue and its peers. The types both
//! sides share (errors, options, routing tables) live here, below `Signal`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("server error {code}: {message}")]
    Server {
        code: String,
        message: String,
        /// The server's `retry_after_ms`: when the same request may succeed.
        retry_after_ms: Option<u64>,
    },
    #[error("the connection is closed")]
    Closed,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("media: {0}")]
    Media(String),
}

pub(super) type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;
pub(super) type MediaRoutes = Arc<Mutex<HashMap<String, mpsc::Sender<Value>>>>;

/// How a connection behaves when its network fails.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Reconnect and resume the session (docs/protocol.md §8.8) when the connection drops
    /// without a close frame, with backoff and jitter. The event queue then carries
    /// `{"type": "client", "event": "reconnecting"}`, then `reconnected` (with `resync`: the
    /// channels to join again) or `session_gone` (join afresh).
    pub auto_resume: bool,
    /// How long to keep trying: the server's `timeouts.resume_window`.
    pub resume_window: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            auto_resume: true,
            resume_window: Duration::from_secs(20),
        }
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The first retry waits about this long; each later one twice as long, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A resume reply slower than this counts as a failed attempt.
const RESUME_REPLY: Duration = Duration::from_secs(5);

/// A new socket and its welcome frame.
pub(super) async fn open(url: &str) -> Result<(Ws, Value), ClientError> {
    open_raw(url).await.map_err(|e| match e {
        Opened::Refused(m) | Opened::Failed(m) => ClientError::Connect(m),
    })
}

enum Opened {
    /// The server answered the upgrade with an HTTP error (a token refused, say): trying
    /// again with the same token cannot help.
    Refused(String),
    /// No answer, a reset, a garbled welcome: worth another try.
    Failed(String),
}

async fn open_raw(url: &str) -> Result<(Ws, Value), Opened> {
    // Requests are small writes that must go out at once, not wait for an ACK (Nagle).
    // Signalling messages are small: tungstenite's default 128 KiB read buffer is zeroed on
    // every read (a swarm of 1,000 members spent 5 % of its CPU in that memset on speaker
    // levels alone) and held per connection. Larger messages still arrive whole.
    let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(ref r) if r.status().is_client_error() => {
                Opened::Refused(e.to_string())
            }
            e => Opened::Failed(e.to_string()),
        })?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str::<Value>(&t)
                    .map(|v| (ws, v))
                    .map_err(|e| Opened::Failed(e.to_string()))
            }
            Some(Ok(_)) => continue,
            _ => return Err(Opened::Failed("closed before its welcome".into())),
        }
    }
}

/// Why one socket's service ended.
enum Ended {
    /// The application is done with the `Signal` (or closed it): nothing to resume.
    Closed,
    /// The server closed the connection with a close frame: it meant to.
    ClosedByServer,
    /// The network failed, or `sever` acted as if it had.
    Lost,
}

pub(super) struct Link {
    pub url: String,
    pub opts: ConnectOptions,
    pub session: String,
    pub resume_token: Option<String>,
    /// Per channel, the last event `seq` seen: a resume asks for what came after it.
    pub last_seq: HashMap<String, u64>,
    pub pending: Pending,
    pub media: MediaRoutes,
    pub next_id: Arc<AtomicU64>,
    pub events: mpsc::Sender<Value>,
    pub out: mpsc::Receiver<Message>,
    pub sever: Arc<Notify>,
}

impl Link {
    pub async fn run(mut self, mut ws: Ws) {
        loop {
            let ended = self.serve(ws).await;
            // Replies to requests sent on the lost socket will not come: they fail now
            // (`Closed`), and the application decides whether to send them again. Requests
            // sent while reconnecting go out on the resumed socket.
            self.pending.lock().expect("not poisoned").clear();
            let resumable = matches!(ended, Ended::Lost)
                && self.opts.auto_resume
                && self.resume_token.is_some();
            if !resumable {
                break;
            }
            self.emit(json!({"type": "client", "event": "reconnecting"}));
            match self.resume().await {
                Some(resumed) => ws = resumed,
                None => break,
            }
        }
        self.pending.lock().expect("not poisoned").clear();
    }

    async fn serve(&mut self, ws: Ws) -> Ended {
        let (mut sink, mut stream) = ws.split();
        loop {
            tokio::select! {
                out = self.out.recv() => match out {
                    Some(Message::Close(frame)) => {
                        let _ = sink.send(Message::Close(frame)).await;
                        return Ended::Closed;
                    }
                    Some(m) => {
                        if sink.send(m).await.is_err() {
                            return Ended::Lost;
                        }
                    }
                    None => {
                        let _ = sink.close().await;
                        return Ended::Closed;
                    }
                },
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => self.dispatch(&text),
                    Some(Ok(Message::Close(_))) => return Ended::ClosedByServer,
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Ended::Lost,
                },
                () = self.sever.notified() => return Ended::Lost,
            }
        }
    }

    fn dispatch(&mut self, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(id) = v.get("id").and_then(Value::as_u64) {
            if let Some(tx) = self.pending.lock().expect("not poisoned").remove(&id) {
                let _ = tx.send(v);
                return;
            }
        }
        if let (Some(channel), Some(seq)) = (v["channel"].as_str(), v["seq"].as_u64()) {
            let last = self.last_seq.entry(channel.to_string()).or_default();
            *last = (*last).max(seq);
        }
        if is_media_event(&v) {
            let channel = v["channel"].as_str().unwrap_or_default();
            let tx = self
                .media
                .lock()
                .expect("not poisoned")
                .get(channel)
                .cloned();
            if let Some(tx) = tx {
                let _ = tx.try_send(v.clone());
            }
        }
        self.emit(v);
    }

    /// A full queue means the application is not reading events: drop, never block the
    /// replies behind them.
    fn emit(&self, v: Value) {
        let _ = self.events.try_send(v);
    }

    /// Tries to resume until the window passes; the resumed socket, or `None` (and
    /// `session_gone` emitted) when the session cannot come back.
    async fn resume(&mut self) -> Option<Ws> {
        let deadline = Instant::now() + self.opts.resume_window;
        let mut jitter = Jitter::seeded(&self.session);
        let mut backoff = FIRST_BACKOFF;
        loop {
            // Half of the wait is random, so that clients cut off together do not all come
            // back in the same instant.
            let wait = backoff / 2 + backoff.mul_f64(jitter.next() / 2.0);
            if Instant::now() + wait >= deadline {
                return self.gone("the resume window passed");
            }
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let mut ws = match open_raw(&self.url).await {
                Ok((ws, _welcome)) => ws,
                Err(Opened::Refused(why)) => return self.gone(&why),
                Err(Opened::Failed(_)) => continue,
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let request = json!({
                "id": id,
                "type": "resume",
                "session": self.session,
                "resume_token": self.resume_token,
                "last_seq": self.last_seq,
            });
            if ws
                .send(Message::Text(request.to_string().into()))
                .await
                .is_err()
            {
                continue;
            }
            let reply = tokio::time::timeout(RESUME_REPLY, async {
                while let Some(Ok(frame)) = ws.next().await {
                    let Message::Text(text) = frame else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    if v["id"] == id {
                        return Some(v);
                    }
                }
                None
            })
            .await;
            let Ok(Some(reply)) = reply else { continue };
            if reply["type"] == "ok" {
                self.resume_token = reply["resume_token"].as_str().map(str::to_string);
                self.emit(json!({
                    "type": "client",
                    "event": "reconnected",
                    "resync": reply["resync"],
                }));
                return Some(ws);
            }
            // A refusal that passes (rate limited, at capacity, a hiccup) is tried again; any
            // other (`session_gone`, or a server that does not know `resume`) is final.
            if !matches!(
                reply["code"].as_str(),
                Some("rate_limited" | "busy" | "internal")
            ) {
                let why = reply["message"]
                    .as_str()
                    .unwrap_or("session gone")
                    .to_string();
                return self.gone(&why);
            }
        }
    }

    fn gone(&self, why: &str) -> Option<Ws> {
        self.emit(json!({"type": "client", "event": "session_gone", "message": why}));
        None
    }
}

/// A small generator for retry jitter (no cryptographic use): xorshift seeded from the clock
/// and the session, so two clients cut off together draw different waits.
struct Jitter(u64);

impl Jitter {
    fn seeded(session: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut seed = nanos ^ 0x9E37_79B9_7F4A_7C15;
        for b in session.bytes() {
            seed = (seed ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
        }
        Self(seed | 1)
    }

    /// A number in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn is_media_event(v: &Value) -> bool {
    v["type"] == "event"
        && matches!(
            v["event"].as_str(),
            Some("media_offer" | "track" | "media_state")
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range_and_differs_between_sessions() {
        let mut a = Jitter::seeded("s-a");
        let mut b = Jitter::seeded("s-b");
        let xs: Vec<f64> = (0..1000).map(|_| a.next()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
        assert_ne!(a.next(), b.next());
    }
}
