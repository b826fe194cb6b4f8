//! Signatures, per-call ordering, backoff and bounds, under a manual clock.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::call::{CallSetup, Media};

const SECRET: &[u8] = b"whsec_test";
const TOLERANCE: Duration = Duration::from_secs(300);
/// Any seed: the backoff tests assert the jitter's bounds, not the waits one seed draws.
const SEED: u64 = 7;

fn call(n: u8) -> Subject {
    Subject::CallId(CallId::parse(&format!("c-{n:016x}")).unwrap())
}

fn event(n: u64) -> WebhookEvent {
    WebhookEvent::new("test", 1_700_000_000_000 + n as i64, json!({ "n": n }))
}

fn body(d: &Delivery) -> Value {
    serde_json::from_str(&d.body).unwrap()
}

#[test]
fn signatures_match_a_reference_hmac_and_round_trip() {
    let body = r#"{"type":"ping"}"#;
    let sig = sign(SECRET, 1_700_000_000, body);
    // Computed independently: HMAC-SHA256(key, "1700000000.{body}") in hex.
    assert_eq!(
        sig,
        "bc08c591847b765241711bcbe7067e3869a219e424d3fdd9d00b3b6f915baf97"
    );
    assert_eq!(
        verify(SECRET, 1_700_000_000, body, &sig, 1_700_000_010, TOLERANCE),
        Ok(())
    );
}

