//! Offer inspection before negotiation: a participant without the publish permission may not
//! offer to send.

use super::types::MediaError;

pub use amphi_core::sdp::{OfferShape, MAX_SDP_BYTES};

pub fn shape(sdp: &str) -> Result<OfferShape, MediaError> {
    amphi_core::sdp::shape(sdp).map_err(MediaError::BadSdp)
}

/// Refuses an offer that sends without the permission, or sends more than one microphone.
pub fn check_offer(sdp: &str, can_publish: bool) -> Result<OfferShape, MediaError> {
    let shape = shape(sdp)?;
    if shape.sending > 0 && !can_publish {
        return Err(MediaError::Forbidden(
            "your role cannot publish audio; offer recvonly audio only".into(),
        ));
    }
    if shape.sending > 1 {
        return Err(MediaError::BadSdp(
            "offer at most one audio m-line that sends (the microphone)".into(),
        ));
    }
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=recvonly\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=recvonly\r\n\
        m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:3\r\na=sendonly\r\n";

    #[test]
    fn counts_directions() {
        assert_eq!(
            shape(OFFER).unwrap(),
            OfferShape {
                sending: 1,
                receiving: 2
            }
        );
    }

    #[test]
    fn audience_cannot_offer_to_send() {
        assert!(matches!(
            check_offer(OFFER, false),
            Err(MediaError::Forbidden(_))
        ));
        assert!(check_offer(OFFER, true).is_ok());
        let listen_only = OFFER.replace("a=sendonly\r\n", "a=recvonly\r\n");
        assert!(check_offer(&listen_only, false).is_ok());
        assert!(shape("hello").is_err());
    }
}

/// An SDP parse error as a client may see it (no memory addresses, bounded length).
pub fn parse_error(e: &dyn std::fmt::Display) -> MediaError {
    MediaError::BadSdp(amphi_core::sdp::client_error_text(&e.to_string()))
}

#[cfg(test)]
mod parse_error_tests {
    use super::*;

    #[test]
    fn no_memory_address_reaches_the_client() {
        let e = parse_error(&"Parse error at PointerOffset(0x7f3a1c2b4d10)\nUnexpected `x`");
        let MediaError::BadSdp(text) = e else {
            panic!("a bad SDP");
        };
        assert!(!text.contains("0x7f"), "{text}");
        assert!(text.contains("Unexpected"), "{text}");
    }
}
