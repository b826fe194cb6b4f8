//! Peers live on the media worker their packets land on: after the nominated STUN request,
//! no datagram changes hands between workers (the counters are this test's server's own).

use std::time::Duration;

use crate::common::*;
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone};

const SECS: Duration = Duration::from_secs(10);
const HANDOVERS: &str = "amphi_media_handovers_total";
const MOVES: &str = "amphi_media_peer_moves_total";
const FORWARDED: &str = "amphi_packets_forwarded_total";

async fn peer(server: &amphi::ServerHandle, identity: &str, role: &str) -> (Signal, AudioPeer) {
    let s = Signal::connect(&server.http_url(), &token(identity, &[role]))
        .await
        .unwrap();
    s.join("steer", role).await.unwrap();
    let opts = PeerOptions {
        publish: (role == "host").then(|| Box::new(Tone::new(440.0)) as _),
        slots: 1,
        decode: false,
        ..PeerOptions::default()
    };
    let p = AudioPeer::start(&s, "steer", opts).await.unwrap();
    assert!(p.wait_connected(SECS).await, "{identity} connected");
    (s, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_move_to_the_worker_their_packets_land_on() {
    // Four workers: a peer placed at its offer lands on its worker's socket one time in four.
    let server = start_with(|c| c.media.workers = 4);
    let mut listeners = Vec::new();
    for i in 0..11 {
        listeners.push(peer(&server, &format!("l{i}"), "audience").await);
    }
    let _host = peer(&server, "h", "host").await;
    for (_, l) in &listeners {
        assert!(
            l.wait_packets(25, SECS).await,
            "every listener hears the host"
        );
    }
    // Two seconds of audio for everyone, so that setting up is over and counted (workers
    // publish their counters four times a second).
    let more = |n: u64| {
        let marks: Vec<u64> = listeners
            .iter()
            .map(|(_, l)| l.received_packets())
            .collect();
        let listeners = &listeners;
        async move {
            for ((_, l), mark) in listeners.iter().zip(marks) {
                assert!(l.wait_packets(mark + n, SECS).await);
            }
        }
    };
    more(100).await;
    let moves = metric(&server, MOVES).await;
    assert!(moves >= 1.0, "12 peers on 4 workers and none moved");
    let (handovers, forwarded) = (
        metric(&server, HANDOVERS).await,
        metric(&server, FORWARDED).await,
    );
    // Setting up hands over a few datagrams per moved peer (STUN and DTLS before the
    // nominated request); never the media that follows.
    assert!(
        handovers <= 10.0 * moves,
        "{handovers} hand-overs for {moves} moves"
    );
    // Two more seconds: counted forwards, no hand-over.
    more(100).await;
    let after = wait_metric(&server, FORWARDED, forwarded + 1_000.0, SECS).await;
    assert!(after >= forwarded + 1_000.0, "{forwarded} -> {after}");
    assert_eq!(
        metric(&server, HANDOVERS).await,
        handovers,
        "datagrams changed workers once every peer had settled"
    );
    server.shutdown().unwrap();
}
