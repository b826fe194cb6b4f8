//! The admin API's calls, call logs and webhook checks, and the `amphi calls` / `amphi
//! webhooks` commands, against a server with real WebSocket clients and a webhook receiver.

use std::time::Duration;

use crate::admin_ops::amphi;
use crate::common::webhooks::receiver;
use crate::common::*;
use serde_json::{json, Value};

const SECRET: &str = "webhook-secret-for-admin-tests-0123";

fn server_with_webhooks(url: &str) -> amphi::ServerHandle {
    let url = url.to_string();
    start_with(move |c| {
        c.calls.webhook_url = url;
        c.calls.webhook_secret = SECRET.into();
    })
}

async fn caller(server: &amphi::ServerHandle, name: &str) -> Client {
    Client::connect(server, &token_with(name, &[], &["call"])).await
}

/// The next event `name` about `call_id`.
async fn call_event(c: &mut Client, name: &str, call_id: &str) -> Value {
    loop {
        let v = c.wait_event(name).await;
        if v["call_id"] == call_id {
            return v;
        }
    }
}

/// Alice calls Bob, both online: the clients and the call ID once Bob's phone rings.
async fn ringing(server: &amphi::ServerHandle) -> (Client, Client, String) {
    let mut alice = caller(server, "alice").await;
    let mut bob = caller(server, "bob").await;
    let reply = alice
        .ok("call", json!({"callees": ["bob"], "media": "audio"}))
        .await;
    let id = reply["call_id"].as_str().unwrap().to_string();
    call_event(&mut bob, "call_incoming", &id).await;
    (alice, bob, id)
}

