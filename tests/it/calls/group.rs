//! Group calls (invite, join, leave), media changes and what members send each other.

use super::*;

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
