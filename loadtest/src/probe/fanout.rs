//! The bare cost of a fan-out on loopback: the same protect and `sendmmsg` as `measure`, but
//! one packet to each of `receivers` sockets that another thread waits on with epoll and
//! drains, as a swarm's listeners do. On loopback the sender's system call also delivers each
//! datagram into its receiver's socket and wakes the waiting thread; a server fanning out to
//! a swarm on the same machine pays that, while `measure` (one socket, drained outside the
//! timed window) does not. Both are reported, so a reader sees how much of a server's cost is
//! that delivery.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{sendmmsg_to, thread_cpu, Srtp, AUTH_TAG, BATCH, PACKET_BYTES};

/// CPU per packet of `rounds` rounds, each one packet to every one of `receivers` sockets
/// (in `sendmmsg` batches of 64). Between rounds, outside the timed window, the sender waits
/// until the receiving thread has drained the round (at most 100 ms).
pub fn measure_fanout(receivers: usize, rounds: u32) -> Duration {
    let receivers = receivers.max(1);
    let sockets: Arc<Vec<UdpSocket>> = Arc::new(
        (0..receivers)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
                s.set_nonblocking(true).expect("non-blocking");
                s
            })
            .collect(),
    );
    let addrs: Vec<SocketAddr> = sockets
        .iter()
        .map(|s| s.local_addr().expect("bound"))
        .collect();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (sockets, received, stop) = (sockets.clone(), received.clone(), stop.clone());
        std::thread::spawn(move || drain_all(&sockets, &received, &stop))
    };
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut srtp = Srtp::new();
    let plain = [0x5au8; PACKET_BYTES - AUTH_TAG];
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; PACKET_BYTES]).collect();
    let (mut spent, mut sent, mut index) = (Duration::ZERO, 0u64, 0u32);
    for _ in 0..rounds {
        let start = thread_cpu();
        for to in addrs.chunks(BATCH) {
            let bufs = &mut bufs[..to.len()];
            for b in bufs.iter_mut() {
                b.resize(PACKET_BYTES + 32, 0);
                let n = srtp.protect(index, &plain, b);
                b.truncate(n);
                index = index.wrapping_add(1);
            }
            sendmmsg_to(&socket, to, bufs);
        }
        spent += thread_cpu() - start;
        sent += receivers as u64;
        let deadline = Instant::now() + Duration::from_millis(100);
        while received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    spent / (u64::from(rounds) * receivers as u64).max(1) as u32
}

/// Waits on every socket with one epoll and drains the ready ones, until `stop`.
fn drain_all(sockets: &[UdpSocket], received: &AtomicU64, stop: &AtomicBool) {
    // SAFETY: plain epoll calls on descriptors this function's caller keeps open.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    for (i, s) in sockets.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: as above; `ev` is read during the call.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `events` has room for the 256 entries asked for.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 256, 20) };
        for ev in &events[..n.max(0) as usize] {
            let s = &sockets[ev.u64 as usize];
            while s.recv(&mut buf).is_ok() {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // SAFETY: closes the epoll descriptor made above.
    unsafe { libc::close(ep) };
}
