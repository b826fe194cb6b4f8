//! When a datagram reached a listener's socket, from the kernel (`SO_TIMESTAMPNS`).
//!
//! One herd thread stands in for many listeners, each of which would own a device. Timing
//! arrivals when the thread gets round to a datagram would add the herd's own queue to every
//! listener's latency; the kernel's stamp is what a listener's device would have seen.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

/// Asks the kernel to stamp every datagram `socket` receives.
pub fn enable(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid descriptor and an option value that lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Room for one `timespec` control message, aligned as `cmsghdr` wants.
#[repr(C, align(8))]
struct Control([u8; 64]);

/// Reads one datagram: its length, its source, and the kernel's arrival stamp if the socket
/// has [`enable`]d them. Never blocks.
pub fn recv(
    socket: &impl AsRawFd,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    let fd = socket.as_raw_fd();
    // SAFETY: `try_init` hands out room for any socket address and its length, which
    // `recvmsg` fills; every other pointer in `msg` points at a live buffer of the length
    // given, and the control messages are read before the closure returns.
    let ((n, at), source) = unsafe {
        socket2::SockAddr::try_init(|addr, addr_len| {
            let mut control = Control([0; 64]);
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = addr.cast();
            msg.msg_namelen = *addr_len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = control.0.len() as _;
            let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *addr_len = msg.msg_namelen;
            Ok((n as usize, stamp(&msg)))
        })?
    };
    let source = source
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown address family"))?;
    Ok((n, source, at))
}

fn stamp(msg: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: `msg` was filled by `recvmsg`; the CMSG macros stay within its control buffer.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                let since = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                return SystemTime::UNIX_EPOCH.checked_add(since);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `data` from a fresh socket to `rx` and reads it back with [`recv`].
    fn round_trip(
        rx: &std::net::UdpSocket,
        data: &[u8],
    ) -> (Vec<u8>, SocketAddr, SocketAddr, Option<SystemTime>) {
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(data, rx.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 64];
        // Loopback delivers within the send call; the loop only covers a scheduler's whim.
        loop {
            match recv(rx, &mut buf) {
                Ok((n, source, at)) => {
                    return (buf[..n].to_vec(), source, tx.local_addr().unwrap(), at)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn a_stamped_datagram_carries_its_arrival_and_source() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx).unwrap();
        let before = SystemTime::now();
        let (data, source, sender, at) = round_trip(&rx, b"hello");
        assert_eq!(data, b"hello");
        assert_eq!(source, sender);
        let at = at.expect("the kernel stamped it");
        assert!(at >= before - Duration::from_millis(1), "{at:?} {before:?}");
        assert!(at <= SystemTime::now());
    }

    #[test]
    fn without_stamps_enabled_there_is_no_stamp() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (data, _, _, at) = round_trip(&rx, b"x");
        assert_eq!(data, b"x");
        assert_eq!(at, None);
    }
}
