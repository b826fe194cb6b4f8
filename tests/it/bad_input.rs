//! Bad input gets typed errors, the connection stays usable, and one bad client never
//! disturbs the others.

use std::time::Duration;

use crate::common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_typed_errors_and_connection_survives() {
    let server = start();
    let mut c = Client::as_(&server, "alice", &["host"]).await;
    let cases: Vec<(String, &str, Option<u64>)> = vec![
        ("this is not json".into(), "bad_request", None),
        ("[1,2,3]".into(), "bad_request", None),
        (r#"{"id": 1}"#.into(), "bad_request", Some(1)),
        (r#"{"id": 2, "type": 5}"#.into(), "bad_request", Some(2)),
        (
            r#"{"id": 3, "type": "join"}"#.into(),
            "bad_request",
            Some(3),
        ),
        (
            r#"{"id": 4, "type": "join", "channel": 12}"#.into(),
            "bad_request",
            Some(4),
        ),
        (
            r#"{"id": 5, "type": "join", "channel": "c", "bogus": true}"#.into(),
            "bad_request",
            Some(5),
        ),
        (
            r#"{"id": 6, "type": "teleport"}"#.into(),
            "unknown_type",
            Some(6),
        ),
        (
            format!(
                r#"{{"id": 7, "type": "join", "channel": "{}"}}"#,
                "x".repeat(65)
            ),
            "bad_request",
            Some(7),
        ),
        (
            r#"{"id": 8, "type": "join", "channel": "a/b"}"#.into(),
            "bad_request",
            Some(8),
        ),
        (
            r#"{"id": 9, "type": "mute", "channel": "c", "muted": "yes"}"#.into(),
            "bad_request",
            Some(9),
        ),
        (
            r#"{"id": 10, "type": "leave", "channel": "never-joined"}"#.into(),
            "not_found",
            Some(10),
        ),
        (
            // Without the `call` grant.
            r#"{"id": 11, "type": "call", "callees": ["bob"], "media": "audio"}"#.into(),
            "forbidden",
            Some(11),
        ),
    ];
    for (frame, code, id) in cases {
        c.send_text(frame.clone()).await;
        let reply = c.recv().await;
        assert_eq!(reply["type"], "error", "{frame}: {reply}");
        assert_eq!(reply["code"], code, "{frame}: {reply}");
        assert_eq!(reply["id"].as_u64(), id, "{frame}: {reply}");
        assert!(!reply["message"].as_str().unwrap().is_empty());
    }
    c.ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(c.recv().await["code"], "bad_request");
    // Still usable.
    c.join("c", "host").await;
    c.ok("ping", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_with_1009_and_others_are_unaffected() {
    let server = start();
    let mut host = Client::as_(&server, "host", &["host"]).await;
    host.join("c", "host").await;
    let mut big = Client::as_(&server, "big", &["host"]).await;
    big.join("c", "host").await;
    host.event("participant_joined").await;
    let frame = format!(
        r#"{{"id":1,"type":"send","channel":"c","kind":"x","content":"{}"}}"#,
        "a".repeat(70 * 1024)
    );
    big.send_text(frame).await;
    assert_eq!(big.closed().await, Some(1009));
    let e = host.event("participant_left").await;
    assert_eq!(e["reason"], "disconnected");
    host.ok(
        "send",
        json!({"channel": "c", "kind": "x", "content": "still here"}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_is_rate_limited_then_disconnected() {
    let server = start_with(|c| {
        c.limits.messages_per_second = 5;
        c.limits.message_burst = 5;
        c.limits.rate_limit_strikes = 10;
    });
    let mut host = Client::as_(&server, "host", &["host"]).await;
    host.join("c", "host").await;
    let mut flood = Client::as_(&server, "flood", &["host"]).await;
    flood.join("c", "host").await;
    host.event("participant_joined").await;
    for i in 0..40u64 {
        flood
            .send_text(json!({"id": 100 + i, "type": "ping"}).to_string())
            .await;
    }
    let mut limited = 0;
    let mut ok = 0;
    loop {
        match flood.try_recv(WAIT).await {
            Some(v) if v["code"] == "rate_limited" => {
                limited += 1;
                assert!(v["id"].as_u64().unwrap() >= 100, "{v}");
            }
            Some(v) if v["type"] == "ok" => ok += 1,
            Some(v) => panic!("unexpected {v}"),
            None => break,
        }
    }
    // The burst of 5, plus what 5/s refills while the frames are read.
    assert!((4..20).contains(&ok), "burst admitted {ok}");
    assert!(limited >= 10, "limited {limited}");
    let e = host.event("participant_left").await;
    assert_eq!(e["reason"], "disconnected");
    // The host's own budget is untouched by the flooder.
    host.ok("ping", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_times_out_as_disconnected() {
    let server = start_with(|c| {
        c.timeouts.heartbeat_interval = Duration::from_millis(100);
        c.timeouts.heartbeat_timeout = Duration::from_millis(400);
    });
    let mut host = Client::as_(&server, "host", &["host"]).await;
    host.join("c", "host").await;
    let mut silent = Client::as_(&server, "silent", &["host"]).await;
    silent.join("c", "host").await;
    // From here `silent` never reads, so it never answers pings; `host` keeps reading.
    let e = host.wait_event("participant_left").await;
    assert_eq!(e["reason"], "disconnected");
    host.ok("ping", json!({})).await;
    drop(silent);
}

/// A WebSocket opened by hand, to send frames no well-behaved client library would.
struct RawSocket {
    stream: tokio::net::TcpStream,
}

impl RawSocket {
    async fn open(server: &amphi::ServerHandle, identity: &str) -> RawSocket {
        Self::open_at(server.addr, identity).await
    }

    async fn open_at(addr: std::net::SocketAddr, identity: &str) -> RawSocket {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /ws?token={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            token(identity, &["host"]),
            addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut socket = RawSocket { stream };
        let (opcode, payload) = socket.frame().await.expect("welcome");
        assert_eq!(opcode, 1);
        assert!(String::from_utf8_lossy(&payload).contains("welcome"));
        socket
    }

    /// Reads one server frame (servers do not mask); `None` at the end of the stream.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).await.ok()?;
        let len = match head[1] & 0x7F {
            126 => u64::from(self.stream.read_u16().await.ok()?),
            127 => self.stream.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        self.stream.read_exact(&mut payload).await.ok()?;
        Some((head[0] & 0x0F, payload))
    }

    /// Reads until a close frame; returns its code.
    async fn close_code(&mut self) -> Option<u16> {
        while let Some((opcode, payload)) = self.frame().await {
            if opcode == 8 {
                return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            }
        }
        None
    }

    /// A masked client frame header (mask of zeros, so the payload goes as is).
    fn header(first: u8, len: u64) -> Vec<u8> {
        let mut h = vec![first];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=0xFFFF => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[0, 0, 0, 0]);
        h
    }
}

/// Resident memory of this process (the server runs in it).
fn rss_bytes() -> u64 {
    amphi_swarm::server::rss_bytes(std::process::id()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_frame_header_is_refused_before_its_payload() {
    let server = start();
    let before = rss_bytes();
    huge_frame_refused(server.addr, "huge", 512 << 20).await;
    let grown = rss_bytes().saturating_sub(before);
    assert!(
        grown < 128 << 20,
        "the server grew by {} MiB while refusing one frame",
        grown >> 20
    );
    // Others still served.
    let mut c = Client::as_(&server, "after", &["host"]).await;
    c.ok("ping", json!({})).await;
}

/// The same attack on the server binary, measured on its own process: a refusal must leave it
/// holding less than a mebibyte more, so many such connections cannot hurt it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_frame_header_costs_the_server_process_under_a_mebibyte() {
    let (mut child, addr) = spawn_binary(&[]);
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    // Memory the process holds (heap, stacks), not the pages of its own code it maps in when
    // a path first runs: a debug binary's refusal path alone maps in megabytes of those.
    let pid = child.id();
    let rss = move || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("RssAnon in /proc/<pid>/status");
        kib << 10
    };
    // The first refusal also pays one-time costs: a worker thread's first allocator segment
    // (mimalloc takes 4 MiB at a time) and lazily built tables. Measured apart.
    let before_first = rss();
    huge_frame_refused(addr, "first", 64 << 20).await;
    let first = rss().saturating_sub(before_first);
    // The allocator grows in chunks of megabytes, so the cost is judged over eight refusals.
    const AGAIN: u64 = 8;
    let before = rss();
    for i in 0..AGAIN {
        huge_frame_refused(addr, &format!("again{i}"), 64 << 20).await;
    }
    let grown = rss().saturating_sub(before);
    // And while refused connections stay open, still streaming: what each holds.
    const HELD: u64 = 16;
    let before_held = rss();
    let mut held = Vec::new();
    for i in 0..HELD {
        held.push(huge_frame_held(addr, &format!("held{i}")).await);
    }
    let holding = rss().saturating_sub(before_held);
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "the server process grew by {} KiB at the first refusal, {} KiB over {AGAIN} more, \
         {} KiB holding {HELD} refused connections open",
        first >> 10,
        grown >> 10,
        holding >> 10
    );
    assert!(
        grown / AGAIN < 1 << 20,
        "the server grew by {} KiB while refusing {AGAIN} frames",
        grown >> 10
    );
    // An open connection has its own costs (its session, its read and write buffers); what
    // must not happen is the refused frame's payload being kept.
    assert!(
        holding / HELD < 2 << 20,
        "each refused connection held open costs {} KiB",
        (holding / HELD) >> 10
    );
}

/// A connection refused for a 2^40-byte frame header, with 16 MiB streamed behind it, kept
/// open (its write half is never shut down).
async fn huge_frame_held(
    addr: std::net::SocketAddr,
    identity: &str,
) -> (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = RawSocket::open_at(addr, identity).await;
    let (mut read, mut write) = socket.stream.into_split();
    write
        .write_all(&RawSocket::header(0x82, 1 << 40))
        .await
        .unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..16 {
        if write.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let mut head = [0u8; 2];
    read.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0] & 0x0F, 8, "a close frame");
    (read, write)
}

/// Announces a 2^40-byte frame on a new connection to `addr` and streams `streamed` bytes
/// behind it as fast as the server takes them. The close must come from the header alone:
/// were the payload buffered instead, nothing would answer until the heartbeat gave up, and
/// the server would hold what was streamed. Returns once the server has closed with 1009,
/// ended the connection, and let its session go.
async fn huge_frame_refused(addr: std::net::SocketAddr, identity: &str, streamed: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = RawSocket::open_at(addr, identity).await;
    let (mut read, mut write) = socket.stream.into_split();
    let writer = tokio::spawn(async move {
        write
            .write_all(&RawSocket::header(0x82, 1 << 40))
            .await
            .unwrap();
        let chunk = vec![0u8; 1 << 20];
        let mut sent = 0;
        while sent < streamed && write.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
        }
    });
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        let mut head = [0u8; 2];
        read.read_exact(&mut head).await.ok()?;
        let mut payload = vec![0u8; usize::from(head[1] & 0x7F)];
        read.read_exact(&mut payload).await.ok()?;
        (head[0] & 0x0F == 8).then(|| u16::from_be_bytes([payload[0], payload[1]]))
    })
    .await
    .expect("the server answered the header within 10 s");
    assert_eq!(code, Some(1009));
    // Then the server ends the connection (what it still reads is discarded, not kept).
    let mut rest = [0u8; 64];
    let end = tokio::time::timeout(Duration::from_secs(10), read.read(&mut rest))
        .await
        .expect("the server closed the connection within 10 s");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    drop(read);
    // Gone from the server too: its session count is back to none.
    let url = format!("http://{addr}/healthz");
    let mut sessions = u64::MAX;
    for _ in 0..200 {
        let health: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        sessions = health["sessions"].as_u64().unwrap();
        if sessions == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        sessions, 0,
        "the refused connection's session is still open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_bits_and_invalid_utf8_close_with_rfc_6455_codes() {
    use tokio::io::AsyncWriteExt;
    let server = start();
    // RSV1 set on a text frame, with no extension negotiated: 1002.
    let mut rsv = RawSocket::open(&server, "rsv").await;
    let mut frame = RawSocket::header(0x81 | 0x40, 2);
    frame.extend_from_slice(b"{}");
    rsv.stream.write_all(&frame).await.unwrap();
    assert_eq!(rsv.close_code().await, Some(1002));
    // A text frame that is not UTF-8: 1007.
    let mut bad = RawSocket::open(&server, "utf8").await;
    let mut frame = RawSocket::header(0x81, 2);
    frame.extend_from_slice(&[0xC3, 0x28]);
    bad.stream.write_all(&frame).await.unwrap();
    assert_eq!(bad.close_code().await, Some(1007));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_socket_is_closed_as_too_slow() {
    use tokio::io::AsyncWriteExt;
    let server = start_with(|c| {
        c.limits.outbound_queue = 16;
        c.limits.messages_per_second = 10_000;
        c.limits.message_burst = 10_000;
    });
    let mut host = Client::as_(&server, "host", &["host"]).await;
    host.join("c", "host").await;
    let mut deaf = RawSocket::open(&server, "deaf").await;
    let join = json!({"id": 1, "type": "join", "channel": "c", "role": "host"}).to_string();
    let mut frame = RawSocket::header(0x81, join.len() as u64);
    frame.extend_from_slice(join.as_bytes());
    deaf.stream.write_all(&frame).await.unwrap();
    host.event("participant_joined").await;
    // Events of 60 KiB until the deaf client's socket buffers and its 16-frame queue are full.
    let content = "a".repeat(60 * 1024);
    let left = loop {
        host.send_text(
            json!({"id": 7, "type": "send", "channel": "c", "kind": "x", "content": content})
                .to_string(),
        )
        .await;
        let (reply, events) = {
            let mut events = Vec::new();
            loop {
                let v = host.recv().await;
                if v["type"] == "ok" || v["type"] == "error" {
                    break (v, events);
                }
                events.push(v);
            }
        };
        assert_eq!(reply["type"], "ok", "{reply}");
        if let Some(e) = events
            .into_iter()
            .find(|e| e["event"] == "participant_left")
        {
            break e;
        }
    };
    assert_eq!(left["reason"], "disconnected");
    // Reading at last, the client finds what was queued, then the reason it was closed.
    assert_eq!(deaf.close_code().await, Some(1008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_joins_nothing_is_closed_but_one_waiting_for_calls_is_not() {
    let server = start_with(|c| c.timeouts.join_timeout = Duration::from_millis(300));
    let started = std::time::Instant::now();
    let mut idle = Client::as_(&server, "idle", &["audience"]).await;
    assert_eq!(idle.closed().await, Some(1008));
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Joining in time keeps a connection.
    let mut member = Client::as_(&server, "member", &["audience"]).await;
    member.join("c", "audience").await;
    // A token that may be called waits for calls as long as it likes.
    let token = token_with("callee", &[], &["call"]);
    let mut callee = Client::connect(&server, &token).await;
    // Past the timeout, by a request of each: both still answer.
    while started.elapsed() < Duration::from_millis(900) {
        callee.ok("ping", json!({})).await;
        member.ok("ping", json!({})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_bearer_token() {
    let server = start_with(|c| c.server.metrics_token = "scrape-me-0123456789".into());
    let url = format!("{}/metrics", server.http_url());
    let open = reqwest::get(&url).await.unwrap();
    assert_eq!(open.status().as_u16(), 401);
    let wrong = reqwest::Client::new()
        .get(&url)
        .bearer_auth("scrape-me-012345678X")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let right = reqwest::Client::new()
        .get(&url)
        .bearer_auth("scrape-me-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 200);
    assert!(right.text().await.unwrap().contains("amphi_"));
}

#[actix_rt::test]
async fn metrics_can_move_to_an_address_of_their_own() {
    let server = start_with(|c| c.server.metrics_bind = Some("127.0.0.1:0".parse().unwrap()));
    let private = format!("http://{}", server.metrics_addr.expect("metrics_addr"));
    let public = reqwest::get(format!("{}/metrics", server.http_url()))
        .await
        .unwrap();
    assert_eq!(
        public.status().as_u16(),
        404,
        "/metrics left on the public port"
    );
    let scraped = reqwest::get(format!("{private}/metrics")).await.unwrap();
    assert_eq!(scraped.status().as_u16(), 200);
    assert!(scraped.text().await.unwrap().contains("amphi_"));
    // The metrics port serves nothing else: no WebSocket, no admin API behind it.
    let ws = reqwest::get(format!("{private}/ws")).await.unwrap();
    assert_eq!(ws.status().as_u16(), 404);
    let health = reqwest::get(format!("{}/healthz", server.http_url()))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
