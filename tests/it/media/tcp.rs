//! ICE over TCP: clients whose network blocks UDP (Rust clients offering only an active TCP
//! candidate) publish and listen through the server's passive TCP candidate.

use std::io::{Read, Write};

use super::*;

async fn tcp_peer(
    server: &amphi::ServerHandle,
    channel: &str,
    identity: &str,
    publish: Option<f64>,
) -> (Signal, AudioPeer, String) {
    let role = if publish.is_some() {
        "host"
    } else {
        "audience"
    };
    let s = signal(server, identity, role).await;
    let reply = s.join(channel, role).await.unwrap();
    let opts = PeerOptions {
        publish: publish.map(|f| Box::new(Tone::new(f)) as Box<dyn amphi_client::Source>),
        slots: 1,
        keep_audio: true,
        ice_tcp: true,
        ..PeerOptions::default()
    };
    let peer = AudioPeer::start(&s, channel, opts).await.unwrap();
    assert!(
        peer.wait_connected(SECS).await,
        "{identity} connected over TCP"
    );
    (s, peer, reply["participant"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_and_hosts_without_udp_are_heard_over_ice_tcp() {
    let server = start();
    let (_ls, tcp_listener, _) = tcp_peer(&server, "tcp", "tcp-ear", None).await;
    let (_us, udp_listener) = listener(&server, "tcp", "udp-ear").await;
    let (_hs, h, host_id) = tcp_peer(&server, "tcp", "tcp-host", Some(660.0)).await;
    assert_eq!(
        wait_metric(&server, "amphi_media_tcp_connections", 2.0, SECS).await,
        2.0
    );
    assert!(
        tcp_listener.wait_packets(150, SECS).await,
        "3 s heard over TCP"
    );
    h.set_sending(false).await;
    let sent = h.stats().sent_packets;
    for l in [&tcp_listener, &udp_listener] {
        drained(l, &host_id, sent).await;
        let stats = l.stats();
        let slot = stats.slot_for(&host_id).expect("a slot carries the host");
        let ratio = slot.packets as f64 / sent as f64;
        assert!(ratio >= 0.99, "received {} of {sent}", slot.packets);
        let tail = &slot.samples[slot.samples.len().saturating_sub(48_000)..];
        assert_eq!(dominant(tail, &[440.0, 660.0, 880.0]), 660.0);
    }
    drop((tcp_listener, h));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_connection_that_names_no_peer_is_closed_and_counted() {
    let server = start();
    // The answer to any offer carries the passive candidate: learn the port from it.
    let (_s, peer) = listener(&server, "tcp-bad", "probe").await;
    let port = {
        let s = signal(&server, "probe2", "audience").await;
        s.join("tcp-bad", "audience").await.unwrap();
        let mut rtc = str0m::Rtc::builder().build(std::time::Instant::now());
        rtc.add_local_candidate(str0m::Candidate::host(([127, 0, 0, 1], 9).into(), "udp").unwrap());
        let mut api = rtc.sdp_api();
        api.add_media(
            str0m::media::MediaKind::Audio,
            str0m::media::Direction::RecvOnly,
            None,
            None,
            None,
        );
        let offer = api.apply().unwrap().0.to_sdp_string();
        let reply = s
            .send(&amphi_proto::protocol::Request::MediaOffer {
                channel: "tcp-bad".into(),
                sdp: offer,
            })
            .await
            .unwrap();
        let sdp = reply["sdp"].as_str().unwrap().to_string();
        let line = sdp
            .lines()
            .find(|l| l.contains(" tcp ") && l.contains("tcptype passive"))
            .unwrap_or_else(|| panic!("no passive TCP candidate: {sdp}"));
        line.split_whitespace()
            .nth(5)
            .unwrap()
            .parse::<u16>()
            .unwrap()
    };
    drop(peer);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(SECS)).unwrap();
    // A DTLS-looking frame first: no binding request, no peer.
    tcp.write_all(&[0, 4, 22, 254, 253, 0]).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(tcp.read(&mut buf).unwrap_or(0), 0, "closed without a reply");
    let refused = wait_metric(
        &server,
        "amphi_packets_dropped_total{reason=\"tcp_refused\"}",
        1.0,
        SECS,
    )
    .await;
    assert_eq!(refused, 1.0);
}
