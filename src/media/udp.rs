//! Datagrams in batches: one `sendmmsg` for many listeners' packets, one `recvmmsg` for many
//! arrivals, instead of a system call each.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

/// Packets waiting to be sent, and the kernel's view of them, built at each flush.
pub struct SendBatch {
    packets: Vec<(SockAddr, Vec<u8>)>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Buffers of sent packets, cleared, for `push_with`: at most a batch of them.
    spare: Vec<Vec<u8>>,
}

/// What a flush did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub sent: usize,
    /// Refused by the kernel (a full socket buffer drops the rest of the batch).
    pub dropped: usize,
}

impl SendBatch {
    /// Packets past which a batch is sent without waiting for the end of the turn: big enough
    /// to take the cost of system calls out of a fan-out, small enough that the first
    /// listeners do not wait for the last.
    pub const FLUSH_AT: usize = 64;

    pub fn new() -> Self {
        Self {
            packets: Vec::with_capacity(Self::FLUSH_AT),
            iovs: Vec::with_capacity(Self::FLUSH_AT),
            hdrs: Vec::with_capacity(Self::FLUSH_AT),
            spare: Vec::with_capacity(Self::FLUSH_AT),
        }
    }

    /// The capacity of the buffers `push_with` hands out: any datagram the server writes.
    pub const BUFFER: usize = 1500;

    /// Queues a packet that `fill` writes into a buffer of the batch's own (reused from
    /// packets already sent, so a steady stream allocates nothing). Nothing is queued when
    /// `fill` returns false. Some(true) when the batch should be flushed now.
    pub fn push_with(
        &mut self,
        to: SocketAddr,
        fill: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> Option<bool> {
        let mut buf = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(Self::BUFFER));
        if !fill(&mut buf) {
            buf.clear();
            self.spare.push(buf);
            return None;
        }
        Some(self.push(to, buf))
    }

