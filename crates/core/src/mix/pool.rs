//! Shared packets without an allocation per tick. The mixer's encodes are sent as `Arc<[u8]>`
//! (every listener's SRTP reads the same bytes); an `Arc<[u8]>` cannot change length, so the
//! pool keeps a few buffers per length and hands out one that nobody holds any more. Opus
//! packets of a voice mix take a few dozen lengths: once each has been seen, ticks allocate
//! nothing.

use std::sync::Arc;

use super::MAX_PACKET;

/// Buffers kept per length, at most: a tick's mix and mix-minus packets may share a length,
/// and each is held while other workers' queues, the pacer or a recording still have it.
const PER_LENGTH: usize = 32;
/// Buffers made ready per length at the start.
const READY_PER_LENGTH: usize = 4;

#[derive(Debug)]
pub struct PacketPool {
    /// `by_len[n]`: buffers of `n` bytes.
    by_len: Vec<Vec<Arc<[u8]>>>,
}

impl Default for PacketPool {
    fn default() -> Self {
        Self {
            by_len: (0..=MAX_PACKET).map(|_| Vec::new()).collect(),
        }
    }
}

impl PacketPool {
    /// A pool ready for an encoder at `bitrate_bps`: buffers of every length up to four
    /// times its nominal 20 ms packet (where variable-rate voice stays), so that even the
    /// first ticks allocate nothing. Longer packets get buffers as they come.
    pub fn for_bitrate(bitrate_bps: i32) -> Self {
        let nominal = (bitrate_bps.max(6_000) as usize) / 8 / 50;
        let mut pool = Self::default();
        for len in 1..=(4 * nominal).min(MAX_PACKET) {
            let zeros = [0u8; MAX_PACKET];
            pool.by_len[len] = (0..READY_PER_LENGTH)
                .map(|_| Arc::from(&zeros[..len]))
                .collect();
        }
        pool
    }

    /// `bytes` in a shared buffer: a free one of that length when there is one, else a new
    /// one (kept for later when its length has room).
    pub fn share(&mut self, bytes: &[u8]) -> Arc<[u8]> {
        let Some(kept) = self.by_len.get_mut(bytes.len()) else {
            return Arc::from(bytes);
        };
        for buf in kept.iter_mut() {
            if let Some(free) = Arc::get_mut(buf) {
                free.copy_from_slice(bytes);
                return buf.clone();
            }
        }
        let buf: Arc<[u8]> = Arc::from(bytes);
        if kept.len() < PER_LENGTH {
            kept.push(buf.clone());
        }
        buf
    }

    /// Buffers kept, for tests and metrics.
    pub fn kept(&self) -> usize {
        self.by_len.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_once_nobody_holds_it() {
        let mut pool = PacketPool::default();
        let a = pool.share(&[1, 2, 3]);
        let held = pool.share(&[4, 5, 6]);
        assert_ne!(
            Arc::as_ptr(&a),
            Arc::as_ptr(&held),
            "a held buffer is not reused"
        );
        let a_ptr = Arc::as_ptr(&a);
        drop(a);
        let again = pool.share(&[7, 8, 9]);
        assert_eq!(Arc::as_ptr(&again), a_ptr, "the free one is reused");
        assert_eq!(&*again, &[7, 8, 9]);
        assert_eq!(&*held, &[4, 5, 6], "what others hold never changes");
        assert_eq!(pool.kept(), 2);
    }

    #[test]
    fn lengths_are_kept_apart_and_bounded() {
        let mut pool = PacketPool::default();
        let held: Vec<_> = (0..PER_LENGTH as u8 + 3)
            .map(|i| pool.share(&[i; 5]))
            .collect();
        assert_eq!(pool.kept(), PER_LENGTH, "at most a few per length");
        let other = pool.share(&[9; 6]);
        assert_eq!(other.len(), 6);
        assert_eq!(pool.kept(), PER_LENGTH + 1);
        drop(held);
        let too_big = pool.share(&vec![0; MAX_PACKET + 1]);
        assert_eq!(too_big.len(), MAX_PACKET + 1, "served, not kept");
        assert_eq!(pool.kept(), PER_LENGTH + 1);
    }
}
