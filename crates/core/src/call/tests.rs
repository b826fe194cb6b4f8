//! `Call` under a manual clock: every transition, end reason and timer.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::error::ErrorCode;

mod grace;
mod group;
mod media;
mod wire;

const RING: Duration = Duration::from_secs(30);
const GRACE: Duration = Duration::from_secs(10);
const T0_MS: i64 = 1_700_000_000_000;

fn id(name: &str) -> Identity {
    Identity::parse(name).unwrap()
}

/// A call plus a flat log of what it sent: (recipients, event as wire JSON).
struct Harness {
    call: Call,
    t0: Instant,
    seq: u64,
    sent: Vec<(Vec<String>, Value)>,
}

impl Harness {
    fn new(callees: &[&str], media: Media) -> Self {
        let t0 = Instant::now();
        let call = Call::new(setup(callees, media), t0).unwrap();
        let mut h = Self {
            call,
            t0,
            seq: 0,
            sent: Vec::new(),
        };
        h.pump();
        h
    }

    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    /// Drains the call, checking `seq` grows by one per output, and returns what was sent.
    fn pump(&mut self) -> Vec<(Vec<String>, Value)> {
        let mut out = Vec::new();
        for o in self.call.drain() {
            assert_eq!(o.seq, self.seq + 1, "seq must not skip or repeat");
            self.seq = o.seq;
            let to = o.to.iter().map(|u| u.to_string()).collect();
            out.push((to, serde_json::to_value(&o.event).unwrap()));
        }
        self.sent.extend(out.clone());
        out
    }

    /// The events `user` received in the last pump, by name.
    fn names_for(out: &[(Vec<String>, Value)], user: &str) -> Vec<String> {
        out.iter()
            .filter(|(to, _)| to.iter().any(|u| u == user))
            .map(|(_, e)| e["event"].as_str().unwrap().to_string())
            .collect()
    }

    fn ended(&mut self) -> (Vec<String>, Value) {
        let out = self.pump();
        let ended: Vec<_> = out
            .into_iter()
            .filter(|(_, e)| e["event"] == "call_ended")
            .collect();
        assert_eq!(ended.len(), 1, "exactly one call_ended");
        ended.into_iter().next().unwrap()
    }

    fn accept(&mut self, user: &str, secs: u64) {
        let now = self.at(secs);
        self.call.accept(&id(user), None, now).unwrap();
        self.pump();
    }

    /// A connected group call of alice (caller), bob and carol.
    fn group_of_three() -> Self {
        let mut h = Self::new(&["bob", "carol"], Media::Audio);
        h.accept("bob", 1);
        h.accept("carol", 2);
        h
    }

    /// A connected 1:1 call between alice and bob.
    fn one_to_one(media: Media) -> Self {
        let mut h = Self::new(&["bob"], media);
        h.accept("bob", 1);
        h
    }
}

fn setup(callees: &[&str], media: Media) -> CallSetup {
    CallSetup {
        id: CallId::parse("c-00000000000000aa").unwrap(),
        caller: id("alice"),
        callees: callees.iter().map(|c| id(c)).collect(),
        media,
        extra: json!({"topic": "standup"}),
        ring_timeout: RING,
        reconnect_grace: GRACE,
        media_change_timeout: crate::call::MEDIA_CHANGE_TIMEOUT,
        created_unix_ms: T0_MS,
    }
}

fn names(users: &[&str]) -> Vec<String> {
    users.iter().map(|u| u.to_string()).collect()
}
#[test]
fn a_new_call_rings_the_callee_and_tells_the_caller() {
    let h = Harness::new(&["bob"], Media::Video);
    assert_eq!(
        h.sent,
        vec![
            (
                names(&["bob"]),
                json!({"event": "call_incoming", "caller": "alice", "invited_by": "alice",
                       "members": ["alice", "bob"], "call_type": "one_to_one",
                       "media": "video", "extra": {"topic": "standup"}})
            ),
            (
                names(&["alice"]),
                json!({"event": "call_ringing", "callees": ["bob"]})
            ),
        ]
    );
    assert_eq!(h.call.phase(), Phase::Ringing);
    assert_eq!(h.call.call_type(), CallType::OneToOne);
    assert_eq!(h.call.next_deadline(), Some(h.t0 + RING));
    assert_eq!(
        h.call.leg(&id("alice")).unwrap().state(),
        LegState::Connected
    );
    assert_eq!(h.call.leg(&id("bob")).unwrap().state(), LegState::Ringing);
}

