//! Wall-clock time for the wire and the database (Unix milliseconds). Logic never calls
//! this: it takes `now` as an argument; the shells read the clock and pass it down.

use std::time::{SystemTime, UNIX_EPOCH};

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
