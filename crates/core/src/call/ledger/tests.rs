//! The ledger under a manual clock: which rows open, ring, connect, close and change shape,
//! and in what order.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::call::{CallSetup, RejectReason, MEDIA_CHANGE_TIMEOUT};

const T0_MS: i64 = 1_700_000_000_000;

fn id(name: &str) -> Identity {
    Identity::parse(name).unwrap()
}

fn call(callees: &[&str], t0: Instant) -> Call {
    let setup = CallSetup {
        id: CallId::parse("c-00000000000000aa").unwrap(),
        caller: id("alice"),
        callees: callees.iter().map(|c| id(c)).collect(),
        media: Media::Audio,
        extra: json!({}),
        ring_timeout: Duration::from_secs(30),
        reconnect_grace: Duration::from_secs(10),
        media_change_timeout: MEDIA_CHANGE_TIMEOUT,
        created_unix_ms: T0_MS,
    };
    Call::new(setup, t0).unwrap()
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

#[test]
fn a_call_opens_a_row_per_member_rings_connects_and_closes_in_order() {
    let t0 = Instant::now();
    let mut c = call(&["bob"], t0);
    let (mut ledger, rows) = Ledger::open(&c, t0, &HashSet::new());
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].user.as_str(), rows[0].direction),
        ("alice", Direction::Outgoing)
    );
    assert_eq!(
        (rows[1].user.as_str(), rows[1].direction),
        ("bob", Direction::Incoming)
    );
    assert_eq!(rows[1].peers, vec![id("alice")]);
    assert_eq!(rows[0].start_ms, T0_MS);
    // Nothing new until something happens.
    assert_eq!(ledger.step(&c, t0), Step::default());

    // Bob's phone rings a second in: his row and the caller's record it after the events.
    assert_eq!(
        ledger.rang(&c, &id("bob"), t0, secs(t0, 1)),
        Some(Duration::from_secs(1))
    );
    assert_eq!(ledger.rang(&c, &id("bob"), t0, secs(t0, 2)), None, "once");
    let rings: Vec<_> = ledger.after_events().collect();
    assert_eq!(
        rings,
        vec![
            RowWrite::Ringing {
                user: id("bob"),
                at_ms: T0_MS + 1_000
            },
            RowWrite::Ringing {
                user: id("alice"),
                at_ms: T0_MS + 1_000
            },
        ]
    );

    // He answers at 4 s: a connect each, and the events wait for them.
    c.accept(&id("bob"), None, secs(t0, 4)).unwrap();
    let step = ledger.step(&c, secs(t0, 4));
    assert!(step.connects);
    assert_eq!(step.answered, vec![Duration::from_secs(3)]);
    let connected: Vec<_> = step
        .writes
        .iter()
        .map(|w| match w {
            RowWrite::Connect { user, at_ms } => (user.to_string(), *at_ms),
            other => panic!("only connects, got {other:?}"),
        })
        .collect();
    assert_eq!(
        connected,
        vec![
            ("alice".to_string(), T0_MS + 4_000),
            ("bob".to_string(), T0_MS + 4_000)
        ]
    );
    assert!(!ledger.step(&c, secs(t0, 5)).connects, "connected once");

    // First audio, once per member, measured from the connection.
    let (after, w) = ledger.first_audio(&c, &id("bob"), secs(t0, 5)).unwrap();
    assert_eq!(after, Duration::from_secs(1));
    assert_eq!(
        w,
        RowWrite::FirstAudio {
            user: id("bob"),
            at_ms: T0_MS + 5_000
        }
    );
    assert!(ledger.first_audio(&c, &id("bob"), secs(t0, 6)).is_none());

    // Alice hangs up at 9 s: both rows close after the events, none is "left ongoing".
    c.hangup(&id("alice"), EndReason::Hangup, secs(t0, 9))
        .unwrap();
    let step = ledger.step(&c, secs(t0, 9));
    assert!(step.writes.is_empty() && step.left_ongoing.is_empty());
    let closes: Vec<_> = ledger.after_events().collect();
    assert_eq!(closes.len(), 2);
    for w in closes {
        assert!(
            matches!(w, RowWrite::Close { at_ms, reason: EndReason::Hangup, .. } if at_ms == T0_MS + 9_000),
            "{w:?}"
        );
    }
    assert_eq!(ledger.after_events().count(), 0, "drained");
}

#[test]
fn a_busy_callee_closes_at_the_first_step_and_invitees_open_rows_as_they_come() {
    let t0 = Instant::now();
    let mut c = call(&["bob", "carol"], t0);
    let busy: HashSet<Identity> = [id("carol")].into();
    let (mut ledger, rows) = Ledger::open(&c, t0, &busy);
    assert_eq!(rows.len(), 3);
    c.reject(&id("carol"), RejectReason::Busy, t0).unwrap();
    let step = ledger.step(&c, t0);
    assert!(step.writes.is_empty());
    assert_eq!(
        step.left_ongoing,
        vec![id("carol")],
        "the call goes on without her"
    );
    let closes: Vec<_> = ledger.after_events().collect();
    assert!(matches!(&closes[..], [RowWrite::Close { user, .. }] if user.as_str() == "carol"));

    // Bob answers, invites Dave: Dave's row opens first, then the shape follows the group.
    c.accept(&id("bob"), None, secs(t0, 2)).unwrap();
    let _ = ledger.step(&c, secs(t0, 2));
    c.invite(&id("bob"), vec![id("dave")], secs(t0, 3)).unwrap();
    let step = ledger.step(&c, secs(t0, 3));
    match &step.writes[0] {
        RowWrite::Open(rows) => {
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].user.as_str(), "dave");
            assert_eq!(rows[0].start_ms, T0_MS + 3_000);
        }
        other => panic!("a row opens first, got {other:?}"),
    }
    let shape_changed = step
        .writes
        .iter()
        .any(|w| matches!(w, RowWrite::Shape { .. }));
    assert_eq!(shape_changed, c.call_type() != rows[0].call_type);
    // Dave's ring lands in his row and in the row of Bob, who invited him.
    ledger.rang(&c, &id("dave"), secs(t0, 3), secs(t0, 4));
    let users: Vec<_> = ledger
        .after_events()
        .map(|w| match w {
            RowWrite::Ringing { user, .. } => user.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(users, vec!["dave", "bob"]);
}
