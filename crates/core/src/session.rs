//! Per-connection logic: the inbound rate limit and the heartbeat, with injected time.

use std::time::{Duration, Instant};

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
