//! Audio sources and analysis for clients, tests and the swarm.

use std::path::Path;

/// 20 ms of mono audio at 48 kHz: one Opus frame.
pub const FRAME_SAMPLES: usize = 960;
pub const SAMPLE_RATE: u32 = 48_000;

/// Produces 20 ms frames of 48 kHz mono PCM.
pub trait Source: Send + 'static {
    fn next_frame(&mut self, out: &mut [i16; FRAME_SAMPLES]);
}

/// A sine tone.
pub struct Tone {
    freq: f64,
    amplitude: f64,
    phase: f64,
}

impl Tone {
    pub fn new(freq: f64) -> Self {
        Self {
            freq,
            amplitude: 0.3,
            phase: 0.0,
        }
    }
}

impl Source for Tone {
    fn next_frame(&mut self, out: &mut [i16; FRAME_SAMPLES]) {
        let step = std::f64::consts::TAU * self.freq / f64::from(SAMPLE_RATE);
        for s in out.iter_mut() {
            *s = (self.phase.sin() * self.amplitude * f64::from(i16::MAX)) as i16;
            self.phase = (self.phase + step) % std::f64::consts::TAU;
        }
    }
}

/// A 16-bit mono 48 kHz WAV file, looped.
pub struct Wav {
    samples: Vec<i16>,
    pos: usize,
}

impl Wav {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let data = std::fs::read(path)?;
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        if data.len() < 44 || &data[0..4] != b"RIFF" || &data[8..12] != b"WAVE" {
            return Err(bad("not a RIFF/WAVE file"));
        }
        // Walk the chunks: `fmt ` must say PCM, mono, 48 kHz, 16 bit; `data` holds samples.
        let mut i = 12;
        let mut samples = None;
        while i + 8 <= data.len() {
            let id = &data[i..i + 4];
            let len = u32::from_le_bytes(data[i + 4..i + 8].try_into().unwrap()) as usize;
            let body = &data[i + 8..(i + 8 + len).min(data.len())];
            if id == b"fmt " {
                let channels = u16::from_le_bytes([body[2], body[3]]);
                let rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
                let bits = u16::from_le_bytes([body[14], body[15]]);
                if channels != 1 || rate != SAMPLE_RATE || bits != 16 {
                    return Err(bad("need 16-bit mono 48 kHz PCM"));
                }
            } else if id == b"data" {
                samples = Some(
                    body.chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]))
                        .collect::<Vec<_>>(),
                );
            }
            i += 8 + len + (len & 1);
        }
        let samples = samples
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("no data chunk"))?;
        Ok(Self { samples, pos: 0 })
    }
}

impl Source for Wav {
    fn next_frame(&mut self, out: &mut [i16; FRAME_SAMPLES]) {
        for s in out.iter_mut() {
            *s = self.samples[self.pos];
            self.pos = (self.pos + 1) % self.samples.len();
        }
    }
}

/// RFC 6464 level of a frame in -dBov (0 = full scale, 127 = silence).
pub fn dbov(frame: &[i16]) -> u8 {
    if frame.is_empty() {
        return 127;
    }
    let mean_sq = frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / frame.len() as f64;
    let rms = mean_sq.sqrt() / f64::from(i16::MAX);
    if rms <= 0.0 {
        return 127;
    }
    (-20.0 * rms.log10()).clamp(0.0, 127.0) as u8
}

/// Power of `freq` in `samples` (Goertzel), normalised by length.
pub fn goertzel(samples: &[i16], freq: f64) -> f64 {
    let k = 2.0 * (std::f64::consts::TAU * freq / f64::from(SAMPLE_RATE)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) / (samples.len() as f64).powi(2)
}

/// The strongest of `candidates` in `samples`.
pub fn dominant(samples: &[i16], candidates: &[f64]) -> f64 {
    candidates
        .iter()
        .copied()
        .max_by(|a, b| goertzel(samples, *a).total_cmp(&goertzel(samples, *b)))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_finds_the_tone() {
        let mut tone = Tone::new(440.0);
        let mut pcm = Vec::new();
        let mut frame = [0i16; FRAME_SAMPLES];
        for _ in 0..25 {
            tone.next_frame(&mut frame);
            pcm.extend_from_slice(&frame);
        }
        assert_eq!(dominant(&pcm, &[220.0, 440.0, 660.0, 1000.0]), 440.0);
        assert!(dbov(&frame) < 20);
        assert_eq!(dbov(&[0; 960]), 127);
    }
}
