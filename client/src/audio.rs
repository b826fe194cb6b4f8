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
    /// Refuses, with `InvalidData`, anything but 16-bit integer mono 48 kHz PCM with at least
    /// one sample: the frames are sent as they are, without resampling or mixing down.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        let reader = hound::WavReader::open(path).map_err(|e| match e {
            hound::Error::IoError(e) => e,
            e => bad(e.to_string()),
        })?;
        let spec = reader.spec();
        if spec.channels != 1
            || spec.sample_rate != SAMPLE_RATE
            || spec.bits_per_sample != 16
            || spec.sample_format != hound::SampleFormat::Int
        {
            return Err(bad("need 16-bit mono 48 kHz PCM".into()));
        }
        let samples = reader
            .into_samples::<i16>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if samples.is_empty() {
            return Err(bad("no samples in the data chunk".into()));
        }
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

    fn wav_file(name: &str, spec: hound::WavSpec, samples: &[i16]) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(format!("amphi-wav-{}-{name}.wav", std::process::id()));
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for &s in samples {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
        path
    }

    fn spec(channels: u16, sample_rate: u32) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        }
    }

    #[test]
    fn a_wav_file_loops_its_samples() {
        let path = wav_file("loop", spec(1, SAMPLE_RATE), &[1, -2, 3, 4, 5, 6, 7]);
        let mut wav = Wav::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut frame = [0i16; FRAME_SAMPLES];
        wav.next_frame(&mut frame);
        assert_eq!(frame[..9], [1, -2, 3, 4, 5, 6, 7, 1, -2]);
        wav.next_frame(&mut frame);
        assert_eq!(
            frame[0], -2,
            "960 = 137 × 7 + 1: the next frame starts one sample on"
        );
    }

    #[test]
    fn wav_files_the_sender_cannot_use_are_refused() {
        for (name, spec, samples) in [
            ("stereo", spec(2, SAMPLE_RATE), &[1i16, 2][..]),
            ("44k1", spec(1, 44_100), &[1][..]),
            ("empty", spec(1, SAMPLE_RATE), &[][..]),
        ] {
            let path = wav_file(name, spec, samples);
            let err = Wav::open(&path).err().expect(name);
            std::fs::remove_file(&path).unwrap();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{name}: {err}");
        }
        let path = std::env::temp_dir().join(format!("amphi-wav-{}-text.wav", std::process::id()));
        std::fs::write(&path, b"not audio at all, but long enough to hold a header").unwrap();
        let err = Wav::open(&path).err().expect("text");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        let missing = Wav::open(Path::new("/nonexistent/amphi.wav"))
            .err()
            .expect("missing");
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }
}
