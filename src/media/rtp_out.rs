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

/// One packet's header fields and extension values.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub time: u32,
    pub ssrc: u32,
    /// RFC 6464: level in -dBov (0..=127) and voice activity.
    pub level: Option<(i8, bool)>,
    /// abs-capture-time: NTP capture time and the optional clock offset (Q32.32).
    pub capture: Option<(u64, Option<i64>)>,
    /// abs-send-time: when the server sent it.
    pub sent: Option<Instant>,
    pub mid: &'a str,
}

/// Appends the header to `buf` (expected empty); returns its length.
pub fn write(buf: &mut Vec<u8>, h: &Header<'_>, ids: &ExtIds) -> usize {
    buf.push(0x80);
    buf.push(h.pt & 0x7f | if h.marker { 0x80 } else { 0 });
    buf.extend_from_slice(&h.seq.to_be_bytes());
    buf.extend_from_slice(&h.time.to_be_bytes());
    buf.extend_from_slice(&h.ssrc.to_be_bytes());
    let start = buf.len();
    buf.extend_from_slice(&[0xBE, 0xDE, 0, 0]);
    let mut ext = |id: u8, data: &[u8]| {
        if id != 0 && !data.is_empty() && data.len() <= 16 {
            buf.push(id << 4 | (data.len() as u8 - 1));
            buf.extend_from_slice(data);
        }
    };
    if let Some((level, vad)) = h.level {
        ext(
            ids.level,
            &[u8::from(vad) << 7 | (level.unsigned_abs() & 0x7f)],
        );
    }
    ext(ids.mid, h.mid.as_bytes());
    if let Some(sent) = h.sent {
        ext(ids.send_time, &abs_send_time(unix(sent)).to_be_bytes()[1..]);
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
    let ext_len = buf.len() - start - 4;
    if ext_len == 0 {
        // No extension after all: no extension header either.
        buf.truncate(start);
        return start;
    }
    buf.resize(buf.len() + (4 - ext_len % 4) % 4, 0);
    let words = ((buf.len() - start - 4) / 4) as u16;
    buf[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    buf[0] |= 0x10;
    buf.len()
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

    fn header(mid: &str) -> Header<'_> {
        Header {
            pt: 111,
            marker: true,
            seq: 65_535,
            time: 0xdead_beef,
            ssrc: 0x1234_5678,
            level: Some((-37, true)),
            capture: Some((0x0102_0304_0506_0708, Some(-5))),
            sent: Some(Instant::now()),
            mid,
        }
    }

    #[test]
    fn an_independent_parser_reads_back_every_field_and_extension() {
        let mut buf = Vec::new();
        let len = write(&mut buf, &header("12"), &ids());
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
        assert_eq!(h.get_extension(2).expect("send time").len(), 3);
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
        write(&mut buf, &header("0"), &only_level);
        let p = Packet::unmarshal(&mut &buf[..]).expect("parses");
        assert_eq!(p.header.extensions.len(), 1);
        assert!(p.header.get_extension(3).is_some());
        buf.clear();
        let len = write(&mut buf, &header("0"), &ExtIds::default());
        assert_eq!(len, 12, "no extension header without extensions");
        assert_eq!(buf[0], 0x80);
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
