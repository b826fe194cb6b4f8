//! A participant's key on the media path.

use crate::ids::ParticipantId;

pub type PeerKey = u64;

/// Stable numeric key of a participant for the media path. Deterministic (SipHash with fixed
/// keys) so the channel and the workers derive the same key from the same ID.
pub fn peer_key(p: &ParticipantId) -> PeerKey {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    std::hash::Hash::hash(p.as_str(), &mut h);
    std::hash::Hasher::finish(&h)
}
