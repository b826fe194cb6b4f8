//! Per-connection logic: the inbound rate limit, the heartbeat, and what a resumed session
//! replays, with injected time.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytestring::ByteString;

use crate::protocol::event_position;

/// What to do with an inbound frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Refuse this frame with `rate_limited`; the connection stays.
    Limited,
    /// The client kept flooding after being told: close the connection.
    Disconnect,
}

/// Token bucket over inbound frames. Strikes count refused frames and reset once the client
/// has been quiet long enough for the bucket to refill completely.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    strikes: u32,
    max_strikes: u32,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32, max_strikes: u32, now: Instant) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
            strikes: 0,
            max_strikes,
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= self.burst {
            self.strikes = 0;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admit::Yes;
        }
        self.strikes += 1;
        if self.strikes > self.max_strikes {
            Admit::Disconnect
        } else {
            Admit::Limited
        }
    }
}

/// Liveness: any inbound frame (pongs included) proves the peer is there.
#[derive(Debug)]
pub struct Heartbeat {
    last_seen: Instant,
    timeout: Duration,
}

impl Heartbeat {
    pub fn new(timeout: Duration, now: Instant) -> Self {
        Self {
            last_seen: now,
            timeout,
        }
    }

    pub fn seen(&mut self, now: Instant) {
        self.last_seen = self.last_seen.max(now);
    }

    pub fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) > self.timeout
    }
}

/// What a session sent lately, for a client that resumes it after its connection dropped:
/// the last channel events (frames shared with every receiver, so a reference each), and
/// while no connection is attached, the other frames too (media negotiation above all).
#[derive(Debug)]
pub struct Replay {
    capacity: usize,
    /// Channel events, oldest first: their `seq` is in the frame.
    events: VecDeque<ByteString>,
    /// Per channel, the highest `seq` that fell out of `events`: a client that saw less than
    /// that missed something nobody can give it back.
    evicted: HashMap<String, u64>,
    /// Frames other than channel events sent while detached, in order.
    others: VecDeque<ByteString>,
    others_lost: bool,
}

/// What a resumed client gets.
#[derive(Debug, Default, PartialEq)]
pub struct Missed {
    /// The frames it has not seen, in the order they were sent.
    pub frames: Vec<ByteString>,
    /// Channels whose missed events are no longer all held: the client must rejoin them.
    pub resync: Vec<String>,
    /// Frames other than channel events were lost (too many while detached).
    pub others_lost: bool,
}

