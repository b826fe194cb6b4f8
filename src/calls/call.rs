//! One call's state machine, from the core.

pub use amphi_core::call::*;
