//! Shared test harness: a server on port 0 and a WebSocket client that speaks the protocol.
#![allow(dead_code)]

use std::time::Duration;

use amphi::config::{Config, DEV_SIGNING_KEY};
use amphi::token::{claims_for, Claims, TokenKeys};
use amphi::ServerHandle;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod webhooks;

pub const WAIT: Duration = Duration::from_secs(5);

/// Starts the `amphi` binary (`serve --dev` on free loopback ports, call log in memory unless
/// `env` says otherwise) and waits for it to announce its address.
pub fn spawn_binary(env: &[(&str, &std::ffi::OsStr)]) -> (std::process::Child, String) {
    let (child, addr, _log) = spawn_binary_logged(env);
    (child, addr)
}

/// [`spawn_binary`], with every line the server logs after its address.
pub fn spawn_binary_logged(
    env: &[(&str, &std::ffi::OsStr)],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    spawn_binary_with(&[], env)
}

/// [`spawn_binary_logged`] with more arguments after `serve --dev` and its ports; the
/// address is the one announced after `http://` or `https://`.
pub fn spawn_binary_with(
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amphi"));
    cmd.args(["serve", "--dev", "--bind", "127.0.0.1:0", "--udp-port", "0"])
        .args(args)
        .env("AMPHI_LOG", "info")
        .env("AMPHI_CALLS_DATABASE", ":memory:")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn amphi");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (log_tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let announced = line
                .split("listening on http://")
                .nth(1)
                .or_else(|| line.split("listening on https://").nth(1));
            if let Some(rest) = announced {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.split_whitespace().next().unwrap().to_string());
                }
            }
            let _ = log_tx.send(line);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("server announced its address");
    (child, addr, log)
}

pub fn test_config() -> Config {
    let mut config = Config::dev();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.server.workers = 2;
    config.media.udp_port = 0;
    config.calls.database = ":memory:".into();
    config
}

pub fn start() -> ServerHandle {
    start_with(|_| {})
}

pub fn start_with(f: impl FnOnce(&mut Config)) -> ServerHandle {
    let mut config = test_config();
    f(&mut config);
    config.validate(true).unwrap();
    amphi::spawn(config).unwrap()
}

pub fn keys() -> TokenKeys {
    TokenKeys::new(DEV_SIGNING_KEY.as_bytes(), Duration::from_secs(60))
}

pub fn claims(identity: &str, roles: &[&str]) -> Claims {
    let mut c = claims_for(identity, Duration::from_secs(600));
    c.roles = roles.iter().map(|s| s.to_string()).collect();
    c
}

pub fn token(identity: &str, roles: &[&str]) -> String {
    keys().mint(&claims(identity, roles))
}

/// A token with grants, e.g. `call` (callable) or `proxy`.
pub fn token_with(identity: &str, roles: &[&str], grants: &[&str]) -> String {
    let mut c = claims(identity, roles);
    c.grants = grants.iter().map(|s| s.to_string()).collect();
    keys().mint(&c)
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: Value,
    next_id: u64,
}

impl Client {
    pub async fn connect(server: &ServerHandle, token: &str) -> Client {
        Self::connect_url(&server.ws_url(token)).await
    }

    /// Connects to a full `ws://…/ws?token=…` URL (a server in another process).
    pub async fn connect_url(url: &str) -> Client {
        // Requests are small writes that must go out at once, not wait for an ACK (Nagle).
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .expect("websocket connect");
        let mut client = Client {
            ws,
            welcome: Value::Null,
            next_id: 1,
        };
        client.welcome = client.recv().await;
        assert_eq!(client.welcome["type"], "welcome", "{}", client.welcome);
        client
    }

