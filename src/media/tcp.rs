//! ICE over TCP (RFC 6544, passive candidates) for clients whose network blocks UDP: one TCP
//! port beside the UDP one, each connection carrying RFC 4571 frames (a two-byte length, then
//! one STUN, DTLS, RTP or RTCP packet).
//!
//! A connection's first frame must be a STUN binding request naming a peer's server ufrag;
//! the connection then belongs to the worker that owns that peer. This thread reads frames and
//! hands them to that worker's queue (the TCP client's own packets only: a few per 20 ms); the
//! worker writes to the connection itself, without a message per packet
//! (`worker::tcp`). A frame over `MAX_FRAME`, a first frame that names no peer, a connection
//! silent for `IDLE` or one past `max_connections` is closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::worker::{Remote, Shared};
use crate::metrics::Drop as DropReason;

/// Larger than any packet the server or a browser sends over ICE (DTLS flights are
/// fragmented to the path MTU), far smaller than the 64 KiB a length field allows.
const MAX_FRAME: usize = 4096;
/// A connection that names no peer within this time is closed.
const FIRST_FRAME: Duration = Duration::from_secs(10);
/// ICE consent checks come every few seconds; a connection silent this long is dead.
const IDLE: Duration = Duration::from_secs(30);

/// Accepts connections on `listener` until the plane stops.
pub(crate) fn run(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    max_connections: usize,
    metrics: crate::metrics::Metrics,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("media TCP runtime");
    let _entered = metrics.enter();
    rt.block_on(async move {
        let Ok(listener) = TcpListener::from_std(listener) else {
            tracing::error!("ICE-TCP listener could not join the runtime");
            return;
        };
        // Present from start-up, at zero, like every other series.
        crate::metrics::tcp_connections(0.0);
        let open = Arc::new(AtomicUsize::new(0));
        let mut check = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, source)) = accepted else { continue };
                    if open.load(Ordering::Relaxed) >= max_connections {
                        crate::metrics::media_drop(DropReason::TcpRefused, 1);
                        continue;
                    }
                    open.fetch_add(1, Ordering::Relaxed);
                    let (shared, open) = (shared.clone(), open.clone());
                    tokio::spawn(async move {
                        connection(stream, source, &shared).await;
                        open.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                _ = check.tick() => {
                    if shared.stopping.load(Ordering::Acquire) {
                        break;
                    }
                }
            }
        }
    });
}

/// One connection: its first frame finds its worker, every frame goes there, and the worker
/// is told when it ends.
async fn connection(mut stream: TcpStream, source: SocketAddr, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; MAX_FRAME];
    let first = match tokio::time::timeout(FIRST_FRAME, frame(&mut stream, &mut buf)).await {
        Ok(Some(len)) => len,
        _ => return,
    };
    let Some(stun) = amphi_core::stun::binding_request(&buf[..first]) else {
        crate::metrics::media_drop(DropReason::TcpRefused, 1);
        return;
    };
    let Some(worker) = shared.ufrags.get(stun.ufrag).map(|w| *w) else {
        crate::metrics::media_drop(DropReason::UnknownSource, 1);
        return;
    };
    // The worker writes on its own copy of the socket (non-blocking, as tokio set it).
    let Ok(writer) = stream_copy(&stream) else {
        return;
    };
    let remote = &shared.remotes[worker];
    if remote.try_send(Remote::TcpOpen { source, writer }).is_err() {
        crate::metrics::media_drop(DropReason::QueueFull, 1);
        return;
    }
    crate::metrics::tcp_connections(1.0);
    let mut len = first;
    loop {
        let data = buf[..len].to_vec();
        if remote.try_send(Remote::TcpIn { source, data }).is_err() {
            crate::metrics::media_drop(DropReason::QueueFull, 1);
        }
        match tokio::time::timeout(IDLE, frame(&mut stream, &mut buf)).await {
            Ok(Some(n)) => len = n,
            _ => break,
        }
    }
    // Blocking until there is room: a lost close would leave the worker writing to a
    // closed socket until the peer goes.
    let _ = remote.send(Remote::TcpClosed { source }).await;
    crate::metrics::tcp_connections(-1.0);
}

/// Reads one RFC 4571 frame into `buf`; its length, or `None` at the end, on an error or for
/// a frame that is empty or too large.
async fn frame(stream: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.ok()?;
    let len = usize::from(u16::from_be_bytes(head));
    if len == 0 || len > buf.len() {
        crate::metrics::media_drop(DropReason::TcpRefused, 1);
        return None;
    }
    stream.read_exact(&mut buf[..len]).await.ok()?;
    Some(len)
}

fn stream_copy(stream: &TcpStream) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::{AsFd, OwnedFd};
    let fd: OwnedFd = stream.as_fd().try_clone_to_owned()?;
    Ok(std::net::TcpStream::from(fd))
}
