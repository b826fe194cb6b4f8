//! Channels: the logic (`Channel`, from the core) and its actor shell.

pub use amphi_core::channel::*;

pub mod actor;
