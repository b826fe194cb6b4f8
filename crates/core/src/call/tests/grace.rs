//! Dropped clients and the reconnect grace.

use std::time::Duration;

use serde_json::json;

use super::*;

#[test]
fn a_dropped_member_keeps_its_place_for_the_grace() {
    let mut h = Harness::one_to_one(Media::Audio);
    h.call.disconnect(&id("bob"), h.at(10)).unwrap();
    let out = h.pump();
    assert_eq!(
        out,
        vec![(
            names(&["alice"]),
            json!({"event": "participant_state", "user": "bob", "state": "connected",
                   "reconnecting": true})
        )]
    );
    assert_eq!(h.call.next_deadline(), Some(h.at(10) + GRACE));
    h.call.disconnect(&id("bob"), h.at(12)).unwrap();
    assert_eq!(
        h.call.next_deadline(),
        Some(h.at(10) + GRACE),
        "the first drop counts"
    );
    h.call.reconnect(&id("bob")).unwrap();
    assert_eq!(h.pump().last().unwrap().1["reconnecting"], false);
    assert_eq!(h.call.next_deadline(), None);

    h.call.disconnect(&id("bob"), h.at(30)).unwrap();
    h.pump();
    h.call.timeout(h.at(30) + GRACE - Duration::from_millis(1));
    assert_eq!(h.call.phase(), Phase::Connected);
    h.call.timeout(h.at(30) + GRACE);
    let (to, event) = h.ended();
    assert_eq!(to, names(&["bob", "alice"]));
    assert_eq!(event["reason"], "disconnected");
    let err = h.call.reconnect(&id("bob")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
}

#[test]
fn a_caller_lost_before_the_answer_ends_the_call_as_disconnected() {
    let mut h = Harness::new(&["bob"], Media::Audio);
    h.call.disconnect(&id("alice"), h.at(1)).unwrap();
    h.call.disconnect(&id("bob"), h.at(1)).unwrap();
    assert_eq!(
        h.call.next_deadline(),
        Some(h.at(1) + GRACE),
        "bob keeps ringing"
    );
    h.call.timeout(h.at(1) + GRACE);
    let (to, event) = h.ended();
    assert_eq!(to, names(&["alice", "bob"]));
    assert_eq!(event["reason"], "disconnected");
}

#[test]
fn a_dropped_group_member_leaves_after_the_grace() {
    let mut h = Harness::group_of_three();
    h.call.disconnect(&id("carol"), h.at(5)).unwrap();
    h.call.timeout(h.at(5) + GRACE);
    let out = h.pump();
    assert_eq!(
        out.last().unwrap().1,
        json!({"event": "participant_state", "user": "carol", "state": "left",
               "reason": "disconnected", "reconnecting": false})
    );
    assert_eq!(h.call.phase(), Phase::Connected);
}
