//! One channel's mix, tick by tick: every speaker's next frame decoded (or concealed), summed
//! with its gain, limited, encoded **once** for every mixed listener; and for each speaker the
//! mix without its own voice (mix-minus), encoded with that speaker's own encoder. Encodes
//! per tick = speakers + 1, whatever the audience. Nothing allocates per tick: every buffer
//! is sized at construction or when a speaker is added.

use std::time::{Duration, SystemTime};

use super::codec::{Decode, Encode, Input};
use super::jitter::{JitterBuffer, JitterStats, Play};
use super::limiter::Limiter;
use super::{dbov, Pcm, FRAME, MAX_PACKET};

/// Per-speaker volume bounds (a moderator's control): silent to +6 dB.
pub const MAX_GAIN: f32 = 2.0;

struct Speaker<D, E> {
    key: u64,
    buffer: JitterBuffer,
    decoder: D,
    encoder: E,
    gain: f32,
    muted: bool,
    /// The speaker receives the mix without itself (false: it hears each speaker's own
    /// stream, and its mix-minus is not encoded).
    minus: bool,
    pcm: Pcm,
    /// Decoded audio this tick (not filling or idle).
    active: bool,
    level: u8,
    limiter: Limiter,
    packet: [u8; MAX_PACKET],
    packet_len: usize,
    decode_errors: u64,
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Nobody spoke: nothing was encoded and nothing should be sent.
    pub silent: bool,
    pub decodes: u32,
    pub encodes: u32,
    /// Lost frames (concealed, or rebuilt from in-band FEC).
    pub concealed: u32,
    /// Of those, the ones whose next packet was there to rebuild them from its FEC.
    pub fec: u32,
    /// The total needed the limiter.
    pub limited: bool,
    /// The latest capture time among the frames in the mix.
    pub capture: Option<SystemTime>,
}

/// One speaker as the mixer sees it now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerState {
    pub key: u64,
    /// dBov of its last decoded frame (127: silent).
    pub level: u8,
    pub active: bool,
    pub delay_frames: usize,
    pub target_frames: usize,
    pub jitter: Duration,
    pub stats: JitterStats,
    pub decode_errors: u64,
}

pub struct Mixer<D, E> {
    speakers: Vec<Speaker<D, E>>,
    encoder: E,
    sum: [i32; FRAME],
    scratch: [i32; FRAME],
    out: Pcm,
    limiter: Limiter,
    packet: [u8; MAX_PACKET],
    packet_len: usize,
    max_speakers: usize,
    /// dBov of the last total.
    level: u8,
    /// Encode every tick, silence too (a recording is continuous).
    always_encode: bool,
}

impl<D: Decode, E: Encode> Mixer<D, E> {
    /// A mixer for up to `max_speakers`, encoding the total with `encoder`.
    pub fn new(encoder: E, max_speakers: usize) -> Self {
        Self {
            speakers: Vec::with_capacity(max_speakers),
            encoder,
            sum: [0; FRAME],
            scratch: [0; FRAME],
            out: [0; FRAME],
            limiter: Limiter::default(),
            packet: [0; MAX_PACKET],
            packet_len: 0,
            max_speakers,
            level: 127,
            always_encode: false,
        }
    }

    fn find(&self, key: u64) -> Option<usize> {
        self.speakers.iter().position(|s| s.key == key)
    }

    /// Adds a speaker with its decoder and the encoder of its mix-minus; false when full or
    /// already there.
    pub fn add_speaker(&mut self, key: u64, decoder: D, encoder: E) -> bool {
        if self.speakers.len() >= self.max_speakers || self.find(key).is_some() {
            return false;
        }
        self.speakers.push(Speaker {
            key,
            buffer: JitterBuffer::new(),
            decoder,
            encoder,
            gain: 1.0,
            muted: false,
            minus: true,
            pcm: [0; FRAME],
            active: false,
            level: 127,
            limiter: Limiter::default(),
            packet: [0; MAX_PACKET],
            packet_len: 0,
            decode_errors: 0,
        });
        true
    }

