//! Kicks that hold: a kicked identity stays out of the channel on the same connection, a new
//! one and after a restart, until a moderator or the admin API lets it back; a revoked token
//! ID is refused.

use crate::common::*;
use amphi::config::Config;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_holds_across_connections_and_restarts_until_it_is_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir
        .path()
        .join("amphi.sqlite")
        .to_string_lossy()
        .to_string();
    let config = move |c: &mut Config| c.calls.database = db.clone();

    let server = start_with(config.clone());
    let mut host = Client::as_(&server, "host", &["host"]).await;
    host.join("k", "host").await;
    let mut bob = Client::as_(&server, "bob", &["audience"]).await;
    let bob_id = participant(&bob.join("k", "audience").await);
    host.ok("kick", json!({"channel": "k", "participant": bob_id}))
        .await;
    assert_eq!(bob.wait_event("left").await["reason"], "kicked");
    // Out on the same connection, and on a new one; other channels are open to it.
    let e = bob.err("join", json!({"channel": "k"}), "forbidden").await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("removed from channel 'k'"),
        "{e}"
    );
    let mut again = Client::as_(&server, "bob", &["audience"]).await;
    again
        .err("join", json!({"channel": "k"}), "forbidden")
        .await;
    again.join("elsewhere", "audience").await;
    // A moderator lets it back in; kicked again by the admin API, it is out again.
    host.ok("unban", json!({"channel": "k", "identity": "bob"}))
        .await;
    bob.join("k", "audience").await;
    let (status, body) =
        admin_post(&server, "/api/channels/k/kick", json!({"identity": "bob"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(bob.wait_event("left").await["reason"], "kicked");
    drop((host, bob, again));
    server.shutdown().unwrap();

    // After a restart the kick still holds, until the admin API lifts it.
    let server = start_with(config);
    let mut bob = Client::as_(&server, "bob", &["audience"]).await;
    bob.err("join", json!({"channel": "k"}), "forbidden").await;
    let (status, body) =
        admin_post(&server, "/api/channels/k/unban", json!({"identity": "bob"})).await;
    assert_eq!(
        (status, body["was_banned"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    bob.join("k", "audience").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_and_others_are_not() {
    let server = start();
    let revoked = claims("eve", &["audience"]);
    let jti = revoked.jti.clone().expect("minted tokens carry an ID");
    let token = keys().mint(&revoked);
    // Good until revoked; another token of the same identity is not touched by it.
    let mut before = Client::connect(&server, &token).await;
    before.join("c", "audience").await;
    let mut other = Client::as_(&server, "eve", &["audience"]).await;
    let (status, body) = admin_post(
        &server,
        "/api/tokens/revoke",
        json!({"jti": jti, "exp": revoked.exp}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The connection open with it ends.
    assert_eq!(before.closed().await, Some(1008));
    let err = tokio_tungstenite::connect_async(server.ws_url(&token))
        .await
        .expect_err("refused at the upgrade");
    assert!(err.to_string().contains("401"), "{err}");
    let refused = reqwest::get(format!("{}/ws?token={token}", server.http_url()))
        .await
        .unwrap();
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    // The other token's connection is still there and works.
    other.join("c", "audience").await;
}
