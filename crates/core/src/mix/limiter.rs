//! Brings a 32-bit sum into 16 bits without wrapping: when a frame would exceed the ceiling,
//! its gain drops at once to fit; afterwards the gain comes back over about a quarter of a
//! second, so loud moments do not pump.

use super::{Pcm, FRAME};

/// Just under full scale (−0.2 dBFS), leaving room for the codec's overshoot.
const CEILING: f32 = 32_000.0;
/// Gain regained per 20 ms frame while releasing (full recovery from −6 dB in ~0.25 s).
const RELEASE_PER_FRAME: f32 = 0.04;

#[derive(Debug, Clone)]
pub struct Limiter {
    gain: f32,
    /// Frames in which the gain was below one.
    pub engaged_frames: u64,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            gain: 1.0,
            engaged_frames: 0,
        }
    }
}

impl Limiter {
    /// Writes `sum` scaled into `out`; true when it had to reduce the level.
    pub fn apply(&mut self, sum: &[i32; FRAME], out: &mut Pcm) -> bool {
        let peak = sum.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0) as f32;
        let fits = if peak > CEILING { CEILING / peak } else { 1.0 };
        let start = self.gain;
        let end = if fits < start {
            fits
        } else {
            (start + RELEASE_PER_FRAME).min(fits).min(1.0)
        };
        // Ramp across the frame (no step in level), never above what this frame allows.
        let step = (end - start) / FRAME as f32;
        for (i, (o, s)) in out.iter_mut().zip(sum).enumerate() {
            let g = (start + step * i as f32).min(fits);
            *o = (*s as f32 * g).clamp(-32768.0, 32767.0) as i16;
        }
        self.gain = end;
        let limited = end < 1.0 || fits < 1.0;
        if limited {
            self.engaged_frames += 1;
        }
        limited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_sums_pass_unchanged() {
        let mut l = Limiter::default();
        let mut sum = [0i32; FRAME];
        for (i, s) in sum.iter_mut().enumerate() {
            *s = (i as i32 % 200) * 100 - 10_000;
        }
        let mut out = [0i16; FRAME];
        assert!(!l.apply(&sum, &mut out));
        assert!(out.iter().zip(&sum).all(|(o, s)| i32::from(*o) == *s));
    }

    #[test]
    fn ten_loud_speakers_never_wrap_and_the_gain_comes_back() {
        let mut l = Limiter::default();
        let loud = [10 * 30_000i32; FRAME];
        let mut out = [0i16; FRAME];
        assert!(l.apply(&loud, &mut out));
        assert!(out.iter().all(|&o| o > 0 && f32::from(o) <= CEILING));
        // Back to a quiet sum: the gain recovers over frames, not at once.
        let quiet = [1_000i32; FRAME];
        l.apply(&quiet, &mut out);
        assert!(out[FRAME - 1] < 1_000);
        for _ in 0..30 {
            l.apply(&quiet, &mut out);
        }
        assert_eq!(out[FRAME - 1], 1_000);
        assert!(l.engaged_frames >= 2);
    }
}
