//! Webhook signing and the ordered retry queue, from the core.

pub use amphi_core::webhook::*;
