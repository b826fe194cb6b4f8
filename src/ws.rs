//! The signalling WebSocket's transport: frames in and out of an upgraded HTTP connection, with
//! every limit enforced as early as the bytes allow.
//!
//! The frame codec is actix-http's; this module adds what a server facing the internet needs
//! around it:
//! - a frame whose header announces more than `max_frame` bytes is refused as soon as the
//!   header arrives (close 1009), never buffered up to its declared length;
//! - reserved bits without a negotiated extension are a protocol error (close 1002);
//! - inbound bytes are read only while no whole frame is buffered, so one connection holds at
//!   most one frame plus one read;
//! - outbound frames go through a bounded queue: a client that does not read is told it is too
//!   slow and dropped, instead of growing the server's memory.
//!
//! Layer rule: transport only. It knows nothing about sessions, requests or channels.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::mpsc;

pub use actix_http::ws::{CloseCode, CloseReason, Item};

/// Why the inbound side ended a connection, with the close code RFC 6455 asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("a frame of {declared} bytes is over the limit of {max}")]
    TooLarge { declared: u64, max: usize },
    #[error("reserved bits set without an extension")]
    Reserved,
    #[error("websocket protocol error: {0}")]
    Protocol(String),
    #[error("connection lost: {0}")]
    Lost(String),
}

impl WsError {
    /// The close frame's reason text (docs/protocol.md §8.7); details go to the log.
    pub fn close_reason(&self) -> &'static str {
        match self {
            WsError::TooLarge { .. } => "frame too large",
            WsError::Reserved | WsError::Protocol(_) | WsError::Lost(_) => "protocol error",
        }
    }

    /// The close code to send, or `None` when nobody is left to receive it.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            WsError::TooLarge { .. } => Some(CloseCode::Size),
            WsError::Reserved | WsError::Protocol(_) => Some(CloseCode::Protocol),
            WsError::Lost(_) => None,
        }
    }
}

/// Answers the upgrade and returns the connection's two halves: the response to return from
/// the handler (its body is the outbound queue), the sink that writes to it, and the stream of
/// inbound frames.
pub fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    max_frame: usize,
    outbound: usize,
) -> Result<(HttpResponse, WsSink, WsStream), String> {
    actix_http::ws::verify_handshake(req.head()).map_err(|e| e.to_string())?;
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("the Sec-WebSocket-Key header is missing")?;
    let accept = actix_http::ws::hash_key(key.as_bytes());
    let accept = HeaderValue::from_bytes(&accept).map_err(|e| e.to_string())?;
    // One slot more than frames may wait: the last is for the close frame, so even a client
    // dropped for not reading is told why when (if) it reads again.
    let (tx, rx) = mpsc::channel(outbound.max(1) + 1);
    let response = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS)
        .upgrade("websocket")
        .insert_header((header::SEC_WEBSOCKET_ACCEPT, accept))
        .streaming(Outbound { rx });
    let sink = WsSink {
        tx,
        codec: Codec::new(),
        buf: BytesMut::new(),
        closing: false,
    };
    let stream = WsStream {
        payload,
        buf: BytesMut::new(),
        codec: Codec::new().max_size(max_frame),
        max_frame,
        done: false,
    };
    Ok((response, sink, stream))
}

/// The response body: encoded frames from the sink, in order. It ends when the sink is dropped,
/// after the frames already queued, which closes the connection.
struct Outbound {
    rx: mpsc::Receiver<Bytes>,
}

impl Stream for Outbound {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|b| b.map(Ok))
    }
}

/// The queue towards the client is full: the client is not reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Writes frames to the client through a bounded queue.
pub struct WsSink {
    tx: mpsc::Sender<Bytes>,
    codec: Codec,
    buf: BytesMut,
    closing: bool,
}

impl WsSink {
    /// A sink whose frames land in the returned queue instead of a socket (the session's
    /// tests read them there).
    #[cfg(test)]
    pub(crate) fn detached(outbound: usize) -> (Self, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(outbound.max(1) + 1);
        let sink = Self {
            tx,
            codec: Codec::new(),
            buf: BytesMut::new(),
            closing: false,
        };
        (sink, rx)
    }

    fn write(&mut self, msg: Message) -> Result<(), Full> {
        if self.closing {
            return Ok(());
        }
        if !matches!(msg, Message::Close(_)) && self.tx.capacity() <= 1 {
            return Err(Full);
        }
        if self.codec.encode(msg, &mut self.buf).is_err() {
            // Encoding a server frame cannot fail; nothing is sent if it somehow does.
            self.buf.clear();
            return Ok(());
        }
        let frame = self.buf.split().freeze();
        self.tx.try_send(frame).map_err(|_| Full)
    }

