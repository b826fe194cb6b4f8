//! Call statistics, event matching, and the call flow against a stand-in signalling server
//! that speaks the call protocol but has no media plane (its `media_offer` is refused), so
//! everything up to the media and the hang-up can be checked without the real server.
//!
//! - `stats`      — counting, the timeline, the calls table and JSON.
//! - `signalling` — event matching, tokens, identities.
//! - `mock`       — the stand-in server.
//! - `flow`       — runs and single calls against it.

mod flow;
mod mock;
mod signalling;
mod stats;

use std::time::Duration;

use serde_json::Value;

use crate::scenario::DEV_SIGNING_KEY;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn claims(token: &str) -> Option<Value> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    amphi_core::jwt::Hs256::new(DEV_SIGNING_KEY.as_bytes(), 0)
        .verify(token, now)
        .ok()
}
