//! The seam between the mixer and a codec, and Opus behind it (a pure-Rust implementation:
//! nothing to build beyond Rust, and no allocation per frame).

use super::{Pcm, FRAME};

/// What to decode for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// The frame's packet.
    Packet(&'a [u8]),
    /// The frame was lost and the next packet is here: rebuild it from that packet's in-band
    /// FEC (concealed if it carries none).
    Fec(&'a [u8]),
    /// The frame was lost: conceal it from what came before.
    Lost,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("codec: {0}")]
pub struct CodecError(pub &'static str);

pub trait Decode {
    fn decode(&mut self, input: Input<'_>, out: &mut Pcm) -> Result<(), CodecError>;
}

pub trait Encode {
    /// Encodes one frame into `out`; the packet's length.
    fn encode(&mut self, pcm: &Pcm, out: &mut [u8]) -> Result<usize, CodecError>;

    /// The loss the receivers report, in percent: an encoder with in-band FEC sizes it to it.
    fn set_expected_loss(&mut self, _percent: i32) {}
}

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    pub bitrate_bps: i32,
    /// 0 (cheapest) to 10.
    pub complexity: i32,
    /// In-band forward error correction, sized for `expected_loss_percent`.
    pub fec: bool,
    pub expected_loss_percent: i32,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            bitrate_bps: 32_000,
            complexity: 5,
            fec: true,
            expected_loss_percent: 5,
        }
    }
}

pub struct OpusDecoder {
    inner: opus_rs::OpusDecoder,
    scratch: [f32; FRAME],
}

impl OpusDecoder {
    pub fn new() -> Self {
        Self {
            inner: opus_rs::OpusDecoder::new(48_000, 1).expect("48 kHz mono is valid"),
            scratch: [0.0; FRAME],
        }
    }
}

impl Default for OpusDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decode for OpusDecoder {
    fn decode(&mut self, input: Input<'_>, out: &mut Pcm) -> Result<(), CodecError> {
        let n = match input {
            Input::Packet(p) => self.inner.decode(p, FRAME, &mut self.scratch),
            Input::Fec(next) => self.inner.decode_fec(next, FRAME, &mut self.scratch),
            Input::Lost => self.inner.decode(&[], FRAME, &mut self.scratch),
        }
        .map_err(CodecError)?;
        if n != FRAME {
            // A packet of another frame length: the mixer ticks in 20 ms only.
            out.fill(0);
            return Err(CodecError("not a 20 ms frame"));
        }
        for (o, s) in out.iter_mut().zip(&self.scratch) {
            *o = (s * 32768.0).clamp(-32768.0, 32767.0) as i16;
        }
        Ok(())
    }
}

pub struct OpusEncoder {
    inner: opus_rs::OpusEncoder,
}

impl OpusEncoder {
    pub fn new(settings: EncoderSettings) -> Self {
        let mut inner =
            opus_rs::OpusEncoder::new(48_000, 1, opus_rs::Application::Voip).expect("valid");
        inner.bitrate_bps = settings.bitrate_bps;
        inner.complexity = settings.complexity;
        inner.use_inband_fec = settings.fec;
        inner.packet_loss_perc = settings.expected_loss_percent;
        Self { inner }
    }
}

impl Encode for OpusEncoder {
    fn encode(&mut self, pcm: &Pcm, out: &mut [u8]) -> Result<usize, CodecError> {
        self.inner.encode_i16(pcm, FRAME, out).map_err(CodecError)
    }

    /// More loss, more FEC (within the bit rate: Opus takes it from the audio).
    fn set_expected_loss(&mut self, percent: i32) {
        self.inner.packet_loss_perc = percent.clamp(0, 100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::testing::{power, tone};
    use crate::mix::MAX_PACKET;

    #[test]
    fn a_tone_survives_encode_and_decode() {
        let mut enc = OpusEncoder::new(EncoderSettings::default());
        let mut dec = OpusDecoder::new();
        let mut packet = [0u8; MAX_PACKET];
        let mut decoded = Vec::new();
        for i in 0..25 {
            let n = enc
                .encode(&tone(440.0, 8000.0, i * FRAME), &mut packet)
                .unwrap();
            assert!(n > 2 && n < 400, "{n} bytes");
            let mut pcm = [0i16; FRAME];
            dec.decode(Input::Packet(&packet[..n]), &mut pcm).unwrap();
            decoded.extend_from_slice(&pcm);
        }
        let tail = &decoded[decoded.len() / 2..];
        assert!(power(tail, 440.0) > 100.0 * power(tail, 660.0));
    }

    #[test]
    fn a_lost_frame_is_concealed_not_silent() {
        let mut enc = OpusEncoder::new(EncoderSettings::default());
        let mut dec = OpusDecoder::new();
        let mut packet = [0u8; MAX_PACKET];
        let mut pcm = [0i16; FRAME];
        for i in 0..10 {
            let n = enc
                .encode(&tone(440.0, 8000.0, i * FRAME), &mut packet)
                .unwrap();
            dec.decode(Input::Packet(&packet[..n]), &mut pcm).unwrap();
        }
        dec.decode(Input::Lost, &mut pcm).unwrap();
        assert!(power(&pcm, 440.0) > 0.0);
        assert!(
            crate::mix::dbov(&pcm) < 60,
            "concealment continues the tone"
        );
    }
}
