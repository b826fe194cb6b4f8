//! One speaker's adaptive jitter buffer: packets in by sequence number, one frame out per
//! tick. It reorders, reports losses (for concealment, or FEC when the next packet is here),
//! drops what comes too late, and holds a delay between one and ten frames sized from the
//! measured arrival jitter. Fixed storage: nothing allocates after construction.

use std::time::{Duration, SystemTime};

use super::{FRAME_TICKS, MAX_PACKET, SAMPLE_RATE};

/// Frames the buffer can hold: the largest target plus room for reordering.
const CAPACITY: usize = 16;
/// Bounds of the target delay, in frames.
pub const MIN_TARGET: usize = 1;
pub const MAX_TARGET: usize = 10;
/// Missing frames in a row, with nothing buffered, after which the speaker is idle (stopped
/// talking, DTX, or gone) rather than losing packets: no more concealment.
const IDLE_AFTER: u32 = 5;
/// Delay above target (in frames) that is shed by dropping a frame, once it has lasted
/// `EXCESS_TICKS` (a burst is played out, a standing excess is not kept): one frame of slack
/// for the jitter the target did not foresee, no more, since every frame kept is 20 ms of
/// latency for every listener.
const EXCESS: usize = 1;
const EXCESS_TICKS: u32 = 25;
/// Ticks without a late packet after which a frame added for lateness is taken back (5 s).
const CALM_TICKS: u32 = 250;
/// Frames of delay lateness may add: beyond that, concealing a rare late frame is better for
/// live audio than holding everyone's back.
const MAX_FOR_LATENESS: usize = 2;

struct Slot {
    seq: Option<u64>,
    len: usize,
    capture: Option<SystemTime>,
    data: [u8; MAX_PACKET],
}

/// What the buffer gives for one tick.
#[derive(Debug, PartialEq, Eq)]
pub enum Play<'a> {
    /// The frame's packet.
    Packet {
        data: &'a [u8],
        capture: Option<SystemTime>,
    },
    /// The frame is missing but the next one is here (its FEC can rebuild this one).
    Fec(&'a [u8]),
    /// The frame is missing: conceal it.
    Lost,
    /// Filling up to the target delay, or idle: nothing to decode (silence).
    Silent,
}

/// Counters since creation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    pub played: u64,
    pub concealed: u64,
    pub fec: u64,
    /// Arrived after their frame was played (or skipped).
    pub late: u64,
    /// Dropped to shed delay, or because the buffer overflowed.
    pub dropped: u64,
}

