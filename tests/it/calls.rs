//! Calls over real WebSocket clients: every transition of a call, its end reasons, busy,
//! glare, groups, media changes, proxies, live-to-1v1 and the call logs.

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
async fn group_calls_grow_by_invite_and_join_and_end_below_two() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let mut c = user(&server, "carol").await;
    let mut d = user(&server, "dave").await;
    let id = connected(&mut a, &mut b, "bob").await;
    let reply = a
        .ok(
            "invite",
            json!({"call_id": id, "callees": ["carol", "dave"]}),
        )
        .await;
    assert_eq!(reply["busy"], json!([]));
    for x in [&mut a, &mut b] {
        let t = call_event(x, "call_type_changed", &id).await;
        assert_eq!(t["call_type"], "group");
    }
    let ps = call_event(&mut b, "participant_state", &id).await;
    assert_eq!(ps["state"], "ringing");
    let inc = call_event(&mut c, "call_incoming", &id).await;
    assert_eq!(inc["invited_by"], "alice");
    assert_eq!(inc["call_type"], "group");
    call_event(&mut d, "call_incoming", &id).await;
    c.ok("join_call", json!({"call_id": id})).await;
    call_event(&mut c, "call_connected", &id).await;
    d.ok("accept", json!({"call_id": id})).await;
    call_event(&mut d, "call_connected", &id).await;
    // Four in the call: one leaving keeps it going.
    b.ok("hangup", json!({"call_id": id})).await;
    loop {
        let ps = call_event(&mut a, "participant_state", &id).await;
        if ps["user"] == "bob" && ps["state"] == "left" {
            break;
        }
    }
    // bob may come back.
    b.ok("join_call", json!({"call_id": id})).await;
    call_event(&mut b, "call_connected", &id).await;
    for x in [&mut b, &mut c, &mut d] {
        x.ok("hangup", json!({"call_id": id})).await;
    }
    assert_eq!(
        call_event(&mut a, "call_ended", &id).await["reason"],
        "hangup"
    );
    // The rows follow the upgrade; an invitee's row has its ring and answer times.
    let log = call_event(&mut a, "call_log", &id).await;
    assert_eq!(log["log"]["call_type"], "group");
    let log = call_event(&mut d, "call_log", &id).await;
    assert_eq!(log["log"]["direction"], "incoming");
    assert!(log["log"]["ring_ms"].is_i64(), "{log}");
    assert!(log["log"]["answer_ms"].is_i64(), "{log}");
    // A stranger cannot join.
    let mut e = user(&server, "erin").await;
    let id = connected(&mut a, &mut b, "bob").await;
    e.err("join_call", json!({"call_id": id}), "not_found")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_change_accepted_rejected_and_canceled() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let id = connected(&mut a, &mut b, "bob").await;
    let tx = a
        .ok("media_change", json!({"call_id": id, "media": "video"}))
        .await["transaction"]
        .as_str()
        .unwrap()
        .to_string();
    let req = call_event(&mut b, "media_change_requested", &id).await;
    assert_eq!(req["transaction"], tx.as_str());
    assert_eq!(req["media"], "video");
    a.err(
        "media_change_reply",
        json!({"transaction": tx, "agree": true}),
        "forbidden",
    )
    .await;
    b.ok(
        "media_change_reply",
        json!({"transaction": tx, "agree": false}),
    )
    .await;
    for x in [&mut a, &mut b] {
        let r = call_event(x, "media_change_result", &id).await;
        assert_eq!(
            (r["result"].clone(), r["media"].clone()),
            (json!("rejected"), json!("audio"))
        );
    }
    let tx = a
        .ok("media_change", json!({"call_id": id, "media": "video"}))
        .await["transaction"]
        .as_str()
        .unwrap()
        .to_string();
    a.ok("media_change_cancel", json!({"transaction": tx}))
        .await;
    let r = call_event(&mut b, "media_change_result", &id).await;
    assert_eq!(r["result"], "canceled");
    b.err(
        "media_change_reply",
        json!({"transaction": tx, "agree": true}),
        "not_found",
    )
    .await;
    let tx = b
        .ok("media_change", json!({"call_id": id, "media": "video"}))
        .await["transaction"]
        .as_str()
        .unwrap()
        .to_string();
    a.ok(
        "media_change_reply",
        json!({"transaction": tx, "agree": true}),
    )
    .await;
    let r = call_event(&mut b, "media_change_result", &id).await;
    assert_eq!(
        (r["result"].clone(), r["media"].clone()),
        (json!("accepted"), json!("video"))
    );
    a.err(
        "media_change_cancel",
        json!({"transaction": "nope"}),
        "bad_request",
    )
    .await;
    a.ok("hangup", json!({"call_id": id})).await;
    let log = call_event(&mut a, "call_log", &id).await;
    assert_eq!(log["log"]["media"], "video", "the log follows the change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_call_messages_and_device_state_reach_the_other_party() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let id = connected(&mut a, &mut b, "bob").await;
    a.ok(
        "send",
        json!({"call_id": id, "kind": "chat", "content": {"text": "hi"}}),
    )
    .await;
    let m = call_event(&mut b, "call_message", &id).await;
    assert_eq!(
        (m["from"].clone(), m["content"]["text"].clone()),
        (json!("alice"), json!("hi"))
    );
    b.ok(
        "call_media_state",
        json!({"call_id": id, "microphone": false, "camera": false}),
    )
    .await;
    let s = call_event(&mut a, "remote_media_state", &id).await;
    assert_eq!(
        (s["user"].clone(), s["microphone"].clone()),
        (json!("bob"), json!(false))
    );
    // A stranger's message goes nowhere.
    let mut e = user(&server, "erin").await;
    e.err(
        "send",
        json!({"call_id": id, "kind": "chat", "content": 1}),
        "not_found",
    )
    .await;
    a.err(
        "send",
        json!({"call_id": id, "kind": "chat", "content": 1, "to": ["p-1"]}),
        "bad_request",
    )
    .await;
    a.err("send", json!({"kind": "chat", "content": 1}), "bad_request")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_need_the_call_grant_and_valid_input() {
    let server = server();
    let mut plain = Client::as_(&server, "nogrant", &[]).await;
    plain
        .err(
            "call",
            json!({"callees": ["bob"], "media": "audio"}),
            "forbidden",
        )
        .await;
    let mut a = user(&server, "alice").await;
    a.err(
        "call",
        json!({"callees": ["alice"], "media": "audio"}),
        "bad_request",
    )
    .await;
    a.err(
        "call",
        json!({"callees": [], "media": "audio"}),
        "bad_request",
    )
    .await;
    a.err(
        "call",
        json!({"callees": ["bob"], "media": "fax"}),
        "bad_request",
    )
    .await;
    a.err(
        "call",
        json!({"callees": ["bo b"], "media": "audio"}),
        "bad_request",
    )
    .await;
    a.err("accept", json!({"call_id": "c-zz"}), "bad_request")
        .await;
    a.err("hangup", json!({}), "not_found").await;
    a.err(
        "call",
        json!({"callees": ["bob"], "media": "audio", "as": "carol"}),
        "forbidden",
    )
    .await;
    // Call channels are private.
    a.err(
        "join",
        json!({"channel": "call:c-0123456789abcdef", "role": "host"}),
        "forbidden",
    )
    .await;
    a.err(
        "join",
        json!({"channel": "call:mine", "role": "host"}),
        "forbidden",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_member_ends_after_the_grace_or_comes_back() {
    let server = start_calls(Duration::from_secs(60), Duration::from_millis(500));
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let id = connected(&mut a, &mut b, "bob").await;
    drop(b);
    let ps = call_event(&mut a, "participant_state", &id).await;
    assert_eq!(
        (ps["user"].clone(), ps["reconnecting"].clone()),
        (json!("bob"), json!(true))
    );
    let mut b = user(&server, "bob").await;
    let ps = call_event(&mut a, "participant_state", &id).await;
    assert_eq!(ps["reconnecting"], false);
    // That the grace no longer runs is checked in paused time (calls::timer_tests).
    b.ok("hangup", json!({"call_id": id})).await;
    assert_eq!(
        call_event(&mut a, "call_ended", &id).await["reason"],
        "hangup"
    );

    let id = connected(&mut a, &mut b, "bob").await;
    drop(b);
    assert_eq!(
        call_event(&mut a, "call_ended", &id).await["reason"],
        "disconnected"
    );
    let log = call_event(&mut a, "call_log", &id).await;
    assert_eq!(log["log"]["end_reason"], "disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_observes_and_acts_for_others() {
    let server = server();
    let mut app = Client::connect(&server, &token_with("app-server", &[], &["proxy"])).await;
    let mut customer = user(&server, "customer").await;
    let mut operator = user(&server, "operator-7").await;
    // The app server starts a call for the customer, with routing info in `extra`.
    let reply = app
        .ok(
            "call",
            json!({"callees": ["operator-7"], "media": "audio", "as": "customer",
                   "extra": {"queue": "billing"}}),
        )
        .await;
    let id = reply["call_id"].as_str().unwrap().to_string();
    let inc = call_event(&mut operator, "call_incoming", &id).await;
    assert_eq!(
        (inc["caller"].clone(), inc["extra"]["queue"].clone()),
        (json!("customer"), json!("billing"))
    );
    call_event(&mut customer, "call_ringing", &id).await;
    let seen = call_event(&mut app, "call_incoming", &id).await;
    assert_eq!(seen["observed_for"], json!(["operator-7"]));
    // ...accepts for the operator and hangs up for the customer.
    app.ok("accept", json!({"call_id": id, "as": "operator-7"}))
        .await;
    call_event(&mut customer, "call_connected", &id).await;
    call_event(&mut operator, "call_connected", &id).await;
    app.ok("hangup", json!({"call_id": id, "as": "customer"}))
        .await;
    assert_eq!(
        call_event(&mut operator, "call_ended", &id).await["reason"],
        "hangup"
    );
    // Busy on the operator's behalf.
    let reply = app
        .ok(
            "call",
            json!({"callees": ["operator-7"], "media": "audio", "as": "customer"}),
        )
        .await;
    let id = reply["call_id"].as_str().unwrap().to_string();
    app.ok(
        "reject",
        json!({"call_id": id, "as": "operator-7", "reason": "busy"}),
    )
    .await;
    assert_eq!(
        call_event(&mut customer, "call_ended", &id).await["reason"],
        "busy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_audience_member_calls_the_host_who_pauses_and_resumes() {
    let server = server();
    let mut host = Client::connect(&server, &token_with("star", &["host"], &["call"])).await;
    let mut fan = Client::connect(&server, &token_with("fan", &["audience"], &["call"])).await;
    let mut other = Client::as_(&server, "other", &["audience"]).await;
    let joined = host.join("show", "host").await;
    let host_pid = participant(&joined);
    fan.join("show", "audience").await;
    other.join("show", "audience").await;
    let reply = fan
        .ok(
            "call",
            json!({"callees": ["star"], "media": "audio", "live_channel": "show"}),
        )
        .await;
    let id = reply["call_id"].as_str().unwrap().to_string();
    call_event(&mut host, "call_incoming", &id).await;
    host.ok("accept", json!({"call_id": id})).await;
    let paused = other.wait_event("publishing_paused").await;
    assert_eq!(paused["participant"], host_pid.as_str());
    assert_eq!(
        (paused["paused"].clone(), paused["call_id"].clone()),
        (json!(true), json!(id))
    );
    fan.ok("hangup", json!({"call_id": id})).await;
    let resumed = other.wait_event("publishing_paused").await;
    assert_eq!(resumed["paused"], false);
    // Calling from a channel one is not in is refused.
    let mut stranger = user(&server, "stranger").await;
    stranger
        .err(
            "call",
            json!({"callees": ["star"], "media": "audio", "live_channel": "show"}),
            "forbidden",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_logs_page_both_ways_and_deletion_is_per_user() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        let (id, _) = call(&mut a, &["bob"], "audio").await;
        call_event(&mut b, "call_incoming", &id).await;
        a.ok("hangup", json!({"call_id": id})).await;
        call_event(&mut a, "call_log", &id).await;
        call_event(&mut b, "call_log", &id).await;
        ids.push(id);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for (order, expect) in [
        ("desc", ids.iter().rev().cloned().collect::<Vec<_>>()),
        ("asc", ids.clone()),
    ] {
        let mut got = Vec::new();
        let mut start = -1;
        let mut after = Value::Null;
        loop {
            let page = a
                .ok(
                    "call_logs",
                    json!({"start_time": start, "count": 3, "order": order, "after": after}),
                )
                .await;
            assert!(page["sync_time"].as_i64().unwrap() > 0);
            let logs = page["logs"].as_array().unwrap();
            assert!(logs.len() <= 3);
            got.extend(
                logs.iter()
                    .map(|l| l["call_id"].as_str().unwrap().to_string()),
            );
            if page["has_more"] == false {
                break;
            }
            start = page["next"]["start_ms"].as_i64().unwrap();
            after = page["next"]["after"].clone();
        }
        assert_eq!(got, expect, "{order}");
    }
    a.ok("delete_call_logs", json!({"call_ids": [ids[0], ids[1]]}))
        .await;
    let page = a.ok("call_logs", json!({"count": 100})).await;
    assert_eq!(page["logs"].as_array().unwrap().len(), 5);
    let page = b.ok("call_logs", json!({"count": 100})).await;
    assert_eq!(
        page["logs"].as_array().unwrap().len(),
        7,
        "bob keeps his rows"
    );
    let del = a.ok("delete_all_call_logs", json!({})).await;
    assert_eq!(del["deleted"], 5);
    let page = a.ok("call_logs", json!({})).await;
    assert_eq!(page["logs"], json!([]));
    assert_eq!(page["has_more"], false);
    let page = b.ok("call_logs", json!({"count": 100})).await;
    assert_eq!(page["logs"].as_array().unwrap().len(), 7);
    // Ongoing calls are listed.
    let (id, _) = call(&mut a, &["bob"], "audio").await;
    let ongoing = b.ok("ongoing_calls", json!({})).await;
    assert_eq!(ongoing["logs"][0]["call_id"], id.as_str());
    a.err("call_logs", json!({"count": 0}), "bad_request").await;
    a.err("call_logs", json!({"count": 101}), "bad_request")
        .await;
    a.err("call_logs", json!({"order": "sideways"}), "bad_request")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_callee_coming_online_is_rung_and_shutdown_ends_calls() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let (id, _) = call(&mut a, &["bob"], "audio").await;
    // bob was offline when called; his first session hears the call ringing.
    let mut b = user(&server, "bob").await;
    let inc = call_event(&mut b, "call_incoming", &id).await;
    assert_eq!(
        (inc["caller"].clone(), inc["resumed"].clone()),
        (json!("alice"), json!(true))
    );
    b.ok("accept", json!({"call_id": id})).await;
    call_event(&mut a, "call_connected", &id).await;
    server.shutdown().unwrap();
    assert_eq!(
        call_event(&mut a, "call_ended", &id).await["reason"],
        "server_restart"
    );
    assert_eq!(
        call_event(&mut b, "call_ended", &id).await["reason"],
        "server_restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_answer_leaves_the_current_call_alone() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let mut c = user(&server, "carol").await;
    let first = connected(&mut c, &mut b, "bob").await;
    // alice's group call finds bob busy; his late attempts to take it fail...
    let (second, _) = call(&mut a, &["bob", "erin"], "audio").await;
    call_event(&mut b, "call_missed", &second).await;
    b.err("accept", json!({"call_id": second}), "conflict")
        .await;
    b.err(
        "accept",
        json!({"call_id": second, "media": "video"}),
        "conflict",
    )
    .await;
    // ...and his call with carol goes on.
    b.ok(
        "send",
        json!({"call_id": first, "kind": "chat", "content": "still here"}),
    )
    .await;
    let m = call_event(&mut c, "call_message", &first).await;
    assert_eq!(m["content"], "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_invitee_can_join_the_group_call_later() {
    let server = server();
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let mut c = user(&server, "carol").await;
    let mut d = user(&server, "dave").await;
    let other = connected(&mut c, &mut d, "dave").await;
    let id = connected(&mut a, &mut b, "bob").await;
    let reply = a
        .ok("invite", json!({"call_id": id, "callees": ["carol"]}))
        .await;
    assert_eq!(reply["busy"], json!(["carol"]));
    call_event(&mut c, "call_missed", &id).await;
    c.ok("hangup", json!({"call_id": other})).await;
    c.ok("join_call", json!({"call_id": id})).await;
    let connected = call_event(&mut c, "call_connected", &id).await;
    assert_eq!(connected["channel"], format!("call:{id}"));
    a.ok("hangup", json!({"call_id": id})).await;
    b.ok("hangup", json!({"call_id": id})).await;
    assert_eq!(
        call_event(&mut c, "call_ended", &id).await["reason"],
        "hangup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_nobody_is_online_for_ends_after_the_grace() {
    let server = start_calls(Duration::from_secs(60), Duration::from_millis(300));
    let mut app = Client::connect(&server, &token_with("app-server", &[], &["proxy"])).await;
    let reply = app
        .ok(
            "call",
            json!({"callees": ["ghost-2"], "media": "audio", "as": "ghost-1"}),
        )
        .await;
    let id = reply["call_id"].as_str().unwrap().to_string();
    app.ok("accept", json!({"call_id": id, "as": "ghost-2"}))
        .await;
    let ended = call_event(&mut app, "call_ended", &id).await;
    assert_eq!(ended["reason"], "disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_media_change_times_out_and_a_proxy_can_answer_one() {
    let server = start_with(|c| c.calls.media_change_timeout = Duration::from_millis(300));
    let mut a = user(&server, "alice").await;
    let mut b = user(&server, "bob").await;
    let mut app = Client::connect(&server, &token_with("app-server", &[], &["proxy"])).await;
    let id = connected(&mut a, &mut b, "bob").await;
    let tx = a
        .ok("media_change", json!({"call_id": id, "media": "video"}))
        .await["transaction"]
        .as_str()
        .unwrap()
        .to_string();
    call_event(&mut b, "media_change_requested", &id).await;
    for x in [&mut a, &mut b] {
        let r = call_event(x, "media_change_result", &id).await;
        assert_eq!(
            (
                r["transaction"].clone(),
                r["result"].clone(),
                r["media"].clone()
            ),
            (json!(tx), json!("timeout"), json!("audio"))
        );
    }
    // The app server answers bob's phone for him.
    let tx = a
        .ok("media_change", json!({"call_id": id, "media": "video"}))
        .await["transaction"]
        .as_str()
        .unwrap()
        .to_string();
    app.ok(
        "media_change_reply",
        json!({"transaction": tx, "agree": true, "as": "bob"}),
    )
    .await;
    let r = call_event(&mut a, "media_change_result", &id).await;
    assert_eq!(r["result"], "accepted");
    a.err(
        "media_change_reply",
        json!({"transaction": tx, "agree": true, "as": "bob"}),
        "forbidden",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_spam_is_cut_at_the_configured_limits() {
    let server = start_with(|c| {
        c.calls.max_calls_per_minute = 3;
        c.calls.max_callees = 2;
    });
    let mut a = user(&server, "spammer").await;
    let many: Vec<String> = (0..3).map(|i| format!("victim-{i}")).collect();
    let e = a
        .err(
            "call",
            json!({"callees": many, "media": "audio"}),
            "bad_request",
        )
        .await;
    assert!(e["message"].as_str().unwrap().contains("at most 2"), "{e}");
    // Three calls a minute, whatever the connection: the fourth is refused.
    for i in 0..3 {
        let (id, _) = call(&mut a, &[&format!("victim-{i}")], "audio").await;
        a.ok("hangup", json!({"call_id": id})).await;
    }
    let mut again = user(&server, "spammer").await;
    let e = again
        .err(
            "call",
            json!({"callees": ["victim-9"], "media": "audio"}),
            "rate_limited",
        )
        .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("calls.max_calls_per_minute"),
        "{e}"
    );
    // Others call as before.
    let mut b = user(&server, "neighbour").await;
    call(&mut b, &["victim-9"], "audio").await;
}
