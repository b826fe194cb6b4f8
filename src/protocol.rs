//! The signalling wire format, from the wire crate.

pub use amphi_proto::protocol::*;
