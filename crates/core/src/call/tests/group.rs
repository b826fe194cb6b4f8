//! Group calls: invitations, joins, and when a group call ends.

use serde_json::json;

use super::*;

#[test]
fn a_ringing_group_call_goes_on_until_its_last_callee_declines() {
    let mut h = Harness::new(&["bob", "carol"], Media::Audio);
    assert_eq!(h.call.call_type(), CallType::Group);
    h.call
        .reject(&id("bob"), RejectReason::Busy, h.at(1))
        .unwrap();
    let out = h.pump();
    assert_eq!(
        out,
        vec![(
            names(&["alice", "carol", "bob"]),
            json!({"event": "participant_state", "user": "bob", "state": "left",
                   "reason": "busy", "reconnecting": false})
        )]
    );
    assert_eq!(h.call.phase(), Phase::Ringing);
    h.call.timeout(h.t0 + RING);
    let out = h.pump();
    assert_eq!(
        Harness::names_for(&out, "alice"),
        ["call_missed", "call_ended"]
    );
    assert_eq!(out[1].1["reason"], "timeout");
}

#[test]
fn in_a_connected_group_call_unanswered_callees_are_missed_and_the_call_goes_on() {
    let mut h = Harness::new(&["bob", "carol"], Media::Audio);
    h.accept("bob", 1);
    h.call.timeout(h.t0 + RING);
    let out = h.pump();
    assert_eq!(
        out[0],
        (
            names(&["carol", "alice"]),
            json!({"event": "call_missed", "user": "carol"})
        )
    );
    assert_eq!(out[1].1["event"], "participant_state");
    assert_eq!(h.call.phase(), Phase::Connected);
}

#[test]
fn a_group_call_ends_when_fewer_than_two_remain() {
    let mut h = Harness::group_of_three();
    h.call
        .hangup(&id("alice"), EndReason::Hangup, h.at(10))
        .unwrap();
    let out = h.pump();
    assert_eq!(Harness::names_for(&out, "bob"), ["participant_state"]);
    assert_eq!(
        h.call.phase(),
        Phase::Connected,
        "the caller is a member like any other"
    );
    h.call
        .hangup(&id("bob"), EndReason::Hangup, h.at(11))
        .unwrap();
    let (to, event) = h.ended();
    assert_eq!(to, names(&["bob", "carol"]));
    assert_eq!(event["reason"], "hangup");
    let carol = h.call.leg(&id("carol")).unwrap();
    assert_eq!(carol.left(), Some((EndReason::Hangup, h.at(11))));
}

#[test]
fn one_member_waiting_for_an_invitee_keeps_a_group_call_alive() {
    let mut h = Harness::one_to_one(Media::Audio);
    h.call
        .invite(&id("bob"), vec![id("carol")], h.at(5))
        .unwrap();
    h.pump();
    h.call
        .hangup(&id("alice"), EndReason::Hangup, h.at(6))
        .unwrap();
    h.pump();
    assert_eq!(h.call.phase(), Phase::Connected, "bob waits for carol");
    assert_eq!(h.call.next_deadline(), Some(h.at(5) + RING));
    h.call.timeout(h.at(5) + RING);
    let out = h.pump();
    assert_eq!(
        Harness::names_for(&out, "bob"),
        ["call_missed", "call_ended"]
    );
    assert_eq!(h.call.phase(), Phase::Ended(EndReason::Timeout));
}

#[test]
fn inviting_turns_a_one_to_one_call_into_a_group_call() {
    let mut h = Harness::one_to_one(Media::Audio);
    let invited = h
        .call
        .invite(
            &id("bob"),
            vec![id("carol"), id("alice"), id("carol")],
            h.at(5),
        )
        .unwrap();
    assert_eq!(
        invited,
        vec![id("carol")],
        "present members and repeats are skipped"
    );
    let out = h.pump();
    assert_eq!(
        out,
        vec![
            (
                names(&["alice", "bob"]),
                json!({"event": "call_type_changed", "call_type": "group"})
            ),
            (
                names(&["carol"]),
                json!({"event": "call_incoming", "caller": "alice", "invited_by": "bob",
                       "members": ["alice", "bob", "carol"], "call_type": "group",
                       "media": "audio", "extra": {"topic": "standup"}})
            ),
            (
                names(&["bob"]),
                json!({"event": "call_ringing", "callees": ["carol"]})
            ),
            (
                names(&["alice"]),
                json!({"event": "participant_state", "user": "carol", "state": "ringing",
                       "reconnecting": false})
            ),
        ]
    );
    assert_eq!(h.call.call_type(), CallType::Group);
    h.accept("carol", 6);
    let carol = Harness::names_for(&h.sent[h.sent.len() - 2..], "carol");
    assert_eq!(carol, ["participant_state", "call_connected"]);
    let connected = &h.sent[h.sent.len() - 1];
    assert_eq!(connected.0, names(&["carol"]));
    assert_eq!(
        connected.1["start_time"],
        T0_MS + 1_000,
        "the call's own start time"
    );
}

#[test]
fn invitations_need_a_connected_call_and_a_connected_member() {
    let mut h = Harness::new(&["bob", "carol"], Media::Audio);
    let err = h.call.invite(&id("alice"), vec![id("dave")], h.at(1));
    assert_eq!(err.unwrap_err().code(), ErrorCode::Conflict);
    h.accept("bob", 2);
    let err = h.call.invite(&id("carol"), vec![id("dave")], h.at(3));
    assert_eq!(err.unwrap_err().code(), ErrorCode::Forbidden);
    let err = h.call.invite(&id("mallory"), vec![id("dave")], h.at(3));
    assert_eq!(err.unwrap_err().code(), ErrorCode::NotFound);
    let many = (0..MAX_MEMBERS).map(|i| id(&format!("u{i}"))).collect();
    let err = h.call.invite(&id("bob"), many, h.at(3));
    assert_eq!(err.unwrap_err(), CallError::TooManyMembers);
    assert!(h
        .call
        .invite(&id("bob"), vec![], h.at(3))
        .unwrap()
        .is_empty());
}

#[test]
fn members_who_left_can_join_an_ongoing_group_call_again() {
    let mut h = Harness::new(&["bob", "carol", "dave"], Media::Audio);
    h.accept("bob", 1);
    h.call
        .reject(&id("carol"), RejectReason::Rejected, h.at(2))
        .unwrap();
    h.pump();
    h.call.join(&id("carol"), h.at(20)).unwrap();
    let out = h.pump();
    assert_eq!(
        Harness::names_for(&out, "carol"),
        ["participant_state", "call_connected"]
    );
    assert_eq!(out[1].1["start_time"], T0_MS + 1_000);
    // A ringing invitee may join instead of accepting.
    h.call.join(&id("dave"), h.at(21)).unwrap();
    assert_eq!(
        h.call.leg(&id("dave")).unwrap().state(),
        LegState::Connected
    );
    let err = h.call.join(&id("dave"), h.at(22)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    let err = h.call.join(&id("mallory"), h.at(22)).unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::NotFound,
        "only invited users may join"
    );
}

#[test]
fn a_one_to_one_call_cannot_be_joined() {
    let mut h = Harness::new(&["bob"], Media::Audio);
    let err = h.call.join(&id("bob"), h.at(1)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
}