    pub fn remove_speaker(&mut self, key: u64) -> bool {
        match self.find(key) {
            Some(i) => {
                self.speakers.swap_remove(i);
                true
            }
            None => false,
        }
    }

    pub fn speaker_count(&self) -> usize {
        self.speakers.len()
    }

    /// A speaker's packet (see `JitterBuffer::push`); unknown speakers are ignored.
    pub fn push(
        &mut self,
        key: u64,
        seq: u64,
        rtp_time: u64,
        arrival: Duration,
        payload: &[u8],
        capture: Option<SystemTime>,
    ) -> bool {
        let Some(i) = self.find(key) else {
            return false;
        };
        self.speakers[i]
            .buffer
            .push(seq, rtp_time, arrival, payload, capture);
        true
    }

    /// A moderator's volume for one speaker (1.0 unchanged, 0 silent, at most `MAX_GAIN`).
    pub fn set_gain(&mut self, key: u64, gain: f32) -> bool {
        let Some(i) = self.find(key) else {
            return false;
        };
        self.speakers[i].gain = if gain.is_finite() {
            gain.clamp(0.0, MAX_GAIN)
        } else {
            1.0
        };
        true
    }

    /// The loss listeners report, in percent: the encoders' in-band FEC is sized to it.
    pub fn set_expected_loss(&mut self, percent: i32) {
        self.encoder.set_expected_loss(percent);
        for s in &mut self.speakers {
            s.encoder.set_expected_loss(percent);
        }
    }

    /// Whether silent ticks are encoded too (and the mixer never idles): while the mix is
    /// recorded, so that the file keeps time.
    pub fn set_always_encode(&mut self, on: bool) {
        self.always_encode = on;
    }

    /// Whether speaker `key` receives its mix-minus (encoded only then).
    pub fn set_minus(&mut self, key: u64, minus: bool) -> bool {
        let Some(i) = self.find(key) else {
            return false;
        };
        self.speakers[i].minus = minus;
        true
    }

    pub fn set_muted(&mut self, key: u64, muted: bool) -> bool {
        let Some(i) = self.find(key) else {
            return false;
        };
        self.speakers[i].muted = muted;
        true
    }

    /// No speaker has anything buffered or playing: ticking can stop until a packet comes.
    pub fn is_idle(&self) -> bool {
        !self.always_encode
            && self
                .speakers
                .iter()
                .all(|s| !s.buffer.is_playing() && s.buffer.delay_frames() == 0)
    }

    /// The last tick's shared encode of the total, for every mixed listener.
    pub fn total(&self) -> &[u8] {
        &self.packet[..self.packet_len]
    }

    /// The last tick's mix-minus for speaker `key`: everyone but itself.
    pub fn mix_minus(&self, key: u64) -> Option<&[u8]> {
        let s = &self.speakers[self.find(key)?];
        Some(&s.packet[..s.packet_len])
    }