impl Replay {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            events: VecDeque::new(),
            evicted: HashMap::new(),
            others: VecDeque::new(),
            others_lost: false,
        }
    }

    /// A frame sent to the client; `attached` says whether a connection carried it.
    pub fn record(&mut self, frame: &ByteString, attached: bool) {
        if event_position(frame).is_some() {
            if self.events.len() == self.capacity {
                if let Some(old) = self.events.pop_front() {
                    if let Some((channel, seq)) = event_position(&old) {
                        let top = self.evicted.entry(channel.to_string()).or_default();
                        *top = (*top).max(seq);
                    }
                }
            }
            self.events.push_back(frame.clone());
        } else if !attached {
            if self.others.len() == self.capacity {
                self.others.pop_front();
                self.others_lost = true;
            }
            self.others.push_back(frame.clone());
        }
    }

    /// A connection is attached again: frames go out on it from now on.
    pub fn attached(&mut self) {
        self.others.clear();
        self.others_lost = false;
    }

    /// What a client that saw `last_seq` (per channel) has missed in `channels`. A channel
    /// absent from `last_seq` gets every event held for it.
    pub fn missed(&self, channels: &[&str], last_seq: &HashMap<String, u64>) -> Missed {
        let mut out = Missed::default();
        let mut resync = Vec::new();
        for &c in channels {
            let seen = last_seq.get(c).copied().unwrap_or(0);
            if self.evicted.get(c).is_some_and(|&top| top > seen) {
                resync.push(c.to_string());
            }
        }
        for frame in &self.events {
            let Some((c, seq)) = event_position(frame) else {
                continue;
            };
            let seen = last_seq.get(c).copied().unwrap_or(0);
            if seq > seen && channels.contains(&c) && !resync.iter().any(|r| r == c) {
                out.frames.push(frame.clone());
            }
        }
        out.frames.extend(self.others.iter().cloned());
        out.resync = resync;
        out.others_lost = self.others_lost;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_limits_then_disconnects() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 5, 3, t0);
        for _ in 0..5 {
            assert_eq!(rl.admit(t0), Admit::Yes);
        }
        assert_eq!(rl.admit(t0), Admit::Limited);
        assert_eq!(rl.admit(t0), Admit::Limited);
        assert_eq!(rl.admit(t0), Admit::Limited);
        assert_eq!(rl.admit(t0), Admit::Disconnect);
    }

    #[test]
    fn bucket_refills_and_forgives() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 5, 3, t0);
        for _ in 0..5 {
            rl.admit(t0);
        }
        assert_eq!(rl.admit(t0), Admit::Limited);
        // 100 ms at 10/s buys exactly one frame.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(rl.admit(t1), Admit::Yes);
        assert_eq!(rl.admit(t1), Admit::Limited);
        // A full refill resets the strikes.
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(rl.admit(t2), Admit::Yes);
        for _ in 0..4 {
            rl.admit(t2);
        }
        for _ in 0..3 {
            assert_eq!(rl.admit(t2), Admit::Limited);
        }
        assert_eq!(rl.admit(t2), Admit::Disconnect);
    }

    #[test]
    fn heartbeat_expires_only_after_timeout() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(Duration::from_secs(15), t0);
        assert!(!hb.expired(t0 + Duration::from_secs(15)));
        assert!(hb.expired(t0 + Duration::from_secs(16)));
        hb.seen(t0 + Duration::from_secs(10));
        assert!(!hb.expired(t0 + Duration::from_secs(16)));
        assert!(hb.expired(t0 + Duration::from_millis(25_001)));
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;
    use crate::ids::ChannelId;
    use crate::protocol::{channel_event, ChannelEvent};

    fn event(channel: &str, seq: u64) -> ByteString {
        let c = ChannelId::parse(channel).unwrap();
        channel_event(
            &c,
            seq,
            &ChannelEvent::AudienceCount {
                count: seq as usize,
            },
        )
    }

    fn seqs(frames: &[ByteString]) -> Vec<(String, u64)> {
        frames
            .iter()
            .filter_map(|f| event_position(f).map(|(c, s)| (c.to_string(), s)))
            .collect()
    }

    #[test]
    fn a_resumed_client_gets_what_it_missed_once_and_in_order() {
        let mut r = Replay::new(8);
        for seq in 1..=3 {
            r.record(&event("a", seq), true);
        }
        r.record(&event("b", 7), true);
        // The connection drops: more events, and a media offer.
        r.record(&event("a", 4), false);
        let offer = ByteString::from_static(r#"{"type":"event","event":"media_offer"}"#);
        r.record(&offer, false);
        r.record(&event("b", 8), false);
        let last = HashMap::from([("a".to_string(), 2), ("b".to_string(), 7)]);
        let m = r.missed(&["a", "b"], &last);
        assert_eq!(
            seqs(&m.frames),
            vec![("a".into(), 3), ("a".into(), 4), ("b".into(), 8)]
        );
        assert_eq!(m.frames.last(), Some(&offer), "the rest after the events");
        assert!(m.resync.is_empty());
        // A channel the session left is not replayed.
        let m = r.missed(&["b"], &last);
        assert_eq!(seqs(&m.frames), vec![("b".into(), 8)]);
    }

    #[test]
    fn a_gap_older_than_the_buffer_asks_for_a_resync() {
        let mut r = Replay::new(3);
        for seq in 1..=6 {
            r.record(&event("a", seq), true);
        }
        r.record(&event("b", 1), true);
        let last = HashMap::from([("a".to_string(), 2), ("b".to_string(), 0)]);
        let m = r.missed(&["a", "b"], &last);
        assert_eq!(m.resync, vec!["a".to_string()]);
        assert_eq!(seqs(&m.frames), vec![("b".into(), 1)]);
        // Seen up to what fell out: nothing lost.
        let last = HashMap::from([("a".to_string(), 4)]);
        assert!(r.missed(&["a"], &last).resync.is_empty());
    }
}
