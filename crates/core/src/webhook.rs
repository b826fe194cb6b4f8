//! Signed webhooks to the app's backend, logic only: signing, verification, and a bounded
//! queue that keeps each call's (or channel's) events in order and retries with jittered
//! exponential backoff under injected time and a seeded random source. An HTTP driver pulls
//! [`Delivery`]s from [`WebhookQueue::next_due`], signs each attempt with [`sign`], and
//! reports back with `delivered` or `failed`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::call::{Call, CallId};
use crate::ids::{ChannelId, Identity};

#[cfg(test)]
mod tests;

/// Header carrying the hex HMAC-SHA256 of `"{timestamp}.{body}"`.
pub const SIGNATURE_HEADER: &str = "Amphi-Signature";
/// Header carrying the unix time in seconds that was signed.
pub const TIMESTAMP_HEADER: &str = "Amphi-Timestamp";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp_s: i64, body: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac
}

/// Hex HMAC-SHA256 over `"{timestamp_s}.{body}"`. Signing the timestamp with the body lets a
/// receiver refuse a captured request replayed later.
pub fn sign(secret: &[u8], timestamp_s: i64, body: &str) -> String {
    hex::encode(mac(secret, timestamp_s, body).finalize().into_bytes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the timestamp is outside the tolerance")]
    Stale,
    #[error("the signature is not hex-encoded HMAC-SHA256")]
    Malformed,
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks a webhook as its receiver would. Timestamps too far from `now_s` either way are
/// refused, so a replay works only within `tolerance`; the comparison is constant-time.
pub fn verify(
    secret: &[u8],
    timestamp_s: i64,
    body: &str,
    signature: &str,
    now_s: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let skew = now_s.abs_diff(timestamp_s);
    if skew > tolerance.as_secs() {
        return Err(VerifyError::Stale);
    }
    let expected = hex::decode(signature).map_err(|_| VerifyError::Malformed)?;
    mac(secret, timestamp_s, body)
        .verify_slice(&expected)
        .map_err(|_| VerifyError::Mismatch)
}

/// An event before it is queued: the queue adds its subject (`call_id` or `channel`) and `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    pub kind: &'static str,
    pub timestamp_ms: i64,
    pub data: Value,
}

impl WebhookEvent {
    pub fn new(kind: &'static str, timestamp_ms: i64, data: Value) -> Self {
        Self {
            kind,
            timestamp_ms,
            data,
        }
    }

    /// `callee` is offline: the app's backend wakes it with a push notification, configured
    /// by the `push` the call request carried (opaque to the server).
    pub fn invite_offline(call: &Call, callee: &Identity, push: Value, timestamp_ms: i64) -> Self {
        let invited_by = call
            .leg(callee)
            .and_then(|l| l.invited_by())
            .unwrap_or(call.caller());
        Self::new(
            "invite_offline",
            timestamp_ms,
            json!({
                "caller": call.caller(),
                "callee": callee,
                "invited_by": invited_by,
                "call_type": call.call_type(),
                "media": call.media(),
                "extra": call.extra(),
                "push": push,
            }),
        )
    }
}

/// What a webhook event is about; its events are delivered in order, each with its own `seq`.
/// In the body: `"call_id": …` or `"channel": …`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    CallId(CallId),
    Channel(ChannelId),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::CallId(id) => write!(f, "call {id}"),
            Subject::Channel(id) => write!(f, "channel {id}"),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(flatten)]
    subject: &'a Subject,
    seq: u64,
    timestamp_ms: i64,
    data: &'a Value,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Events held at once, waiting or in flight, across all calls.
    pub capacity: usize,
    /// Attempts per event, the first included, before it is given up.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Deliveries handed out and not yet reported, across all calls.
    pub max_in_flight: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            // A backend outage of a minute at a few hundred call events per second.
            capacity: 10_000,
            // Nominal waits 0.5 + 1 + 2 + 4 + 8 + 16 + 30 s = 61.5 s, each jittered down to no
            // less than half: an outage of half a minute to a minute is ridden out.
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_in_flight: 32,
        }
    }
}

