//! A peer's transport: a UDP socket, or media over ICE-TCP (RFC 6544, RFC 4571 framing) as
//! a client on a network that blocks UDP sends it: an active candidate, a connection to the
//! server's passive candidate.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::Extension;
use str0m::{Candidate, Input, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::signal::ClientError;

/// Frames read and not yet handled; a stalled driver loses the newest.
const FRAME_QUEUE: usize = 256;

/// Gives `rtc` a datagram `local` received from `source`, if it is one of its own.
pub(crate) fn receive(rtc: &mut Rtc, local: SocketAddr, source: SocketAddr, data: &[u8]) {
    receive_on(rtc, Protocol::Udp, local, source, data);
}

pub(crate) fn receive_on(
    rtc: &mut Rtc,
    proto: Protocol,
    local: SocketAddr,
    source: SocketAddr,
    data: &[u8],
) {
    let Ok(contents) = data.try_into() else {
        return;
    };
    let input = Input::Receive(
        Instant::now(),
        Receive {
            proto,
            source,
            destination: local,
            contents,
        },
    );
    if rtc.accepts(&input) {
        let _ = rtc.handle_input(input);
    }
}

/// The client's `Rtc` with its one local candidate: UDP on `local`, or an active ICE-TCP one
/// (returned: what received frames are addressed to).
pub(crate) fn new_rtc(
    video: bool,
    ice_tcp: bool,
    local: SocketAddr,
) -> Result<(Rtc, SocketAddr), ClientError> {
    let mut rtc = Rtc::builder()
        .set_crypto_provider(crate::crypto::provider())
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(video)
        .set_extension(5, Extension::AbsoluteCaptureTime)
        .build(Instant::now());
    let (candidate, addr) = match ice_tcp {
        true => active_candidate(local.ip())?,
        false => (
            Candidate::host(local, "udp").map_err(|e| ClientError::Media(e.to_string()))?,
            local,
        ),
    };
    rtc.add_local_candidate(candidate);
    Ok((rtc, addr))
}

/// A UDP socket on loopback, with the receive buffer asked for.
pub(crate) fn bind_udp(recv_buffer: Option<usize>) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol as SockProto, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(SockProto::UDP))?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    UdpSocket::from_std(socket.into())
}

/// The active candidate: port 9 by RFC 6544 (an active side never listens).
pub(crate) fn active_candidate(ip: IpAddr) -> Result<(Candidate, SocketAddr), ClientError> {
    let addr = SocketAddr::new(ip, 9);
    let candidate = Candidate::builder()
        .tcp()
        .host(addr)
        .tcptype(TcpType::Active)
        .build()
        .map_err(|e| ClientError::Media(e.to_string()))?;
    Ok((candidate, addr))
}

/// The server's passive TCP candidate in an SDP answer.
pub(crate) fn passive_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .find_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            let passive = f.windows(2).any(|w| w == ["tcptype", "passive"]);
            if f.len() < 6 || !f[2].eq_ignore_ascii_case("tcp") || !passive {
                return None;
            }
            Some(SocketAddr::new(f[4].parse().ok()?, f[5].parse().ok()?))
        })
}

/// One connection to the server's passive candidate.
pub(crate) struct TcpLink {
    writer: mpsc::Sender<Vec<u8>>,
    pub(crate) frames: mpsc::Receiver<Vec<u8>>,
    /// The server's candidate (the source of what is read).
    pub(crate) remote: SocketAddr,
    /// Our active candidate (the destination of what is read).
    pub(crate) local: SocketAddr,
}

impl TcpLink {
    pub(crate) async fn connect(
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Result<Self, ClientError> {
        let media = |e: std::io::Error| ClientError::Media(format!("ICE-TCP to {remote}: {e}"));
        let stream = tokio::net::TcpStream::connect(remote)
            .await
            .map_err(media)?;
        stream.set_nodelay(true).map_err(media)?;
        let (mut reader, mut write_half) = stream.into_split();
        // Frames go out whole, in order, from a task of their own: the driver never waits
        // on the socket, and a frame that does not fit the queue is lost like a datagram.
        let (writer, mut outgoing) = mpsc::channel::<Vec<u8>>(FRAME_QUEUE);
        tokio::spawn(async move {
            while let Some(frame) = outgoing.recv().await {
                if write_half.write_all(&frame).await.is_err() {
                    break;
                }
            }
        });
        let (tx, frames) = mpsc::channel(FRAME_QUEUE);
        tokio::spawn(async move {
            let mut head = [0u8; 2];
            while reader.read_exact(&mut head).await.is_ok() {
                let mut frame = vec![0u8; usize::from(u16::from_be_bytes(head))];
                if reader.read_exact(&mut frame).await.is_err()
                    || tx.try_send(frame).is_err() && tx.is_closed()
                {
                    break;
                }
            }
        });
        Ok(Self {
            writer,
            frames,
            remote,
            local,
        })
    }

    pub(crate) fn send(&mut self, data: &[u8]) {
        let Ok(len) = u16::try_from(data.len()) else {
            return;
        };
        let mut frame = Vec::with_capacity(2 + data.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(data);
        let _ = self.writer.try_send(frame);
    }
}

/// The next frame of `link`, or never when there is none (a `select!` branch).
pub(crate) async fn next_frame(link: &mut Option<TcpLink>) -> Option<Vec<u8>> {
    match link {
        Some(l) => l.frames.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_passive_candidate_among_others() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 10.0.0.1 7882 typ host\r\n\
                   a=candidate:2 1 tcp 1518280447 10.0.0.1 7882 typ host tcptype passive\r\n";
        assert_eq!(
            passive_candidate(sdp),
            Some("10.0.0.1:7882".parse().unwrap())
        );
        assert_eq!(
            passive_candidate("a=candidate:1 1 udp 1 10.0.0.1 7882 typ host\r\n"),
            None
        );
    }
}
