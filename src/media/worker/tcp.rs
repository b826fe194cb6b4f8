//! A worker's ICE-TCP connections: which peer each belongs to, and the writes to them.
//!
//! The worker writes RFC 4571 frames straight to the (non-blocking) socket, so a packet for a
//! TCP listener costs a system call like a UDP one and no message. What the kernel does not
//! take waits in the connection's buffer, sent at the end of the loop's turn; past
//! `MAX_PENDING` (a slow or stalled reader) whole packets are dropped rather than queued:
//! late audio is worth nothing, and TCP would only add to the delay.

use std::collections::HashMap;
use std::io::{IoSlice, Write};
use std::net::{SocketAddr, TcpStream};

use crate::media::slots::PeerKey;

/// About 0.3 s of one audio stream with headers: more than that behind is a stalled reader.
const MAX_PENDING: usize = 16 * 1024;

struct Link {
    writer: TcpStream,
    peer: Option<PeerKey>,
    /// Bytes not yet taken by the kernel; always whole frames after the first partial one.
    pending: Vec<u8>,
}

pub(crate) struct TcpLinks {
    local: Option<SocketAddr>,
    links: HashMap<SocketAddr, Link>,
}

impl TcpLinks {
    pub(super) fn new(local: Option<SocketAddr>) -> Self {
        Self {
            local,
            links: HashMap::new(),
        }
    }

    /// The passive candidate's address, when ICE-TCP is on.
    pub(super) fn local(&self) -> Option<SocketAddr> {
        self.local
    }

    pub(super) fn open(&mut self, source: SocketAddr, writer: TcpStream) {
        self.links.insert(
            source,
            Link {
                writer,
                peer: None,
                pending: Vec::new(),
            },
        );
    }

    pub(super) fn close(&mut self, source: SocketAddr) {
        self.links.remove(&source);
    }

    /// Closes the connections of a peer that is gone; the reader sees the end and says so.
    pub(super) fn forget(&mut self, key: PeerKey) {
        self.links.retain(|_, link| {
            let mine = link.peer == Some(key);
            if mine {
                let _ = link.writer.shutdown(std::net::Shutdown::Both);
            }
            !mine
        });
    }

    /// Whether `source` is a connection here, and the peer it belongs to once known.
    pub(super) fn peer_of(&self, source: SocketAddr) -> Option<Option<PeerKey>> {
        self.links.get(&source).map(|l| l.peer)
    }

    /// `source`'s first binding request named `key`.
    pub(super) fn bind(&mut self, source: SocketAddr, key: PeerKey) {
        if let Some(link) = self.links.get_mut(&source) {
            link.peer = Some(key);
        }
    }

    /// Whether `key` has a connection here (such a peer stays on this worker).
    pub(super) fn has(&self, key: PeerKey) -> bool {
        self.links.values().any(|l| l.peer == Some(key))
    }

    /// Frames `data` to `dest`; `false` when it was dropped (no connection, or too much
    /// already waiting).
    pub(super) fn send(&mut self, dest: SocketAddr, data: &[u8]) -> bool {
        let Some(link) = self.links.get_mut(&dest) else {
            return false;
        };
        let Ok(len) = u16::try_from(data.len()) else {
            return false;
        };
        let head = len.to_be_bytes();
        if link.pending.is_empty() {
            let written = link
                .writer
                .write_vectored(&[IoSlice::new(&head), IoSlice::new(data)])
                .unwrap_or(0);
            if written == head.len() + data.len() {
                return true;
            }
            // The rest of a frame the kernel took in part must follow, or the stream breaks.
            let (head_left, data_left) = if written < 2 {
                (&head[written..], data)
            } else {
                (&head[..0], &data[written - 2..])
            };
            link.pending.extend_from_slice(head_left);
            link.pending.extend_from_slice(data_left);
            return true;
        }
        if link.pending.len() + 2 + data.len() > MAX_PENDING {
            return false;
        }
        link.pending.extend_from_slice(&head);
        link.pending.extend_from_slice(data);
        flush_link(link);
        true
    }

    /// Writes what waits on every connection.
    pub(super) fn flush(&mut self) {
        for link in self.links.values_mut() {
            if !link.pending.is_empty() {
                flush_link(link);
            }
        }
    }
}

fn flush_link(link: &mut Link) {
    match link.writer.write(&link.pending) {
        Ok(n) => {
            link.pending.drain(..n);
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        // A broken connection: the reader sees it end and the link goes then.
        Err(_) => link.pending.clear(),
    }
}
