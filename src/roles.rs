//! The role table, from the core.

pub use amphi_core::roles::*;
