//! Ogg Opus (RFC 7845) without IO: the writer turns Opus packets into page bytes (a recording
//! of a channel's mix, written as it was encoded), the reader turns a file's bytes into Opus
//! packets (a file played into a channel). Both check what they can: CRCs, the Opus headers,
//! packet durations; nothing in a file can make them allocate beyond its own size.

use std::fmt;

/// Packets per page at most: a page is what a crash can lose (one second of 20 ms frames).
const PAGE_PACKETS: usize = 50;
/// Lacing values in one page (a byte counts them).
const MAX_SEGMENTS: usize = 255;
/// The Ogg page header before its segment table.
const HEADER: usize = 27;
const FLAG_CONTINUED: u8 = 0x01;
const FLAG_FIRST: u8 = 0x02;
const FLAG_LAST: u8 = 0x04;

/// CRC-32 of Ogg pages: polynomial 0x04C11DB7, not reflected, zero start, no final XOR.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04c1_1db7
            } else {
                r << 1
            };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
};

fn crc_update(crc: u32, data: &[u8]) -> u32 {
    data.iter().fold(crc, |c, &b| {
        (c << 8) ^ CRC_TABLE[((c >> 24) as u8 ^ b) as usize]
    })
}

fn crc(data: &[u8]) -> u32 {
    crc_update(0, data)
}

/// Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716 §3.1); `None` for an
/// empty or malformed packet.
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame length in 1/400 s (2.5 ms) units.
    let units = match config {
        0..=11 => [4, 8, 16, 24][usize::from(config % 4)],
        12..=15 => [4, 8][usize::from(config % 2)],
        _ => [1, 2, 4, 8][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let samples = frames * units * 120;
    // At most 120 ms per packet.
    (frames > 0 && samples <= 5_760).then_some(samples)
}

/// Writes an Ogg Opus stream page by page into caller-owned buffers.
pub struct OggOpusWriter {
    serial: u32,
    page_seq: u32,
    /// Samples written so far, pre-skip included (the granule position).
    granule: u64,
    lacing: Vec<u8>,
    body: Vec<u8>,
    packets: usize,
    channels: u8,
    pre_skip: u16,
}

impl OggOpusWriter {
    /// A stream with serial number `serial`; `pre_skip`: the encoder's lookahead in samples.
    pub fn new(serial: u32, channels: u8, pre_skip: u16) -> Self {
        Self {
            serial,
            page_seq: 0,
            granule: 0,
            lacing: Vec::with_capacity(MAX_SEGMENTS),
            body: Vec::with_capacity(MAX_SEGMENTS * 255),
            packets: 0,
            channels,
            pre_skip,
        }
    }

    /// The two header pages (OpusHead, OpusTags); first in the file.
    pub fn headers(&mut self, vendor: &str, out: &mut Vec<u8>) {
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1);
        head.push(self.channels);
        head.extend_from_slice(&self.pre_skip.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes());
        head.push(0);
        self.page_with(&head, FLAG_FIRST, 0, out);
        let mut tags = Vec::with_capacity(16 + vendor.len());
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes());
        self.page_with(&tags, 0, 0, out);
        self.granule = u64::from(self.pre_skip);
    }

    fn page_with(&mut self, packet: &[u8], flags: u8, granule: u64, out: &mut Vec<u8>) {
        self.add_lacing(packet.len());
        self.body.extend_from_slice(packet);
        self.write_page(flags, granule, out);
    }

    fn add_lacing(&mut self, len: usize) {
        self.lacing.extend(std::iter::repeat_n(255u8, len / 255));
        self.lacing.push((len % 255) as u8);
    }

    /// Adds one packet of `samples` (48 kHz) audio; the page before it goes to `out` once
    /// full (a full page is held until the next packet, so that the last page of the stream,
    /// marked as such, carries the last packet). Packets longer than a page can carry (over
    /// 64 KiB) are refused.
    pub fn packet(&mut self, packet: &[u8], samples: u32, out: &mut Vec<u8>) -> bool {
        let segments = packet.len() / 255 + 1;
        if segments > MAX_SEGMENTS {
            return false;
        }
        if self.lacing.len() + segments > MAX_SEGMENTS || self.packets >= PAGE_PACKETS {
            self.flush(out);
        }
        self.add_lacing(packet.len());
        self.body.extend_from_slice(packet);
        self.granule += u64::from(samples);
        self.packets += 1;
        true
    }

    /// Writes what is pending as a page (nothing when nothing is).
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if !self.lacing.is_empty() {
            self.write_page(0, self.granule, out);
        }
    }

    /// The last page, marked end of stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.write_page(FLAG_LAST, self.granule, out);
    }

    /// Samples written (pre-skip included).
    pub fn granule(&self) -> u64 {
        self.granule
    }

    fn write_page(&mut self, flags: u8, granule: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(b"OggS");
        out.push(0);
        out.push(flags);
        out.extend_from_slice(&granule.to_le_bytes());
        out.extend_from_slice(&self.serial.to_le_bytes());
        out.extend_from_slice(&self.page_seq.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(self.lacing.len() as u8);
        out.extend_from_slice(&self.lacing);
        out.extend_from_slice(&self.body);
        let sum = crc(&out[start..]);
        out[start + 22..start + 26].copy_from_slice(&sum.to_le_bytes());
        self.page_seq += 1;
        self.lacing.clear();
        self.body.clear();
        self.packets = 0;
    }
}

