//! RTP headers for the audio the server writes to listeners itself (sealed by `srtp.rs`):
//! the header extensions the listener negotiated, in RFC 8285's one-byte form, with the same
//! values str0m would write.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use str0m::rtp::{Extension, ExtensionMap};

/// RFC 8285 §4.2: the one-byte form carries IDs 1–14.
const MAX_ONE_BYTE_ID: u8 = 14;
/// Seconds from 1900 (NTP's epoch) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The extension IDs a listener agreed to for audio; 0 where it did not (or where the ID
/// needs the two-byte form, which this writer does not use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtIds {
    pub level: u8,
    pub mid: u8,
    pub send_time: u8,
    pub capture: u8,
}

impl ExtIds {
    pub fn from_map(map: &ExtensionMap) -> Self {
        let id = |e| {
            map.id_of(e)
                .filter(|id| (1..=MAX_ONE_BYTE_ID).contains(id))
                .unwrap_or(0)
        };
        Self {
            level: id(Extension::AudioLevel),
            mid: id(Extension::RtpMid),
            send_time: id(Extension::AbsoluteSendTime),
            capture: id(Extension::AbsoluteCaptureTime),
        }
    }
}

/// What a listener's slot looks like on the wire: its stream's SSRC and MID, kept as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotWire {
    pub ssrc: u32,
    mid: [u8; 16],
    mid_len: u8,
}

impl SlotWire {
    pub fn new(ssrc: u32, mid: &str) -> Self {
        let len = mid.len().min(16);
        let mut bytes = [0u8; 16];
        bytes[..len].copy_from_slice(&mid.as_bytes()[..len]);
        Self {
            ssrc,
            mid: bytes,
            mid_len: len as u8,
        }
    }

    pub fn mid(&self) -> &[u8] {
        &self.mid[..usize::from(self.mid_len)]
    }
}

/// One packet's header fields and extension values.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub time: u32,
    pub wire: &'a SlotWire,
    /// RFC 6464: level in -dBov (0..=127) and voice activity.
    pub level: Option<(i8, bool)>,
    /// abs-capture-time: NTP capture time and the optional clock offset (Q32.32).
    pub capture: Option<(u64, Option<i64>)>,
    /// abs-send-time, 24 bits (`Stamps`).
    pub sent: Option<u32>,
}

/// The longest header `write` makes: 12 fixed bytes, the extension header, and the four
/// extensions (1 + 1, 1 + 16, 1 + 3, 1 + 16).
const MAX_HEADER: usize = 12 + 4 + 40;

/// Appends the header to `buf` (expected empty); returns its length.
pub fn write(buf: &mut Vec<u8>, h: &Header<'_>, ids: &ExtIds) -> usize {
    // Built on the stack and appended once: this runs per packet per listener.
    let mut b = [0u8; MAX_HEADER];
    b[0] = 0x80;
    b[1] = h.pt & 0x7f | if h.marker { 0x80 } else { 0 };
    b[2..4].copy_from_slice(&h.seq.to_be_bytes());
    b[4..8].copy_from_slice(&h.time.to_be_bytes());
    b[8..12].copy_from_slice(&h.wire.ssrc.to_be_bytes());
    b[12] = 0xBE;
    b[13] = 0xDE;
    let mut at = 16;
    let mut ext = |id: u8, data: &[u8]| {
        if id != 0 && !data.is_empty() && data.len() <= 16 {
            b[at] = id << 4 | (data.len() as u8 - 1);
            b[at + 1..at + 1 + data.len()].copy_from_slice(data);
            at += 1 + data.len();
        }
    };
    if let Some((level, vad)) = h.level {
        ext(
            ids.level,
            &[u8::from(vad) << 7 | (level.unsigned_abs() & 0x7f)],
        );
    }
    ext(ids.mid, h.wire.mid());
    if let Some(sent) = h.sent {
        ext(ids.send_time, &sent.to_be_bytes()[1..]);
    }
    if let Some((ntp, offset)) = h.capture {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&ntp.to_be_bytes());
        let len = match offset {
            Some(o) => {
                v[8..].copy_from_slice(&o.to_be_bytes());
                16
            }
            None => 8,
        };
        ext(ids.capture, &v[..len]);
    }
    let len = if at == 16 {
        // No extension after all: no extension header either.
        12
    } else {
        let padded = 16 + (at - 16).div_ceil(4) * 4;
        let words = ((padded - 16) / 4) as u16;
        b[14..16].copy_from_slice(&words.to_be_bytes());
        b[0] |= 0x10;
        padded
    };
    buf.extend_from_slice(&b[..len]);
    len
}

/// The wall-clock values of the packet being fanned out, worked out once for all its
/// listeners rather than per listener.
#[derive(Debug, Default)]
pub struct Stamps {
    last: Option<(Instant, Option<SystemTime>, u32, Option<u64>)>,
}

