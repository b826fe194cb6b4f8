//! Bad input gets typed errors, the connection stays usable, and one bad client never
//! disturbs the others.

mod common;

use std::time::Duration;

use common::*;
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
