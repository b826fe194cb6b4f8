//! Who may call and how: grants and bad input, the reconnect grace, proxies, calls from a
//! live channel, call logs, shutdown and ring-spam limits.

use super::*;

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
    assert_eq!(
        call_event(&mut a, "call_ringing", &id).await["offline"],
        json!(["bob"])
    );
    // bob was offline when called; his first session hears the call ringing, and alice
    // learns that it rings somewhere now.
    let mut b = user(&server, "bob").await;
    let inc = call_event(&mut b, "call_incoming", &id).await;
    assert_eq!(
        (inc["caller"].clone(), inc["resumed"].clone()),
        (json!("alice"), json!(true))
    );
    let online = call_event(&mut a, "callee_online", &id).await;
    assert_eq!(
        (&online["user"], &online["seq"]),
        (&json!("bob"), &Value::Null)
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

/// The frames a caller sees of one call until its own log row closes, with the call's ID and
/// the callee's name taken out, so two calls can be compared.
async fn caller_view(c: &mut Client, id: &str, callee: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let v = c.recv().await;
        if v["call_id"] != id {
            continue;
        }
        let name = v["event"].as_str().unwrap_or_default().to_string();
        let text = v.to_string().replace(id, "ID").replace(callee, "CALLEE");
        // Times differ from call to call; the shape and the reasons must not.
        let shape: Value = serde_json::from_str(&text).unwrap();
        seen.push(format!(
            "{name} {} {} {}",
            shape["reason"], shape["log"]["end_reason"], shape["offline"]
        ));
        if name == "call_log" {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_caller_rings_nobody_and_looks_like_a_call_to_someone_offline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir
        .path()
        .join("calls.sqlite")
        .to_string_lossy()
        .to_string();
    let config = move |c: &mut amphi::config::Config| {
        c.calls.database = db.clone();
        c.calls.ring_timeout = Duration::from_millis(400);
    };
    let server = start_with(config.clone());
    let mut bob = user(&server, "bob").await;
    let listed = bob.ok("block", json!({"user": "mallory"})).await;
    assert_eq!(listed["blocked"], json!(["mallory"]));
    bob.err("block", json!({"user": "bob"}), "bad_request")
        .await;
    bob.err("block", json!({"user": "no one"}), "bad_request")
        .await;

    // Bob is online and blocks Mallory; Olive is not online. Mallory cannot tell them apart.
    let mut mallory = user(&server, "mallory").await;
    let (to_bob, reply_bob) = call(&mut mallory, &["bob"], "audio").await;
    let bob_view = caller_view(&mut mallory, &to_bob, "bob").await;
    let (to_olive, reply_olive) = call(&mut mallory, &["olive"], "audio").await;
    let olive_view = caller_view(&mut mallory, &to_olive, "olive").await;
    assert_eq!(reply_bob["busy"], reply_olive["busy"]);
    assert_eq!(bob_view, olive_view);
    assert!(
        bob_view.contains(&"call_ringing null null [\"CALLEE\"]".to_string()),
        "both say the callee is offline while it rings: {bob_view:?}"
    );
    assert!(
        bob_view.iter().any(|e| e.starts_with("call_ended")),
        "{bob_view:?}"
    );

    // Nothing of it reached Bob: no frame and no row.
    let (_, before) = bob.request("ping", json!({})).await;
    assert!(
        before.iter().all(|f| f["call_id"] != to_bob.as_str()),
        "{before:?}"
    );
    let logs = bob.ok("call_logs", json!({})).await;
    assert_eq!(logs["logs"], json!([]), "{logs}");

    // Bob offline when Mallory calls, then online while it rings: still nothing reaches him,
    // and Mallory is not told he came online.
    bob.ws.close(None).await.unwrap();
    bob.closed().await;
    for _ in 0..200 {
        let health: Value = reqwest::get(format!("{}/healthz", server.http_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["sessions"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (later, _) = call(&mut mallory, &["bob"], "audio").await;
    let mut bob = user(&server, "bob").await;
    let view = caller_view(&mut mallory, &later, "bob").await;
    assert!(
        view.iter().all(|e| !e.starts_with("callee_online")),
        "{view:?}"
    );
    // The call has ended; had Bob's new session been rung, it would have heard by now.
    let (_, frames) = bob.request("ping", json!({})).await;
    assert!(
        frames.iter().all(|f| f["call_id"] != later.as_str()),
        "{frames:?}"
    );

    // Others still reach Bob; the block survives a restart until Bob lifts it.
    let mut carol = user(&server, "carol").await;
    let (id, _) = call(&mut carol, &["bob"], "audio").await;
    call_event(&mut bob, "call_incoming", &id).await;
    carol.ok("hangup", json!({"call_id": id})).await;
    drop((bob, mallory, carol));
    server.shutdown().unwrap();

    let server = start_with(config);
    let mut bob = user(&server, "bob").await;
    assert_eq!(
        bob.ok("blocked_users", json!({})).await["blocked"],
        json!(["mallory"])
    );
    let mut mallory = user(&server, "mallory").await;
    let (id, _) = call(&mut mallory, &["bob"], "audio").await;
    caller_view(&mut mallory, &id, "bob").await;
    let unblocked = bob.ok("unblock", json!({"user": "mallory"})).await;
    assert_eq!(unblocked["blocked"], json!([]));
    let (id, _) = call(&mut mallory, &["bob"], "audio").await;
    call_event(&mut bob, "call_incoming", &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_names_who_a_call_would_ring_now() {
    let server = server();
    let mut alice = user(&server, "alice").await;
    let _bob = user(&server, "bob").await;
    let mut carol = user(&server, "carol").await;
    carol.ok("block", json!({"user": "alice"})).await;
    let asked = json!({"users": ["bob", "carol", "dave"]});
    // Carol is online but blocks Alice: to Alice she is not; Dave has no device online.
    assert_eq!(
        alice.ok("presence", asked.clone()).await["online"],
        json!(["bob"])
    );
    assert_eq!(
        carol
            .ok("presence", json!({"users": ["alice", "bob"]}))
            .await["online"],
        json!(["alice", "bob"])
    );
    let _dave = user(&server, "dave").await;
    assert_eq!(
        alice.ok("presence", asked).await["online"],
        json!(["bob", "dave"])
    );

    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    for users in [json!([]), json!(many), json!(["no one"])] {
        alice
            .err("presence", json!({ "users": users }), "bad_request")
            .await;
    }
    let mut plain = Client::as_(&server, "nogrant", &[]).await;
    plain
        .err("presence", json!({"users": ["bob"]}), "forbidden")
        .await;
}
