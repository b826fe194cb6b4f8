//! Amphi's signalling wire format (docs/protocol.md), shared by the server, the Rust client, the
//! swarm and the tests.
//!
//! - `ids`      — ID newtypes (`ChannelId`, `Identity`, `ParticipantId`, `SessionId`, roles).
//! - `error`    — `ErrorCode` and `ApiError`, what every error reply carries.
//! - `calls`    — call and transaction IDs and the call enums' wire text.
//! - `events`   — channel, call and media events, as written.
//! - `protocol` — requests and replies, as parsed and as written (events re-exported).
//!
//! Layer rule: serde and plain computation only. Nothing here does IO, reads a clock or knows
//! about actors; everything else in the workspace may import it, it imports nothing of theirs.

pub mod calls;
pub mod error;
pub mod events;
pub mod ids;
pub mod protocol;

pub use error::{ApiError, ErrorCode};
