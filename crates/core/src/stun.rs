//! The first look at a datagram on the shared media port: whether it is a STUN binding
//! request, and if so which server ufrag it names and whether it nominates its flow. This is
//! all the steering needs to place a flow; the peer's own ICE agent checks the request's
//! integrity afterwards, so nothing here trusts what it reads.

/// What a binding request says about its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingRequest<'a> {
    /// The server's ICE ufrag: USERNAME is "server:client" (RFC 8445 §7.2.2).
    pub ufrag: &'a str,
    /// USE-CANDIDATE is present: the client nominated this flow.
    pub nominated: bool,
}

const HEADER: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const USERNAME: u16 = 0x0006;
const USE_CANDIDATE: u16 = 0x0025;
/// RFC 5389 §15.3: USERNAME is under 513 bytes.
const MAX_USERNAME: usize = 513;

/// The binding request in `data`, or `None` for anything else (DTLS, RTP, RTCP, other STUN,
/// a malformed message).
pub fn binding_request(data: &[u8]) -> Option<BindingRequest<'_>> {
    // RFC 7983: STUN's first byte is 0–3; the length counts the attributes, in whole words.
    if data.len() < HEADER || data[0] > 3 || data[0..2] != BINDING_REQUEST {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([data[2], data[3]]));
    if data[4..8] != MAGIC_COOKIE || length % 4 != 0 || HEADER + length != data.len() {
        return None;
    }
    let mut ufrag = None;
    let mut nominated = false;
    let mut at = HEADER;
    while at < data.len() {
        let head = data.get(at..at + 4)?;
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let value = data.get(at + 4..at + 4 + len)?;
        match kind {
            USERNAME if ufrag.is_none() => {
                if len > MAX_USERNAME {
                    return None;
                }
                let name = std::str::from_utf8(value).ok()?;
                ufrag = Some(name.split(':').next().unwrap_or(name));
            }
            USE_CANDIDATE => nominated = true,
            _ => {}
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    Some(BindingRequest {
        ufrag: ufrag?,
        nominated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attrs {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn reads_the_ufrag_and_the_nomination() {
        let plain = request(&[(USERNAME, b"srv:cli"), (0x8029, &[0; 8])]);
        assert_eq!(
            binding_request(&plain),
            Some(BindingRequest {
                ufrag: "srv",
                nominated: false
            })
        );
        let nominating = request(&[(USERNAME, b"abc:d"), (USE_CANDIDATE, b"")]);
        assert!(binding_request(&nominating).unwrap().nominated);
    }

    #[test]
    fn anything_else_is_nobody_s() {
        assert_eq!(binding_request(&[]), None);
        assert_eq!(binding_request(&[22, 254, 253, 0, 0, 0, 0]), None);
        assert_eq!(binding_request(&[0x80; 40]), None);
        // No USERNAME; a response; a length that disagrees; an attribute running off the end.
        assert_eq!(binding_request(&request(&[(USE_CANDIDATE, b"")])), None);
        let mut response = request(&[(USERNAME, b"a:b")]);
        response[1] = 0x01;
        response[0] = 0x01;
        assert_eq!(binding_request(&response), None);
        let mut short = request(&[(USERNAME, b"a:b")]);
        short.pop();
        assert_eq!(binding_request(&short), None);
        let mut overrun = request(&[(USERNAME, b"a:b")]);
        overrun[23] = 200;
        assert_eq!(binding_request(&overrun), None);
    }
}
