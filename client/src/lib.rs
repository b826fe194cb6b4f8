//! Amphi's Rust client: the integration tests and the swarm use it, and so can bots.
//!
//! - `signal` — the signalling WebSocket: requests with replies, events.
//! - `peer`   — one WebRTC audio peer (str0m) per joined channel: publishes Opus from a
//!   `Source`, receives and decodes every slot.
//! - `herd`   — many listening peers on one thread (load generation).
//! - `stats`  — what a listening peer measured (`Meter`, `PeerStats`, `SlotStats`).
//! - `audio`  — sources (tone, WAV), level and frequency analysis.
//! - `video`  — a camera from a VP8 file (a call's video).
//! - `transport` — a peer's UDP socket, or media over ICE-TCP (a UDP-blocking network).

pub mod audio;
mod crypto;
pub mod herd;
pub mod peer;
pub mod signal;
pub mod stats;
mod transport;
pub mod video;

pub use audio::{Source, Tone, Wav};
pub use herd::{Herd, HerdPeer};
pub use peer::{AudioPeer, Meter, PeerOptions, PeerStats, SlotStats};
pub use signal::{AudioMode, ClientError, Signal};
pub use video::VideoFile;