pub struct JitterBuffer {
    ring: Vec<Slot>,
    /// Extended sequence number of the next frame to play, once playing.
    next: Option<u64>,
    playing: bool,
    /// Frames missing in a row with nothing buffered.
    starved: u32,
    /// Ticks in a row with more delay than target + `EXCESS`.
    excess: u32,
    target: usize,
    bounds: (usize, usize),
    /// RFC 3550 §6.4.1 inter-arrival jitter, seconds.
    jitter: f64,
    /// The target the jitter alone asks for.
    for_jitter: usize,
    /// Frames added because packets came too late to play (the tick's phase against the
    /// arrivals can be worse than the jitter suggests): as late as the latest was, at most
    /// `MAX_FOR_LATENESS`, taken back one by one in calm spells.
    for_lateness: usize,
    calm: u32,
    last_transit: Option<f64>,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl JitterBuffer {
    pub fn new() -> Self {
        Self::with_bounds(MIN_TARGET, MAX_TARGET)
    }

    /// A buffer whose target delay stays within `min..=max` frames (clamped to 1..=10).
    pub fn with_bounds(min: usize, max: usize) -> Self {
        let min = min.clamp(MIN_TARGET, MAX_TARGET);
        let max = max.clamp(min, MAX_TARGET);
        Self {
            ring: (0..CAPACITY)
                .map(|_| Slot {
                    seq: None,
                    len: 0,
                    capture: None,
                    data: [0; MAX_PACKET],
                })
                .collect(),
            next: None,
            playing: false,
            starved: 0,
            excess: 0,
            target: (MIN_TARGET + 1).clamp(min, max),
            bounds: (min, max),
            jitter: 0.0,
            for_jitter: MIN_TARGET + 1,
            for_lateness: 0,
            calm: 0,
            last_transit: None,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The delay the buffer aims for, in frames.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Frames buffered now: the delay a packet arriving now would wait.
    pub fn delay_frames(&self) -> usize {
        self.ring.iter().filter(|s| s.seq.is_some()).count()
    }

    pub fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter)
    }

    /// True while the speaker is playing (not filling, not idle).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// A packet: its extended sequence number and RTP time, when it arrived (from any fixed
    /// origin), and the sender's capture time if it carried one.
    pub fn push(
        &mut self,
        seq: u64,
        rtp_time: u64,
        arrival: Duration,
        payload: &[u8],
        capture: Option<SystemTime>,
    ) {
        self.measure(rtp_time, arrival);
        if payload.len() > MAX_PACKET {
            self.stats.dropped += 1;
            return;
        }
        match self.next {
            Some(next) if self.playing && seq < next => {
                self.stats.late += 1;
                // As much more delay as this packet was late by (it would have played then),
                // within bounds; more late packets by as much add nothing.
                let behind = (next - seq) as usize;
                self.for_lateness = self.for_lateness.max(behind).min(MAX_FOR_LATENESS);
                self.calm = 0;
                self.retarget();
                return;
            }
            Some(next) if seq >= next + CAPACITY as u64 => {
                // Far ahead of the playout point: the stream jumped (a restart, a long
                // gap). Start over from here.
                self.reset();
                self.next = Some(seq);
            }
            Some(next) if !self.playing && seq < next => self.next = Some(seq),
            None => self.next = Some(seq),
            _ => {}
        }
        let slot = &mut self.ring[(seq % CAPACITY as u64) as usize];
        if slot.seq.is_some_and(|s| s != seq) {
            self.stats.dropped += 1;
        }
        slot.seq = Some(seq);
        slot.len = payload.len();
        slot.capture = capture;
        slot.data[..payload.len()].copy_from_slice(payload);
    }

    fn reset(&mut self) {
        for s in &mut self.ring {
            s.seq = None;
        }
        self.playing = false;
        self.starved = 0;
    }

    fn measure(&mut self, rtp_time: u64, arrival: Duration) {
        let transit = arrival.as_secs_f64() - rtp_time as f64 / f64::from(SAMPLE_RATE);
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            // A jump of a second or more is a new timeline, not jitter.
            if d < 1.0 {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
        let frame = FRAME_TICKS as f64 / f64::from(SAMPLE_RATE);
        // Enough frames to cover three times the mean deviation, counting the half frame by
        // which the mixer's tick follows arrivals (it starts half a frame after the first).
        self.for_jitter = ((3.0 * self.jitter + frame / 2.0) / frame).ceil() as usize;
        self.retarget();
    }

    fn retarget(&mut self) {
        let wanted = self.for_jitter.max(MIN_TARGET) + self.for_lateness;
        self.target = wanted.clamp(self.bounds.0, self.bounds.1);
    }

    fn holds(&self, seq: u64) -> bool {
        self.ring[(seq % CAPACITY as u64) as usize].seq == Some(seq)
    }

    /// The frame for this tick.
    pub fn pop(&mut self) -> Play<'_> {
        let Some(mut next) = self.next else {
            return Play::Silent;
        };
        self.calm = self.calm.saturating_add(1);
        if self.calm >= CALM_TICKS && self.for_lateness > 0 {
            self.for_lateness -= 1;
            self.calm = 1;
            self.retarget();
        }
        if !self.playing {
            if self.delay_frames() < self.target {
                return Play::Silent;
            }
            self.playing = true;
            self.starved = 0;
            // Start at the oldest frame held.
            next = (next..next + CAPACITY as u64)
                .find(|s| self.holds(*s))
                .unwrap_or(next);
        }
        // Too much delay for long (the jitter calmed down): shed a frame.
        if self.delay_frames() > self.target + EXCESS {
            self.excess += 1;
        } else {
            self.excess = 0;
        }
        if self.excess >= EXCESS_TICKS && self.holds(next) {
            self.ring[(next % CAPACITY as u64) as usize].seq = None;
            self.stats.dropped += 1;
            self.excess = 0;
            next += 1;
        }
        self.next = Some(next + 1);
        let index = (next % CAPACITY as u64) as usize;
        if self.holds(next) {
            self.starved = 0;
            self.stats.played += 1;
            let slot = &mut self.ring[index];
            slot.seq = None;
            return Play::Packet {
                data: &slot.data[..slot.len],
                capture: slot.capture,
            };
        }
        if self.delay_frames() == 0 {
            self.starved += 1;
            if self.starved >= IDLE_AFTER {
                self.playing = false;
                self.next = None;
                return Play::Silent;
            }
        }
        if self.holds(next + 1) {
            self.stats.fec += 1;
            let slot = &self.ring[((next + 1) % CAPACITY as u64) as usize];
            return Play::Fec(&slot.data[..slot.len]);
        }
        self.stats.concealed += 1;
        Play::Lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets of 20 ms whose payload is their sequence number.
    fn push(b: &mut JitterBuffer, seq: u64, arrival_ms: u64) {
        b.push(
            seq,
            seq * FRAME_TICKS,
            Duration::from_millis(arrival_ms),
            &[seq as u8; 3],
            None,
        );
    }

    fn seq_of(p: Play<'_>) -> Option<u8> {
        match p {
            Play::Packet { data, .. } => Some(data[0]),
            _ => None,
        }
    }

    #[test]
    fn packets_out_of_order_come_out_in_order() {
        let mut b = JitterBuffer::new();
        for (seq, at) in [(10, 0), (12, 40), (11, 41), (13, 60), (14, 80)] {
            push(&mut b, seq, at);
        }
        let out: Vec<Option<u8>> = (0..5).map(|_| seq_of(b.pop())).collect();
        assert_eq!(out, vec![Some(10), Some(11), Some(12), Some(13), Some(14)]);
    }

    #[test]
    fn a_missing_frame_is_fec_when_the_next_is_here_and_lost_otherwise() {
        let mut b = JitterBuffer::new();
        for seq in [1, 2, 4, 5] {
            push(&mut b, seq, seq * 20);
        }
        assert_eq!(seq_of(b.pop()), Some(1));
        assert_eq!(seq_of(b.pop()), Some(2));
        assert_eq!(b.pop(), Play::Fec(&[4, 4, 4]));
        assert_eq!(seq_of(b.pop()), Some(4));
        assert_eq!(seq_of(b.pop()), Some(5));
        push(&mut b, 7, 140);
        push(&mut b, 8, 160);
        // 6 never came and 7 carries its FEC; then a gap of two: the first is concealed.
        assert_eq!(b.pop(), Play::Fec(&[7, 7, 7]));
        assert_eq!(seq_of(b.pop()), Some(7));
        assert_eq!(seq_of(b.pop()), Some(8));
        push(&mut b, 11, 220);
        assert_eq!(b.pop(), Play::Lost);
        assert_eq!(b.pop(), Play::Fec(&[11, 11, 11]));
        assert_eq!(seq_of(b.pop()), Some(11));
        let s = b.stats();
        assert_eq!((s.played, s.fec, s.concealed), (7, 3, 1));
    }

    #[test]
    fn a_standing_excess_of_delay_is_shed_and_a_burst_is_not() {
        let mut b = JitterBuffer::new();
        // A burst of eight at once, then one per tick: the eight play out in order.
        for seq in 0..8 {
            push(&mut b, seq, 0);
        }
        for seq in 8..20 {
            push(&mut b, seq, seq * 20);
            assert!(seq_of(b.pop()).is_some());
        }
        assert_eq!(b.stats().dropped, 0);
        // Kept up for longer, the excess is shed one frame at a time.
        for seq in 20..200 {
            push(&mut b, seq, seq * 20);
            b.pop();
        }
        assert!(b.stats().dropped >= 1);
        assert!(b.delay_frames() <= b.target() + EXCESS + 1);
    }

    #[test]
    fn lateness_adds_a_frame_and_a_calm_spell_takes_it_back() {
        let mut b = JitterBuffer::new();
        // Steady arrivals: one frame of delay.
        for seq in 0..50 {
            push(&mut b, seq, seq * 20);
            b.pop();
        }
        assert_eq!(b.target(), 1);
        // A packet that comes after its tick: one more frame of delay.
        b.pop();
        push(&mut b, 50, 50 * 20);
        assert_eq!(b.stats().late, 1);
        assert_eq!(b.target(), 2);
        // Five calm seconds later it is taken back.
        for seq in 51..51 + u64::from(CALM_TICKS) + 10 {
            push(&mut b, seq, seq * 20);
            b.pop();
        }
        assert_eq!(b.target(), 1);
    }

    #[test]
    fn a_late_packet_is_counted_and_not_played() {
        let mut b = JitterBuffer::new();
        for seq in 1..=3 {
            push(&mut b, seq, seq * 20);
        }
        b.pop();
        b.pop();
        push(&mut b, 1, 100);
        assert_eq!(b.stats().late, 1);
        assert_eq!(seq_of(b.pop()), Some(3));
    }

    #[test]
    fn the_target_follows_jitter_within_one_to_ten_frames() {
        let mut b = JitterBuffer::new();
        for seq in 0..50 {
            push(&mut b, seq, seq * 20);
        }
        assert_eq!(b.target(), MIN_TARGET, "steady arrivals want one frame");
        // Arrivals 0 or 60 ms off their schedule, alternately.
        let mut wild = JitterBuffer::new();
        for seq in 0..200u64 {
            let jitter = if seq % 2 == 0 { 0 } else { 60 };
            push(&mut wild, seq, seq * 20 + jitter);
        }
        assert!(wild.target() > 4, "{}", wild.target());
        let mut extreme = JitterBuffer::new();
        for seq in 0..200u64 {
            let jitter = if seq % 2 == 0 { 0 } else { 900 };
            push(&mut extreme, seq, seq * 20 + jitter);
        }
        assert_eq!(extreme.target(), MAX_TARGET);
    }

    #[test]
    fn it_fills_to_the_target_before_playing_and_goes_idle_when_the_speaker_stops() {
        let mut b = JitterBuffer::with_bounds(3, 3);
        push(&mut b, 1, 0);
        assert_eq!(b.pop(), Play::Silent);
        push(&mut b, 2, 20);
        assert_eq!(b.pop(), Play::Silent);
        push(&mut b, 3, 40);
        assert_eq!(seq_of(b.pop()), Some(1));
        assert_eq!(seq_of(b.pop()), Some(2));
        assert_eq!(seq_of(b.pop()), Some(3));
        // Nothing more: a few concealed frames, then idle silence (no concealment forever).
        let lost = (0..8).filter(|_| b.pop() == Play::Lost).count();
        assert_eq!(lost, (IDLE_AFTER - 1) as usize);
        assert!(!b.is_playing());
        // It comes back, after filling again.
        for seq in 30..33 {
            push(&mut b, seq, seq * 20);
        }
        assert_eq!(seq_of(b.pop()), Some(30));
    }

    #[test]
    fn a_jump_in_sequence_numbers_starts_over() {
        let mut b = JitterBuffer::new();
        for seq in 1..=3 {
            push(&mut b, seq, seq * 20);
        }
        assert_eq!(seq_of(b.pop()), Some(1));
        push(&mut b, 5_000, 100);
        assert_eq!(seq_of(b.pop()), Some((5_000u64 % 256) as u8));
    }
}
