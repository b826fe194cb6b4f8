//! What a listening peer measured: per-slot packets, loss, jitter, decoded audio, and the
//! end-to-end latency histogram; shared by `AudioPeer` and the herd's peers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::media::Mid;

/// What one receive slot has received so far.
#[derive(Debug, Clone)]
pub struct SlotStats {
    pub mid: String,
    /// The participant the server says this slot carries (from `track` events).
    pub participant: Option<String>,
    pub packets: u64,
    pub decoded_frames: u64,
    pub decode_errors: u64,
    pub first_packet: Option<Instant>,
    pub samples: Vec<i16>,
    /// Extended RTP sequence numbers seen: lowest and highest, for loss.
    pub seq_range: Option<(u64, u64)>,
    /// RFC 3550 inter-arrival jitter, seconds.
    pub jitter: f64,
    last_transit: Option<f64>,
}

impl Default for SlotStats {
    fn default() -> Self {
        Self {
            mid: String::new(),
            participant: None,
            packets: 0,
            decoded_frames: 0,
            decode_errors: 0,
            first_packet: None,
            samples: Vec::new(),
            seq_range: None,
            jitter: 0.0,
            last_transit: None,
        }
    }
}

impl SlotStats {
    /// Packets the sender numbered in the range seen but that never arrived.
    pub fn lost(&self) -> u64 {
        self.seq_range
            .map_or(0, |(lo, hi)| (hi - lo + 1).saturating_sub(self.packets))
    }
}

/// Video a peer sent and received (a call's cameras).
#[derive(Debug, Clone, Default)]
pub struct VideoStats {
    /// Frames received on the video slots, whole (depacketized).
    pub frames: u64,
    pub keyframes: u64,
    pub bytes: u64,
    pub sent_frames: u64,
    /// Keyframe requests (PLI/FIR) the camera got.
    pub keyframe_requests: u64,
}

#[derive(Debug, Clone)]
pub struct PeerStats {
    pub video: VideoStats,
    pub connected: bool,
    pub connected_at: Option<Instant>,
    pub sent_packets: u64,
    pub slots: Vec<SlotStats>,
    /// End-to-end latency (sender capture → here) in µs, from abs-capture-time, all along.
    pub latency_us: hdrhistogram::Histogram<u64>,
    /// The same since the last `take_interval`.
    pub interval_latency_us: hdrhistogram::Histogram<u64>,
    pub interval_packets: u64,
}

impl Default for PeerStats {
    fn default() -> Self {
        let h = micros_histogram();
        Self {
            video: VideoStats::default(),
            connected: false,
            connected_at: None,
            sent_packets: 0,
            slots: Vec::new(),
            latency_us: h.clone(),
            interval_latency_us: h,
            interval_packets: 0,
        }
    }
}

impl PeerStats {
    pub fn received_packets(&self) -> u64 {
        self.slots.iter().map(|s| s.packets).sum()
    }

    pub fn slot_for(&self, participant: &str) -> Option<&SlotStats> {
        self.slots
            .iter()
            .find(|s| s.participant.as_deref() == Some(participant))
    }
}

/// What a peer has received so far, readable while it runs (`AudioPeer` and herd peers).
#[derive(Clone, Default)]
pub struct Meter(pub(crate) Arc<Mutex<PeerStats>>);

impl Meter {
    pub fn stats(&self) -> PeerStats {
        self.0.lock().expect("not poisoned").clone()
    }

    /// Latency histogram and packet count since the previous call (for reports over time).
    pub fn take_interval(&self) -> (hdrhistogram::Histogram<u64>, u64) {
        let mut s = self.0.lock().expect("not poisoned");
        let fresh = hdrhistogram::Histogram::new_from(&s.interval_latency_us);
        let h = std::mem::replace(&mut s.interval_latency_us, fresh);
        (h, std::mem::take(&mut s.interval_packets))
    }

    /// Packets received so far, without copying the stats (cheap enough to poll).
    pub fn received_packets(&self) -> u64 {
        self.0.lock().expect("not poisoned").received_packets()
    }

    /// When the first packet arrived, on any slot.
    pub fn first_packet(&self) -> Option<Instant> {
        let s = self.0.lock().expect("not poisoned");
        s.slots.iter().filter_map(|x| x.first_packet).min()
    }

    pub fn is_connected(&self) -> bool {
        self.0.lock().expect("not poisoned").connected
    }

    /// The end-to-end latency histogram so far (µs), copied.
    pub fn latency(&self) -> hdrhistogram::Histogram<u64> {
        self.0.lock().expect("not poisoned").latency_us.clone()
    }

    pub async fn wait_connected(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.is_connected() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Waits until `n` packets arrived in all.
    pub async fn wait_packets(&self, n: u64, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.received_packets() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

/// One received packet (or a run of them), as the stats count it.
pub(crate) struct Arrival {
    pub mid: Mid,
    /// First and last extended sequence numbers.
    pub seq: (u64, u64),
    /// RTP time in seconds (for jitter).
    pub media_seconds: f64,
    /// Sender capture → arrival, from abs-capture-time.
    pub latency: Option<Duration>,
    pub at: Instant,
}

impl PeerStats {
    /// Counts an arrival on its slot; returns the slot.
    pub(crate) fn record(&mut self, a: &Arrival, epoch: Instant) -> &mut SlotStats {
        let (lo, hi) = a.seq;
        let packets = hi.wrapping_sub(lo) + 1;
        if let Some(l) = a.latency {
            record_micros(&mut self.latency_us, l);
            record_micros(&mut self.interval_latency_us, l);
        }
        self.interval_packets += packets;
        let slot = slot_mut(self, a.mid);
        slot.packets += packets;
        slot.first_packet.get_or_insert(a.at);
        slot.seq_range = Some(match slot.seq_range {
            None => (lo, hi),
            Some((x, y)) => (x.min(lo), y.max(hi)),
        });
        // RFC 3550 §6.4.1, in seconds.
        let transit = a.at.saturating_duration_since(epoch).as_secs_f64() - a.media_seconds;
        if let Some(last) = slot.last_transit {
            let d = (transit - last).abs();
            if d < 1.0 {
                slot.jitter += (d - slot.jitter) / 16.0;
            }
        }
        slot.last_transit = Some(transit);
        slot
    }
}

/// A histogram of durations in µs: 1 µs to 60 s at 3 significant digits.
pub(crate) fn micros_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Records `d` in a [`micros_histogram`], clamped to its bounds.
pub(crate) fn record_micros(h: &mut hdrhistogram::Histogram<u64>, d: std::time::Duration) {
    let _ = h.record((d.as_micros() as u64).clamp(1, 60_000_000));
}

pub(crate) fn slot_mut(s: &mut PeerStats, mid: Mid) -> &mut SlotStats {
    let key = mid.to_string();
    match s.slots.iter().position(|x| x.mid == key) {
        Some(i) => &mut s.slots[i],
        None => {
            s.slots.push(SlotStats {
                mid: key,
                ..SlotStats::default()
            });
            s.slots.last_mut().expect("just pushed")
        }
    }
}