impl Stamps {
    /// abs-send-time for `arrived` and the NTP form of `capture`.
    pub fn get(&mut self, arrived: Instant, capture: Option<SystemTime>) -> (u32, Option<u64>) {
        match self.last {
            Some((a, c, sent, ntp)) if a == arrived && c == capture => (sent, ntp),
            _ => {
                let sent = abs_send_time(unix(arrived));
                let ntp = capture.map(ntp_64);
                self.last = Some((arrived, capture, sent, ntp));
                (sent, ntp)
            }
        }
    }
}

/// NTP 64-bit (32.32) time of a wall-clock instant, as abs-capture-time carries it.
pub fn ntp_64(t: SystemTime) -> u64 {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    ((since.as_secs() + NTP_UNIX_OFFSET) << 32) | frac
}

/// abs-send-time: 6.18 fixed-point seconds, wrapping every 64 s.
fn abs_send_time(since_unix: Duration) -> u32 {
    let frac = (u64::from(since_unix.subsec_nanos()) << 18) / 1_000_000_000;
    (((since_unix.as_secs() & 63) << 18) | frac) as u32
}

/// Wall-clock time of a monotonic instant, from one pair of readings taken on first use.
fn unix(at: Instant) -> Duration {
    static EPOCH: OnceLock<(Instant, Duration)> = OnceLock::new();
    let (mono, wall) = *EPOCH.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        (Instant::now(), wall)
    });
    match at.checked_duration_since(mono) {
        Some(after) => wall + after,
        None => wall.saturating_sub(mono - at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::packet::Packet;
    use rtc::shared::marshal::Unmarshal;

    fn ids() -> ExtIds {
        ExtIds {
            level: 1,
            mid: 4,
            send_time: 2,
            capture: 5,
        }
    }

    fn header(wire: &SlotWire) -> Header<'_> {
        Header {
            pt: 111,
            marker: true,
            seq: 65_535,
            time: 0xdead_beef,
            wire,
            level: Some((-37, true)),
            capture: Some((0x0102_0304_0506_0708, Some(-5))),
            sent: Some(0x12_3456),
        }
    }

    #[test]
    fn an_independent_parser_reads_back_every_field_and_extension() {
        let mut buf = Vec::new();
        let len = write(&mut buf, &header(&SlotWire::new(0x1234_5678, "12")), &ids());
        assert_eq!(len, buf.len());
        assert_eq!(len % 4, 0);
        buf.extend_from_slice(b"opus");
        let p = Packet::unmarshal(&mut &buf[..]).expect("parses");
        let h = &p.header;
        assert_eq!((h.version, h.payload_type, h.marker), (2, 111, true));
        assert_eq!(
            (h.sequence_number, h.timestamp, h.ssrc),
            (65_535, 0xdead_beef, 0x1234_5678)
        );
        assert_eq!(&p.payload[..], b"opus");
        assert_eq!(&h.get_extension(1).expect("level")[..], &[0x80 | 37]);
        assert_eq!(&h.get_extension(4).expect("mid")[..], b"12");
        assert_eq!(
            &h.get_extension(2).expect("send time")[..],
            &[0x12, 0x34, 0x56]
        );
        let capture = h.get_extension(5).expect("capture");
        assert_eq!(&capture[..8], &0x0102_0304_0506_0708u64.to_be_bytes());
        assert_eq!(&capture[8..], &(-5i64).to_be_bytes());
    }

    #[test]
    fn extensions_the_listener_did_not_agree_to_are_left_out() {
        let mut buf = Vec::new();
        let only_level = ExtIds {
            level: 3,
            ..ExtIds::default()
        };
        let wire = SlotWire::new(1, "0");
        write(&mut buf, &header(&wire), &only_level);
        let p = Packet::unmarshal(&mut &buf[..]).expect("parses");
        assert_eq!(p.header.extensions.len(), 1);
        assert!(p.header.get_extension(3).is_some());
        buf.clear();
        let len = write(&mut buf, &header(&wire), &ExtIds::default());
        assert_eq!(len, 12, "no extension header without extensions");
        assert_eq!(buf[0], 0x80);
    }

    #[test]
    fn stamps_are_worked_out_once_per_packet() {
        let mut stamps = Stamps::default();
        let (t0, wall) = (Instant::now(), SystemTime::now());
        let first = stamps.get(t0, Some(wall));
        assert_eq!(stamps.get(t0, Some(wall)), first);
        assert_eq!(first.1, Some(ntp_64(wall)));
        let later = stamps.get(t0 + Duration::from_millis(250), None);
        assert_eq!(later.1, None);
        // A quarter second is 2^16 in 6.18 fixed point (modulo 64 s).
        let step = i64::from(later.0.wrapping_sub(first.0) & 0xff_ffff);
        assert!((step - (1 << 16)).abs() <= 1, "{step}");
    }

    #[test]
    fn wall_clock_encodings() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1, 500_000_000);
        assert_eq!(ntp_64(t), ((1 + NTP_UNIX_OFFSET) << 32) | (1 << 31));
        assert_eq!(
            abs_send_time(Duration::new(65, 250_000_000)),
            (1 << 18) | (1 << 16)
        );
    }
}
