//! Amphi's Rust client: the integration tests and the swarm use it, and so can bots.
//!
//! - `signal` — the signalling WebSocket: requests with replies, events.
//! - `peer`   — one WebRTC audio peer (str0m) per joined channel: publishes Opus from a
//!   `Source`, receives and decodes every slot.
//! - `audio`  — sources (tone, WAV), level and frequency analysis.

pub mod audio;
pub mod peer;
pub mod signal;

pub use audio::{Source, Tone, Wav};
pub use peer::{AudioPeer, PeerOptions, SlotStats};
pub use signal::{ClientError, Signal};
