//! Matching events to the call a step waits for, the tokens the pairs present, and the
//! identities they take.

use serde_json::json;

use super::claims;
use crate::calls::party::Want;
use crate::calls::run_id;
use crate::scenario::DEV_SIGNING_KEY;
use crate::tokens::token_with_grants;

#[test]
fn waits_match_their_call_and_fail_when_it_ends() {
    let incoming = json!({"type": "event", "event": "call_incoming", "call_id": "c-1",
                          "caller": "alice", "seq": 1});
    let want = Want::Incoming { caller: "alice" };
    assert!(want.matches(&incoming));
    assert!(!Want::Incoming { caller: "bob" }.matches(&incoming));
    let connected = Want::Event {
        event: "call_connected",
        call_id: "c-1",
    };
    let ev = |event: &str, id: &str| json!({"type": "event", "event": event, "call_id": id});
    assert!(connected.matches(&ev("call_connected", "c-1")));
    assert!(!connected.matches(&ev("call_connected", "c-2")));
    // A reply is never an event, whatever it carries.
    assert!(!connected.matches(&json!({"type": "ok", "event": "call_connected", "call_id": "c-1"})));
    assert!(connected.forecloses(&ev("call_ended", "c-1")));
    assert!(!connected.forecloses(&ev("call_ended", "c-2")));
    let ended = Want::Event {
        event: "call_ended",
        call_id: "c-1",
    };
    assert!(ended.matches(&ev("call_ended", "c-1")));
    assert!(!ended.forecloses(&ev("call_ended", "c-1")));
}

#[test]
fn call_tokens_carry_the_call_grant_and_the_host_role() {
    let token = token_with_grants(DEV_SIGNING_KEY, "swarm-1-0-caller", "host", &["call"]);
    let c = claims(&token).expect("valid token");
    assert_eq!(c["sub"], "swarm-1-0-caller");
    assert_eq!(c["roles"], json!(["host"]));
    assert_eq!(c["grants"], json!(["call"]));
    let plain = token_with_grants(DEV_SIGNING_KEY, "listener-0", "audience", &[]);
    assert!(claims(&plain).unwrap().get("grants").is_none());
}

#[test]
fn run_ids_make_identities_unique_and_valid() {
    let id = run_id();
    assert!(id.len() <= 32 && id.starts_with("swarm-"), "{id}");
    let identity = format!("{id}-7-caller");
    assert!(identity
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.:@+".contains(c)));
}