    pub fn text(&mut self, text: impl Into<bytestring::ByteString>) -> Result<(), Full> {
        self.write(Message::Text(text.into()))
    }

    pub fn ping(&mut self) -> Result<(), Full> {
        self.write(Message::Ping(Bytes::new()))
    }

    pub fn pong(&mut self, data: Bytes) -> Result<(), Full> {
        self.write(Message::Pong(data))
    }

    /// Queues a close frame (when there is room) and stops writing: nothing follows a close.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        let reason = CloseReason {
            code,
            description: (!reason.is_empty()).then(|| reason.to_owned()),
        };
        let _ = self.write(Message::Close(Some(reason)));
        self.closing = true;
    }

    /// Answers the client's close with its own code (RFC 6455 §5.5.1), then stops writing.
    pub fn close_echo(&mut self, reason: Option<CloseReason>) {
        let _ = self.write(Message::Close(reason));
        self.closing = true;
    }
}

/// Inbound frames, decoded one at a time from a buffer that never holds more than one frame
/// and one read.
pub struct WsStream {
    payload: web::Payload,
    buf: BytesMut,
    codec: Codec,
    max_frame: usize,
    done: bool,
}

impl WsStream {
    /// Looks at the header of the frame at the front of the buffer, before its payload.
    fn check_header(&self) -> Result<(), WsError> {
        check_header(&self.buf, self.max_frame)
    }
}

/// Refuses a frame by its header alone: reserved bits, or a declared length over `max`.
fn check_header(buf: &[u8], max: usize) -> Result<(), WsError> {
    let Some(&first) = buf.first() else {
        return Ok(());
    };
    if first & 0x70 != 0 {
        return Err(WsError::Reserved);
    }
    let Some(&second) = buf.get(1) else {
        return Ok(());
    };
    let declared = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => u64::from(u16::from_be_bytes([b[0], b[1]])),
            None => return Ok(()),
        },
        127 => match buf.get(2..10) {
            Some(b) => u64::from_be_bytes(b.try_into().expect("eight bytes")),
            None => return Ok(()),
        },
        n => u64::from(n),
    };
    if declared > max as u64 {
        return Err(WsError::TooLarge { declared, max });
    }
    Ok(())
}

impl Stream for WsStream {
    type Item = Result<Frame, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Err(e) = this.check_header() {
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
            match this.codec.decode(&mut this.buf) {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(ProtocolError::Overflow) => {
                    this.done = true;
                    let max = this.max_frame;
                    let declared = max as u64 + 1;
                    return Poll::Ready(Some(Err(WsError::TooLarge { declared, max })));
                }
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(WsError::Protocol(e.to_string()))));
                }
            }
            // No whole frame yet, and its header says it fits: read more. The buffer holds at
            // most one frame (`max_frame` and a header of at most 14 bytes) and one read.
            match Pin::new(&mut this.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(WsError::Lost(e.to_string()))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_judged_before_their_payload() {
        let max = 1024;
        assert_eq!(check_header(&[], max), Ok(()));
        assert_eq!(check_header(&[0x81], max), Ok(()));
        // A masked text frame of 5 bytes.
        assert_eq!(check_header(&[0x81, 0x85], max), Ok(()));
        // RSV1 without a negotiated extension.
        assert_eq!(check_header(&[0xC1], max), Err(WsError::Reserved));
        // 16-bit length: 1024 fits, 1025 does not; an incomplete length waits.
        assert_eq!(check_header(&[0x81, 0xFE, 0x04], max), Ok(()));
        assert_eq!(check_header(&[0x81, 0xFE, 0x04, 0x00], max), Ok(()));
        assert_eq!(
            check_header(&[0x81, 0xFE, 0x04, 0x01], max),
            Err(WsError::TooLarge {
                declared: 1025,
                max
            })
        );
        // 64-bit length announcing 2^40 bytes: refused with nothing of it buffered.
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(
            check_header(&huge, max),
            Err(WsError::TooLarge {
                declared: 1 << 40,
                max
            })
        );
        assert_eq!(check_header(&huge[..6], max), Ok(()));
    }

    #[test]
    fn close_codes_follow_rfc_6455() {
        let big = WsError::TooLarge {
            declared: 2,
            max: 1,
        };
        assert_eq!(big.close_code(), Some(CloseCode::Size));
        assert_eq!(WsError::Reserved.close_code(), Some(CloseCode::Protocol));
        assert_eq!(WsError::Lost("reset".into()).close_code(), None);
    }
}
