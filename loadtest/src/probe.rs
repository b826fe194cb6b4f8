//! The bare cost of sending one protected audio packet: SRTP protect (AES-128-CM +
//! HMAC-SHA1-80, with the same OpenSSL calls str0m makes per packet) plus one UDP send, in CPU
//! time on this thread. Forwarding cost is reported as a multiple of it, measured in the same
//! run on the same machine.

use std::net::UdpSocket;
use std::time::Duration;

/// An Opus voice frame at 32 kb/s is ~80 bytes; with RTP header and extensions ~100.
pub const PACKET_BYTES: usize = 100;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of one SRTP protect + one UDP send of a `PACKET_BYTES` packet, on this thread.
pub fn srtp_send(iterations: u32) -> Duration {
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::sign::Signer;
    use openssl::symm::{Cipher, Crypter, Mode};
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(sink.local_addr().unwrap()).unwrap();
    let key = [7u8; 16];
    let auth_key = [9u8; 20];
    let plain = [0x5au8; PACKET_BYTES - 10];
    let mut out = vec![0u8; PACKET_BYTES + 32];
    let mut drain = [0u8; 2048];
    sink.set_nonblocking(true).unwrap();
    let start = thread_cpu();
    for i in 0..iterations {
        let mut iv = [0u8; 16];
        iv[10..14].copy_from_slice(&i.to_be_bytes());
        let mut c = Crypter::new(Cipher::aes_128_ctr(), Mode::Encrypt, &key, Some(&iv)).unwrap();
        let n = c.update(&plain, &mut out).unwrap();
        let pkey = PKey::hmac(&auth_key).unwrap();
        let mut signer = Signer::new(MessageDigest::sha1(), &pkey).unwrap();
        signer.update(&out[..n]).unwrap();
        let tag = signer.sign_to_vec().unwrap();
        out[n..n + 10].copy_from_slice(&tag[..10]);
        let _ = socket.send(&out[..n + 10]);
        // Keep the sink from filling; its reads are not part of the cost, so pause the clock.
        if i % 64 == 0 {
            while sink.recv(&mut drain).is_ok() {}
        }
    }
    (thread_cpu() - start) / iterations
}
