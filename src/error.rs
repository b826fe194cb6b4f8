//! Wire error codes (from the wire crate) and the conversions of server errors into them.

pub use amphi_proto::error::*;
