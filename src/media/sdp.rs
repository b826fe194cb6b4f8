//! Offer inspection before negotiation: a participant without the publish permission may not
//! offer to send.

use super::types::MediaError;

pub use amphi_core::sdp::{OfferShape, MAX_SDP_BYTES};

pub fn shape(sdp: &str) -> Result<OfferShape, MediaError> {
    amphi_core::sdp::shape(sdp).map_err(MediaError::BadSdp)
}

/// Refuses an offer that sends without the permission, sends more than one microphone or
/// camera, or has video where the channel carries none (`video`: a call channel).
pub fn check_offer(sdp: &str, can_publish: bool, video: bool) -> Result<OfferShape, MediaError> {
    let shape = shape(sdp)?;
    if !video && shape.video_sending + shape.video_receiving > 0 {
        return Err(MediaError::BadSdp(
            "video is carried in call channels only; offer audio m-lines here".into(),
        ));
    }
    if shape.video_sending > 0 && !can_publish {
        return Err(MediaError::Forbidden(
            "your role cannot publish video; offer recvonly video only".into(),
        ));
    }
    if shape.video_sending > 1 {
        return Err(MediaError::BadSdp(
            "offer at most one video m-line that sends (the camera)".into(),
        ));
    }
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

/// An SDP parse error as a client may see it (no memory addresses, bounded length).
pub fn parse_error(e: &dyn std::fmt::Display) -> MediaError {
    MediaError::BadSdp(amphi_core::sdp::client_error_text(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A microphone and a receive slot (the core's tests count directions in detail).
    const OFFER: &str = "v=0\r\ns=-\r\nm=audio 9 RTP 111\r\na=sendonly\r\n\
        m=audio 9 RTP 111\r\na=recvonly\r\n";

    #[test]
    fn audience_cannot_offer_to_send() {
        assert!(matches!(
            check_offer(OFFER, false, false),
            Err(MediaError::Forbidden(_))
        ));
        assert!(check_offer(OFFER, true, false).is_ok());
        let listen_only = OFFER.replace("a=sendonly\r\n", "a=recvonly\r\n");
        assert!(check_offer(&listen_only, false, false).is_ok());
        let two_mics = OFFER.replace("a=recvonly", "a=sendonly");
        assert!(matches!(
            check_offer(&two_mics, true, false),
            Err(MediaError::BadSdp(_))
        ));
    }

    #[test]
    fn video_only_in_call_channels_one_camera_and_only_with_publish() {
        let camera = format!("{OFFER}m=video 9 RTP 96\r\na=sendonly\r\n");
        let err = check_offer(&camera, true, false).unwrap_err().to_string();
        assert!(err.contains("call channels only"), "{err}");
        assert!(check_offer(&camera, true, true).is_ok());
        assert!(matches!(
            check_offer(&camera, false, true),
            Err(MediaError::Forbidden(_))
        ));
        let two = format!("{camera}m=video 9 RTP 96\r\na=sendrecv\r\n");
        let err = check_offer(&two, true, true).unwrap_err().to_string();
        assert!(err.contains("camera"), "{err}");
    }
}
