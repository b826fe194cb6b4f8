//! Active speaker and audio levels, from the core.

pub use amphi_core::levels::*;
