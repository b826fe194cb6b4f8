//! A flood of bad datagrams from a connected peer's own address, against the `amphi` binary:
//! the log it writes stays a few lines (src/log_limit.rs), and the channel goes on. Without
//! the limit, str0m writes one warning per forged SRTCP packet (1,000 lines for this flood).

use std::time::{Duration, Instant};

use crate::common::*;
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone};

/// One datagram of each kind the server's demultiplexer tells apart (STUN, DTLS, RTP and
/// RTCP, and bytes that are none of them), varied by `i` so no two are alike.
fn garbage(i: u32) -> Vec<u8> {
    let n = i.to_be_bytes();
    match i % 6 {
        // A STUN header with a bad length and a bad cookie.
        0 => [
            &[0, 1, 0xff, 0xf0, 0x21, 0x12, 0xa4, 0x43],
            &n[..],
            &[0; 12],
        ]
        .concat(),
        // A DTLS record header in an epoch that never was.
        1 => [&[22, 0xfe, 0xfd, 0, 9], &n[..], &[0xee; 40]].concat(),
        // RTP from the peer's SSRC space with an authentication tag that cannot be right.
        2 => [
            &[0x80, 111],
            &n[2..],
            &n[..],
            &[1, 2, 3, 4],
            &[0xab; 120][..],
        ]
        .concat(),
        // RTCP sender report, unauthenticated.
        3 => [&[0x80, 200, 0, 6], &n[..], &[0x55; 40][..]].concat(),
        // Nothing the demultiplexer knows.
        4 => [&[0x50], &n[..], &[0; 30][..]].concat(),
        _ => vec![0xff; 1 + (i as usize % 1400)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_datagrams_from_a_peers_own_address_writes_a_few_log_lines() {
    let (mut child, addr, log) = spawn_binary_logged(&[("AMPHI_LOG", "info".as_ref())]);
    let url = format!("http://{addr}");
    let signal = |identity: &'static str, role: &'static str| {
        let url = url.clone();
        async move {
            Signal::connect(&url, &token(identity, &[role]))
                .await
                .unwrap()
        }
    };
    let hs = signal("flood-host", "host").await;
    hs.join("flood", "host").await.unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sender = socket.try_clone().unwrap();
    let host_opts = PeerOptions {
        publish: Some(Box::new(Tone::new(440.0))),
        slots: 1,
        socket: Some(socket),
        ..PeerOptions::default()
    };
    let host = AudioPeer::start(&hs, "flood", host_opts).await.unwrap();
    assert!(host.wait_connected(WAIT).await, "host connected");
    let ls = signal("flood-listener", "audience").await;
    ls.join("flood", "audience").await.unwrap();
    let listener = AudioPeer::start(&ls, "flood", PeerOptions::default())
        .await
        .unwrap();
    assert!(listener.wait_connected(WAIT).await, "listener connected");
    assert!(listener.wait_packets(25, WAIT).await, "listener hears");
    // Whatever the server logged while everyone connected is not the flood's.
    let before: Vec<String> = log.try_iter().collect();

    let media: std::net::SocketAddr = before
        .iter()
        .find_map(|l| l.split("listening on UDP ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the server logged its media port")
        .parse()
        .unwrap();

    // 6,000 datagrams from the host's own address, at about 5,000/s.
    let start = Instant::now();
    for i in 0..6_000u32 {
        let _ = sender.send_to(&garbage(i), media);
        if i % 50 == 49 {
            let due = start + Duration::from_micros(200 * u64::from(i + 1));
            tokio::time::sleep_until(due.into()).await;
        }
    }
    // The channel went on: the listener keeps hearing the host.
    let heard = listener.stats().received_packets();
    assert!(
        listener.wait_packets(heard + 50, WAIT).await,
        "the listener still hears the host after the flood"
    );
    // The server is alive and answering, so every line the flood caused is already written.
    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert!(health.status().is_success());
    let _ = child.kill();
    let _ = child.wait();
    let after: Vec<String> = log.try_iter().collect();
    let loud: Vec<&String> = after
        .iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(
        loud.len() <= 40,
        "{} warning lines for 6,000 bad datagrams:\n{loud:#?}\n(before: {before:#?})",
        loud.len()
    );
    assert!(
        after.len() <= 80,
        "{} log lines for 6,000 bad datagrams:\n{after:#?}",
        after.len()
    );
    eprintln!(
        "flood: {} lines logged, {} of them warnings",
        after.len(),
        loud.len()
    );
}
