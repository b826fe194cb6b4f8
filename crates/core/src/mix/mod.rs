//! Mixing, without IO or a clock: per-speaker jitter buffers, decoding with concealment, a
//! sum with per-speaker gain and a limiter, mix-minus for each speaker, and one encode of the
//! total shared by every mixed listener. The media plane feeds it packets and ticks it every
//! 20 ms; what it returns is what goes on the wire.
//!
//! - `codec`  — the decode/encode seam and the Opus implementation (pure Rust).
//! - `jitter` — one speaker's adaptive jitter buffer: reordering, loss, target delay.
//! - `mixer`  — the tick: decode, sum, limit, mix-minus, encode.
//! - `limiter` — keeps a sum of loud speakers inside 16 bits without wrapping.
//! - `ogg`    — Ogg Opus pages out (recording the mix) and in (playing a file).

pub mod codec;
pub mod jitter;
pub mod limiter;
pub mod mixer;
pub mod ogg;
pub mod pool;

/// Opus at 48 kHz, mono.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in one 20 ms frame: the mixer's tick.
pub const FRAME: usize = 960;
/// RTP timestamp step of one frame.
pub const FRAME_TICKS: u64 = FRAME as u64;
/// Largest Opus packet (RFC 6716 §3.4: 1275 bytes per frame) plus room.
pub const MAX_PACKET: usize = 1500;

/// One frame of mono PCM.
pub type Pcm = [i16; FRAME];

/// dBov of a frame (RFC 6464: 0 loudest, 127 silence), from its RMS.
pub fn dbov(frame: &Pcm) -> u8 {
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / FRAME as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        return 127;
    }
    (-20.0 * rms.log10()).clamp(0.0, 127.0) as u8
}

/// Test signals: tones in, their power out (also for the crate's integration tests and the
/// benchmarks).
pub mod testing {
    use super::*;

    /// A tone frame: `amplitude` at `freq` Hz, continuing from `phase` (in samples).
    pub fn tone(freq: f64, amplitude: f64, start: usize) -> Pcm {
        let mut out = [0i16; FRAME];
        for (i, s) in out.iter_mut().enumerate() {
            let t = (start + i) as f64 / f64::from(SAMPLE_RATE);
            *s = (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
        }
        out
    }

    /// Power of `freq` in `samples` (Goertzel), normalised by length.
    pub fn power(samples: &[i16], freq: f64) -> f64 {
        let k = 2.0 * (2.0 * std::f64::consts::PI * freq / f64::from(SAMPLE_RATE)).cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in samples {
            let s0 = f64::from(x) + k * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - k * s1 * s2) / samples.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_127_dbov_and_full_scale_is_near_zero() {
        assert_eq!(dbov(&[0; FRAME]), 127);
        assert!(dbov(&testing::tone(440.0, 32000.0, 0)) <= 4);
        let quiet = dbov(&testing::tone(440.0, 300.0, 0));
        assert!((40..=44).contains(&quiet), "{quiet}");
    }
}
