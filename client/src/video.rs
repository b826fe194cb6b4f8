//! A camera for the Rust client: VP8 frames read from an IVF file and played in a loop, so
//! a test or a bot sends real video a browser decodes.

use std::time::Duration;

/// VP8 frames of an IVF file (the container `vpxenc` and FFmpeg write), in order.
#[derive(Clone, Debug)]
pub struct VideoFile {
    frames: Vec<Vec<u8>>,
    /// Time between frames.
    pub interval: Duration,
    next: usize,
}

impl VideoFile {
    /// The test pattern kept with the client: two seconds of 160×120 at 15 frames/s.
    pub fn test_pattern() -> VideoFile {
        Self::parse(include_bytes!("../fixtures/testsrc-160x120-vp8.ivf"))
            .expect("the kept fixture is a VP8 IVF file")
    }

    pub fn parse(data: &[u8]) -> Result<VideoFile, String> {
        let header = data.get(..32).ok_or("shorter than an IVF header")?;
        if &header[..4] != b"DKIF" {
            return Err("not an IVF file (no DKIF signature)".into());
        }
        if &header[8..12] != b"VP80" {
            return Err("not VP8 (only VP8 IVF files are read)".into());
        }
        let header_len = usize::from(u16::from_le_bytes([header[6], header[7]]));
        let rate = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
        let scale = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
        if rate == 0 || scale == 0 {
            return Err("the IVF header gives no frame rate".into());
        }
        let mut frames = Vec::new();
        let mut at = header_len;
        while at + 12 <= data.len() {
            let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
            let frame = data
                .get(at + 12..at + 12 + len)
                .ok_or("a frame runs past the end of the file")?;
            frames.push(frame.to_vec());
            at += 12 + len;
        }
        if frames.is_empty() {
            return Err("no frames".into());
        }
        if !is_keyframe(&frames[0]) {
            return Err("the first frame is not a keyframe".into());
        }
        Ok(VideoFile {
            frames,
            interval: Duration::from_secs_f64(f64::from(scale) / f64::from(rate)),
            next: 0,
        })
    }

    /// The next frame, from the start again after the last.
    pub fn next_frame(&mut self) -> &[u8] {
        let i = self.next;
        self.next = (self.next + 1) % self.frames.len();
        &self.frames[i]
    }

    /// A receiver asked for a keyframe: the next frame sent is one (the file's first).
    pub fn restart(&mut self) {
        self.next = 0;
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// RFC 6386 §9.1: bit 0 of the first byte is 0 on a keyframe.
pub fn is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kept_test_pattern() {
        let mut v = VideoFile::test_pattern();
        assert_eq!(v.len(), 30);
        assert_eq!(v.interval, Duration::from_secs_f64(1.0 / 15.0));
        let keyframes = (0..30).filter(|_| is_keyframe(v.next_frame())).count();
        assert_eq!(keyframes, 2, "one every 15 frames");
        assert!(is_keyframe(v.next_frame()), "loops to the first frame");
        v.next_frame();
        v.restart();
        assert!(is_keyframe(v.next_frame()));
    }

    #[test]
    fn refuses_what_it_cannot_play() {
        assert!(VideoFile::parse(b"RIFF").is_err());
        let mut data = include_bytes!("../fixtures/testsrc-160x120-vp8.ivf").to_vec();
        data[8..12].copy_from_slice(b"VP90");
        assert!(VideoFile::parse(&data).unwrap_err().contains("VP8"));
        let data = include_bytes!("../fixtures/testsrc-160x120-vp8.ivf");
        assert!(VideoFile::parse(&data[..100]).is_err(), "truncated frame");
    }
}
