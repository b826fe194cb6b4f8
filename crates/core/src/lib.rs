//! Amphi's sans-IO core: the logic of channels, calls and sessions as plain structs that take
//! `now` as an argument and return typed outputs. The server's actors feed them and carry out
//! what they return.
//!
//! - `channel` — `Channel`: membership, roles, events with `seq`, moderation, media routes.
//! - `call`    — `Call`: one call's state machine (ringing, connected, groups, media changes,
//!   glare), and its call-log ledger.
//! - `directory` — placing a call: busy callees, a caller already in a call, glare.
//! - `session` — one connection's limits: request rate and heartbeat.
//! - `levels`  — active speaker and audio levels from RFC 6464 values.
//! - `roles`   — the role table and the token's role rule.
//! - `webhook` — signed webhooks: signing and the ordered retry queue.
//! - `jwt`     — HS256 access tokens: signing and every check of a token, `now` passed in.
//! - `peer`    — a participant's key on the media path.
//! - `red`     — RFC 2198 redundant audio: where the primary block starts.
//! - `sdp`     — an offer's shape (audio m-lines by direction) before negotiation.
//! - `stun`    — a datagram's first look: a binding request's ufrag and nomination.
//!
//! Layer rule: this crate imports the wire crate and plain-data crates only: no actix, tokio,
//! str0m, dashmap, metrics, rusqlite or HTTP client, and it never reads a clock. Its
//! Cargo.toml shows it.

pub use amphi_proto::{error, ids, protocol};

pub mod call;
pub mod channel;
pub mod deadlines;
pub mod directory;
pub mod fuzzing;
pub mod jwt;
pub mod levels;
pub mod mix;
pub mod peer;
pub mod red;
pub mod roles;
pub mod sdp;
pub mod session;
pub mod stun;
pub mod webhook;
