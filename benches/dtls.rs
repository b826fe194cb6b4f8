//! What a peer's DTLS keeps after its handshake, and what the handshake costs: str0m's own
//! OpenSSL provider against `amphi::dtls` (a context shared by all peers, buffers released).
//!
//! `cargo bench --bench dtls [-- PEERS]` handshakes PEERS server-side instances (default 500)
//! with clients in memory, drops the clients, and reports the heap the servers still hold
//! (glibc's `mallinfo2`: this binary uses the system allocator, as OpenSSL does) and the CPU
//! time per handshake (both sides). Memory is exact; the time is for ratios within one run.

use std::time::{Duration, Instant};

use str0m::crypto::dtls::{DtlsCert, DtlsInstance, DtlsOutput, DtlsVersion};
use str0m::crypto::CryptoProvider;

fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    unsafe { libc::mallinfo2().uordblks }
}

fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn outputs(side: &mut dyn DtlsInstance, out: &mut Vec<Vec<u8>>) -> bool {
    let mut buf = [0u8; 4096];
    let mut connected = false;
    loop {
        match side.poll_output(&mut buf) {
            DtlsOutput::Packet(p) => out.push(p.to_vec()),
            DtlsOutput::Connected => connected = true,
            DtlsOutput::Timeout(_) => return connected,
            _ => {}
        }
    }
}

/// Roles set and both started as str0m starts them; the client's first flight is queued.
fn start(server: &mut dyn DtlsInstance, client: &mut dyn DtlsInstance) {
    let now = Instant::now();
    server.set_active(false);
    client.set_active(true);
    server.handle_timeout(now).unwrap();
    client.handle_timeout(now).unwrap();
    client.handle_packet(&[]).unwrap();
}

fn handshake(server: &mut dyn DtlsInstance, client: &mut dyn DtlsInstance) {
    start(server, client);
    let (mut server_up, mut client_up) = (false, false);
    for _ in 0..20 {
        let (mut to_s, mut to_c) = (vec![], vec![]);
        client_up |= outputs(client, &mut to_s);
        server_up |= outputs(server, &mut to_c);
        if to_s.is_empty() && to_c.is_empty() {
            break;
        }
        to_s.iter().for_each(|d| server.handle_packet(d).unwrap());
        to_c.iter().for_each(|d| client.handle_packet(d).unwrap());
    }
    assert!(server_up && client_up, "handshake completed");
}

struct Run {
    bytes_per_peer: usize,
    waiting_bytes_per_peer: usize,
    handshake: Duration,
}

fn run(name: &str, server_side: &CryptoProvider, peers: usize) -> Run {
    let client_side = str0m::crypto::from_feature_flags();
    let cert = |p: &CryptoProvider| p.dtls_provider.generate_certificate().unwrap();
    let server_cert: DtlsCert = cert(server_side);
    let client_cert: DtlsCert = cert(&client_side);
    let new = |p: &CryptoProvider, c: &DtlsCert| {
        p.dtls_provider
            .new_dtls(c, Instant::now(), DtlsVersion::Dtls12, None)
            .unwrap()
    };
    // One handshake first, so that one-time state (contexts, OpenSSL's tables) is not counted.
    handshake(
        &mut *new(server_side, &server_cert),
        &mut *new(&client_side, &client_cert),
    );
    let before = heap_in_use();
    let cpu = cpu_time();
    let mut servers = Vec::with_capacity(peers);
    for _ in 0..peers {
        let mut s = new(server_side, &server_cert);
        let mut c = new(&client_side, &client_cert);
        handshake(&mut *s, &mut *c);
        servers.push(s);
    }
    let handshake_time = (cpu_time() - cpu) / peers as u32;
    let bytes_per_peer = heap_in_use().saturating_sub(before) / peers;
    println!(
        "{name:<28} {:>7.1} KiB per peer after the handshake, {:>6.2} ms CPU per handshake (both sides)",
        bytes_per_peer as f64 / 1024.0,
        handshake_time.as_secs_f64() * 1e3
    );
    drop(servers);
    // Mid-handshake, as in a join burst: each server has answered a ClientHello and waits.
    let before = heap_in_use();
    let mut waiting = Vec::with_capacity(peers);
    for _ in 0..peers {
        let (mut s, mut c) = (
            new(server_side, &server_cert),
            new(&client_side, &client_cert),
        );
        start(&mut *s, &mut *c);
        let mut hello = vec![];
        outputs(&mut *c, &mut hello);
        hello.iter().for_each(|d| s.handle_packet(d).unwrap());
        outputs(&mut *s, &mut vec![]);
        drop(c);
        waiting.push(s);
    }
    let waiting_bytes_per_peer = heap_in_use().saturating_sub(before) / peers;
    println!(
        "{name:<28} {:>7.1} KiB per peer waiting mid-handshake for the client's second flight",
        waiting_bytes_per_peer as f64 / 1024.0
    );
    drop(waiting);
    Run {
        waiting_bytes_per_peer,
        bytes_per_peer,
        handshake: handshake_time,
    }
}

fn main() {
    let peers = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    println!("{peers} server-side DTLS instances, each handshaken with a str0m OpenSSL client");
    if std::env::args().any(|a| a == "--ours-only") {
        run("amphi::dtls", &amphi::dtls::provider(), peers);
        return;
    }
    let theirs = run(
        "str0m's OpenSSL provider",
        &str0m::crypto::from_feature_flags(),
        peers,
    );
    let ours = run("amphi::dtls", &amphi::dtls::provider(), peers);
    println!(
        "ratio: {:.3}x the memory after, {:.2}x mid-handshake, {:.2}x the handshake CPU",
        ours.bytes_per_peer as f64 / theirs.bytes_per_peer.max(1) as f64,
        ours.waiting_bytes_per_peer as f64 / theirs.waiting_bytes_per_peer.max(1) as f64,
        ours.handshake.as_secs_f64() / theirs.handshake.as_secs_f64()
    );
}
