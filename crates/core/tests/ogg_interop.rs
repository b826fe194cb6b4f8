//! Ogg Opus files of the core's writer read in another Ogg implementation (the `ogg` crate)
//! and decode in libopus; files of that implementation read in the core's reader.

use std::io::Cursor;

use amphi_core::mix::codec::{Encode, EncoderSettings, OpusEncoder};
use amphi_core::mix::ogg::{read_ogg_opus, OggOpusWriter};
use amphi_core::mix::testing::power;
use amphi_core::mix::{FRAME, MAX_PACKET};

/// Frame `frame` of a tone at `freq`.
fn tone(freq: f64, frame: usize) -> [i16; FRAME] {
    amphi_core::mix::testing::tone(freq, 8000.0, frame * FRAME)
}

fn encoded_tone(freq: f64, frames: usize) -> Vec<Vec<u8>> {
    let mut enc = OpusEncoder::new(EncoderSettings::default());
    (0..frames)
        .map(|f| {
            let mut packet = [0u8; MAX_PACKET];
            let n = enc.encode(&tone(freq, f), &mut packet).unwrap();
            packet[..n].to_vec()
        })
        .collect()
}

#[test]
fn another_ogg_reader_and_libopus_play_what_the_writer_wrote() {
    let packets = encoded_tone(440.0, 150);
    let mut w = OggOpusWriter::new(0x5eed, 1, 312);
    let mut file = Vec::new();
    w.headers("amphi", &mut file);
    for p in &packets {
        assert!(w.packet(p, 960, &mut file));
    }
    w.finish(&mut file);

    let mut reader = ogg::reading::PacketReader::new(Cursor::new(file));
    let head = reader.read_packet_expected().unwrap();
    assert!(head.first_in_stream());
    assert_eq!(&head.data[..8], b"OpusHead");
    let tags = reader.read_packet_expected().unwrap();
    assert_eq!(&tags.data[..8], b"OpusTags");
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut heard = Vec::new();
    let mut last = None;
    while let Some(p) = reader.read_packet().unwrap() {
        let mut pcm = [0i16; FRAME];
        assert_eq!(dec.decode(&p.data, &mut pcm, false).unwrap(), FRAME);
        heard.extend_from_slice(&pcm);
        last = Some((p.absgp_page(), p.last_in_stream()));
    }
    assert_eq!(heard.len(), 150 * FRAME);
    assert_eq!(
        last,
        Some((312 + 150 * 960, true)),
        "granule and end of stream"
    );
    let tail = &heard[heard.len() / 2..];
    assert!(power(tail, 440.0) > 100.0 * power(tail, 1000.0));
}

#[test]
fn the_reader_reads_another_writers_file() {
    use ogg::writing::PacketWriteEndInfo::{EndPage, EndStream, NormalPacket};
    let packets = encoded_tone(660.0, 80);
    let mut out = ogg::writing::PacketWriter::new(Vec::new());
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[1, 1, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
    out.write_packet(head, 9, EndPage, 0).unwrap();
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&[5, 0, 0, 0]);
    tags.extend_from_slice(b"other");
    tags.extend_from_slice(&[0, 0, 0, 0]);
    out.write_packet(tags, 9, EndPage, 0).unwrap();
    for (i, p) in packets.iter().enumerate() {
        let end = if i + 1 == packets.len() {
            EndStream
        } else {
            NormalPacket
        };
        out.write_packet(p.clone(), 9, end, 312 + 960 * (i as u64 + 1))
            .unwrap();
    }
    let file = out.into_inner();
    let read = read_ogg_opus(&file).unwrap();
    assert_eq!((read.channels, read.pre_skip), (1, 312));
    let back: Vec<Vec<u8>> = read.packets.into_iter().map(|(p, _)| p).collect();
    assert_eq!(back, packets);
}
