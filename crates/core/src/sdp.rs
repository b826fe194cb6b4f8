//! An offer's shape before negotiation: how many audio m-lines send and receive, read from
//! the text alone, so the server can refuse an offer a role does not allow before any
//! negotiation runs. Anything it cannot read is refused with a reason a person can act on.

/// Largest SDP accepted; a browser offer with a few audio m-lines is 3–6 KiB.
pub const MAX_SDP_BYTES: usize = 32 * 1024;

/// Audio m-lines of an offer by the direction the client asked for, and video m-lines
/// (which only call channels carry).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OfferShape {
    pub sending: usize,
    pub receiving: usize,
    pub video_sending: usize,
    pub video_receiving: usize,
}

/// The shape of `sdp`, or why it is no offer.
pub fn shape(sdp: &str) -> Result<OfferShape, String> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(format!("{} bytes; the limit is {MAX_SDP_BYTES}", sdp.len()));
    }
    if !sdp.starts_with("v=0") {
        return Err("it does not start with v=0".into());
    }
    let mut shape = OfferShape::default();
    // Session-level direction applies to m-lines that state none (RFC 4566 §6).
    let session_dir = sdp
        .split("\nm=")
        .next()
        .and_then(direction)
        .unwrap_or("sendrecv");
    for section in sdp.split("\nm=").skip(1) {
        let (send, recv) = if section.starts_with("audio") {
            (&mut shape.sending, &mut shape.receiving)
        } else if section.starts_with("video") {
            (&mut shape.video_sending, &mut shape.video_receiving)
        } else {
            continue;
        };
        // A port of 0 marks a rejected or stopped m-line.
        if section.split_whitespace().nth(1) == Some("0") {
            continue;
        }
        match direction(section).unwrap_or(session_dir) {
            "sendrecv" => {
                *send += 1;
                *recv += 1;
            }
            "sendonly" => *send += 1,
            "recvonly" => *recv += 1,
            _ => {}
        }
    }
    Ok(shape)
}

fn direction(section: &str) -> Option<&'static str> {
    section.lines().find_map(|l| match l.trim() {
        "a=sendrecv" => Some("sendrecv"),
        "a=sendonly" => Some("sendonly"),
        "a=recvonly" => Some("recvonly"),
        "a=inactive" => Some("inactive"),
        _ => None,
    })
}

/// `sdp` with RFC 2198 RED listed first on every audio m-line that carries it. A browser
/// sends with the first codec of the answer it supports, so this is what makes a publisher
/// that offered RED send it. Nothing else changes.
pub fn red_first(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    let sections: Vec<&str> = sdp.split_inclusive("\nm=").collect();
    for (i, section) in sections.iter().enumerate() {
        // Every piece but the first starts inside an m-line (after the `\nm=` that ended
        // the piece before it).
        if i == 0 || !section.starts_with("audio") {
            out.push_str(section);
            continue;
        }
        let red: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("a=rtpmap:"))
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, codec)| codec.to_ascii_lowercase().starts_with("red/"))
            .map(|(pt, _)| pt)
            .collect();
        let (mline, rest) = section.split_once('\n').unwrap_or((section, ""));
        let (mline, cr) = mline.strip_suffix('\r').map_or((mline, ""), |m| (m, "\r"));
        let mut fields: Vec<&str> = mline.split(' ').collect();
        if red.is_empty() || fields.len() < 4 {
            out.push_str(section);
            continue;
        }
        let formats = fields.split_off(3);
        let (first, others): (Vec<&str>, Vec<&str>) =
            formats.into_iter().partition(|f| red.contains(f));
        fields.extend(first);
        fields.extend(others);
        out.push_str(&fields.join(" "));
        out.push_str(cr);
        if section.contains('\n') {
            out.push('\n');
        }
        out.push_str(rest);
    }
    out
}

/// A parser's error as a client may see it: its text without the positions it gives as
/// memory addresses (`PointerOffset(0x…)`), which say nothing to the client and too much
/// about the server, cut to 300 characters.
pub fn client_error_text(text: &str) -> String {
    let mut text = text.to_string();
    while let Some(start) = text.find("PointerOffset(") {
        let end = text[start..]
            .find(')')
            .map_or(text.len(), |i| start + i + 1);
        text.replace_range(start..end, "");
    }
    let text: String = text.chars().take(300).collect();
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=recvonly\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=recvonly\r\n\
        m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:3\r\na=sendonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:4\r\na=sendrecv\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:5\r\na=recvonly\r\n";

    #[test]
    fn counts_directions() {
        assert_eq!(
            shape(OFFER).unwrap(),
            OfferShape {
                sending: 1,
                receiving: 2,
                video_sending: 1,
                video_receiving: 2,
            }
        );
        assert!(shape("hello").is_err());
        assert!(shape(&"v=0\n".repeat(MAX_SDP_BYTES)).is_err());
    }

    #[test]
    fn red_goes_first_on_audio_m_lines_that_carry_it() {
        let answer =
            "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=rtpmap:111 opus/48000/2\r\n\
            a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=rtpmap:111 opus/48000/2\r\n";
        let fixed = red_first(answer);
        assert!(
            fixed.contains("m=audio 9 UDP/TLS/RTP/SAVPF 63 111\r\n"),
            "{fixed}"
        );
        assert!(
            fixed.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"),
            "{fixed}"
        );
        assert_eq!(fixed.len(), answer.len());
        assert_eq!(red_first("v=0\r\n"), "v=0\r\n");
    }

    #[test]
    fn no_memory_address_reaches_the_client() {
        let text =
            client_error_text("Parse error at PointerOffset(0x7f3a1c2b4d10)\nUnexpected `x`");
        assert!(!text.contains("0x7f"), "{text}");
        assert!(text.contains("Unexpected"), "{text}");
        // An unclosed one is cut to the end rather than left half in.
        assert_eq!(client_error_text("at PointerOffset(0x7f"), "at");
    }
}