/// Why a file is not playable Ogg Opus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OggError {
    /// The bytes do not start with an Ogg page.
    NotOgg,
    /// A page ends before its header or body says it does.
    Truncated { offset: usize },
    /// A page's checksum does not match its bytes.
    BadChecksum { page: u32 },
    /// The first packet is not an `OpusHead`, or it is malformed.
    NotOpus,
    /// Channel mappings beyond mono and stereo.
    Unsupported(String),
    /// A packet whose TOC byte makes no sense.
    BadPacket { index: usize },
    /// No audio after the headers.
    Empty,
}

impl fmt::Display for OggError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OggError::NotOgg => write!(f, "not an Ogg file (no 'OggS' at its start)"),
            OggError::Truncated { offset } => write!(f, "the file is cut short at byte {offset}"),
            OggError::BadChecksum { page } => write!(f, "page {page} fails its checksum"),
            OggError::NotOpus => write!(f, "the Ogg stream is not Opus (no valid OpusHead)"),
            OggError::Unsupported(what) => write!(f, "unsupported Opus stream: {what}"),
            OggError::BadPacket { index } => write!(f, "audio packet {index} is malformed"),
            OggError::Empty => write!(f, "the file holds no audio"),
        }
    }
}

impl std::error::Error for OggError {}

/// An Ogg Opus file's audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OggOpus {
    pub channels: u8,
    pub pre_skip: u16,
    /// The Opus packets in order, each with its duration in 48 kHz samples.
    pub packets: Vec<(Vec<u8>, u32)>,
}

