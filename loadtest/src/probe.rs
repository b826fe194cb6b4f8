//! The bare cost of sending one protected audio packet on this machine: SRTP protect
//! (AES-128-CM + HMAC-SHA1-80) with contexts set up once, as a tuned sender would, plus the
//! UDP send — one `sendto` per packet, or one `sendmmsg` per 64. CPU time on this thread, with
//! the receiving side drained outside the timed windows. Forwarding cost is reported as a
//! multiple of it, measured in the same run on the same machine.

use std::mem::MaybeUninit;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::sha::Sha1;

/// An Opus voice frame at 32 kb/s is ~80 bytes; with RTP header and extensions ~100.
pub const PACKET_BYTES: usize = 100;
const AUTH_TAG: usize = 10;
const BATCH: usize = 64;

/// Per packet, in CPU time.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// SRTP protect + `sendto`.
    pub sendto: Duration,
    /// SRTP protect + a 64th of a `sendmmsg`.
    pub sendmmsg: Duration,
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// SRTP's packet protection with its keys expanded once: AES-CTR with a per-packet IV, and
/// HMAC-SHA1 from precomputed inner and outer hash states.
struct Srtp {
    cipher: CipherCtx,
    inner: Sha1,
    outer: Sha1,
}

impl Srtp {
    fn new() -> Self {
        let key = [7u8; 16];
        let auth_key = [9u8; 20];
        let mut cipher = CipherCtx::new().expect("cipher context");
        cipher
            .encrypt_init(Some(Cipher::aes_128_ctr()), Some(&key), None)
            .expect("AES-128-CTR");
        let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
        for (i, k) in auth_key.iter().enumerate() {
            ipad[i] ^= k;
            opad[i] ^= k;
        }
        let (mut inner, mut outer) = (Sha1::new(), Sha1::new());
        inner.update(&ipad);
        outer.update(&opad);
        Self {
            cipher,
            inner,
            outer,
        }
    }

    /// Encrypts `plain` into `out` and appends the 80-bit tag; the protected length.
    fn protect(&mut self, index: u32, plain: &[u8], out: &mut [u8]) -> usize {
        let mut iv = [0u8; 16];
        iv[10..14].copy_from_slice(&index.to_be_bytes());
        self.cipher
            .encrypt_init(None, None, Some(&iv))
            .expect("new IV");
        let n = self
            .cipher
            .cipher_update(plain, Some(&mut out[..plain.len()]))
            .expect("encrypt");
        let mut inner = self.inner.clone();
        inner.update(&out[..n]);
        inner.update(&index.to_be_bytes());
        let mut outer = self.outer.clone();
        outer.update(&inner.finish());
        out[n..n + AUTH_TAG].copy_from_slice(&outer.finish()[..AUTH_TAG]);
        n + AUTH_TAG
    }
}

/// Sends `bufs` to `to` in one `sendmmsg`.
fn sendmmsg(socket: &UdpSocket, to: SocketAddr, bufs: &mut [Vec<u8>]) {
    sendmmsg_to(socket, &vec![to; bufs.len()], bufs);
}

fn sockaddr(to: SocketAddr) -> libc::sockaddr_in {
    let v4 = match to {
        SocketAddr::V4(v4) => v4,
        SocketAddr::V6(_) => panic!("the probe runs on IPv4 loopback"),
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Sends `bufs[i]` to `to[i]`, all in one `sendmmsg`.
fn sendmmsg_to(socket: &UdpSocket, to: &[SocketAddr], bufs: &mut [Vec<u8>]) {
    let addrs: Vec<libc::sockaddr_in> = to.iter().map(|a| sockaddr(*a)).collect();
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(&addrs)
        .map(|(iov, addr)| {
            // SAFETY: an all-zero msghdr is valid.
            let mut h: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            h.msg_name = (addr as *const libc::sockaddr_in).cast_mut().cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect();
    // SAFETY: the headers point at `addrs`, `iovs` and `bufs`, all alive for the call.
    unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            0,
        )
    };
}

/// Measures both sends over `packets` packets each.
pub fn measure(packets: u32) -> Probe {
    let sink =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
    let _ = sink.set_recv_buffer_size(8 << 20);
    sink.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let sink: UdpSocket = sink.into();
    sink.set_nonblocking(true).expect("non-blocking");
    let to = sink.local_addr().expect("bound");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let drain = |buf: &mut [u8]| while sink.recv(buf).is_ok() {};
    let mut srtp = Srtp::new();
    let plain = [0x5au8; PACKET_BYTES - AUTH_TAG];
    let mut scratch = [0u8; 2048];
    let chunks = (packets as usize / BATCH).max(1);

    let mut out = [0u8; PACKET_BYTES + 32];
    let mut sendto = Duration::ZERO;
    let mut index = 0u32;
    for _ in 0..chunks {
        let start = thread_cpu();
        for _ in 0..BATCH {
            let n = srtp.protect(index, &plain, &mut out);
            let _ = socket.send_to(&out[..n], to);
            index = index.wrapping_add(1);
        }
        sendto += thread_cpu() - start;
        drain(&mut scratch);
    }

    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; PACKET_BYTES]).collect();
    let mut batched = Duration::ZERO;
    for _ in 0..chunks {
        let start = thread_cpu();
        for b in &mut bufs {
            b.resize(PACKET_BYTES + 32, 0);
            let n = srtp.protect(index, &plain, b);
            b.truncate(n);
            index = index.wrapping_add(1);
        }
        sendmmsg(&socket, to, &mut bufs);
        batched += thread_cpu() - start;
        drain(&mut scratch);
    }
    let n = (chunks * BATCH) as u32;
    Probe {
        sendto: sendto / n,
        sendmmsg: batched / n,
    }
}

pub mod fanout;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_hmac_sha1_of_the_ciphertext_and_index() {
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::sign::Signer;
        let mut srtp = Srtp::new();
        let plain = [1u8; 40];
        let mut out = [0u8; 64];
        let n = srtp.protect(5, &plain, &mut out);
        assert_eq!(n, 40 + AUTH_TAG);
        let key = PKey::hmac(&[9u8; 20]).unwrap();
        let mut signer = Signer::new(MessageDigest::sha1(), &key).unwrap();
        signer.update(&out[..40]).unwrap();
        signer.update(&5u32.to_be_bytes()).unwrap();
        assert_eq!(&signer.sign_to_vec().unwrap()[..AUTH_TAG], &out[40..n]);
        // A reused context still encrypts each packet under its own IV.
        let mut again = [0u8; 64];
        srtp.protect(6, &plain, &mut again);
        assert_ne!(&out[..40], &again[..40]);
    }

    #[test]
    fn a_fan_out_to_waiting_sockets_costs_something_per_packet() {
        let p = fanout::measure_fanout(50, 20);
        assert!(p > Duration::ZERO && p < Duration::from_millis(1), "{p:?}");
    }

    #[test]
    fn both_sends_cost_something_and_batching_is_not_dearer() {
        let p = measure(20_000);
        assert!(p.sendto > Duration::ZERO && p.sendmmsg > Duration::ZERO);
        // A batch spends one system call for 64 packets; on a noisy machine allow slack.
        assert!(p.sendmmsg < p.sendto * 2, "{p:?}");
    }
}
