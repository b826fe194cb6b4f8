//! The signalling connection: JSON requests matched to replies by `id`, events delivered in
//! order, media events routed to the channel's peer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use amphi_proto::protocol::AudioMode;
use amphi_proto::protocol::{encode_request, Request};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

mod link;

pub use link::{ClientError, ConnectOptions};
use link::{MediaRoutes, Pending};

/// Events buffered for the application before the oldest are dropped (and counted).
const EVENT_QUEUE: usize = 4096;
/// Requests waiting to be written to the socket.
const OUTBOUND_QUEUE: usize = 256;
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A signalling connection. Cloning shares it.
#[derive(Clone)]
pub struct Signal {
    out: mpsc::Sender<Message>,
    pending: Pending,
    media: MediaRoutes,
    next_id: Arc<AtomicU64>,
    events: Arc<tokio::sync::Mutex<mpsc::Receiver<Value>>>,
    /// Drops the current socket (`sever`); the link then resumes or ends.
    sever: Arc<tokio::sync::Notify>,
    /// The welcome of the first connection (its session is the one resumes carry on).
    pub welcome: Value,
}

impl Signal {
    /// Connects to `base` (`http://host:port` or `ws://host:port`) with an access token, and
    /// resumes by itself when the network fails ([`ConnectOptions::default`]).
    pub async fn connect(base: &str, token: &str) -> Result<Signal, ClientError> {
        Self::connect_with(base, token, ConnectOptions::default()).await
    }

    pub async fn connect_with(
        base: &str,
        token: &str,
        opts: ConnectOptions,
    ) -> Result<Signal, ClientError> {
        let base = base
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1);
        let url = format!("{}/ws?token={token}", base.trim_end_matches('/'));
        let (ws, welcome) = link::open(&url).await?;
        let (out, out_rx) = mpsc::channel::<Message>(OUTBOUND_QUEUE);
        let pending: Pending = Arc::default();
        let media: MediaRoutes = Arc::default();
        let next_id = Arc::new(AtomicU64::new(1));
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let sever = Arc::new(tokio::sync::Notify::new());
        let link = link::Link {
            url,
            opts,
            session: welcome["session"].as_str().unwrap_or_default().to_string(),
            resume_token: welcome["resume_token"].as_str().map(str::to_string),
            last_seq: HashMap::new(),
            pending: pending.clone(),
            media: media.clone(),
            next_id: next_id.clone(),
            events: events_tx,
            out: out_rx,
            sever: sever.clone(),
        };
        tokio::spawn(link.run(ws));
        Ok(Signal {
            out,
            pending,
            media,
            next_id,
            events: Arc::new(tokio::sync::Mutex::new(events_rx)),
            sever,
            welcome,
        })
    }

    /// Drops the connection without a goodbye, as a network that fails would: the server
    /// keeps the session for a resume, and with `auto_resume` this client resumes it.
    pub fn sever(&self) {
        self.sever.notify_one();
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
                retry_after_ms: reply["retry_after_ms"].as_u64(),
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