/// Reads the first logical Opus stream of an Ogg file (pages of other streams are skipped).
pub fn read_ogg_opus(data: &[u8]) -> Result<OggOpus, OggError> {
    if !data.starts_with(b"OggS") {
        return Err(OggError::NotOgg);
    }
    let mut serial = None;
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let header = data
            .get(at..at + HEADER)
            .ok_or(OggError::Truncated { offset: at })?;
        if &header[..4] != b"OggS" || header[4] != 0 {
            return Err(OggError::NotOgg);
        }
        let flags = header[5];
        let page_serial = u32::from_le_bytes(header[14..18].try_into().expect("4 bytes"));
        let page_seq = u32::from_le_bytes(header[18..22].try_into().expect("4 bytes"));
        let stored = u32::from_le_bytes(header[22..26].try_into().expect("4 bytes"));
        let count = usize::from(header[26]);
        let lacing = data
            .get(at + HEADER..at + HEADER + count)
            .ok_or(OggError::Truncated { offset: at })?;
        let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let end = at + HEADER + count + body_len;
        let page = data
            .get(at..end)
            .ok_or(OggError::Truncated { offset: at })?;
        // The checksum is over the page with its own field zeroed.
        let sum = crc_update(crc_update(crc(&page[..22]), &[0; 4]), &page[26..]);
        if sum != stored {
            return Err(OggError::BadChecksum { page: page_seq });
        }
        at = end;
        match serial {
            None if flags & FLAG_FIRST != 0 => serial = Some(page_serial),
            None => return Err(OggError::NotOpus),
            Some(s) if s != page_serial => continue,
            Some(_) => {}
        }
        if flags & FLAG_CONTINUED == 0 && !partial.is_empty() {
            // A packet left open by the previous page that this page does not continue.
            partial.clear();
        }
        let mut body = &page[HEADER + count..];
        for &l in lacing {
            let (chunk, rest) = body.split_at(usize::from(l));
            partial.extend_from_slice(chunk);
            body = rest;
            if l < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
    }
    let mut packets = packets.into_iter();
    let head = packets.next().ok_or(OggError::NotOpus)?;
    if head.len() < 19 || &head[..8] != b"OpusHead" || head[8] & 0xf0 != 0 {
        return Err(OggError::NotOpus);
    }
    let channels = head[9];
    let pre_skip = u16::from_le_bytes([head[10], head[11]]);
    let mapping = head[18];
    if mapping != 0 || !(1..=2).contains(&channels) {
        return Err(OggError::Unsupported(format!(
            "{channels} channels with mapping family {mapping} (mono or stereo, family 0, only)"
        )));
    }
    match packets.next() {
        Some(tags) if tags.starts_with(b"OpusTags") => {}
        _ => return Err(OggError::NotOpus),
    }
    let audio = packets
        .enumerate()
        .map(|(index, p)| {
            let samples = packet_samples(&p).ok_or(OggError::BadPacket { index })?;
            Ok((p, samples))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if audio.is_empty() {
        return Err(OggError::Empty);
    }
    Ok(OggOpus {
        channels,
        pre_skip,
        packets: audio,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20 ms CELT packet: TOC config 31 (fullband, 20 ms), one frame.
    fn frame(n: u8, len: usize) -> Vec<u8> {
        let mut p = vec![n; len];
        p[0] = 31 << 3;
        p
    }

    fn write(packets: &[Vec<u8>]) -> Vec<u8> {
        let mut w = OggOpusWriter::new(7, 1, 312);
        let mut out = Vec::new();
        w.headers("amphi", &mut out);
        for p in packets {
            assert!(w.packet(p, 960, &mut out));
        }
        w.finish(&mut out);
        out
    }

    #[test]
    fn what_is_written_reads_back() {
        // Long packets span lacing values; 120 of them span pages.
        let packets: Vec<Vec<u8>> = (0..120u8)
            .map(|i| frame(i, 1 + usize::from(i) * 7))
            .collect();
        let file = write(&packets);
        let read = read_ogg_opus(&file).unwrap();
        assert_eq!((read.channels, read.pre_skip), (1, 312));
        let back: Vec<Vec<u8>> = read.packets.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(back, packets);
        assert!(read.packets.iter().all(|&(_, s)| s == 960));
    }

    #[test]
    fn a_page_granule_counts_the_samples_up_to_its_last_packet() {
        let mut w = OggOpusWriter::new(1, 1, 312);
        let mut out = Vec::new();
        w.headers("amphi", &mut out);
        let headers = out.len();
        for _ in 0..=PAGE_PACKETS {
            w.packet(&frame(0, 10), 960, &mut out);
        }
        assert!(
            out.len() > headers,
            "a full page is written with the next packet"
        );
        let granule = u64::from_le_bytes(out[headers + 6..headers + 14].try_into().unwrap());
        assert_eq!(granule, 312 + 960 * PAGE_PACKETS as u64);
    }

    #[test]
    fn damage_is_named() {
        let file = write(&[frame(1, 40), frame(2, 40)]);
        assert_eq!(read_ogg_opus(b"RIFF....").unwrap_err(), OggError::NotOgg);
        assert!(matches!(
            read_ogg_opus(&file[..file.len() - 3]).unwrap_err(),
            OggError::Truncated { .. }
        ));
        let mut flipped = file.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x55;
        assert!(matches!(
            read_ogg_opus(&flipped).unwrap_err(),
            OggError::BadChecksum { .. }
        ));
        let mut headers_only = Vec::new();
        OggOpusWriter::new(1, 1, 0).headers("amphi", &mut headers_only);
        assert_eq!(read_ogg_opus(&headers_only).unwrap_err(), OggError::Empty);
        let mut w = OggOpusWriter::new(1, 6, 0);
        let mut six = Vec::new();
        w.headers("amphi", &mut six);
        assert!(matches!(
            read_ogg_opus(&six).unwrap_err(),
            OggError::Unsupported(_)
        ));
    }

    #[test]
    fn packet_durations_come_from_the_toc() {
        assert_eq!(packet_samples(&[31 << 3]), Some(960));
        assert_eq!(packet_samples(&[(31 << 3) | 1]), Some(1920));
        assert_eq!(packet_samples(&[(28 << 3) | 3, 3]), Some(360));
        assert_eq!(packet_samples(&[(1 << 3) | 3, 0]), None, "zero frames");
        assert_eq!(packet_samples(&[(3 << 3) | 3, 3]), None, "180 ms");
        assert_eq!(packet_samples(&[]), None);
    }
}
