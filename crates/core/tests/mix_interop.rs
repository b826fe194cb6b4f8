//! The mixer's Opus (pure Rust) and libopus (what browsers and the Rust client run) read each
//! other's packets: a tone goes through in both directions.

use amphi_core::mix::codec::{Decode, Encode, EncoderSettings, Input, OpusDecoder, OpusEncoder};
use amphi_core::mix::testing::power;
use amphi_core::mix::{FRAME, MAX_PACKET};

/// Frame `frame` of a tone at `freq`.
fn tone(freq: f64, frame: usize) -> [i16; FRAME] {
    amphi_core::mix::testing::tone(freq, 8000.0, frame * FRAME)
}

#[test]
fn libopus_decodes_what_the_mixer_encodes() {
    let mut enc = OpusEncoder::new(EncoderSettings::default());
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut heard = Vec::new();
    for f in 0..50 {
        let mut packet = [0u8; MAX_PACKET];
        let n = enc.encode(&tone(400.0, f), &mut packet).unwrap();
        let mut pcm = [0i16; FRAME];
        assert_eq!(dec.decode(&packet[..n], &mut pcm, false).unwrap(), FRAME);
        heard.extend_from_slice(&pcm);
    }
    let tail = &heard[heard.len() / 2..];
    assert!(power(tail, 400.0) > 1_000.0 * power(tail, 600.0));
}

#[test]
fn the_mixer_decodes_what_libopus_encodes() {
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let mut dec = OpusDecoder::new();
    let mut heard = Vec::new();
    for f in 0..50 {
        let mut packet = [0u8; MAX_PACKET];
        let n = enc.encode(&tone(600.0, f), &mut packet).unwrap();
        let mut pcm = [0i16; FRAME];
        dec.decode(Input::Packet(&packet[..n]), &mut pcm).unwrap();
        heard.extend_from_slice(&pcm);
    }
    let tail = &heard[heard.len() / 2..];
    assert!(power(tail, 600.0) > 1_000.0 * power(tail, 400.0));
}
