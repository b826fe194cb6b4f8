//! What a panic stops (src/panics.rs): one connection's panic closes that connection only;
//! a panic in shared state stops the process, which says why. The panics are injected by
//! the `fault-injection` feature, which only test builds have.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_connections_code_closes_that_connection_only() {
    let server = start();
    let mut b = Client::as_(&server, "bystander", &["host"]).await;
    b.join("p", "host").await;
    let mut a = Client::as_(&server, "panic-in-session", &["host"]).await;
    a.join("p", "host").await;
    b.wait_event("participant_joined").await;
    // Its next ping panics in its session's code.
    a.send_text(json!({"id": 7, "type": "ping"}).to_string())
        .await;
    assert!(
        matches!(a.closed().await, None | Some(1006) | Some(1011)),
        "the panicking connection ends"
    );
    // The others see a disconnect, and carry on; the server's tables let it go.
    let left = b.wait_event("participant_left").await;
    assert_eq!(left["reason"], "disconnected");
    b.ok("ping", json!({})).await;
    let mut c = Client::as_(&server, "newcomer", &["audience"]).await;
    c.join("p", "audience").await;
    let health: serde_json::Value = reqwest::get(format!("{}/healthz", server.http_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["sessions"], 2, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_shared_state_stops_the_binary_which_says_why() {
    use std::os::unix::process::ExitStatusExt;
    let (mut child, addr, log) = spawn_binary_logged(&[]);
    let url = format!("http://{addr}");
    let ws = |identity: &str| format!("ws://{addr}/ws?token={}", token(identity, &["host"]));
    // A connection's panic: logged, and the server goes on.
    let mut a = Client::connect_url(&ws("panic-in-session")).await;
    a.send_text(json!({"id": 1, "type": "ping"}).to_string())
        .await;
    a.closed().await;
    let mut b = Client::connect_url(&ws("bystander")).await;
    b.ok("ping", json!({})).await;
    // A channel's panic: the process stops.
    b.send_text(json!({"id": 2, "type": "join", "channel": "q"}).to_string())
        .await;
    let mut boom = Client::connect_url(&ws("panic-in-channel")).await;
    boom.send_text(json!({"id": 1, "type": "join", "channel": "q"}).to_string())
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server kept running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.signal(), Some(6), "aborted: {status:?}");
    let lines: Vec<String> = log.try_iter().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("a connection's code panicked")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("shared state panicked") && l.contains("supervisor")),
        "{lines:#?}"
    );
    assert!(reqwest::get(url).await.is_err(), "nothing answers any more");
}
