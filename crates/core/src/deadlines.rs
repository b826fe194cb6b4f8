//! When each of many state machines (WebRTC peers) wants its next timeout, without reordering
//! anything per packet.
//!
//! A sans-IO peer reports a deadline after every input and write, usually the same one or a
//! later one.
//! A queue entry is pushed only when a peer's deadline moves *earlier* than the entry it
//! already has; a later deadline is noticed when the earlier entry comes due (the peer is
//! then simply queued again). Entries that a newer, earlier one replaced are skipped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// One peer's side of the queue, kept with the peer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Deadline {
    /// What the `Rtc` last asked for.
    pub wanted: Option<Instant>,
    /// The live queue entry's time.
    queued: Option<Instant>,
}

pub struct Deadlines<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Copy + Ord> Deadlines<K> {
    /// Records what a peer's `Rtc` wants; queues it only when that is earlier than its entry.
    pub fn set(&mut self, key: K, d: &mut Deadline, at: Instant) {
        d.wanted = Some(at);
        if d.queued.is_none_or(|q| at < q) {
            d.queued = Some(at);
            self.heap.push(Reverse((at, key)));
        }
    }

    /// A peer arriving with a deadline from elsewhere (moved from another worker).
    pub fn adopt(&mut self, key: K, d: &mut Deadline) {
        d.queued = None;
        if let Some(at) = d.wanted {
            self.set(key, d, at);
        }
    }

    /// The earliest entry: when the worker must wake at the latest.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The next entry due at `now`, taken off the queue; `fire` says what it means.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        match self.heap.peek() {
            Some(&Reverse((at, key))) if at <= now => {
                self.heap.pop();
                Some((at, key))
            }
            _ => None,
        }
    }

    /// Whether a popped entry (`at`) means the peer's timeout is due now. An entry a newer,
    /// earlier one replaced means nothing; a peer whose deadline moved later is queued again.
    pub fn fire(&mut self, key: K, d: &mut Deadline, at: Instant, now: Instant) -> bool {
        if d.queued != Some(at) {
            return false;
        }
        d.queued = None;
        match d.wanted {
            Some(wanted) if wanted <= now => true,
            Some(wanted) => {
                self.set(key, d, wanted);
                false
            }
            None => false,
        }
    }

    /// Entries queued, replaced ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    fn due(t: &mut Deadlines<u64>, peers: &mut HashMap<u64, Deadline>, now: Instant) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some((at, key)) = t.pop_due(now) {
            if let Some(d) = peers.get_mut(&key) {
                if t.fire(key, d, at, now) {
                    out.push(key);
                }
            }
        }
        out
    }

    #[test]
    fn a_later_deadline_costs_nothing_until_the_earlier_entry_is_due() {
        let base = Instant::now();
        let mut t = Deadlines::<u64>::default();
        let mut peers = HashMap::from([(1, Deadline::default())]);
        t.set(1, peers.get_mut(&1).unwrap(), ms(base, 100));
        // A thousand writes, each pushing the deadline a little later: no new entries.
        for i in 1..=1000 {
            t.set(1, peers.get_mut(&1).unwrap(), ms(base, 100 + i));
        }
        assert_eq!(t.len(), 1);
        // At 100 ms the entry is due but the peer wants 1100 ms: queued again, not fired.
        assert!(due(&mut t, &mut peers, ms(base, 100)).is_empty());
        assert_eq!(t.next(), Some(ms(base, 1100)));
        assert_eq!(due(&mut t, &mut peers, ms(base, 1100)), vec![1]);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn an_earlier_deadline_replaces_the_entry_and_fires_once() {
        let base = Instant::now();
        let mut t = Deadlines::<u64>::default();
        let mut peers = HashMap::from([(1, Deadline::default()), (2, Deadline::default())]);
        t.set(1, peers.get_mut(&1).unwrap(), ms(base, 500));
        t.set(2, peers.get_mut(&2).unwrap(), ms(base, 300));
        t.set(1, peers.get_mut(&1).unwrap(), ms(base, 200));
        assert_eq!(t.next(), Some(ms(base, 200)));
        assert_eq!(due(&mut t, &mut peers, ms(base, 250)), vec![1]);
        assert_eq!(
            due(&mut t, &mut peers, ms(base, 600)),
            vec![2],
            "the replaced entry is void"
        );
        // A peer that is gone is skipped.
        t.set(3, &mut Deadline::default(), ms(base, 700));
        assert!(due(&mut t, &mut peers, ms(base, 800)).is_empty());
    }

    #[test]
    fn a_moved_peer_keeps_its_deadline() {
        let base = Instant::now();
        let (mut from, mut to) = (Deadlines::<u64>::default(), Deadlines::<u64>::default());
        let mut d = Deadline::default();
        from.set(1, &mut d, ms(base, 40));
        to.adopt(1, &mut d);
        let mut peers = HashMap::from([(1, d)]);
        assert_eq!(due(&mut to, &mut peers, ms(base, 40)), vec![1]);
    }
}