    pub fn speakers(&self) -> impl Iterator<Item = SpeakerState> + '_ {
        self.speakers.iter().map(|s| SpeakerState {
            key: s.key,
            level: s.level,
            active: s.active,
            delay_frames: s.buffer.delay_frames(),
            target_frames: s.buffer.target(),
            jitter: s.buffer.jitter(),
            stats: s.buffer.stats(),
            decode_errors: s.decode_errors,
        })
    }

    /// dBov of the last tick's total (127 when silent).
    pub fn level(&self) -> u8 {
        self.level
    }

    /// Removes the speakers `keep` refuses (they left the stage).
    pub fn retain_speakers(&mut self, mut keep: impl FnMut(u64) -> bool) {
        self.speakers.retain(|s| keep(s.key));
    }

    /// Frames the total's limiter reduced, since creation.
    pub fn limited_frames(&self) -> u64 {
        self.limiter.engaged_frames
    }

    /// One 20 ms tick.
    pub fn tick(&mut self) -> Tick {
        let mut tick = Tick::default();
        self.sum.fill(0);
        let mut any = false;
        for s in &mut self.speakers {
            let input = match s.buffer.pop() {
                Play::Packet { data, capture } => {
                    tick.capture = tick.capture.max(capture);
                    Input::Packet(data)
                }
                Play::Fec(next) => {
                    // Lost all the same: rebuilt from the next packet's FEC if it carries
                    // some, concealed otherwise.
                    tick.concealed += 1;
                    tick.fec += 1;
                    Input::Fec(next)
                }
                Play::Lost => {
                    tick.concealed += 1;
                    Input::Lost
                }
                Play::Silent => {
                    s.active = false;
                    s.level = 127;
                    continue;
                }
            };
            tick.decodes += 1;
            if s.decoder.decode(input, &mut s.pcm).is_err() {
                s.decode_errors += 1;
                s.pcm.fill(0);
            }
            s.active = true;
            s.level = dbov(&s.pcm);
            if !s.muted {
                any = true;
                let gain = s.gain;
                for (acc, x) in self.sum.iter_mut().zip(&s.pcm) {
                    *acc += (f32::from(*x) * gain) as i32;
                }
            }
        }
        if !any && !self.always_encode {
            self.packet_len = 0;
            for s in &mut self.speakers {
                s.packet_len = 0;
            }
            tick.silent = true;
            self.level = 127;
            return tick;
        }
        tick.limited = self.limiter.apply(&self.sum, &mut self.out);
        self.level = dbov(&self.out);
        self.packet_len = self
            .encoder
            .encode(&self.out, &mut self.packet)
            .unwrap_or(0);
        tick.encodes += 1;
        for s in &mut self.speakers {
            if !s.minus {
                s.packet_len = 0;
                continue;
            }
            // Everyone but this speaker, at the gains everyone else has.
            self.scratch.copy_from_slice(&self.sum);
            if s.active && !s.muted {
                let gain = s.gain;
                for (acc, x) in self.scratch.iter_mut().zip(&s.pcm) {
                    *acc -= (f32::from(*x) * gain) as i32;
                }
            }
            s.limiter.apply(&self.scratch, &mut self.out);
            s.packet_len = s.encoder.encode(&self.out, &mut s.packet).unwrap_or(0);
            tick.encodes += 1;
        }
        tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::codec::CodecError;
    use crate::mix::testing::{power, tone};

    /// A "codec" that carries every other sample as little-endian bytes (a frame fits a
    /// packet) and holds each for two on decoding, so the arithmetic stays exact.
    #[derive(Default)]
    struct Raw;

    impl Decode for Raw {
        fn decode(&mut self, input: Input<'_>, out: &mut Pcm) -> Result<(), CodecError> {
            match input {
                Input::Packet(p) => {
                    for (o, b) in out.chunks_exact_mut(2).zip(p.chunks_exact(2)) {
                        let s = i16::from_le_bytes([b[0], b[1]]);
                        o.fill(s);
                    }
                    Ok(())
                }
                Input::Fec(_) | Input::Lost => {
                    out.fill(0);
                    Ok(())
                }
            }
        }
    }

    impl Encode for Raw {
        fn encode(&mut self, pcm: &Pcm, out: &mut [u8]) -> Result<usize, CodecError> {
            for (i, s) in pcm.iter().step_by(2).enumerate() {
                out[2 * i..2 * i + 2].copy_from_slice(&s.to_le_bytes());
            }
            Ok(FRAME)
        }
    }

    fn bytes(pcm: &Pcm) -> Vec<u8> {
        let mut out = vec![0u8; FRAME];
        Raw.encode(pcm, &mut out).unwrap();
        out
    }

    fn pcm(packet: &[u8]) -> Vec<i16> {
        let mut out = [0i16; FRAME];
        Raw.decode(Input::Packet(packet), &mut out).unwrap();
        out.to_vec()
    }

    /// Whole cycles in a 20 ms frame, so that neither leaks into the other's measure.
    const A: f64 = 400.0;
    const B: f64 = 600.0;

    /// Two speakers (`A` and `B` Hz) fed frames `from..to`, ticked as they come.
    fn two_tones(m: &mut Mixer<Raw, Raw>, from: u64, to: u64) -> Vec<Tick> {
        let mut ticks = Vec::new();
        for f in from..to {
            let at = Duration::from_millis(20 * f);
            let a = tone(A, 6000.0, f as usize * FRAME);
            let b = tone(B, 6000.0, f as usize * FRAME);
            m.push(1, f, f * 960, at, &bytes(&a), None);
            m.push(2, f, f * 960, at, &bytes(&b), None);
            ticks.push(m.tick());
        }
        ticks
    }

    fn mixer() -> Mixer<Raw, Raw> {
        let mut m = Mixer::new(Raw, 8);
        assert!(m.add_speaker(1, Raw, Raw));
        assert!(m.add_speaker(2, Raw, Raw));
        m
    }

    #[test]
    fn the_total_carries_both_and_each_speaker_hears_only_the_other() {
        let mut m = mixer();
        let ticks = two_tones(&mut m, 0, 10);
        let last = ticks.last().unwrap();
        assert!(!last.silent);
        assert_eq!(last.encodes, 3, "one total and two mix-minus");
        let total = pcm(m.total());
        assert!(power(&total, A) > 1e5 && power(&total, B) > 1e5);
        let for_1 = pcm(m.mix_minus(1).unwrap());
        assert!(power(&for_1, B) > 1e5);
        assert!(power(&for_1, A) < 1.0, "speaker 1 hears itself");
        let for_2 = pcm(m.mix_minus(2).unwrap());
        assert!(power(&for_2, A) > 1e5 && power(&for_2, B) < 1.0);
    }

    #[test]
    fn gain_and_mute_shape_the_mix_but_never_the_speakers_own_mix_minus() {
        let mut m = mixer();
        m.set_gain(2, 0.5);
        two_tones(&mut m, 0, 5);
        let total = pcm(m.total());
        let ratio = power(&total, B) / power(&total, A);
        assert!(
            (0.2..0.3).contains(&ratio),
            "half amplitude is a quarter power: {ratio}"
        );
        m.set_muted(1, true);
        two_tones(&mut m, 5, 10);
        let total = pcm(m.total());
        assert!(power(&total, A) < 1.0, "a muted speaker is not in the mix");
        // The muted speaker still hears the others.
        assert!(power(&pcm(m.mix_minus(1).unwrap()), B) > 1e4);
        assert!(!m.set_gain(9, 1.0), "unknown speaker");
    }

    #[test]
    fn nobody_speaking_costs_no_encode_and_the_mixer_goes_idle() {
        let mut m = mixer();
        two_tones(&mut m, 0, 3);
        // Nothing more arrives: a few concealed ticks, then silence and idleness.
        let mut last = Tick::default();
        for _ in 0..10 {
            last = m.tick();
        }
        assert!(last.silent && last.encodes == 0);
        assert!(m.is_idle());
        assert!(m.total().is_empty());
    }

    #[test]
    fn loud_speakers_are_limited_not_wrapped() {
        let mut m = Mixer::new(Raw, 10);
        for k in 0..10 {
            m.add_speaker(k, Raw, Raw);
        }
        let loud = tone(440.0, 30_000.0, 0);
        let mut tick = Tick::default();
        for f in 0..3u64 {
            for k in 0..10 {
                m.push(
                    k,
                    f,
                    f * 960,
                    Duration::from_millis(20 * f),
                    &bytes(&loud),
                    None,
                );
            }
            tick = m.tick();
        }
        assert!(tick.limited);
        let total = pcm(m.total());
        let held = pcm(&bytes(&loud));
        // In phase with the source everywhere: a wrapped sum would flip sign.
        for (t, s) in total.iter().zip(&held) {
            assert!(i32::from(*t) * i32::from(*s) >= 0);
        }
        assert!(m.limited_frames() >= 1);
    }

    #[test]
    fn the_capture_time_of_the_mix_is_the_latest_of_its_frames() {
        let mut m = mixer();
        let early = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let late = early + Duration::from_millis(7);
        let a = bytes(&tone(440.0, 1000.0, 0));
        m.push(1, 0, 0, Duration::ZERO, &a, Some(early));
        m.push(2, 0, 0, Duration::ZERO, &a, Some(late));
        assert_eq!(m.tick().capture, Some(late));
    }
}