    /// Queues a packet; true when the batch should be flushed now.
    pub fn push(&mut self, to: SocketAddr, data: Vec<u8>) -> bool {
        self.packets.push((SockAddr::from(to), data));
        self.packets.len() >= Self::FLUSH_AT
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Sends every queued packet on `fd` (non-blocking) and empties the batch.
    pub fn flush(&mut self, fd: RawFd) -> Flushed {
        let mut done = Flushed::default();
        if self.packets.is_empty() {
            return done;
        }
        self.iovs.clear();
        self.hdrs.clear();
        for (_, data) in &mut self.packets {
            self.iovs.push(libc::iovec {
                iov_base: data.as_mut_ptr().cast(),
                iov_len: data.len(),
            });
        }
        for ((addr, _), iov) in self.packets.iter().zip(self.iovs.iter_mut()) {
            // SAFETY: an all-zero msghdr is valid (no name, no control data).
            let mut hdr: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = addr.len();
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        let total = self.hdrs.len();
        let mut at = 0;
        while at < total {
            let chunk = (total - at).min(1024) as libc::c_uint;
            // SAFETY: the headers point into `packets` and `iovs`, alive and unmoved until
            // the batch is cleared below.
            let n = unsafe {
                libc::sendmmsg(fd, self.hdrs[at..].as_mut_ptr(), chunk, libc::MSG_DONTWAIT)
            };
            if n >= 0 {
                done.sent += n as usize;
                at += n as usize;
                continue;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => {}
                // The socket buffer is full: what is left would be refused too.
                Some(libc::EAGAIN | libc::ENOBUFS) => {
                    done.dropped += total - at;
                    at = total;
                }
                // This one packet failed (an ICMP error reported on the socket, an address
                // the kernel cannot route): the rest may go.
                _ => {
                    done.dropped += 1;
                    at += 1;
                }
            }
        }
        self.hdrs.clear();
        self.iovs.clear();
        for (_, mut data) in self.packets.drain(..) {
            // str0m's own datagrams are sized to fit; only full-sized buffers are worth keeping.
            if data.capacity() >= Self::BUFFER && self.spare.len() < Self::FLUSH_AT {
                data.clear();
                self.spare.push(data);
            }
        }
        done
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// Receive buffers for one `recvmmsg`, reused.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    received: usize,
}

impl RecvBatch {
    /// Datagrams per system call, each up to `size` bytes.
    pub fn new(count: usize, size: usize) -> Self {
        Self {
            bufs: (0..count).map(|_| vec![0u8; size]).collect(),
            // SAFETY: all-zero sockaddr_storage and mmsghdr are valid values.
            addrs: (0..count)
                .map(|_| unsafe { MaybeUninit::zeroed().assume_init() })
                .collect(),
            iovs: Vec::with_capacity(count),
            hdrs: Vec::with_capacity(count),
            received: 0,
        }
    }

    /// Reads up to `count` datagrams without blocking; `WouldBlock` when there are none.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.iovs.clear();
        self.hdrs.clear();
        for buf in &mut self.bufs {
            self.iovs.push(libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            });
        }
        for (addr, iov) in self.addrs.iter_mut().zip(self.iovs.iter_mut()) {
            // SAFETY: as above.
            let mut hdr: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = iov;
            hdr.msg_iovlen = 1;
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        // SAFETY: every header points into this batch's own buffers, which outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// The datagrams the last `recv` read, with their sources.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.hdrs[..self.received]
            .iter()
            .zip(&self.bufs)
            .zip(&self.addrs)
            .filter_map(|((hdr, buf), addr)| {
                let len = (hdr.msg_len as usize).min(buf.len());
                Some((socket_addr(addr)?, &buf[..len]))
            })
    }
}

/// The IPv4 or IPv6 address the kernel wrote into `storage`.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let ptr = storage as *const libc::sockaddr_storage;
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*ptr.cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*ptr.cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_out_in_one_call_and_comes_in_in_one_call() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut batch = SendBatch::new();
        for i in 0..10u8 {
            assert!(!batch.push(to, vec![i; 100 + i as usize]));
        }
        assert_eq!(
            batch.flush(tx.as_raw_fd()),
            Flushed {
                sent: 10,
                dropped: 0
            }
        );
        assert!(batch.is_empty());
        let mut recv = RecvBatch::new(32, 2048);
        let n = recv.recv(rx.as_raw_fd()).unwrap();
        assert_eq!(n, 10, "loopback delivers synchronously");
        for (i, (from, data)) in recv.datagrams().enumerate() {
            assert_eq!(from, tx.local_addr().unwrap());
            assert_eq!(data, &vec![i as u8; 100 + i][..]);
        }
        let err = recv.recv(rx.as_raw_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn written_in_place_packets_reuse_the_buffers_of_sent_ones() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut batch = SendBatch::new();
        let mut seen = Vec::new();
        for round in 0..3u8 {
            for i in 0..4u8 {
                let queued = batch.push_with(to, |buf| {
                    assert!(buf.is_empty() && buf.capacity() >= SendBatch::BUFFER);
                    seen.push(buf.as_ptr() as usize);
                    buf.extend_from_slice(&[round, i]);
                    true
                });
                assert_eq!(queued, Some(false));
            }
            // Declined: nothing queued, the buffer kept.
            assert_eq!(batch.push_with(to, |_| false), None);
            assert_eq!(batch.flush(tx.as_raw_fd()).sent, 4);
        }
        seen.sort_unstable();
        seen.dedup();
        assert!(
            seen.len() <= 5,
            "{} distinct buffers for 12 packets",
            seen.len()
        );
        let mut recv = RecvBatch::new(32, 2048);
        assert_eq!(recv.recv(rx.as_raw_fd()).unwrap(), 12);
        let last: Vec<_> = recv.datagrams().map(|(_, d)| d.to_vec()).collect();
        assert_eq!(last[11], vec![2, 3]);
    }

    #[test]
    fn a_packet_the_kernel_refuses_is_skipped_and_the_rest_go() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut batch = SendBatch::new();
        batch.push(to, vec![1; 10]);
        // An IPv6 destination on an IPv4 socket: refused, alone.
        batch.push("[::1]:9".parse().unwrap(), vec![2; 10]);
        batch.push(to, vec![3; 10]);
        assert_eq!(
            batch.flush(tx.as_raw_fd()),
            Flushed {
                sent: 2,
                dropped: 1
            }
        );
        let mut recv = RecvBatch::new(8, 2048);
        assert_eq!(recv.recv(rx.as_raw_fd()).unwrap(), 2);
        let firsts: Vec<u8> = recv.datagrams().map(|(_, d)| d[0]).collect();
        assert_eq!(firsts, vec![1, 3]);
    }
}
