//! Interop: an independent WebRTC stack (the `webrtc` crate, webrtc-rs) listens as audience to a
//! Rust host (amphi_client on str0m) through the server, on loopback.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use amphi_client::audio::dominant;
use amphi_client::{AudioPeer, PeerOptions, Signal, Tone};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use serde_json::json;
use tokio::sync::watch;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceConnectionState,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use webrtc::runtime::TokioRuntime;

const CHANNEL: &str = "interop";
const OPUS_PT: u8 = 111;
const SECS: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(3);
/// Packets of 20 ms in `WINDOW`.
const WINDOW_PACKETS: u64 = 150;

/// What the webrtc-rs peer has received on its remote track.
#[derive(Default)]
struct Received {
    /// Every RTP packet.
    packets: u64,
    /// Packets with the Opus payload type and a non-empty payload.
    opus: u64,
    other_pt: Vec<u8>,
    empty: u64,
    payloads: Vec<Vec<u8>>,
}

struct Handler {
    gathering: watch::Sender<RTCIceGatheringState>,
    state: watch::Sender<RTCPeerConnectionState>,
    ice: Mutex<Vec<RTCIceConnectionState>>,
    tracks: Mutex<u32>,
    received: Arc<Mutex<Received>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        let _ = self.gathering.send(state);
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        self.ice.lock().unwrap().push(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        *self.tracks.lock().unwrap() += 1;
        // This runs on the connection's driver: read the track from a task of our own.
        let received = self.received.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        let mut r = received.lock().unwrap();
                        r.packets += 1;
                        if p.header.payload_type != OPUS_PT {
                            r.other_pt.push(p.header.payload_type);
                        } else if p.payload.is_empty() {
                            r.empty += 1;
                        } else {
                            r.opus += 1;
                            r.payloads.push(p.payload.to_vec());
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// The value of the first `a=<attr>:` line of the first audio m-section.
fn audio_attr<'a>(sdp: &'a str, attr: &str) -> Option<&'a str> {
    let section = sdp.split("\nm=").find(|s| s.starts_with("audio"))?;
    let prefix = format!("a={attr}:");
    section
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
}

async fn wait_for<T: Clone>(
    rx: &mut watch::Receiver<T>,
    wait: Duration,
    done: impl Fn(&T) -> bool,
) -> Option<T> {
    tokio::time::timeout(wait, rx.wait_for(|v| done(v)))
        .await
        .ok()?
        .ok()
        .map(|v| v.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_audience_hears_a_str0m_host() {
    let server = start();

    // The host: amphi's own Rust client publishing a 440 Hz tone.
    let hs = Signal::connect(&server.http_url(), &token("host", &["host"]))
        .await
        .unwrap();
    let joined = hs.join(CHANNEL, "host").await.unwrap();
    let host_id = joined["participant"].as_str().unwrap().to_string();
    let host = AudioPeer::start(
        &hs,
        CHANNEL,
        PeerOptions {
            publish: Some(Box::new(Tone::new(440.0))),
            slots: 1,
            ..PeerOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(host.wait_connected(SECS).await, "host connected");

    // The listener's signalling, joined as audience.
    let ls = Signal::connect(&server.http_url(), &token("listener", &["audience"]))
        .await
        .unwrap();
    ls.join(CHANNEL, "audience").await.unwrap();

    // The listener's media: webrtc-rs with Opus only, loopback UDP4 host candidates only.
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_OPUS.to_owned(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    let settings = SettingEngineBuilder::new()
        .with_network_types(vec![NetworkType::Udp4])
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .build();
    let (gathering_tx, mut gathering) = watch::channel(RTCIceGatheringState::New);
    let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
    let received = Arc::new(Mutex::new(Received::default()));
    let handler = Arc::new(Handler {
        gathering: gathering_tx,
        state: state_tx,
        ice: Mutex::default(),
        tracks: Mutex::default(),
        received: received.clone(),
    });
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_runtime(Arc::new(TokioRuntime))
        .with_handler(handler.clone())
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await
        .unwrap();
    pc.add_transceiver_from_kind(
        RtpCodecKind::Audio,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let complete = |s: &RTCIceGatheringState| *s == RTCIceGatheringState::Complete;
    let gathered = wait_for(&mut gathering, SECS, complete).await;
    assert!(
        gathered.is_some(),
        "ICE gathering completes within {SECS:?}"
    );
    let offer = pc.local_description().await.expect("local offer").sdp;
    let candidates: Vec<&str> = offer
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    assert!(
        !candidates.is_empty(),
        "the offer carries candidates:\n{offer}"
    );
    assert!(
        candidates
            .iter()
            .all(|c| c.contains(" udp ") || c.contains(" UDP "))
            && candidates.iter().all(|c| c.contains(" 127.0.0.1 ")),
        "loopback UDP host candidates only:\n{offer}"
    );
    assert_eq!(
        audio_attr(&offer, "rtpmap"),
        Some("111 opus/48000/2"),
        "{offer}"
    );
    assert_eq!(
        offer.lines().filter(|l| l.starts_with("m=audio")).count(),
        1,
        "{offer}"
    );
    let mid = audio_attr(&offer, "mid").expect("a mid").to_string();

    let reply = ls
        .request("media_offer", json!({"channel": CHANNEL, "sdp": offer}))
        .await
        .unwrap_or_else(|e| panic!("media_offer refused: {e}\noffer:\n{offer}"));
    let answer = reply["sdp"].as_str().expect("an answer").to_string();
    assert_eq!(audio_attr(&answer, "mid"), Some(mid.as_str()), "{answer}");
    assert!(
        answer.contains(&format!("a=rtpmap:{OPUS_PT} opus/48000/2")),
        "the answer keeps the offered Opus payload type:\n{answer}"
    );
    let negotiated = Instant::now();
    pc.set_remote_description(RTCSessionDescription::answer(answer.clone()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("answer refused by webrtc-rs: {e}\nanswer:\n{answer}"));

    // ICE (towards the ICE-lite server) and DTLS complete.
    let connected = wait_for(&mut state, SECS, |s| {
        matches!(
            s,
            RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed
        )
    })
    .await;
    assert_eq!(
        connected,
        Some(RTCPeerConnectionState::Connected),
        "connected within {SECS:?}; ICE states {:?}\noffer:\n{offer}\nanswer:\n{answer}",
        handler.ice.lock().unwrap()
    );
    let connect_time = negotiated.elapsed();

    // The server says which participant our one slot carries. One slot is enough for the one
    // host on stage, so no renegotiation is due (docs/media.md): a server `media_offer` here
    // means the offered slot was not used.
    let deadline = tokio::time::Instant::now() + SECS;
    let track = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(e) = ls.next_event(left).await else {
            panic!("no track event within {SECS:?}");
        };
        match e["event"].as_str() {
            Some("track") => break e,
            Some("media_offer") => {
                let sdp = e["sdp"].as_str().unwrap_or_default();
                let mids: Vec<&str> = sdp
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("a=mid:"))
                    .collect();
                panic!(
                    "the server renegotiates (media_offer with mids {mids:?}) {:?} after our \
                     answer instead of binding the host to our slot {mid:?}; \
                     one slot for one host needs no renegotiation",
                    negotiated.elapsed()
                );
            }
            _ => {}
        }
    };
    assert_eq!(track["mid"], mid.as_str(), "{track}");
    assert_eq!(track["participant"], host_id.as_str(), "{track}");

    // Audio starts flowing; then compare what arrives with what the host sends over a window.
    let deadline = Instant::now() + SECS;
    while received.lock().unwrap().packets == 0 {
        assert!(
            Instant::now() < deadline,
            "no RTP within {SECS:?} of connecting; tracks opened: {}",
            handler.tracks.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent_before = host.stats().sent_packets;
    let got_before = received.lock().unwrap().packets;
    // The window: three seconds of audio received (150 packets of 20 ms), bounded.
    let window_end = Instant::now() + WINDOW * 3;
    while received.lock().unwrap().packets < got_before + WINDOW_PACKETS
        && Instant::now() < window_end
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent_after = host.stats().sent_packets;
    let got_after = received.lock().unwrap().packets;

    let sent = sent_after - sent_before;
    let got = got_after - got_before;
    // A snapshot: the track task keeps counting while we check.
    let r = std::mem::take(&mut *received.lock().unwrap());
    eprintln!(
        "connected in {connect_time:?}; window {WINDOW:?}: host sent {sent}, webrtc-rs got {got}; \
         total {} packets ({} Opus)",
        r.packets, r.opus
    );
    assert!(
        r.other_pt.is_empty(),
        "non-Opus payload types: {:?}",
        r.other_pt
    );
    assert_eq!(r.empty, 0, "packets with an empty payload");
    assert!(r.opus >= 100, "at least 100 Opus packets, got {}", r.opus);
    assert!(sent > 0, "the host sent during the window");
    assert!(
        got as f64 >= sent as f64 * 0.95,
        "received {got} of the {sent} packets the host sent in the window"
    );

    // The payloads are the host's tone.
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    let mut frame = [0i16; 5760];
    for payload in &r.payloads {
        let n = decoder.decode(payload, &mut frame, false).unwrap();
        pcm.extend_from_slice(&frame[..n]);
    }
    let tail = &pcm[pcm.len().saturating_sub(48_000)..];
    assert_eq!(dominant(tail, &[220.0, 440.0, 660.0, 880.0]), 440.0);

    pc.close().await.unwrap();
    host.close().await;
}
