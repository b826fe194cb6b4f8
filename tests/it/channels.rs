//! Channel behaviour over real WebSockets on loopback.

use std::time::Duration;

use crate::common::*;
use amphi::config::Config;
use serde_json::{json, Value};

/// The sample config's role table (host, audience, moderator, speaker) with a long count
/// interval, so that only the first audience count is sent and event lists are exact.
fn sample_roles(config: &mut Config) {
    let sample = Config::from_toml_str(include_str!("../../config/amphi.toml"), "sample").unwrap();
    config.roles = sample.roles;
    config.timeouts.audience_count_interval = Duration::from_secs(600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_leave_stop_exact_events_and_seq() {
    let server = start_with(sample_roles);
    let mut alice = Client::as_(&server, "alice", &["host"]).await;
    let mut bob = Client::as_(&server, "bob", &["audience"]).await;
    let mut carol = Client::as_(&server, "carol", &["host"]).await;

    let r = alice.join("room1", "host").await;
    assert_eq!(r["seq"], 1);
    assert_eq!(r["role"], "host");
    assert_eq!(r["channel"], "room1");
    assert_eq!(r["hosts"][0]["identity"], "alice");
    assert_eq!(r["audience_count"], 0);
    let alice_id = participant(&r);

    let r = bob.join("room1", "audience").await;
    assert_eq!(r["seq"], 2);
    assert_eq!(r["hosts"].as_array().unwrap().len(), 1);
    assert!(
        r.get("participants").is_none(),
        "audience gets no participant list"
    );
    let bob_id = participant(&r);
    let e = alice.event("participant_joined").await;
    assert_eq!(
        (e["seq"].as_u64(), e["identity"].as_str()),
        (Some(2), Some("bob"))
    );
    assert_eq!(e["participant"], bob_id.as_str());
    assert_eq!(e["role"], "audience");
    // The first count goes out at once, to everyone.
    let e = alice.event("audience_count").await;
    assert_eq!((e["seq"].as_u64(), e["count"].as_u64()), (Some(3), Some(1)));
    let e = bob.event("audience_count").await;
    assert_eq!((e["seq"].as_u64(), e["count"].as_u64()), (Some(3), Some(1)));

    let r = carol.join("room1", "host").await;
    assert_eq!(r["seq"], 4);
    assert_eq!(r["participants"].as_array().unwrap().len(), 3);
    for c in [&mut alice, &mut bob] {
        let e = c.event("participant_joined").await;
        assert_eq!(
            (e["seq"].as_u64(), e["identity"].as_str()),
            (Some(4), Some("carol"))
        );
    }

    bob.ok("leave", json!({"channel": "room1"})).await;
    for c in [&mut alice, &mut carol] {
        let e = c.event("participant_left").await;
        assert_eq!(e["seq"], 5);
        assert_eq!(e["participant"], bob_id.as_str());
        assert_eq!(e["reason"], "left");
    }
    // Bob is out: requests for the channel are refused, and he hears nothing more.
    bob.err(
        "send",
        json!({"channel": "room1", "kind": "chat", "content": "hi"}),
        "not_found",
    )
    .await;

    // Carol stops the channel: her reply is the "on stop"; Alice is told why she is out.
    let (reply, events) = carol.request("stop", json!({"channel": "room1"})).await;
    assert_eq!(reply["type"], "ok");
    assert!(events.is_empty(), "{events:?}");
    let e = alice.event("left").await;
    assert_eq!(e["reason"], "channel_stopped");
    assert_eq!(e["seq"], 6);
    assert_eq!(e["channel"], "room1");
    alice
        .err(
            "mute",
            json!({"channel": "room1", "muted": true}),
            "not_found",
        )
        .await;
    bob.quiet(Duration::from_millis(200)).await;
    carol.quiet(Duration::from_millis(100)).await;
    let _ = alice_id;

    // The channel is gone; joining again starts a new one at seq 1.
    let r = alice.join("room1", "host").await;
    assert_eq!(r["seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_enforcement_and_moderation() {
    let server = start_with(sample_roles);
    let mut host = Client::as_(&server, "host", &["host"]).await;
    let mut aud = Client::as_(&server, "aud", &["audience", "host"]).await;
    let mut moder = Client::as_(&server, "mod", &["moderator"]).await;
    let host_id = participant(&host.join("r", "host").await);
    let aud_id = participant(&aud.join("r", "audience").await);
    host.event("participant_joined").await;
    host.event("audience_count").await;
    aud.event("audience_count").await;

    // Audience cannot stop, cannot grant itself host, cannot kick or mute others.
    aud.err("stop", json!({"channel": "r"}), "forbidden").await;
    let e = aud
        .err(
            "set_role",
            json!({"channel": "r", "role": "host"}),
            "forbidden",
        )
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("request_role"),
        "{e}"
    );
    aud.err(
        "kick",
        json!({"channel": "r", "participant": host_id}),
        "forbidden",
    )
    .await;
    aud.err(
        "mute",
        json!({"channel": "r", "muted": true, "participant": host_id}),
        "forbidden",
    )
    .await;
    // A token that does not allow a role cannot join with it.
    aud.err(
        "join",
        json!({"channel": "r2", "role": "moderator"}),
        "forbidden",
    )
    .await;
    aud.err(
        "join",
        json!({"channel": "r2", "role": "wizard"}),
        "bad_request",
    )
    .await;

    // Raise hand → the host grants → everyone sees the new host.
    aud.ok("request_role", json!({"channel": "r", "role": "host"}))
        .await;
    let e = host.event("role_requested").await;
    assert_eq!(e["participant"], aud_id.as_str());
    host.ok(
        "set_role",
        json!({"channel": "r", "role": "host", "participant": aud_id}),
    )
    .await;
    let e = aud.event("role_changed").await;
    assert_eq!(e["role"], "host");
    host.event("role_changed").await;

    // The moderator joins, sees everyone, mutes and kicks.
    let r = moder.join("r", "moderator").await;
    assert_eq!(r["participants"].as_array().unwrap().len(), 3);
    host.event("participant_joined").await;
    aud.event("participant_joined").await;
    moder
        .ok(
            "mute",
            json!({"channel": "r", "muted": true, "participant": host_id}),
        )
        .await;
    let e = host.event("mute_changed").await;
    assert_eq!(
        (e["muted"].as_bool(), e["participant"].as_str()),
        (Some(true), Some(host_id.as_str()))
    );
    aud.event("mute_changed").await;
    moder
        .ok(
            "kick",
            json!({"channel": "r", "participant": aud_id, "reason": "spam"}),
        )
        .await;
    let e = aud.event("left").await;
    assert_eq!(e["reason"], "kicked");
    assert_eq!(e["message"], "spam");
    let e = host.event("participant_left").await;
    assert_eq!(e["reason"], "kicked");
    assert_eq!(e["participant"], aud_id.as_str());
    // A custom role without stop cannot stop.
    moder
        .err("stop", json!({"channel": "r"}), "forbidden")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_identity_replaces_the_first_connection() {
    let server = start_with(sample_roles);
    let mut host = Client::as_(&server, "host", &["host"]).await;
    host.join("r", "host").await;
    let mut first = Client::as_(&server, "bob", &["host"]).await;
    let first_id = participant(&first.join("r", "host").await);
    host.event("participant_joined").await;
    let mut second = Client::as_(&server, "bob", &["host"]).await;
    let second_id = participant(&second.join("r", "host").await);
    assert_ne!(first_id, second_id);
    let e = first.event("left").await;
    assert_eq!(e["reason"], "replaced");
    let left = host.event("participant_left").await;
    assert_eq!(
        (left["reason"].as_str(), left["participant"].as_str()),
        (Some("replaced"), Some(first_id.as_str()))
    );
    assert_eq!(left["seq"], e["seq"]);
    let joined = host.event("participant_joined").await;
    assert_eq!(joined["participant"], second_id.as_str());
    // The first connection is still usable; it is just out of the channel.
    first.ok("ping", json!({})).await;
    first
        .err("leave", json!({"channel": "r"}), "not_found")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_is_announced_and_uri_maps_to_one_channel() {
    // A lost connection is announced once the session's resume window has passed.
    let server = start_with(|c| {
        sample_roles(c);
        c.timeouts.resume_window = Duration::from_millis(200);
    });
    let mut a = Client::as_(&server, "a", &["host"]).await;
    let mut b = Client::as_(&server, "b", &["host"]).await;
    let uri = "https://live.example.test/rooms/42?lang=en";
    let ra = a
        .ok("join", json!({"channel": uri, "uri": true, "role": "host"}))
        .await;
    let rb = b
        .ok("join", json!({"channel": uri, "uri": true, "role": "host"}))
        .await;
    assert_eq!(ra["channel"], rb["channel"]);
    assert!(ra["channel"].as_str().unwrap().starts_with("uri-"));
    let channel = ra["channel"].as_str().unwrap().to_string();
    a.event("participant_joined").await;
    b.send_text("").await;
    drop(b);
    let e = a.wait_event("participant_left").await;
    assert_eq!(e["reason"], "disconnected");
    assert_eq!(e["channel"], channel.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_all_and_to_some() {
    let server = start_with(sample_roles);
    let mut a = Client::as_(&server, "a", &["host"]).await;
    let mut b = Client::as_(&server, "b", &["host"]).await;
    let mut c = Client::as_(&server, "c", &["host"]).await;
    a.join("m", "host").await;
    let b_id = participant(&b.join("m", "host").await);
    c.join("m", "host").await;
    a.event("participant_joined").await;
    a.event("participant_joined").await;
    b.event("participant_joined").await;
    a.ok(
        "send",
        json!({"channel": "m", "kind": "chat", "content": {"text": "hello"}}),
    )
    .await;
    for x in [&mut b, &mut c] {
        let e = x.event("message").await;
        assert_eq!(e["content"]["text"], "hello");
        assert_eq!(e["identity"], "a");
        assert_eq!(e["kind"], "chat");
    }
    a.ok(
        "send",
        json!({"channel": "m", "kind": "dm", "content": "psst", "to": [b_id]}),
    )
    .await;
    let e = b.event("message").await;
    assert_eq!(e["content"], "psst");
    c.quiet(Duration::from_millis(200)).await;
    a.err(
        "send",
        json!({"channel": "m", "kind": "dm", "content": 1, "to": ["p-nobody"]}),
        "not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_channel_restriction() {
    let server = start();
    let mut c = claims("t", &["host"]);
    c.channel = Some("only-this".into());
    let mut client = Client::connect(&server, &keys().mint(&c)).await;
    client
        .err(
            "join",
            json!({"channel": "other", "role": "host"}),
            "forbidden",
        )
        .await;
    client.join("only-this", "host").await;
}

async fn admin_get(server: &amphi::ServerHandle, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", server.http_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn admin_post(
    server: &amphi::ServerHandle,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", server.http_url()))
        .bearer_auth(token)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api() {
    let server = start_with(sample_roles);
    let mut admin_claims = claims("ops", &[]);
    admin_claims.grants = vec!["admin".into()];
    let admin = keys().mint(&admin_claims);
    let plain = token("user", &["host"]);

    assert_eq!(admin_get(&server, "/api/channels", None).await.0, 401);
    let (status, body) = admin_get(&server, "/api/channels", Some(&plain)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));

    let mut h = Client::as_(&server, "h", &["host"]).await;
    let mut a = Client::as_(&server, "a", &["audience"]).await;
    h.join("adm", "host").await;
    a.join("adm", "audience").await;
    let (status, body) = admin_get(&server, "/api/channels", Some(&admin)).await;
    assert_eq!(status, 200);
    assert_eq!(body["channels"][0]["channel"], "adm");
    assert_eq!(body["channels"][0]["participants"], 2);
    assert_eq!(body["channels"][0]["hosts"], 1);
    let (status, body) = admin_get(&server, "/api/channels/adm", Some(&admin)).await;
    assert_eq!(status, 200);
    assert_eq!(body["participants"].as_array().unwrap().len(), 2);
    let (status, body) = admin_get(&server, "/api/channels/nope", Some(&admin)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, _) = admin_get(&server, "/api/channels/bad%20id", Some(&admin)).await;
    assert_eq!(status, 400);

    let (status, _) = admin_post(
        &server,
        "/api/channels/adm/kick",
        &admin,
        json!({"identity": "a"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(a.wait_event("left").await["reason"], "kicked");
    let (status, body) = admin_post(
        &server,
        "/api/channels/adm/kick",
        &admin,
        json!({"who": "a"}),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));

    let (status, _) = admin_post(&server, "/api/channels/adm/stop", &admin, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(h.wait_event("left").await["reason"], "channel_stopped");
    let (_, body) = admin_get(&server, "/api/channels", Some(&admin)).await;
    assert_eq!(body["channels"].as_array().unwrap().len(), 0);
}
