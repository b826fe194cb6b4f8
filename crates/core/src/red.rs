//! RFC 2198 redundant audio, as browsers send it with Opus: block headers (4 bytes each for
//! the redundant blocks, 1 byte for the last), the redundant blocks, then the primary block,
//! the current frame. A listener that did not negotiate RED gets the primary block alone.

/// Where a RED payload's primary block starts, and the payload type it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Primary {
    pub start: usize,
    pub pt: u8,
}

/// The primary block of `payload`, or `None` when the headers do not fit the payload.
pub fn primary(payload: &[u8]) -> Option<Primary> {
    let mut at = 0;
    let mut redundant = 0usize;
    loop {
        let first = *payload.get(at)?;
        if first & 0x80 == 0 {
            let start = (at + 1).checked_add(redundant)?;
            return (start <= payload.len()).then_some(Primary {
                start,
                pt: first & 0x7f,
            });
        }
        let header = payload.get(at..at + 4)?;
        // 10 bits of block length after 7 bits of PT and 14 of timestamp offset.
        redundant += usize::from(u16::from_be_bytes([header[2], header[3]]) & 0x03ff);
        at += 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_primary_block_behind_the_redundant_ones() {
        // One redundant block of 3 bytes (PT 111, 960 samples earlier), then the primary.
        let (offset, len) = (960u32, 3u32);
        let word = (offset << 10) | len;
        let mut p = vec![
            0x80 | 111,
            (word >> 16) as u8,
            (word >> 8) as u8,
            word as u8,
        ];
        p.push(111);
        p.extend_from_slice(&[1, 2, 3]); // the redundant block
        p.extend_from_slice(&[9, 9, 9, 9]); // the primary block
        let found = primary(&p).unwrap();
        assert_eq!(found, Primary { start: 8, pt: 111 });
        assert_eq!(&p[found.start..], &[9, 9, 9, 9]);
        // Only a primary.
        assert_eq!(primary(&[111, 7, 7]), Some(Primary { start: 1, pt: 111 }));
    }

    #[test]
    fn headers_that_do_not_fit_are_refused() {
        assert_eq!(primary(&[]), None);
        assert_eq!(primary(&[0x80 | 111, 0, 0]), None);
        // A redundant block longer than what follows.
        assert_eq!(primary(&[0x80 | 111, 0, 0x03, 0xff, 111, 1]), None);
        // Only headers, each claiming more.
        assert_eq!(primary(&[0xff; 64]), None);
    }
}
