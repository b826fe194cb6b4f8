//! Call webhooks against a real HTTP receiver on loopback: signed, in order per call with a
//! sequence number, retried after the receiver fails, and `invite_offline` carrying `push`.

use std::time::Duration;

use crate::common::webhooks::{receiver, Received};
use crate::common::*;
use serde_json::{json, Value};

const SECRET: &str = "webhook-secret-for-tests-0123456789";

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
        assert!(r.signed_with(SECRET), "signature verifies: {r:?}");
        assert!(!r.signed_with("another-secret"));
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
