//! Channel webhooks against a real receiver that fails twice first: a scripted session (a
//! start, joins, a role change, a leave, a connection dropped mid-join and one dropped after,
//! the stop) arrives signed, once each, in order, with the channel `seq` of each event.

use std::time::Duration;

use crate::common::webhooks::{receiver, Received};
use crate::common::*;
use serde_json::{json, Value};

const SECRET: &str = "channel-webhook-secret-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channels_life_reaches_the_webhook_in_order_once_each() {
    let (url, got) = receiver(2).await;
    let server = start_with(|c| {
        c.calls.webhook_url = url.clone();
        c.calls.webhook_secret = SECRET.into();
        // A dropped connection leaves at once instead of waiting to be resumed.
        c.timeouts.resume_window = Duration::ZERO;
    });
    let mut alice = Client::as_(&server, "alice", &["host"]).await;
    alice.join("hooked", "host").await;
    let mut bob = Client::as_(&server, "bob", &["audience", "host"]).await;
    let bob_id = bob.join("hooked", "audience").await["participant"]
        .as_str()
        .unwrap()
        .to_string();
    alice
        .ok(
            "set_role",
            json!({"channel": "hooked", "participant": bob_id, "role": "host"}),
        )
        .await;
    bob.wait_event("role_changed").await;
    bob.ok("leave", json!({"channel": "hooked"})).await;
    // A join whose connection is gone before its reply can be read…
    let mut half = Client::as_(&server, "half-way", &["audience"]).await;
    half.send_text(json!({"id": 1, "type": "join", "channel": "hooked"}).to_string())
        .await;
    drop(half);
    // …and one that joined, then dropped without a close.
    let mut carol = Client::as_(&server, "carol", &["audience"]).await;
    carol.join("hooked", "audience").await;
    drop(carol);
    // Both are gone (the stop below must come after their leaves).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info: Value = reqwest::Client::new()
            .get(format!("{}/api/channels/hooked", server.http_url()))
            .bearer_auth(token_with("ops", &[], &["admin"]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if info["channel"]["participants"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{info}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    alice.ok("stop", json!({"channel": "hooked"})).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let hooks: Vec<Received> = loop {
        let all: Vec<Received> = got.lock().unwrap().clone();
        if all.iter().any(|r| r.body.contains("\"channel_stopped\"")) {
            break all;
        }
        assert!(std::time::Instant::now() < deadline, "webhooks: {all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let said = check_and_describe(&hooks);
    let half_way: Vec<&String> = said.iter().filter(|s| s.contains("half-way")).collect();
    assert!(
        half_way.is_empty()
            || half_way
                == [
                    "participant_joined half-way audience",
                    "participant_left half-way disconnected"
                ],
        "a join dropped half-way is joined and left, or neither: {said:#?}"
    );
    let rest: Vec<&String> = said.iter().filter(|s| !s.contains("half-way")).collect();
    assert_eq!(
        rest,
        [
            "channel_started",
            "participant_joined alice host",
            "participant_joined bob audience",
            "role_changed bob host",
            "participant_left bob left",
            "participant_joined carol audience",
            "participant_left carol disconnected",
            "channel_stopped channel_stopped",
        ],
        "{said:#?}"
    );
}

/// Checks every webhook's signature, that they are about the channel, arrived once each in
/// `seq` order (the first on its third attempt) and follow the channel's own `seq`; returns
/// each as "type identity role-or-reason".
fn check_and_describe(hooks: &[Received]) -> Vec<String> {
    let mut events = Vec::new();
    for r in hooks {
        assert!(r.signed_with(SECRET), "signed: {r:?}");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["channel"], "hooked", "{v}");
        events.push(v);
    }
    assert_eq!(hooks[0].headers["amphi-delivery-attempt"], "3");
    let seqs: Vec<u64> = events.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "once each, in order: {events:#?}"
    );
    let channel_seqs: Vec<u64> = events
        .iter()
        .filter_map(|v| v["data"]["channel_seq"].as_u64())
        .collect();
    assert!(
        channel_seqs.windows(2).all(|w| w[0] <= w[1]),
        "in the channel's own order: {events:#?}"
    );
    let said: Vec<String> = events
        .iter()
        .map(|v| {
            let d = &v["data"];
            let who = d["identity"].as_str().unwrap_or("");
            let what = d["role"].as_str().or(d["reason"].as_str()).unwrap_or("");
            [v["type"].as_str().unwrap(), who, what]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    said
}
