//! ID newtypes (from the wire crate) and the media path's peer key (from the core).

pub use amphi_core::peer::{peer_key, PeerKey};
pub use amphi_proto::ids::*;