impl WebhookConfig {
    /// The nominal wait after the `failures`-th failed attempt: doubling from the initial
    /// backoff, capped. The queue waits between half of it and all of it.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// Names one queued event across all its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(u64);

/// One attempt to deliver an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub subject: Subject,
    pub seq: u64,
    pub body: Arc<str>,
    /// 1 for the first attempt.
    pub attempt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The event goes out again at `at`.
    Retry { at: Instant },
    /// Out of attempts; the subject's next event is released.
    GaveUp,
    /// No delivery with that ID is in flight.
    Unknown,
}

/// The queue refused an event: it was full. The event had been given `seq`, so the
/// receiver sees the gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the webhook queue is full; event {seq} was dropped")]
pub struct Dropped {
    pub seq: u64,
}

#[derive(Debug)]
struct Queued {
    id: DeliveryId,
    seq: u64,
    body: Arc<str>,
    failures: u32,
    due: Instant,
}

#[derive(Debug, Default)]
struct SubjectQueue {
    next_seq: u64,
    events: VecDeque<Queued>,
    in_flight: bool,
    /// The call will push nothing more: forget it once drained.
    finished: bool,
}

/// Per subject (a call, a channel), only the head event is ever eligible, so its events
/// arrive in order; subjects do not wait for each other. Gaps in a subject's `seq` mean events
/// were dropped or given up.
#[derive(Debug)]
pub struct WebhookQueue {
    config: WebhookConfig,
    subjects: HashMap<Subject, SubjectQueue>,
    /// The head of every call that has one waiting (not in flight), by due time then age.
    ready: BTreeSet<(Instant, DeliveryId, Subject)>,
    in_flight: HashMap<DeliveryId, Subject>,
    len: usize,
    next_id: u64,
    dropped: u64,
    given_up: u64,
    /// Draws the retry jitter; seeded by the caller, so tests replay the same waits.
    jitter: SmallRng,
}

