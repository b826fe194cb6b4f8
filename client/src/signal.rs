//! The signalling connection: JSON requests matched to replies by `id`, events delivered in
//! order, media events routed to the channel's peer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use amphi_proto::protocol::AudioMode;
use amphi_proto::protocol::{encode_request, Request};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Events buffered for the application before the oldest are dropped (and counted).
const EVENT_QUEUE: usize = 4096;
/// Requests waiting to be written to the socket.
const OUTBOUND_QUEUE: usize = 256;
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("server error {code}: {message}")]
    Server { code: String, message: String },
    #[error("the connection is closed")]
    Closed,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("media: {0}")]
    Media(String),
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;
type MediaRoutes = Arc<Mutex<HashMap<String, mpsc::Sender<Value>>>>;

/// A signalling connection. Cloning shares it.
///
/// When the connection drops without a goodbye, the client connects again by itself (backoff
/// with jitter, for up to [`RESUME_FOR`]) and resumes its session (docs/protocol.md §8.8): its
/// channels and peer connections carry on, and the events it missed arrive in order. It tells
/// the application with the events `reconnecting` and `reconnected` (with `resync`: channels to
/// join again), or `session_gone` / `disconnected` when the session could not be resumed.
#[derive(Clone)]
pub struct Signal {
    out: mpsc::Sender<Message>,
    pending: Pending,
    media: MediaRoutes,
    next_id: Arc<AtomicU64>,
    events: Arc<tokio::sync::Mutex<mpsc::Receiver<Value>>>,
    control: mpsc::Sender<Control>,
    pub welcome: Value,
}

/// How long a client keeps trying to resume: the server's default resume window.
pub const RESUME_FOR: Duration = Duration::from_secs(20);

/// Orders to the connection's task that are not frames.
enum Control {
    /// Drop the socket as a failing network would, and resume (or not).
    Drop { resume: bool },
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(url: &str) -> Result<(Ws, Value), ClientError> {
    // Requests are small writes that must go out at once, not wait for an ACK (Nagle).
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let welcome = serde_json::from_str::<Value>(&t).map_err(|_| ClientError::Closed)?;
                return Ok((ws, welcome));
            }
            Some(Ok(_)) => continue,
            _ => return Err(ClientError::Closed),
        }
    }
}

/// What the connection's task keeps across sockets.
struct Link {
    url: String,
    session: String,
    resume_token: String,
    /// Per channel, the last event `seq` seen.
    last_seq: HashMap<String, u64>,
    pending: Pending,
    media: MediaRoutes,
    events: mpsc::Sender<Value>,
    next_id: Arc<AtomicU64>,
}

impl Link {
    fn deliver(&mut self, v: Value) {
        if let Some(id) = v.get("id").and_then(Value::as_u64) {
            if let Some(tx) = self.pending.lock().expect("not poisoned").remove(&id) {
                let _ = tx.send(v);
                return;
            }
        }
        if v["type"] == "event" {
            if let (Some(c), Some(seq)) = (v["channel"].as_str(), v["seq"].as_u64()) {
                let last = self.last_seq.entry(c.to_string()).or_default();
                *last = (*last).max(seq);
            }
        }
        if is_media_event(&v) {
            let channel = v["channel"].as_str().unwrap_or_default().to_string();
            let tx = self
                .media
                .lock()
                .expect("not poisoned")
                .get(&channel)
                .cloned();
            if let Some(tx) = tx {
                let _ = tx.try_send(v.clone());
            }
        }
        // A full queue means the application is not reading events: drop, never block the
        // replies behind them.
        let _ = self.events.try_send(v);
    }

    fn tell(&self, event: &str, extra: Value) {
        let mut v = json!({"type": "event", "event": event});
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        let _ = self.events.try_send(v);
    }

