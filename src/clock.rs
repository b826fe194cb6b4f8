//! The shells' one clock. Logic never reads it: it takes `now` as an argument; the actors
//! read it here and pass it down.
//!
//! Monotonic time is tokio's: in production that is the system's monotonic clock, and in a
//! test that pauses tokio's time (`tokio::time::pause`, `advance`), timers and `now()` move
//! together, so ring timeouts, graces and retries are tested without waiting for them.
//! Wall-clock time (Unix milliseconds) is for the wire and the database only.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Now, on the clock the actors' timers run on.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The same, signed, as SQLite and the call logs store it.
pub fn unix_ms() -> i64 {
    i64::try_from(now_unix_ms()).unwrap_or(i64::MAX)
}