#[test]
fn new_calls_are_checked() {
    let t0 = Instant::now();
    let err = |callees: &[&str]| Call::new(setup(callees, Media::Audio), t0).unwrap_err();
    assert_eq!(err(&[]).code(), ErrorCode::BadRequest);
    assert_eq!(err(&["bob", "alice"]).code(), ErrorCode::BadRequest);
    let many: Vec<String> = (0..MAX_MEMBERS).map(|i| format!("u{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(err(&many), CallError::TooManyMembers);
    // Duplicates collapse, so a repeated callee is still a 1:1 call.
    let call = Call::new(setup(&["bob", "bob"], Media::Audio), t0).unwrap();
    assert_eq!(call.call_type(), CallType::OneToOne);
    assert_eq!(call.legs().len(), 2);
}

#[test]
fn accepting_connects_a_one_to_one_call_with_its_start_time() {
    let mut h = Harness::new(&["bob"], Media::Audio);
    let now = h.t0 + Duration::from_millis(4_250);
    h.call.accept(&id("bob"), Some(Media::Audio), now).unwrap();
    let out = h.pump();
    assert_eq!(
        out,
        vec![
            (
                names(&["alice", "bob"]),
                json!({"event": "participant_state", "user": "bob", "state": "connected",
                       "reconnecting": false})
            ),
            (
                names(&["alice", "bob"]),
                json!({"event": "call_connected", "start_time": T0_MS + 4_250, "media": "audio"})
            ),
        ]
    );
    assert_eq!(h.call.phase(), Phase::Connected);
    assert_eq!(h.call.connected_at(), Some(now));
    assert_eq!(
        h.call.next_deadline(),
        None,
        "no timer runs in a settled call"
    );
    let again = h.call.accept(&id("bob"), None, now).unwrap_err();
    assert_eq!(again.code(), ErrorCode::Conflict);
}

#[test]
fn an_audio_call_cannot_be_accepted_as_video() {
    let mut h = Harness::new(&["bob"], Media::Audio);
    let err = h
        .call
        .accept(&id("bob"), Some(Media::Video), h.at(1))
        .unwrap_err();
    assert_eq!(err, CallError::MediaNotAllowed);
    assert_eq!(err.code(), ErrorCode::Forbidden);
    assert_eq!(h.call.leg(&id("bob")).unwrap().state(), LegState::Ringing);
    assert!(h.pump().is_empty());
}

#[test]
fn a_video_call_accepted_as_audio_becomes_an_audio_call() {
    let mut h = Harness::new(&["bob"], Media::Video);
    h.call
        .accept(&id("bob"), Some(Media::Audio), h.at(1))
        .unwrap();
    let out = h.pump();
    assert_eq!(out[1].1["media"], "audio");
    assert_eq!(h.call.media(), Media::Audio);
    assert!(h.call.legs().iter().all(|l| l.media() == Media::Audio));
}

#[test]
fn the_caller_hanging_up_before_an_answer_cancels_for_everyone() {
    let mut h = Harness::new(&["bob", "carol"], Media::Audio);
    h.call
        .hangup(&id("alice"), EndReason::Hangup, h.at(3))
        .unwrap();
    let (to, event) = h.ended();
    assert_eq!(to, names(&["alice", "bob", "carol"]));
    assert_eq!(event, json!({"event": "call_ended", "reason": "canceled"}));
    assert_eq!(h.call.phase(), Phase::Ended(EndReason::Canceled));
    assert_eq!(h.call.ended_at(), Some(h.at(3)));
    for leg in h.call.legs() {
        assert_eq!(leg.state(), LegState::Left);
        assert_eq!(leg.left(), Some((EndReason::Canceled, h.at(3))));
    }
    assert_eq!(h.call.next_deadline(), None);
}

#[test]
fn a_rejection_ends_a_one_to_one_call() {
    for (reason, end) in [
        (RejectReason::Rejected, EndReason::Rejected),
        (RejectReason::Busy, EndReason::Busy),
    ] {
        let mut h = Harness::new(&["bob"], Media::Audio);
        h.call.reject(&id("bob"), reason, h.at(2)).unwrap();
        let (to, event) = h.ended();
        assert_eq!(to, names(&["bob", "alice"]));
        assert_eq!(event["reason"], end.as_str());
        assert_eq!(h.call.phase(), Phase::Ended(end));
    }
}

#[test]
fn a_ringing_callee_hanging_up_rejects() {
    let mut h = Harness::new(&["bob"], Media::Audio);
    h.call
        .hangup(&id("bob"), EndReason::Hangup, h.at(2))
        .unwrap();
    assert_eq!(h.ended().1["reason"], "rejected");
}

#[test]
fn only_a_ringing_callee_can_reject() {
    let mut h = Harness::one_to_one(Media::Audio);
    let err = h
        .call
        .reject(&id("bob"), RejectReason::Rejected, h.at(2))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    let err = h
        .call
        .reject(&id("mallory"), RejectReason::Rejected, h.at(2))
        .unwrap_err();
    assert_eq!(err, CallError::NotInCall(id("mallory")));
    assert_eq!(err.code(), ErrorCode::NotFound);
}

#[test]
fn either_side_hanging_up_ends_a_connected_one_to_one_call_for_both() {
    for leaver in ["alice", "bob"] {
        let mut h = Harness::one_to_one(Media::Audio);
        h.call
            .hangup(&id(leaver), EndReason::Hangup, h.at(60))
            .unwrap();
        let (mut to, event) = h.ended();
        to.sort();
        assert_eq!(to, names(&["alice", "bob"]));
        assert_eq!(event["reason"], "hangup");
        let err = h.call.hangup(&id("alice"), EndReason::Hangup, h.at(61));
        assert_eq!(err.unwrap_err().code(), ErrorCode::Conflict);
    }
}

#[test]
fn derived_reasons_cannot_be_claimed_by_a_leaver() {
    let mut h = Harness::one_to_one(Media::Audio);
    for reason in [
        EndReason::Canceled,
        EndReason::Rejected,
        EndReason::Busy,
        EndReason::Timeout,
    ] {
        let err = h.call.hangup(&id("bob"), reason, h.at(5)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
    }
    h.call
        .hangup(&id("bob"), EndReason::Replaced, h.at(5))
        .unwrap();
    assert_eq!(h.ended().1["reason"], "replaced");
}

#[test]
fn an_unanswered_callee_is_missed_and_the_call_times_out() {
    let mut h = Harness::new(&["bob"], Media::Audio);
    h.call.timeout(h.t0 + RING - Duration::from_millis(1));
    assert!(h.pump().is_empty(), "nothing fires before the deadline");
    h.call.timeout(h.t0 + RING);
    let out = h.pump();
    assert_eq!(
        out,
        vec![
            (
                names(&["bob", "alice"]),
                json!({"event": "call_missed", "user": "bob"})
            ),
            (
                names(&["bob", "alice"]),
                json!({"event": "call_ended", "reason": "timeout"})
            ),
        ]
    );
    assert_eq!(h.call.phase(), Phase::Ended(EndReason::Timeout));
}
#[test]
fn terminating_ends_the_call_for_everyone_present() {
    let mut h = Harness::group_of_three();
    h.call
        .hangup(&id("carol"), EndReason::Hangup, h.at(5))
        .unwrap();
    h.pump();
    h.call.terminate(EndReason::ServerRestart, h.at(6));
    let (to, event) = h.ended();
    assert_eq!(to, names(&["alice", "bob"]));
    assert_eq!(event["reason"], "server_restart");
    h.call.terminate(EndReason::Replaced, h.at(7));
    assert!(h.pump().is_empty(), "an ended call stays ended");
    assert_eq!(h.call.phase(), Phase::Ended(EndReason::ServerRestart));
    let carol = h.call.leg(&id("carol")).unwrap();
    assert_eq!(
        carol.left(),
        Some((EndReason::Hangup, h.at(5))),
        "earlier leavers keep theirs"
    );
}

#[test]
fn an_ended_call_refuses_every_input() {
    let mut h = Harness::one_to_one(Media::Audio);
    h.call.terminate(EndReason::Replaced, h.at(2));
    let now = h.at(3);
    let alice = id("alice");
    let errors = [
        h.call.accept(&alice, None, now).unwrap_err(),
        h.call.reject(&alice, RejectReason::Busy, now).unwrap_err(),
        h.call.join(&alice, now).unwrap_err(),
        h.call.invite(&alice, vec![id("x")], now).unwrap_err(),
        h.call.disconnect(&alice, now).unwrap_err(),
        h.call
            .request_media_change(&alice, Media::Video, now)
            .unwrap_err(),
    ];
    for e in errors {
        assert_eq!(e, CallError::WrongState("the call has ended"));
    }
    h.call.timeout(h.at(1000));
    assert_eq!(h.call.next_deadline(), None);
}