    /// Connects again and resumes the session; the new socket, or `None` when it is over.
    async fn resume(&mut self) -> Option<Ws> {
        self.tell("reconnecting", json!({}));
        let deadline = tokio::time::Instant::now() + RESUME_FOR;
        let mut backoff = Duration::from_millis(100);
        loop {
            if let Ok((mut ws, _)) = open(&self.url).await {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let req = json!({
                    "id": id,
                    "type": "resume",
                    "session": self.session,
                    "resume_token": self.resume_token,
                    "last_seq": self.last_seq,
                });
                if ws.send(Message::Text(req.to_string().into())).await.is_ok() {
                    while let Some(Ok(msg)) = ws.next().await {
                        let Message::Text(text) = msg else { continue };
                        let Ok(v) = serde_json::from_str::<Value>(&text) else {
                            continue;
                        };
                        if v["id"].as_u64() != Some(id) {
                            self.deliver(v);
                            continue;
                        }
                        if v["type"] == "ok" {
                            if let Some(t) = v["resume_token"].as_str() {
                                self.resume_token = t.to_string();
                            }
                            self.tell("reconnected", json!({"resync": v["resync"]}));
                            return Some(ws);
                        }
                        self.tell("session_gone", json!({"message": v["message"]}));
                        return None;
                    }
                }
            }
            if tokio::time::Instant::now() + backoff > deadline {
                self.tell("disconnected", json!({}));
                return None;
            }
            // Jitter, so that a server's clients do not all come back in the same instant.
            let jitter = amphi_proto::ids::random_hex128().as_bytes()[0] as u64 % 50;
            tokio::time::sleep(backoff + backoff * jitter as u32 / 100).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// Runs one client connection across sockets: frames out, frames in, resumes after a drop.
async fn run(
    mut ws: Ws,
    mut link: Link,
    mut out_rx: mpsc::Receiver<Message>,
    mut control: mpsc::Receiver<Control>,
) {
    loop {
        let resume = loop {
            tokio::select! {
                m = out_rx.recv() => match m {
                    Some(Message::Close(frame)) => {
                        let _ = ws.close(frame).await;
                        break false;
                    }
                    Some(m) => {
                        if ws.send(m).await.is_err() {
                            break true;
                        }
                    }
                    None => {
                        let _ = ws.close(None).await;
                        break false;
                    }
                },
                c = control.recv() => match c {
                    Some(Control::Drop { resume }) => break resume,
                    None => break false,
                },
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(v) = serde_json::from_str::<Value>(&text) {
                            link.deliver(v);
                        }
                    }
                    // The server said goodbye: its reasons stand.
                    Some(Ok(Message::Close(_))) => break false,
                    None => break true,
                    Some(Ok(_)) => {}
                    Some(Err(_)) => break true,
                },
            }
        };
        drop(ws);
        // Replies of requests that went out on the socket that failed will not come.
        link.pending.lock().expect("not poisoned").clear();
        if !resume {
            return;
        }
        match link.resume().await {
            Some(next) => ws = next,
            None => return,
        }
    }
}

impl Signal {
    /// Connects to `base` (`http://host:port` or `ws://host:port`) with an access token.
    pub async fn connect(base: &str, token: &str) -> Result<Signal, ClientError> {
        let base = base
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1);
        let url = format!("{}/ws?token={token}", base.trim_end_matches('/'));
        let (ws, welcome) = open(&url).await?;
        let (out, out_rx) = mpsc::channel::<Message>(OUTBOUND_QUEUE);
        let (control, control_rx) = mpsc::channel(4);
        let pending: Pending = Arc::default();
        let media: MediaRoutes = Arc::default();
        let next_id = Arc::new(AtomicU64::new(1));
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let link = Link {
            url,
            session: welcome["session"].as_str().unwrap_or_default().to_string(),
            resume_token: welcome["resume_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            last_seq: HashMap::new(),
            pending: pending.clone(),
            media: media.clone(),
            events: events_tx,
            next_id: next_id.clone(),
        };
        tokio::spawn(run(ws, link, out_rx, control_rx));
        Ok(Signal {
            out,
            pending,
            media,
            next_id,
            events: Arc::new(tokio::sync::Mutex::new(events_rx)),
            control,
            welcome,
        })
    }

    /// Drops the connection without a goodbye, as a network that fails would, and does not
    /// come back: the server keeps the session for a resume by someone else.
    pub fn sever(&self) {
        let _ = self.control.try_send(Control::Drop { resume: false });
    }

    /// Drops the connection without a goodbye and lets the client resume, as after a network
    /// failure.
    pub fn interrupt(&self) {
        let _ = self.control.try_send(Control::Drop { resume: true });
    }

    /// Sends a request of the wire crate's [`Request`] and waits for its `ok` result.
    pub async fn send(&self, request: &Request) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.exchange(id, encode_request(Some(id), request)).await
    }

    /// Sends a request given by its type and params (an object) and waits for its `ok` result.
    pub async fn request(&self, kind: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut req = if params.is_object() {
            params
        } else {
            json!({})
        };
        req["id"] = id.into();
        req["type"] = kind.into();
        self.exchange(id, req.to_string()).await
    }

    async fn exchange(&self, id: u64, text: String) -> Result<Value, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("not poisoned").insert(id, tx);
        self.out
            .send(Message::Text(text.into()))
            .await
            .map_err(|_| ClientError::Closed)?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, rx)
            .await
            .map_err(|_| ClientError::Timeout(REPLY_TIMEOUT))?
            .map_err(|_| ClientError::Closed)?;
        if reply["type"] == "ok" {
            Ok(reply)
        } else {
            Err(ClientError::Server {
                code: reply["code"].as_str().unwrap_or("unknown").to_string(),
                message: reply["message"].as_str().unwrap_or_default().to_string(),
            })
        }
    }

    pub async fn join(&self, channel: &str, role: &str) -> Result<Value, ClientError> {
        self.send(&Request::Join {
            channel: channel.into(),
            uri: false,
            role: Some(role.into()),
            metadata: None,
            audio: AudioMode::Auto,
        })
        .await
    }

    /// Joins asking to receive `audio` (the mix, each speaker's stream, or what the channel
    /// does).
    pub async fn join_with_audio(
        &self,
        channel: &str,
        role: &str,
        audio: AudioMode,
    ) -> Result<Value, ClientError> {
        self.send(&Request::Join {
            channel: channel.into(),
            uri: false,
            role: Some(role.into()),
            metadata: None,
            audio,
        })
        .await
    }

    /// Switches what this member receives in `channel`, live.
    pub async fn set_audio(&self, channel: &str, audio: AudioMode) -> Result<Value, ClientError> {
        self.send(&Request::SetAudio {
            channel: channel.into(),
            audio,
        })
        .await
    }

    /// The next event, or `None` after `wait`.
    pub async fn next_event(&self, wait: Duration) -> Option<Value> {
        let mut rx = self.events.lock().await;
        tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
    }

    /// Waits for the event `name`, discarding others.
    pub async fn wait_event(&self, name: &str, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.next_event(left).await?;
            if v["event"] == name {
                return Some(v);
            }
        }
    }

    pub(crate) fn route_media(&self, channel: &str) -> mpsc::Receiver<Value> {
        let (tx, rx) = mpsc::channel(64);
        self.media
            .lock()
            .expect("not poisoned")
            .insert(channel.to_string(), tx);
        rx
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.out.send(Message::Close(None)).await;
    }
}

fn is_media_event(v: &Value) -> bool {
    v["type"] == "event"
        && matches!(
            v["event"].as_str(),
            Some("media_offer" | "track" | "media_state")
        )
}