impl WebhookQueue {
    /// `jitter_seed` seeds the retry jitter: a random one in production, so that servers
    /// restarted together do not retry in step.
    pub fn new(config: WebhookConfig, jitter_seed: u64) -> Self {
        Self {
            config,
            subjects: HashMap::new(),
            ready: BTreeSet::new(),
            in_flight: HashMap::new(),
            len: 0,
            next_id: 0,
            dropped: 0,
            given_up: 0,
            jitter: SmallRng::seed_from_u64(jitter_seed),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Events refused because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Events abandoned after `max_attempts`.
    pub fn given_up(&self) -> u64 {
        self.given_up
    }

    /// Queues `event` for `subject`, due at `now`; returns its `seq`. When the queue is full
    /// the new event is the one dropped: what is queued already is older and further along.
    pub fn push(
        &mut self,
        subject: &Subject,
        event: WebhookEvent,
        now: Instant,
    ) -> Result<u64, Dropped> {
        let queue = self.subjects.entry(subject.clone()).or_default();
        queue.next_seq += 1;
        let seq = queue.next_seq;
        if self.len >= self.config.capacity {
            self.dropped += 1;
            self.forget_if_done(subject);
            return Err(Dropped { seq });
        }
        let body = serde_json::to_string(&Body {
            kind: event.kind,
            subject,
            seq,
            timestamp_ms: event.timestamp_ms,
            data: &event.data,
        })
        .expect("a JSON value always serializes");
        self.next_id += 1;
        let queued = Queued {
            id: DeliveryId(self.next_id),
            seq,
            body: body.into(),
            failures: 0,
            due: now,
        };
        let head = queue.events.is_empty() && !queue.in_flight;
        if head {
            self.ready.insert((now, queued.id, subject.clone()));
        }
        queue.events.push_back(queued);
        self.len += 1;
        Ok(seq)
    }

    /// The call will push no more events; its state goes once its queue drains. Without this
    /// a pushed-again call would restart at `seq` 1, so call it only when the call has ended.
    pub fn finish(&mut self, subject: &Subject) {
        if let Some(queue) = self.subjects.get_mut(subject) {
            queue.finished = true;
        }
        self.forget_if_done(subject);
    }

    /// The next delivery due at `now`, oldest first, or `None` when nothing is due or
    /// `max_in_flight` deliveries await their outcome.
    pub fn next_due(&mut self, now: Instant) -> Option<Delivery> {
        if self.in_flight.len() >= self.config.max_in_flight {
            return None;
        }
        let first = self.ready.first()?;
        if first.0 > now {
            return None;
        }
        let (_, id, subject) = self.ready.pop_first()?;
        let queue = self.subjects.get_mut(&subject)?;
        let head = queue.events.front()?;
        queue.in_flight = true;
        self.in_flight.insert(id, subject.clone());
        Some(Delivery {
            id,
            subject,
            seq: head.seq,
            body: head.body.clone(),
            attempt: head.failures + 1,
        })
    }

    /// The receiver acknowledged delivery `id`. Returns false for an ID not in flight.
    pub fn delivered(&mut self, id: DeliveryId) -> bool {
        let Some(subject) = self.in_flight.remove(&id) else {
            return false;
        };
        self.complete(&subject);
        true
    }

    /// Delivery `id` failed at `now`: retried after a backoff, or given up.
    pub fn failed(&mut self, id: DeliveryId, now: Instant) -> Failure {
        let Some(subject) = self.in_flight.remove(&id) else {
            return Failure::Unknown;
        };
        let Some(queue) = self.subjects.get_mut(&subject) else {
            return Failure::Unknown;
        };
        let Some(head) = queue.events.front_mut() else {
            return Failure::Unknown;
        };
        head.failures += 1;
        if head.failures >= self.config.max_attempts {
            self.given_up += 1;
            self.complete(&subject);
            return Failure::GaveUp;
        }
        let at = now + equal_jitter(&mut self.jitter, self.config.backoff(head.failures));
        head.due = at;
        queue.in_flight = false;
        self.ready.insert((at, head.id, subject));
        Failure::Retry { at }
    }

    /// When [`WebhookQueue::next_due`] will have something. `None` while nothing waits, or
    /// while `max_in_flight` deliveries are out: then the next report (`delivered`/`failed`)
    /// is the moment to ask again, and a deadline in the past would only spin the driver.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.in_flight.len() >= self.config.max_in_flight {
            return None;
        }
        self.ready.first().map(|(at, _, _)| *at)
    }

    /// The head of `subject` is done with: release the next event.
    fn complete(&mut self, subject: &Subject) {
        let Some(queue) = self.subjects.get_mut(subject) else {
            return;
        };
        queue.in_flight = false;
        if queue.events.pop_front().is_some() {
            self.len -= 1;
        }
        if let Some(next) = queue.events.front() {
            self.ready.insert((next.due, next.id, subject.clone()));
        }
        self.forget_if_done(subject);
    }

    fn forget_if_done(&mut self, subject: &Subject) {
        let done = self
            .subjects
            .get(subject)
            .is_some_and(|q| q.finished && q.events.is_empty() && !q.in_flight);
        if done {
            self.subjects.remove(subject);
        }
    }
}

/// Half of `nominal` plus a random share of the other half ("equal jitter"). A backend
/// outage fails every subject's head at about the same moment; without jitter they would all
/// come back in one burst at each doubling. The fixed half keeps the backoff's floor.
fn equal_jitter(rng: &mut SmallRng, nominal: Duration) -> Duration {
    let half = nominal / 2;
    half + rng.random_range(Duration::ZERO..=nominal - half)
}
