//! The swarm: Amphi's load tool. Real clients (WebSocket signalling, str0m WebRTC peers, real
//! Opus) measure what listeners feel: join time, time to first audio, end-to-end latency on
//! one clock (abs-capture-time), jitter and loss; and what the server spends.
//!
//! - `scenario` — what to run (TOML file and flags).
//! - `run`      — hosts, listeners at a rate, a sampler each second; bounded by `duration`.
//! - `calls`    — pairs placing calls back to back: ring, answer and setup to first audio.
//! - `report`   — percentiles, table, JSON, SVG plot.
//! - `server`   — spawning the server, /proc and /metrics readings.
//! - `tokens`   — access tokens signed with the scenario's key.
//! - `probe`    — the bare SRTP-protect + UDP-send cost, for comparison.

pub mod calls;
pub mod probe;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server;
mod tokens;

pub use report::Report;
pub use run::run;
pub use scenario::{Kind, Scenario};
