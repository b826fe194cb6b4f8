//! What a worker measures on one peer's inbound audio: jitter and loudness.

use std::time::Instant;

/// RFC 3550 §6.4.1 inter-arrival jitter of one inbound track, in RTP ticks.
#[derive(Default)]
pub(super) struct Jitter {
    last_transit: Option<f64>,
    jitter: f64,
    pub(super) packets: u32,
}

impl Jitter {
    pub(super) fn update(&mut self, arrived: Instant, epoch: Instant, ts: u64) -> f64 {
        let arrival_ticks = arrived.saturating_duration_since(epoch).as_secs_f64() * 48_000.0;
        let transit = arrival_ticks - ts as f64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            // A jump of more than a second is a new stream, not jitter.
            if d < 48_000.0 {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
        self.packets += 1;
        self.jitter / 48_000.0
    }
}

/// The loudest RFC 6464 level of one speaker over a housekeeping window.
#[derive(Default)]
pub(super) struct LevelWindow {
    pub(super) loudest: Option<u8>,
    pub(super) voice: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn evenly_spaced_packets_have_no_jitter_and_a_late_one_does() {
        let epoch = Instant::now();
        let mut j = Jitter::default();
        for i in 0..10u64 {
            let at = epoch + Duration::from_millis(20 * i);
            assert!(j.update(at, epoch, 960 * i) < 1e-9);
        }
        // 10 ms late: a sixteenth of it enters the estimate.
        let late = j.update(epoch + Duration::from_millis(210), epoch, 960 * 10);
        assert!((late - 0.010 / 16.0).abs() < 1e-6, "{late}");
        assert_eq!(j.packets, 11);
    }
}
