//! Admission at capacity: offered twice what the server is configured to carry, the excess
//! gets `busy` with a retry hint, and those admitted carry on as before.

use std::time::Duration;

use crate::common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_calls_past_capacity_get_busy_with_a_retry_hint() {
    let server = start_with(|c| {
        c.limits.max_participants = 4;
        c.calls.max_calls = 1;
    });
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for i in 0..8 {
        let mut c = Client::as_(&server, &format!("p{i}"), &["audience"]).await;
        let (reply, _) = c
            .request("join", json!({"channel": format!("room-{}", i % 3)}))
            .await;
        if reply["type"] == "ok" {
            admitted.push(c);
        } else {
            assert_eq!(reply["code"], "busy", "{reply}");
            assert_eq!(reply["retry_after_ms"], 5000, "{reply}");
            assert!(
                reply["message"]
                    .as_str()
                    .unwrap()
                    .contains("limits.max_participants"),
                "{reply}"
            );
            refused.push(c);
        }
    }
    assert_eq!((admitted.len(), refused.len()), (4, 4));
    let text = metrics_text(&server).await;
    assert_eq!(
        metric_in(
            &text,
            "amphi_admission_refused_total{what=\"participants\"}"
        ),
        4.0
    );
    // Those in are served as before; a seat given back (a leave) is taken by the next join.
    for c in &mut admitted {
        c.ok("ping", json!({})).await;
    }
    admitted[0].ok("leave", json!({"channel": "room-0"})).await;
    let mut late = refused.pop().unwrap();
    let mut joined = false;
    for _ in 0..100 {
        let (reply, _) = late.request("join", json!({"channel": "room-1"})).await;
        if reply["type"] == "ok" {
            joined = true;
            break;
        }
        assert_eq!(reply["code"], "busy", "{reply}");
        // The seat comes back once the channel has detached the leaver.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(joined, "the freed seat was never given to a new join");

    // Calls: one at a time here; the second caller is told to come back later.
    let mut a = Client::connect(&server, &token_with("caller-a", &[], &["call"])).await;
    let mut b = Client::connect(&server, &token_with("caller-b", &[], &["call"])).await;
    a.ok("call", json!({"callees": ["x"], "media": "audio"}))
        .await;
    let e = b
        .err("call", json!({"callees": ["y"], "media": "audio"}), "busy")
        .await;
    assert_eq!(e["retry_after_ms"], 5000, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("calls.max_calls"),
        "{e}"
    );
}
