//! Calls over real WebSocket clients: every transition of a call, its end reasons, busy,
//! glare, groups, media changes, proxies, live-to-1v1 and the call logs.

mod group;
mod rules;

use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

fn start_calls(ring: Duration, grace: Duration) -> amphi::ServerHandle {
    start_with(|c| {
        c.calls.ring_timeout = ring;
        c.calls.reconnect_grace = grace;
    })
}

fn server() -> amphi::ServerHandle {
    start_calls(Duration::from_secs(60), Duration::from_secs(20))
}

async fn user(server: &amphi::ServerHandle, name: &str) -> Client {
    Client::connect(server, &token_with(name, &[], &["call"])).await
}

async fn call(c: &mut Client, callees: &[&str], media: &str) -> (String, Value) {
    let reply = c
        .ok("call", json!({"callees": callees, "media": media}))
        .await;
    (reply["call_id"].as_str().unwrap().to_string(), reply)
}

/// The next call event named `name` for `call_id`, skipping other frames.
async fn call_event(c: &mut Client, name: &str, call_id: &str) -> Value {
    loop {
        let v = c.wait_event(name).await;
        if v["call_id"] == call_id {
            return v;
        }
    }
}

/// Frames up to the event `name`: the event and what came before it.
async fn until_event(c: &mut Client, name: &str) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let v = c.recv().await;
        if v["type"] == "event" && v["event"] == name {
            return (v, before);
        }
        before.push(v);
    }
}

