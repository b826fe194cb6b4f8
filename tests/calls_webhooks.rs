//! Call webhooks against a real HTTP receiver on loopback: signed, in order per call with a
//! sequence number, retried after the receiver fails, and `invite_offline` carrying `push`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amphi::calls::webhook::verify;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &str = "webhook-secret-for-tests-0123456789";

#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: String,
}

/// A receiver that answers 500 to its first `fail_first` requests, 200 after.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    let served = Arc::new(Mutex::new(0usize));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let served = served.clone();
            tokio::spawn(async move {
                loop {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let headers: HashMap<String, String> = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
                    let n = {
                        let mut s = served.lock().unwrap();
                        *s += 1;
                        *s
                    };
                    let status = if n <= fail_first {
                        "500 Internal Server Error"
                    } else {
                        seen.lock().unwrap().push(Received { headers, body });
                        "200 OK"
                    };
                    let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, got)
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_ordered_and_retried() {
    let (url, got) = receiver(2).await;
    let server = start_with(|c| {
        c.calls.webhook_url = url.clone();
        c.calls.webhook_secret = SECRET.into();
    });
    let mut a = Client::connect(&server, &token_with("alice", &[], &["call"])).await;
    // bob is offline: the app's backend is asked to push.
    let reply = a
        .ok(
            "call",
            json!({"callees": ["bob"], "media": "audio", "push": {"title": "alice calls"}}),
        )
        .await;
    let id = reply["call_id"].as_str().unwrap().to_string();
    let mut b = Client::connect(&server, &token_with("bob", &[], &["call"])).await;
    b.wait_event("call_incoming").await;
    b.ok("accept", json!({"call_id": id})).await;
    b.wait_event("call_connected").await;
    a.ok("hangup", json!({"call_id": id})).await;
    b.wait_event("call_ended").await;

    // Wait for the whole call to arrive, the two failures retried along the way.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let events = loop {
        let events: Vec<Received> = got.lock().unwrap().clone();
        let done = events
            .iter()
            .any(|r| r.body.contains("\"type\":\"call_ended\""));
        if done {
            break events;
        }
        assert!(std::time::Instant::now() < deadline, "webhooks: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut seqs = Vec::new();
    let mut kinds = Vec::new();
    for r in &events {
        let ts: i64 = r.headers["amphi-timestamp"].parse().unwrap();
        let sig = &r.headers["amphi-signature"];
        verify(
            SECRET.as_bytes(),
            ts,
            &r.body,
            sig,
            now_s(),
            Duration::from_secs(300),
        )
        .expect("signature verifies");
        assert!(verify(
            b"another-secret",
            ts,
            &r.body,
            sig,
            now_s(),
            Duration::from_secs(300)
        )
        .is_err());
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["call_id"], id.as_str());
        seqs.push(v["seq"].as_u64().unwrap());
        kinds.push(v["type"].as_str().unwrap().to_string());
        if v["type"] == "invite_offline" {
            assert_eq!(v["data"]["callee"], "bob");
            assert_eq!(v["data"]["push"]["title"], "alice calls");
        }
    }
    let expect: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expect, "in order, no gaps: {kinds:?}");
    assert_eq!(
        events[0].headers["amphi-delivery-attempt"], "3",
        "the first event got through on its third attempt"
    );
    for k in [
        "call_ringing",
        "invite_offline",
        "call_connected",
        "call_ended",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    let pos = |k: &str| kinds.iter().position(|x| x == k).unwrap();
    assert!(pos("invite_offline") < pos("call_connected"));
    assert!(pos("call_connected") < pos("call_ended"));
    let metrics = reqwest::get(format!("{}/metrics", server.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        value("amphi_webhook_deliveries_total{result=\"failed\"}") >= 2.0,
        "{metrics}"
    );
    assert!(value("amphi_webhook_deliveries_total{result=\"delivered\"}") >= seqs.len() as f64);
    assert!(value("amphi_call_invites_offline_total") >= 1.0);
}
