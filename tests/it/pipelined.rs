//! Requests sent back to back without waiting: each gets exactly one reply, in the order sent,
//! and the membership afterwards is what those replies said.

use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

/// Sends `requests` in one burst (ids from `first_id`), then reads until every one has its
/// reply; returns the replies in arrival order. Events in between are skipped.
async fn burst(client: &mut Client, first_id: u64, requests: &[Value]) -> Vec<Value> {
    for (i, r) in requests.iter().enumerate() {
        let mut r = r.clone();
        r["id"] = json!(first_id + i as u64);
        client.send_text(r.to_string()).await;
    }
    let mut replies = Vec::new();
    while replies.len() < requests.len() {
        let v = client.recv().await;
        if v.get("id").is_some() {
            replies.push(v);
        }
    }
    replies
}

fn round(channel: &str) -> Vec<Value> {
    vec![
        json!({"type": "join", "channel": channel, "role": "host"}),
        json!({"type": "mute", "channel": channel, "muted": true}),
        json!({"type": "join", "channel": channel, "role": "host"}),
        json!({"type": "leave", "channel": channel}),
        json!({"type": "leave", "channel": channel}),
        json!({"type": "ping"}),
    ]
}

/// What each request of a round must answer, in order.
const EXPECTED: [(&str, Option<&str>); 6] = [
    ("ok", None),
    ("ok", None),
    ("error", Some("conflict")),
    ("ok", None),
    ("error", Some("not_found")),
    ("ok", None),
];

async fn rounds(client: &mut Client, channel: &str, n: u64) {
    let per = EXPECTED.len() as u64;
    for r in 0..n {
        let first = 1 + r * per + 1000 * u64::from(channel.len() as u8);
        let replies = burst(client, first, &round(channel)).await;
        for (i, reply) in replies.iter().enumerate() {
            assert_eq!(
                reply["id"],
                json!(first + i as u64),
                "round {r}: replies out of order or missing: {replies:?}"
            );
            let (kind, code) = EXPECTED[i];
            assert_eq!(reply["type"], kind, "round {r}, request {i}: {reply}");
            if let Some(code) = code {
                assert_eq!(reply["code"], code, "round {r}, request {i}: {reply}");
            }
        }
        // Nothing beyond one reply per request: only events may follow.
        while let Some(v) = client.try_recv(Duration::from_millis(0)).await {
            assert!(v.get("id").is_none(), "a second reply: {v}");
        }
    }
}

async fn members(server: &amphi::ServerHandle, channel: &str) -> Option<Vec<String>> {
    let admin = token_with("ops", &[], &["admin"]);
    let resp = reqwest::Client::new()
        .get(format!("{}/api/channels/{channel}", server.http_url()))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    if resp.status() == 404 {
        return None;
    }
    let body: Value = resp.json().await.unwrap();
    Some(
        body["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["identity"].as_str().unwrap().to_string())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_get_one_reply_each_in_order() {
    let server = start_with(|c| {
        c.limits.messages_per_second = 10_000;
        c.limits.message_burst = 10_000;
        // Rounds in a channel nobody else keeps alive start over in a channel that is ending.
        c.timeouts.empty_channel_grace = Duration::from_millis(1);
    });
    let mut alice = Client::as_(&server, "alice", &["host"]).await;

    // A channel kept alive by another member: every round's join meets the same actor.
    let mut bob = Client::as_(&server, "bob", &["host"]).await;
    bob.join("kept", "host").await;
    rounds(&mut alice, "kept", 20).await;
    assert_eq!(
        members(&server, "kept").await,
        Some(vec!["bob".to_string()])
    );

    // A channel that ends between rounds: joins race the channel's own end.
    rounds(&mut alice, "fleeting", 20).await;
    if let Some(list) = members(&server, "fleeting").await {
        assert!(list.is_empty(), "alice left but is listed: {list:?}");
    }

    // The session agrees: a last join succeeds (it is in no channel) and its reply is next.
    let r = alice.join("fleeting", "host").await;
    assert_eq!(r["channel"], "fleeting");
    server.shutdown().unwrap();
}
