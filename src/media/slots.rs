//! Receive slots of one listener: which on-stage participant each server-sent m-line carries,
//! and the RTP timestamp offset that keeps a slot's timeline continuous when its publisher
//! changes. Plain data, no IO; the worker applies it.

use str0m::media::Mid;

use super::rtp_out::SlotWire;

/// Stable numeric key of a participant (hash of its ID), used on the media path instead of
/// strings.
pub use crate::ids::PeerKey;

/// Opus at 48 kHz, 20 ms frames: the timestamp step between consecutive packets.
pub const OPUS_FRAME_TICKS: u64 = 960;

/// RFC 3550 §5.1: a random first sequence number, in the first roll-over period (str0m
/// expects a stream to start there).
fn initial_seq() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        & 0x7fff
}

#[derive(Debug, Clone)]
pub struct Slot {
    pub mid: Mid,
    /// The publisher currently bound to this slot.
    pub publisher: Option<PeerKey>,
    /// Added to the publisher's RTP timestamps; set on the first packet after a rebind.
    offset: Option<u64>,
    /// Last timestamp written on this slot, to continue from after a rebind.
    last_out: Option<u64>,
    /// The next RTP sequence number written on this slot (extended; continuous across
    /// rebinds, like the timeline).
    seq: u64,
    /// The SSRC str0m gave this slot's stream (and its MID), learnt when str0m first writes
    /// on it.
    pub wire: Option<SlotWire>,
}

impl Slot {
    fn new(mid: Mid) -> Self {
        Self {
            mid,
            publisher: None,
            offset: None,
            last_out: None,
            seq: initial_seq(),
            wire: None,
        }
    }

    /// The sequence number for the next packet written on this slot.
    pub fn next_seq(&mut self) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        seq
    }

    /// Maps a publisher timestamp to this slot's timeline.
    pub fn map_time(&mut self, publisher_ts: u64) -> u64 {
        let offset = *self.offset.get_or_insert_with(|| match self.last_out {
            // Continue one frame after the last packet the listener saw on this slot.
            Some(last) => (last + OPUS_FRAME_TICKS).wrapping_sub(publisher_ts),
            None => 0,
        });
        let out = publisher_ts.wrapping_add(offset);
        self.last_out = Some(out);
        out
    }
}

/// What changed when the route table was applied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SlotChanges {
    /// Slots whose publisher changed: (mid, new publisher or none).
    pub rebound: Vec<(Mid, Option<PeerKey>)>,
    /// Publishers left without a slot: the listener needs this many more.
    pub missing: usize,
}

#[derive(Debug, Default)]
pub struct Slots {
    slots: Vec<Slot>,
}

impl Slots {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn add(&mut self, mid: Mid) {
        if !self.slots.iter().any(|s| s.mid == mid) {
            self.slots.push(Slot::new(mid));
        }
    }

    /// The slot carrying `publisher`. A linear scan: a listener has at most a few slots.
    pub fn for_publisher(&mut self, publisher: PeerKey) -> Option<&mut Slot> {
        self.slots
            .iter_mut()
            .find(|s| s.publisher == Some(publisher))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter()
    }

    /// Binds `publishers` (in the channel's order) to slots: publishers that keep a slot keep
    /// it, departed ones free theirs, new ones take free slots in order.
    pub fn assign(&mut self, publishers: &[PeerKey]) -> SlotChanges {
        let mut changes = SlotChanges::default();
        for slot in &mut self.slots {
            if let Some(p) = slot.publisher {
                if !publishers.contains(&p) {
                    slot.publisher = None;
                    slot.offset = None;
                    changes.rebound.push((slot.mid, None));
                }
            }
        }
        for &p in publishers {
            if self.slots.iter().any(|s| s.publisher == Some(p)) {
                continue;
            }
            match self.slots.iter_mut().find(|s| s.publisher.is_none()) {
                Some(slot) => {
                    slot.publisher = Some(p);
                    slot.offset = None;
                    // A slot freed and taken in the same pass reports only its new binding.
                    changes.rebound.retain(|(m, _)| *m != slot.mid);
                    changes.rebound.push((slot.mid, Some(p)));
                }
                None => changes.missing += 1,
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mid(s: &str) -> Mid {
        Mid::from(s)
    }

    #[test]
    fn assignment_is_stable_and_reuses_freed_slots() {
        let mut s = Slots::default();
        s.add(mid("1"));
        s.add(mid("2"));
        let c = s.assign(&[10, 20, 30]);
        assert_eq!(c.rebound, vec![(mid("1"), Some(10)), (mid("2"), Some(20))]);
        assert_eq!(c.missing, 1);
        // 10 leaves: 30 takes its slot, 20 keeps its own.
        let c = s.assign(&[20, 30]);
        assert_eq!(c.rebound, vec![(mid("1"), Some(30))]);
        assert_eq!(c.missing, 0);
        assert_eq!(s.for_publisher(20).unwrap().mid, mid("2"));
        let c = s.assign(&[]);
        assert_eq!(c.rebound.len(), 2);
        assert!(s.for_publisher(20).is_none());
    }

    #[test]
    fn timeline_continues_across_publishers() {
        let mut s = Slots::default();
        s.add(mid("1"));
        s.assign(&[1]);
        let slot = s.for_publisher(1).unwrap();
        assert_eq!(slot.map_time(5_000), 5_000);
        assert_eq!(slot.map_time(5_960), 5_960);
        s.assign(&[2]);
        let slot = s.for_publisher(2).unwrap();
        // The new publisher's clock is elsewhere; the listener sees one frame later.
        assert_eq!(slot.map_time(900_000), 6_920);
        assert_eq!(slot.map_time(900_960), 7_880);
    }
}