#[test]
fn tampered_or_stale_webhooks_are_refused() {
    let (ts, body) = (1_700_000_000, r#"{"type":"ping"}"#);
    let sig = sign(SECRET, ts, body);
    let check = |secret: &[u8], ts: i64, body: &str, sig: &str, now: i64| {
        verify(secret, ts, body, sig, now, TOLERANCE)
    };
    assert_eq!(
        check(SECRET, ts, r#"{"type":"pong"}"#, &sig, ts),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        check(SECRET, ts + 1, body, &sig, ts),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        check(b"other", ts, body, &sig, ts),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        check(SECRET, ts, body, &sig[..10], ts),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        check(SECRET, ts, body, "zz", ts),
        Err(VerifyError::Malformed)
    );
    // Within the tolerance either way is fine; one second past it, in either direction, is not.
    assert_eq!(check(SECRET, ts, body, &sig, ts + 300), Ok(()));
    assert_eq!(check(SECRET, ts, body, &sig, ts - 300), Ok(()));
    assert_eq!(
        check(SECRET, ts, body, &sig, ts + 301),
        Err(VerifyError::Stale)
    );
    assert_eq!(
        check(SECRET, ts, body, &sig, ts - 301),
        Err(VerifyError::Stale)
    );
}

#[test]
fn bodies_carry_type_call_seq_time_and_data() {
    let mut q = WebhookQueue::new(WebhookConfig::default(), SEED);
    let now = Instant::now();
    assert_eq!(q.push(&call(1), event(7), now), Ok(1));
    assert_eq!(q.next_deadline(), Some(now));
    let d = q.next_due(now).unwrap();
    assert_eq!((d.seq, d.attempt, d.subject.clone()), (1, 1, call(1)));
    assert_eq!(
        body(&d),
        json!({"type": "test", "call_id": "c-0000000000000001", "seq": 1,
               "timestamp_ms": 1_700_000_000_007_i64, "data": {"n": 7}})
    );
}

#[test]
fn a_call_waits_for_its_previous_event_while_other_calls_flow() {
    let mut q = WebhookQueue::new(WebhookConfig::default(), SEED);
    let now = Instant::now();
    let (a, b) = (call(1), call(2));
    q.push(&a, event(1), now).unwrap();
    q.push(&a, event(2), now).unwrap();
    q.push(&b, event(3), now).unwrap();

    let a1 = q.next_due(now).unwrap();
    let b1 = q.next_due(now).unwrap();
    assert_eq!((a1.subject.clone(), a1.seq), (a.clone(), 1));
    assert_eq!((b1.subject.clone(), b1.seq), (b.clone(), 1));
    assert_eq!(
        q.next_due(now),
        None,
        "a's second event waits for its first"
    );

    assert!(q.delivered(b1.id));
    let Failure::Retry { at } = q.failed(a1.id, now) else {
        panic!("a's first event is retried");
    };
    // The first backoff is 500 ms, jittered down to no less than half.
    assert!(at >= now + Duration::from_millis(250) && at <= now + Duration::from_millis(500));
    q.push(&b, event(4), now).unwrap();
    let b2 = q.next_due(now).unwrap();
    assert_eq!(
        (b2.subject.clone(), b2.seq),
        (b, 2),
        "b is not held up by a's retry"
    );
    assert_eq!(q.next_due(now), None);
    assert_eq!(q.next_deadline(), Some(at));

    let later = now + Duration::from_millis(500);
    let again = q.next_due(later).unwrap();
    assert_eq!((again.id, again.seq, again.attempt), (a1.id, 1, 2));
    assert_eq!(again.body, a1.body, "a retry resends the same body");
    assert!(q.delivered(again.id));
    let a2 = q.next_due(later).unwrap();
    assert_eq!((a2.subject, a2.seq), (a, 2));
}

#[test]
fn retries_back_off_exponentially_up_to_the_cap() {
    let config = WebhookConfig {
        max_attempts: 10,
        ..WebhookConfig::default()
    };
    let mut q = WebhookQueue::new(config, SEED);
    let mut now = Instant::now();
    q.push(&call(1), event(1), now).unwrap();
    let mut waits = Vec::new();
    for attempt in 1..10 {
        let d = q.next_due(now).unwrap();
        assert_eq!(d.attempt, attempt);
        let Failure::Retry { at } = q.failed(d.id, now) else {
            panic!("attempt {attempt} should be retried");
        };
        assert_eq!(
            q.next_due(at - Duration::from_millis(1)),
            None,
            "not before its time"
        );
        waits.push((at - now).as_millis());
        now = at;
    }
    let nominal = [
        500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000,
    ];
    for (wait, nominal) in waits.iter().zip(nominal) {
        assert!(
            (nominal / 2..=nominal).contains(wait),
            "{waits:?}: each wait is half to all of {nominal:?}"
        );
    }
    let last = q.next_due(now).unwrap();
    assert_eq!(last.attempt, 10);
    assert_eq!(q.failed(last.id, now), Failure::GaveUp);
}

/// The first retry of each of 50 calls whose deliveries all failed at `now`.
fn first_retries(seed: u64, now: Instant) -> Vec<Instant> {
    let mut q = WebhookQueue::new(WebhookConfig::default(), seed);
    for n in 0..50 {
        q.push(&call(n), event(u64::from(n)), now).unwrap();
    }
    let mut retries = Vec::new();
    while let Some(d) = q.next_due(now) {
        let Failure::Retry { at } = q.failed(d.id, now) else {
            panic!("retried");
        };
        retries.push(at);
    }
    retries
}

#[test]
fn retries_of_events_that_failed_together_are_spread_out() {
    let now = Instant::now();
    let retries = first_retries(SEED, now);
    assert_eq!(retries.len(), 50);
    let (first, last) = (retries.iter().min().unwrap(), retries.iter().max().unwrap());
    assert!(
        *first >= now + Duration::from_millis(250) && *last <= now + Duration::from_millis(500)
    );
    assert!(
        *last - *first >= Duration::from_millis(100),
        "50 draws over 250 ms: {retries:?}"
    );
    assert_eq!(first_retries(SEED, now), retries, "one seed, one schedule");
    assert_ne!(first_retries(SEED + 1, now), retries);
}

#[test]
fn after_giving_up_the_call_moves_on_to_its_next_event() {
    let config = WebhookConfig {
        max_attempts: 3,
        ..WebhookConfig::default()
    };
    let mut q = WebhookQueue::new(config, SEED);
    let mut now = Instant::now();
    q.push(&call(1), event(1), now).unwrap();
    q.push(&call(1), event(2), now).unwrap();
    for _ in 0..2 {
        let d = q.next_due(now).unwrap();
        assert_eq!(d.seq, 1);
        let Failure::Retry { at } = q.failed(d.id, now) else {
            panic!("retried");
        };
        now = at;
    }
    let d = q.next_due(now).unwrap();
    assert_eq!((d.seq, d.attempt), (1, 3));
    assert_eq!(q.failed(d.id, now), Failure::GaveUp);
    assert_eq!(q.given_up(), 1);
    assert_eq!(q.len(), 1);
    let next = q.next_due(now).unwrap();
    assert_eq!((next.seq, next.attempt), (2, 1));
    assert_eq!(body(&next)["data"]["n"], 2);
}

#[test]
fn a_full_queue_drops_the_newest_event_and_counts_it() {
    let config = WebhookConfig {
        capacity: 2,
        ..WebhookConfig::default()
    };
    let mut q = WebhookQueue::new(config, SEED);
    let now = Instant::now();
    q.push(&call(1), event(1), now).unwrap();
    q.push(&call(2), event(2), now).unwrap();
    assert_eq!(q.push(&call(1), event(3), now), Err(Dropped { seq: 2 }));
    assert_eq!((q.len(), q.dropped()), (2, 1));
    let d = q.next_due(now).unwrap();
    assert_eq!(d.seq, 1);
    assert!(q.delivered(d.id));
    // Room again; the dropped event's seq stays a gap the receiver can see.
    assert_eq!(q.push(&call(1), event(4), now), Ok(3));
    assert_eq!(q.dropped(), 1);
}

#[test]
fn in_flight_deliveries_are_bounded() {
    let config = WebhookConfig {
        max_in_flight: 1,
        ..WebhookConfig::default()
    };
    let mut q = WebhookQueue::new(config, SEED);
    let now = Instant::now();
    q.push(&call(1), event(1), now).unwrap();
    q.push(&call(2), event(2), now).unwrap();
    let first = q.next_due(now).unwrap();
    assert_eq!(q.next_due(now), None);
    assert_eq!(q.next_deadline(), None, "nothing to wait for but a report");
    assert!(q.delivered(first.id));
    assert_eq!(q.next_due(now).unwrap().subject, call(2));
}

#[test]
fn unknown_deliveries_are_reported_as_such() {
    let mut q = WebhookQueue::new(WebhookConfig::default(), SEED);
    let now = Instant::now();
    assert!(!q.delivered(DeliveryId(42)));
    assert_eq!(q.failed(DeliveryId(42), now), Failure::Unknown);
    q.push(&call(1), event(1), now).unwrap();
    let d = q.next_due(now).unwrap();
    assert!(q.delivered(d.id));
    assert!(!q.delivered(d.id), "a delivery is reported once");
    assert!(q.is_empty());
    assert_eq!(q.next_deadline(), None);
}

#[test]
fn a_finished_call_keeps_its_sequence_until_drained() {
    let mut q = WebhookQueue::new(WebhookConfig::default(), SEED);
    let now = Instant::now();
    q.push(&call(1), event(1), now).unwrap();
    let d = q.next_due(now).unwrap();
    q.finish(&call(1));
    assert!(
        q.subjects.contains_key(&call(1)),
        "in flight: still tracked"
    );
    assert!(q.delivered(d.id));
    assert!(q.subjects.is_empty(), "drained and finished: forgotten");
    q.push(&call(2), event(2), now).unwrap();
    let d = q.next_due(now).unwrap();
    assert!(q.delivered(d.id));
    assert_eq!(
        q.push(&call(2), event(3), now),
        Ok(2),
        "an unfinished call keeps counting"
    );
}

#[test]
fn an_offline_invitee_event_carries_the_push_config() {
    let now = Instant::now();
    let alice = Identity::parse("alice").unwrap();
    let bob = Identity::parse("bob").unwrap();
    let setup = CallSetup {
        id: CallId::parse("c-0000000000000009").unwrap(),
        caller: alice,
        callees: vec![bob.clone()],
        media: Media::Video,
        extra: json!({"room": "r1"}),
        ring_timeout: Duration::from_secs(30),
        reconnect_grace: Duration::from_secs(10),
        media_change_timeout: crate::call::MEDIA_CHANGE_TIMEOUT,
        created_unix_ms: 1_700_000_000_000,
    };
    let c = Call::new(setup, now).unwrap();
    let push = json!({"title": "Alice is calling", "sound": "ring.caf"});
    let e = WebhookEvent::invite_offline(&c, &bob, push.clone(), 1_700_000_000_123);
    let mut q = WebhookQueue::new(WebhookConfig::default(), SEED);
    q.push(&Subject::CallId(c.id().clone()), e, now).unwrap();
    let d = q.next_due(now).unwrap();
    assert_eq!(
        body(&d),
        json!({"type": "invite_offline", "call_id": "c-0000000000000009", "seq": 1,
               "timestamp_ms": 1_700_000_000_123_i64,
               "data": {"caller": "alice", "callee": "bob", "invited_by": "alice",
                        "call_type": "one_to_one", "media": "video",
                        "extra": {"room": "r1"}, "push": push}})
    );
}

#[test]
fn a_channel_event_names_its_channel_and_counts_its_own_seq() {
    let now = Instant::now();
    let mut q = WebhookQueue::new(WebhookConfig::default(), SEED);
    let channel = Subject::Channel(crate::ids::ChannelId::parse("room1").unwrap());
    q.push(&call(1), event(1), now).unwrap();
    assert_eq!(q.push(&channel, event(2), now), Ok(1));
    let _ = q.next_due(now).unwrap();
    let d = q.next_due(now).unwrap();
    let body: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["channel"], "room1");
    assert!(body.get("call_id").is_none());
    assert_eq!(body["seq"], 1);
}
