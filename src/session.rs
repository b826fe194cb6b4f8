//! One connection's limits (rate, heartbeat), from the core.

pub use amphi_core::session::*;