    pub async fn as_(server: &ServerHandle, identity: &str, roles: &[&str]) -> Client {
        Self::connect(server, &token(identity, roles)).await
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::Text(text.into().into()))
            .await
            .expect("send");
    }

    /// The next JSON frame (pings are answered by the library), or a panic after `WAIT`.
    pub async fn recv(&mut self) -> Value {
        match self.try_recv(WAIT).await {
            Some(v) => v,
            None => panic!("no frame within {WAIT:?}"),
        }
    }

    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match msg {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).expect("json")),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Sends a request with a fresh id and returns the reply to it, keeping events aside.
    pub async fn request(&mut self, kind: &str, params: Value) -> (Value, Vec<Value>) {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = params;
        req["id"] = json!(id);
        req["type"] = json!(kind);
        self.send_text(req.to_string()).await;
        let mut events = Vec::new();
        loop {
            let v = self.recv().await;
            if v["id"] == json!(id) {
                return (v, events);
            }
            events.push(v);
        }
    }

    /// A request that must succeed.
    pub async fn ok(&mut self, kind: &str, params: Value) -> Value {
        let (reply, _) = self.request(kind, params).await;
        assert_eq!(reply["type"], "ok", "{kind} failed: {reply}");
        reply
    }

    /// A request that must fail with `code`.
    pub async fn err(&mut self, kind: &str, params: Value, code: &str) -> Value {
        let (reply, _) = self.request(kind, params).await;
        assert_eq!(reply["type"], "error", "{kind} should fail: {reply}");
        assert_eq!(reply["code"], code, "{reply}");
        reply
    }

    pub async fn join(&mut self, channel: &str, role: &str) -> Value {
        self.ok("join", json!({"channel": channel, "role": role}))
            .await
    }

    /// Waits for the event `name`, returning it and skipping nothing silently: any other
    /// frame before it fails the test.
    pub async fn event(&mut self, name: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], "event", "expected event {name}, got {v}");
        assert_eq!(v["event"], name, "expected event {name}, got {v}");
        v
    }

    /// Skips frames until the event `name` arrives.
    pub async fn wait_event(&mut self, name: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == "event" && v["event"] == name {
                return v;
            }
        }
    }

    /// Asserts nothing but pings arrives within `wait`.
    pub async fn quiet(&mut self, wait: Duration) {
        if let Some(v) = self.try_recv(wait).await {
            panic!("expected silence, got {v}");
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("connection not closed within {WAIT:?}"),
                Ok(None) => return None,
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

pub fn participant(reply: &Value) -> String {
    reply["participant"].as_str().unwrap().to_string()
}

/// The sum of the server's `/metrics` series whose line starts with `line_start`.
pub async fn metric(server: &amphi::ServerHandle, line_start: &str) -> f64 {
    metric_in(&metrics_text(server).await, line_start)
}

/// The server's `/metrics` text, once: for reading several series at the same moment.
pub async fn metrics_text(server: &amphi::ServerHandle) -> String {
    reqwest::get(format!("{}/metrics", server.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The sum of the series in `text` whose line starts with `line_start`.
pub fn metric_in(text: &str, line_start: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `fact` until it holds or `within` passes; whether it held. For facts only visible as
/// counters (packets received, bytes sent), where no event announces them.
pub async fn eventually(within: Duration, mut fact: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if fact() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the metric reaches `at_least`; returns its last value.
pub async fn wait_metric(
    server: &amphi::ServerHandle,
    line_start: &str,
    at_least: f64,
    within: Duration,
) -> f64 {
    let deadline = std::time::Instant::now() + within;
    loop {
        let v = metric(server, line_start).await;
        if v >= at_least || std::time::Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs `body` to the admin API at `path` with an admin token: the status and the JSON reply.
pub async fn admin_post(server: &amphi::ServerHandle, path: &str, body: Value) -> (u16, Value) {
    admin_request(server, reqwest::Method::POST, path, Some(body)).await
}

/// GETs `path` from the admin API with an admin token: the status and the JSON reply.
pub async fn admin_get(server: &amphi::ServerHandle, path: &str) -> (u16, Value) {
    admin_request(server, reqwest::Method::GET, path, None).await
}

async fn admin_request(
    server: &amphi::ServerHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", server.http_url()))
        .bearer_auth(token_with("ops", &[], &["admin"]));
    if let Some(body) = body {
        req = req.body(body.to_string());
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}