fn member_states(call: &Value) -> Vec<(String, String)> {
    call["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_inspects_and_ends_a_call_then_reads_the_log() {
    let server = start();
    let mut alice = caller(&server, "alice").await;
    let mut bob = caller(&server, "bob").await;

    let reply = alice
        .ok("call", json!({"callees": ["bob"], "media": "audio"}))
        .await;
    let id = reply["call_id"].as_str().unwrap().to_string();
    call_event(&mut bob, "call_incoming", &id).await;

    let (status, list) = admin_get(&server, "/api/calls").await;
    assert_eq!(status, 200, "{list}");
    let calls = list["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{list}");
    assert_eq!(calls[0]["call_id"], id);
    assert_eq!(calls[0]["caller"], "alice");
    assert_eq!(calls[0]["answered"], false);
    assert_eq!(
        member_states(&calls[0]),
        [
            ("alice".into(), "connected".into()),
            ("bob".into(), "ringing".into())
        ]
    );

    bob.ok("accept", json!({"call_id": id})).await;
    call_event(&mut alice, "call_connected", &id).await;
    call_event(&mut bob, "call_connected", &id).await;
    let (status, shown) = admin_get(&server, &format!("/api/calls/{id}")).await;
    assert_eq!(status, 200, "{shown}");
    let call = &shown["call"];
    assert_eq!(call["phase"], "connected", "{shown}");
    assert_eq!(call["media"], "audio");
    assert_eq!(call["channel"], format!("call:{id}"));
    assert!(call["connected_at"].as_i64().unwrap() >= call["placed_at"].as_i64().unwrap());
    assert_eq!(
        member_states(call),
        [
            ("alice".into(), "connected".into()),
            ("bob".into(), "connected".into())
        ]
    );

    let (status, ended) = admin_post(&server, &format!("/api/calls/{id}/end"), json!({})).await;
    assert_eq!(
        (status, &ended["reason"]),
        (200, &json!("terminated")),
        "{ended}"
    );
    for member in [&mut alice, &mut bob] {
        let end = call_event(member, "call_ended", &id).await;
        assert_eq!(end["reason"], "terminated", "{end}");
    }
    let (status, gone) = admin_get(&server, &format!("/api/calls/{id}")).await;
    assert_eq!(
        (status, &gone["code"]),
        (404, &json!("not_found")),
        "{gone}"
    );
    let (_, list) = admin_get(&server, "/api/calls").await;
    assert_eq!(list["calls"], json!([]), "{list}");

    // Bob's row is committed when his `call_log` event comes; the API reads the same row.
    let logged = call_event(&mut bob, "call_log", &id).await;
    assert_eq!(logged["log"]["end_reason"], "terminated", "{logged}");
    let (status, page) = admin_get(&server, "/api/users/bob/calls?count=5").await;
    assert_eq!(status, 200, "{page}");
    let row = page["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["call_id"] == id)
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["end_reason"], "terminated", "bob's row: {row}");
}

/// Bad input gets a typed error a person can act on; a token without `admin` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_admin_routes_refuse_bad_input_with_typed_errors() {
    let server = start();
    let (status, bad) = admin_get(&server, "/api/users/bob/calls?count=0").await;
    assert_eq!(
        (status, &bad["code"]),
        (400, &json!("bad_request")),
        "{bad}"
    );
    let (status, bad) = admin_get(&server, "/api/users/bob/calls?sort=up").await;
    assert!(
        status == 400 && bad["message"].as_str().unwrap().contains("order"),
        "{bad}"
    );
    let (status, bad) = admin_get(&server, "/api/calls/not%20a%20call").await;
    assert_eq!(
        (status, &bad["code"]),
        (400, &json!("bad_request")),
        "{bad}"
    );
    let resp = reqwest::Client::new()
        .get(format!("{}/api/calls", server.http_url()))
        .bearer_auth(token_with("alice", &[], &["call"]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_status_counts_deliveries_and_the_test_event_is_signed() {
    let (url, got) = receiver(0).await;
    let server = server_with_webhooks(&url);
    let (_alice, _bob, _call) = ringing(&server).await;
    // The call's first webhooks reached the receiver: the status counts them.
    let delivered = r#"amphi_webhook_deliveries_total{result="delivered"}"#;
    wait_metric(&server, delivered, 1.0, Duration::from_secs(10)).await;
    let (_, hooks) = admin_get(&server, "/api/webhooks").await;
    assert_eq!(hooks["configured"], true);
    assert_eq!(
        hooks["receiver"].as_str().unwrap(),
        url.trim_end_matches("/hooks"),
        "the receiver shown without its path: {hooks}"
    );
    assert!(
        hooks["stats"]["delivered"].as_u64().unwrap() >= 1,
        "{hooks}"
    );
    assert!(
        hooks["stats"]["last_delivered_ms"].as_i64().is_some(),
        "{hooks}"
    );
    let before = got.lock().unwrap().len();
    let (status, test) = admin_post(&server, "/api/webhooks/test", json!({})).await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["outcome"]["ok"], true, "{test}");
    assert_eq!(test["outcome"]["status"], 200, "{test}");
    let received = got.lock().unwrap().clone();
    let r = received[before..]
        .iter()
        .find(|r| r.body.contains("webhook_test"))
        .expect("the test event reached the receiver");
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["seq"].as_u64()),
        (Some("webhook_test"), Some(0))
    );
    assert!(
        r.signed_with(SECRET),
        "the test event is signed as the others are"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_checks_say_why_a_receiver_fails_or_that_none_is_set() {
    // A receiver that refuses its first two requests: the test shows the refusal.
    let (url, _) = receiver(2).await;
    let server = server_with_webhooks(&url);
    let (status, test) = admin_post(&server, "/api/webhooks/test", json!({})).await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["outcome"]["ok"], false, "{test}");
    assert_eq!(test["outcome"]["status"], 500, "{test}");
    assert!(
        test["outcome"]["error"].as_str().unwrap().contains("500"),
        "{test}"
    );

    // Nothing listens there: the error names the cause, no status.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hooks", dead.local_addr().unwrap());
    drop(dead);
    let server = server_with_webhooks(&dead_url);
    let (_, test) = admin_post(&server, "/api/webhooks/test", json!({})).await;
    assert_eq!(test["outcome"]["ok"], false, "{test}");
    assert!(test["outcome"]["status"].is_null(), "{test}");
    assert!(
        test["outcome"]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("connect"),
        "{test}"
    );

    let server = start();
    let (status, hooks) = admin_get(&server, "/api/webhooks").await;
    assert_eq!(
        (status, &hooks["configured"]),
        (200, &json!(false)),
        "{hooks}"
    );
    let (status, test) = admin_post(&server, "/api/webhooks/test", json!({})).await;
    assert_eq!(status, 404, "{test}");
    assert!(
        test["message"].as_str().unwrap().contains("webhook_url"),
        "{test}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amphi_command_lists_and_ends_calls_and_checks_webhooks() {
    let (url, _) = receiver(0).await;
    let server = server_with_webhooks(&url);
    let (_alice, mut bob, id) = ringing(&server).await;

    let (ok, out, err) = amphi(&server, &["calls", "list"]).await;
    assert!(ok, "{err}");
    let row = out.lines().find(|l| l.starts_with(&id)).expect(&out);
    assert!(row.contains("alice (connected), bob (ringing)"), "{out}");
    let (ok, out, err) = amphi(&server, &["calls", "show", &id]).await;
    assert!(ok && out.contains("\"ringing\""), "{out}{err}");
    let (ok, _, err) = amphi(&server, &["calls", "end", &id]).await;
    assert!(ok, "{err}");
    assert_eq!(
        call_event(&mut bob, "call_ended", &id).await["reason"],
        "terminated"
    );
    let (ok, _, err) = amphi(&server, &["calls", "end", &id]).await;
    assert!(
        !ok && err.contains("not_found") && err.contains(&id),
        "{err}"
    );
    let (ok, out, err) = amphi(&server, &["calls", "log", "alice", "--count", "3"]).await;
    assert!(ok && out.contains(&id), "{out}{err}");

    let (ok, out, err) = amphi(&server, &["webhooks", "status"]).await;
    assert!(ok && out.contains("\"configured\": true"), "{out}{err}");
    let (ok, out, err) = amphi(&server, &["webhooks", "test"]).await;
    assert!(ok && out.contains("\"ok\": true"), "{out}{err}");
}