/// A connected 1:1 call from `a` to `b`.
async fn connected(a: &mut Client, b: &mut Client, b_name: &str) -> String {
    let (id, _) = call(a, &[b_name], "audio").await;
    call_event(b, "call_incoming", &id).await;
    b.ok("accept", json!({"call_id": id})).await;
    call_event(a, "call_connected", &id).await;
    call_event(b, "call_connected", &id).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_rings_connects_and_hangs_up_for_both() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let (id, reply) = call(&mut a, &["bob"], "audio").await;
    assert_eq!(reply["busy"], json!([]));
    assert_eq!(reply["channel"], format!("call:{id}"));
    let ringing = call_event(&mut a, "call_ringing", &id).await;
    assert_eq!(ringing["callees"], json!(["bob"]));
    assert_eq!(
        ringing["offline"],
        json!([]),
        "bob is online: his devices ring"
    );
    let incoming = call_event(&mut b, "call_incoming", &id).await;
    assert_eq!(incoming["caller"], "alice");
    assert_eq!(incoming["media"], "audio");
    assert_eq!(incoming["call_type"], "one_to_one");
    let seq_in = incoming["seq"].as_u64().unwrap();
    b.ok("accept", json!({"call_id": id})).await;
    let ca = call_event(&mut a, "call_connected", &id).await;
    let cb = call_event(&mut b, "call_connected", &id).await;
    assert!(cb["seq"].as_u64().unwrap() > seq_in);
    assert_eq!(ca["start_time"], cb["start_time"]);
    assert!(ca["start_time"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(ca["channel"], format!("call:{id}"));
    b.ok("hangup", json!({"call_id": id})).await;
    assert_eq!(
        call_event(&mut a, "call_ended", &id).await["reason"],
        "hangup"
    );
    assert_eq!(
        call_event(&mut b, "call_ended", &id).await["reason"],
        "hangup"
    );
    let log = call_event(&mut a, "call_log", &id).await;
    assert_eq!(log["log"]["end_reason"], "hangup");
    assert_eq!(log["log"]["direction"], "outgoing");
    assert_eq!(log["log"]["peers"], json!(["bob"]));
    assert!(log["log"]["connect_ms"].is_i64());
    let log = call_event(&mut b, "call_log", &id).await;
    assert_eq!(log["log"]["direction"], "incoming");
    // The call is gone: a late request says so.
    a.err("hangup", json!({"call_id": id}), "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_on_one_device_stops_the_others_and_audio_stays_audio() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b1 = user(&server, "bob").await;
    let mut b2 = user(&server, "bob").await;
    let (id, _) = call(&mut a, &["bob"], "audio").await;
    call_event(&mut b1, "call_incoming", &id).await;
    call_event(&mut b2, "call_incoming", &id).await;
    b1.err(
        "accept",
        json!({"call_id": id, "media": "video"}),
        "forbidden",
    )
    .await;
    b1.ok("accept", json!({"call_id": id, "media": "audio"}))
        .await;
    let state = call_event(&mut b2, "participant_state", &id).await;
    assert_eq!(state["user"], "bob");
    assert_eq!(state["state"], "connected");
    b2.err("accept", json!({"call_id": id}), "conflict").await;
    // Strangers learn nothing about the call.
    let mut eve = user(&server, "eve").await;
    let live = eve.err("accept", json!({"call_id": id}), "not_found").await;
    eve.err("hangup", json!({"call_id": id}), "not_found").await;
    // Not even by the wording: a live call and a made-up ID read the same.
    let made_up = eve
        .err(
            "accept",
            json!({"call_id": "c-0123456789abcdef"}),
            "not_found",
        )
        .await;
    assert_eq!(live["message"], made_up["message"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_and_cancel_end_the_call_with_their_reasons() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let (id, _) = call(&mut a, &["bob"], "video").await;
    call_event(&mut b, "call_incoming", &id).await;
    b.ok("reject", json!({"call_id": id})).await;
    assert_eq!(
        call_event(&mut a, "call_ended", &id).await["reason"],
        "rejected"
    );
    assert_eq!(
        call_event(&mut b, "call_ended", &id).await["reason"],
        "rejected"
    );

    let (id, _) = call(&mut a, &["bob"], "audio").await;
    call_event(&mut b, "call_incoming", &id).await;
    a.ok("hangup", json!({"call_id": id})).await;
    assert_eq!(
        call_event(&mut b, "call_ended", &id).await["reason"],
        "canceled"
    );
    assert_eq!(
        call_event(&mut a, "call_ended", &id).await["reason"],
        "canceled"
    );
    let log = call_event(&mut b, "call_log", &id).await;
    assert_eq!(log["log"]["end_reason"], "canceled");
    assert_eq!(log["log"]["duration_ms"], 0);

    // A busy reply from the callee's app.
    let (id, _) = call(&mut a, &["bob"], "audio").await;
    call_event(&mut b, "call_incoming", &id).await;
    b.ok("reject", json!({"call_id": id, "reason": "busy"}))
        .await;
    assert_eq!(
        call_event(&mut a, "call_ended", &id).await["reason"],
        "busy"
    );
    b.err(
        "reject",
        json!({"call_id": id, "reason": "sleepy"}),
        "bad_request",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_call_times_out_as_missed() {
    let server = start_calls(Duration::from_millis(400), Duration::from_secs(20));
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let (id, _) = call(&mut a, &["bob"], "audio").await;
    call_event(&mut b, "call_incoming", &id).await;
    let missed = call_event(&mut b, "call_missed", &id).await;
    assert_eq!(missed["user"], "bob");
    assert_eq!(call_event(&mut a, "call_missed", &id).await["user"], "bob");
    assert_eq!(
        call_event(&mut a, "call_ended", &id).await["reason"],
        "timeout"
    );
    assert_eq!(
        call_event(&mut b, "call_ended", &id).await["reason"],
        "timeout"
    );
    let log = call_event(&mut b, "call_log", &id).await;
    assert_eq!(log["log"]["end_reason"], "timeout");
    assert!(log["log"]["connect_ms"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callee_is_reported_and_gets_a_missed_call() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let mut c = user(&server, "carol").await;
    let first = connected(&mut c, &mut b, "bob").await;
    let (id, reply) = call(&mut a, &["bob"], "audio").await;
    assert_eq!(reply["busy"], json!(["bob"]));
    assert_eq!(
        call_event(&mut a, "call_ended", &id).await["reason"],
        "busy"
    );
    let missed = call_event(&mut b, "call_missed", &id).await;
    assert_eq!(missed["reason"], "busy");
    assert_eq!(missed["caller"], "alice");
    let log = call_event(&mut b, "call_log", &id).await;
    assert_eq!(log["log"]["end_reason"], "busy");
    // Bob's call goes on undisturbed.
    b.ok("hangup", json!({"call_id": first})).await;
    assert_eq!(
        call_event(&mut c, "call_ended", &first).await["reason"],
        "hangup"
    );
    // A caller already in a call cannot place another.
    let other = connected(&mut a, &mut b, "bob").await;
    c.ok("call", json!({"callees": ["dave"], "media": "audio"}))
        .await;
    a.err(
        "call",
        json!({"callees": ["carol"], "media": "audio"}),
        "conflict",
    )
    .await;
    a.ok("hangup", json!({"call_id": other})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_a_second_call_replaces_the_first() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let mut c = user(&server, "carol").await;
    let (first, _) = call(&mut a, &["bob"], "audio").await;
    let (second, _) = call(&mut c, &["bob"], "audio").await;
    call_event(&mut b, "call_incoming", &first).await;
    call_event(&mut b, "call_incoming", &second).await;
    b.ok("accept", json!({"call_id": first})).await;
    call_event(&mut a, "call_connected", &first).await;
    // The second call still rings (call waiting); answering it ends the first.
    b.ok("accept", json!({"call_id": second})).await;
    assert_eq!(
        call_event(&mut a, "call_ended", &first).await["reason"],
        "replaced"
    );
    call_event(&mut c, "call_connected", &second).await;
    let log = call_event(&mut a, "call_log", &first).await;
    assert_eq!(log["log"]["end_reason"], "replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glare_ends_with_exactly_one_connected_call() {
    for (x, y) in [("alice", "bob"), ("bob", "alice")] {
        let server = server();
        let mut first = user(&server, x).await;
        let mut second = user(&server, y).await;
        let (id1, _) = call(&mut first, &[y], "audio").await;
        call_event(&mut second, "call_incoming", &id1).await;
        let reply = second
            .ok("call", json!({"callees": [x], "media": "audio"}))
            .await;
        let id2 = reply["call_id"].as_str().unwrap().to_string();
        // Events of the two calls come from two actors: collect, then check.
        let (c1, seen1) = until_event(&mut first, "call_connected").await;
        let c2 = second.wait_event("call_connected").await;
        assert_eq!(c1["call_id"], c2["call_id"], "both in one call");
        // alice sorts first, so alice's call survives whichever came first.
        let survivor = if x == "alice" { &id1 } else { &id2 };
        assert_eq!(c1["call_id"], survivor.as_str(), "{x} called first");
        assert_eq!(reply["glare"], true, "the second caller learns it glared");
        if x == "alice" {
            assert_eq!(id2, id1);
        } else {
            // bob's own call ended as replaced.
            let ended = seen1
                .iter()
                .find(|v| v["event"] == "call_ended" && v["call_id"] == id1.as_str())
                .cloned();
            let ended = match ended {
                Some(e) => e,
                None => call_event(&mut first, "call_ended", &id1).await,
            };
            assert_eq!(ended["reason"], "replaced");
        }
        first.ok("hangup", json!({})).await;
        assert_eq!(
            call_event(&mut second, "call_ended", survivor).await["reason"],
            "hangup"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reject_or_hangup_can_carry_a_note_for_the_others_and_the_log() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let (id, _) = call(&mut a, &["bob"], "audio").await;
    call_event(&mut b, "call_incoming", &id).await;
    b.err(
        "reject",
        json!({"call_id": id, "note": "line one\nline two"}),
        "bad_request",
    )
    .await;
    b.err(
        "reject",
        json!({"call_id": id, "note": "x".repeat(201)}),
        "bad_request",
    )
    .await;
    let note = "in a meeting, call you back";
    b.ok("reject", json!({"call_id": id, "note": note})).await;
    let ended = call_event(&mut a, "call_ended", &id).await;
    assert_eq!(
        (ended["reason"].as_str(), ended["note"].as_str()),
        (Some("rejected"), Some(note))
    );
    // Both rows keep it: the caller's, and the callee's own.
    for c in [&mut a, &mut b] {
        let log = call_event(c, "call_log", &id).await;
        assert_eq!(log["log"]["end_note"], note, "{log}");
    }

    // A hangup in a connected call, the same way; a plain one carries none.
    let id = connected(&mut a, &mut b, "bob").await;
    a.ok(
        "hangup",
        json!({"call_id": id, "note": "  battery dying  "}),
    )
    .await;
    let ended = call_event(&mut b, "call_ended", &id).await;
    assert_eq!(ended["note"], "battery dying");
    let id = connected(&mut a, &mut b, "bob").await;
    a.ok("hangup", json!({"call_id": id})).await;
    let ended = call_event(&mut b, "call_ended", &id).await;
    assert!(ended.get("note").is_none(), "{ended}");
    let log = call_event(&mut b, "call_log", &id).await;
    assert!(log["log"].get("end_note").is_none(), "{log}");
}
